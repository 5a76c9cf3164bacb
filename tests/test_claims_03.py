"""The verdict rules of notebook 03 (C6, C7, C8, C14 pruning) on made-up metrics: every verdict is
reached, and each test sits on the side of a threshold that a wrong rule would put it on the other."""
import pytest

from slimlab import claims
from slimlab.ledger import judge
from slimlab.measure import FLASH_BYTES

# ------------------------------------------------------------------ C6

C6_OK = {"share_layers_fit": 0.9, "share_layers_centred": 1.0, "median_near_zero_ratio": 1.4,
         "median_excess_kurtosis": 1.5, "median_share_small": 0.35}


@pytest.mark.parametrize("change,verdict", [
    ({}, "supported"),
    ({"share_layers_fit": 0.7}, "qualified"),                 # fits in between
    ({"share_layers_centred": 0.7}, "qualified"),
    ({"median_near_zero_ratio": 1.0, "median_excess_kurtosis": 0.0}, "qualified"),   # a plain normal
    ({"median_near_zero_ratio": 1.3, "median_excess_kurtosis": -0.2}, "qualified"),  # both signs needed
    ({"median_near_zero_ratio": claims.C6_PEAK_RATIO - 0.01}, "qualified"),
    ({"median_near_zero_ratio": claims.C6_PEAK_RATIO}, "supported"),
    ({"share_layers_fit": 0.4}, "refuted"),
    ({"share_layers_centred": 0.3}, "refuted"),
])
def test_c6_rule(change, verdict):
    assert claims.c6_rule({**C6_OK, **change}) == verdict


def test_c6_a_plain_normal_does_not_pass_the_concentration_half():
    """The old half (>= 20% below a tenth of max|w|) is met by any normal: a normal's own numbers
    must now give 'qualified', however well it fits."""
    import torch
    from slimlab.prune import fit_weights
    f = fit_weights(torch.randn(20000, generator=torch.Generator().manual_seed(0)))
    assert f.share_small > 0.2 and f.normal_ks < claims.C6_KS_OK      # the old criterion: met trivially
    m = {"share_layers_fit": 1.0, "share_layers_centred": 1.0, "median_near_zero_ratio": f.near_zero_ratio,
         "median_excess_kurtosis": f.excess_kurtosis, "median_share_small": f.share_small}
    assert claims.c6_rule(m) == "qualified"


# ------------------------------------------------------------------ C7

@pytest.mark.parametrize("mag,rnd,ft,verdict", [
    ([60, 50, 12], [59.5, 30, 10], [2.0], "supported"),     # 30% ignored (< 50%), 90% ignored (both near chance)
    ([60, 50, 40], [59.5, 49.5, 20], [2.0], "qualified"),   # one-shot lead < 1 pt at 50%
    ([60, 50, 40], [59.5, 30, 20], [-1.0], "refuted"),      # fine-tuned gap leads: random ahead after the fine-tune
    ([60, 50, 40], [59.5, 30, 20], [0.0], "refuted"),       # no better after the fine-tune
    ([60, 50, 40], [59.5, 30, 20], [1.0, -0.5], "qualified"),   # ahead on average, not everywhere
    ([60, 30, 20], [59.5, 40, 25], [0.5], "qualified"),     # fine-tuned ahead, one-shot behind
    ([60, 12, 10], [59.5, 10, 10], [0.5], "qualified"),     # no informative one-shot point
    ([60, 30, 20], [59.5, 40, 25], [], "refuted"),          # no fine-tune: the one-shot gap decides
    ([60, 12, 10], [59.5, 10, 10], [], "qualified"),        # nothing to judge
])
def test_c7_rule(mag, rnd, ft, verdict):
    m = {"sparsities": [0.3, 0.5, 0.9], "oneshot_magnitude_acc": mag, "oneshot_random_acc": rnd,
         "finetuned_gaps_pt": ft, "chance_acc": 10.0}
    assert claims.c7_rule(m) == verdict


# ------------------------------------------------------------------ C8

C8_OK = {"share_rare_channels": 0.2, "apoz_loss_pt": 0.5,
         "apoz_accs": [90.0, 90.1, 89.9], "random_accs": [89.0, 89.2, 88.8]}


