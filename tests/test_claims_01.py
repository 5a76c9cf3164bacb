"""The C1–C3 rules of notebook 01 (slimlab.claims) on made-up metrics: each verdict reached, and the
cases that a wrong rule would get wrong (a constant gain per doubling, a probe that only bounds)."""
import pytest

from slimlab import claims as C
from slimlab import ledger

# ---------------------------------------------------------------------------------------------
# C1: the shape of the error-parameters curve, and information per parameter

SHAPE = dict(alpha_ci=(0.12, 0.33), gain_first=3.4, gain_last=3.3)     # the v1 full run: a constant gain
INFO = dict(bits_small=0.8, bits_large=0.2, bits_small_censored="", bits_large_censored="")


@pytest.mark.parametrize("m, shape", [
    (SHAPE, "yes"),                                                        # CI in (0, 1), constant gain
    ({**SHAPE, "alpha_ci": None}, "yes"),                                  # no CI: the gain alone
    ({**SHAPE, "alpha_ci": (0.3, 0.6), "gain_last": 6.0}, "yes"),          # CI yes; gains 1.76x: no verdict
    ({**SHAPE, "alpha_ci": (0.3, 1.2), "gain_last": 6.0}, "unknown"),      # neither shows the shape
    ({**SHAPE, "alpha_ci": None, "gain_last": 3.4 * C.C1_GAIN_STEADY}, "yes"),   # at the bound: steady
    ({**SHAPE, "alpha_ci": None, "gain_last": 3.4 * C.C1_GAIN_LINEAR}, "no"),    # doubling: linear returns
    ({**SHAPE, "alpha_ci": (1.1, 1.6), "gain_first": 2.0, "gain_last": 4.5}, "no"),
    ({**SHAPE, "alpha_ci": (1.0, 1.6), "gain_first": 0.0, "gain_last": 0.0}, "no"),  # CI at 1: not below 1
    ({**SHAPE, "alpha_ci": (0.0, 0.4), "gain_first": -0.3, "gain_last": 0.1}, "unknown"),  # CI reaches 0
    ({**SHAPE, "alpha_ci": None, "gain_first": -0.4, "gain_last": -0.4}, "unknown"),      # nothing gained
    ({**SHAPE, "alpha_ci": (0.05, 0.9), "gain_first": 1.0, "gain_last": 2.5}, "unknown"),  # the two disagree
])
def test_c1_shape(m, shape):
    assert C.c1_shape(m) == shape


@pytest.mark.parametrize("bits, info", [
    (dict(bits_small=0.8, bits_large=0.2), "yes"),
    (dict(bits_small=0.8, bits_large=0.61), "no"),                                    # above 3/4: not falling
    (dict(bits_small=0.8, bits_large=0.59), "yes"),
    (dict(bits_small=0.63, bits_large=0.18, bits_small_censored="below"), "unknown"), # v1: small only an upper bound
    (dict(bits_small=0.63, bits_large=0.18, bits_large_censored="above"), "unknown"), # large only a lower bound
    (dict(bits_small=0.8, bits_large=0.2, bits_small_censored="above"), "yes"),       # bounds in the right direction
    (dict(bits_small=0.8, bits_large=0.2, bits_large_censored="below"), "yes"),
    (dict(bits_small=0.2, bits_large=0.8, bits_large_censored="above"), "no"),        # a lower bound above: against
    (dict(bits_small=0.2, bits_large=0.8, bits_small_censored="below"), "no"),
])
def test_c1_information_treats_bounds_as_bounds(bits, info):
    assert C.c1_information({**INFO, **bits}) == info


@pytest.mark.parametrize("m, verdict", [
    ({**SHAPE, **INFO}, "supported"),
    # the committed v1 numbers: a constant 3.3-point gain per doubling, alpha 0.13 (CI 0.12-0.33), and a
    # probe that bracketed one model only -> diminishing returns shown, information inconclusive
    ({**SHAPE, **INFO, "bits_small": 0.63, "bits_large": 0.18, "bits_small_censored": "below",
      "bits_large_censored": "above"}, "qualified"),
    ({**SHAPE, **INFO, "bits_large": 0.7}, "qualified"),                              # shape yes, info no
    ({**SHAPE, **INFO, "alpha_ci": None, "gain_first": -0.4, "gain_last": -0.4}, "qualified"),  # info only
    ({**SHAPE, **INFO, "alpha_ci": None, "gain_first": -0.4, "gain_last": -0.4, "bits_small_censored": "below"},
     "refuted"),                                                                      # nothing shown
    ({**SHAPE, **INFO, "alpha_ci": (1.2, 1.5), "gain_first": 2.0, "gain_last": 6.0}, "refuted"),  # linear or better
])
def test_rule_c1(m, verdict):
    assert C.rule_c1(m) == verdict
    assert ledger.judge("C1", m).verdict == verdict