@pytest.mark.parametrize("change,verdict", [
    ({}, "supported"),
    ({"apoz_accs": [90.0], "random_accs": [89.0]}, "qualified"),                 # ahead on one seed only
    ({"random_accs": [89.9, 89.0, 90.5]}, "qualified"),                           # ahead, within the noise
    ({"share_rare_channels": 0.05}, "qualified"),                                  # few rarely active channels
    ({"apoz_loss_pt": 1.5}, "qualified"),
    ({"random_accs": [90.0, 90.1, 89.9]}, "refuted"),                              # no better than random
    # the committed full-profile numbers (APoZ 85.08, random 85.58, 2.4% rare): not a near miss, refuted
    ({"share_rare_channels": 0.024, "apoz_loss_pt": 1.82, "apoz_accs": [85.08], "random_accs": [85.58]}, "refuted"),
    ({"share_rare_channels": 0.5, "apoz_accs": [85.08, 85.0, 85.1], "random_accs": [85.58, 85.6, 85.5]}, "refuted"),
])
def test_c8_rule(change, verdict):
    assert claims.c8_rule({**C8_OK, **change}) == verdict


def test_c8_significance_uses_the_seed_spread():
    """Mean lead 0.3 pt: clear with a tight spread, not with a wide one."""
    tight = {**C8_OK, "apoz_accs": [90.3, 90.31, 90.29], "random_accs": [90.0, 90.01, 89.99]}
    wide = {**C8_OK, "apoz_accs": [91.3, 90.3, 89.3], "random_accs": [91.0, 90.0, 89.0]}
    assert claims.c8_rule(tight) == "supported" and claims.c8_rule(wide) == "qualified"
    with pytest.raises(ValueError, match="at least one accuracy"):
        claims.c8_rule({**C8_OK, "random_accs": []})


# ------------------------------------------------------------------ C14 (pruning)

C14_OK = {"usable_fp32_bytes": 200_000, "usable_test_loss_pt": 0.6, "dense_bytes": 1_100_000,
          "slim_speedup": 1.5, "slim_acc_loss_pt": 0.5}


@pytest.mark.parametrize("change,verdict", [
    ({}, "supported"),
    ({"slim_speedup": 1.0}, "qualified"),
    ({"slim_acc_loss_pt": 1.5}, "qualified"),
    ({"usable_fp32_bytes": 582_000}, "qualified"),       # 52.9% of dense: above its own half-size bar
    ({"usable_fp32_bytes": 550_000}, "supported"),       # exactly half
    ({"usable_test_loss_pt": 1.2}, "qualified"),         # chosen on validation, failed on test
    ({"usable_fp32_bytes": None}, "qualified"),          # no sparsity within the bar on validation
    ({"usable_fp32_bytes": 582_000, "slim_speedup": 1.0}, "refuted"),
])
def test_c14_pruning_rule(change, verdict):
    assert claims.c14_pruning_rule({**C14_OK, **change}) == verdict


def test_c14_pruning_rule_uses_the_one_flash_budget():
    big = {**C14_OK, "dense_bytes": 10 * FLASH_BYTES}
    assert claims.c14_pruning_rule({**big, "usable_fp32_bytes": FLASH_BYTES}) == "supported"
    assert claims.c14_pruning_rule({**big, "usable_fp32_bytes": FLASH_BYTES + 1}) == "qualified"
    with pytest.raises(ValueError, match="usable_fp32_bytes"):
        claims.c14_pruning_rule({**C14_OK, "usable_fp32_bytes": [200_000]})


def test_rules_are_registered_with_the_ledger():
    r = judge("C14", C14_OK, name="pruning")
    assert r.verdict == "supported" and "pruning alone" in r.rule and "FLASH_BYTES" in r.rule
    for claim, metrics in (("C6", C6_OK), ("C8", C8_OK)):
        assert judge(claim, metrics).verdict == "supported"
    assert "recalibrated" in judge("C7", {"sparsities": [0.5], "oneshot_magnitude_acc": [50],
                                          "oneshot_random_acc": [40], "finetuned_gaps_pt": [1.0]}).rule