def test_c1_rule_text_says_what_it_measures_and_takes_its_thresholds_from_constants():
    assert C.C1_TEXT.startswith("measure whether")
    for const in (C.C1_ALPHA_MAX, C.C1_GAIN_STEADY, C.C1_GAIN_LINEAR, C.C1_INFO_RATIO):
        assert f"{const:g}" in C.C1_TEXT
    with pytest.raises(ValueError, match="censoring"):
        C.rule_c1({**SHAPE, **INFO, "bits_small_censored": True})


# ---------------------------------------------------------------------------------------------
# C2 (rule unchanged; thresholds now named)

@pytest.mark.parametrize("m, verdict", [
    (dict(acc_gain_at_large_data=5.0, gap_growth_at_small_data=10.0, best_params_small_data=1e4,
          best_params_large_data=1e5), "supported"),
    (dict(acc_gain_at_large_data=5.0, gap_growth_at_small_data=10.0, best_params_small_data=1e5,
          best_params_large_data=1e5), "qualified"),
    (dict(acc_gain_at_large_data=C.C2_UNDERFIT_PT, gap_growth_at_small_data=C.C2_GAP_GROWTH_PT,
          best_params_small_data=1e5, best_params_large_data=1e5), "qualified"),
    (dict(acc_gain_at_large_data=0.5, gap_growth_at_small_data=10.0, best_params_small_data=1e4,
          best_params_large_data=1e5), "refuted"),
    (dict(acc_gain_at_large_data=5.0, gap_growth_at_small_data=4.9, best_params_small_data=1e5,
          best_params_large_data=1e5), "refuted"),
])
def test_rule_c2(m, verdict):
    assert C.rule_c2(m) == verdict
    assert ledger.judge("C2", m).verdict == verdict


# ---------------------------------------------------------------------------------------------
# C3: judged in 01 only on trained-out models and a densely measured crossing

DENSE = dict(largest_train_acc=99.0, crossing_ratio=1.8)


@pytest.mark.parametrize("m, verdict", [
    ({**DENSE, "frac_params_99": 0.4, "frac_params_95": 0.1}, "supported"),
    ({**DENSE, "frac_params_99": 0.8, "frac_params_95": 0.3}, "qualified"),
    ({**DENSE, "frac_params_99": 0.9, "frac_params_95": 0.7}, "refuted"),
    ({**DENSE, "frac_params_99": 0.9, "frac_params_95": C.C3_SWEEP_CUT}, "qualified"),
    # the committed v1 numbers: best 74.4% from scratch, crossing inside a 75k -> 270k (3.6x) gap: context only
    (dict(largest_train_acc=80.0, crossing_ratio=3.6, frac_params_99=0.88, frac_params_95=0.53), "qualified"),
    ({**DENSE, "largest_train_acc": 94.9, "frac_params_99": 0.9, "frac_params_95": 0.7}, "qualified"),
    ({**DENSE, "crossing_ratio": 2.01, "frac_params_99": 0.9, "frac_params_95": 0.7}, "qualified"),
    ({**DENSE, "largest_train_acc": 94.9, "frac_params_99": 0.1, "frac_params_95": 0.1}, "qualified"),
])
def test_rule_c3(m, verdict):
    assert C.rule_c3(m) == verdict
    assert ledger.judge("C3", m).verdict == verdict


def test_c3_rule_text_names_its_thresholds():
    assert C.C3_SWEEP_TEXT.startswith("measure whether") and "notebook 06" in C.C3_SWEEP_TEXT
    for const in (C.C3_SWEEP_CUT, C.C3_SWEEP_TRAINED_ACC, C.C3_SWEEP_MAX_GAP):
        assert f"{const:g}" in C.C3_SWEEP_TEXT
