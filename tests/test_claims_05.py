"""The 05 verdict rules (C11, C12) on made-up metrics: every verdict reached, every threshold at its edge."""
import math

import pytest

from slimlab import claims
from slimlab.ledger import judge


def _sd1(mean):
    """Three seeds with sample std exactly 1 around `mean`."""
    return [mean - 1.0, mean, mean + 1.0]


# ---------------------------------------------------------------------------------------------
# C11: significance over >= 3 seeds, the gain's sign

@pytest.mark.parametrize("kd,scratch,verdict", [
    ([80.5, 80.7, 80.6], [80.0, 80.1, 80.2], "supported"),        # +0.5 pt, tiny spread: significant
    # the v1 evidence: +0.47 pt with every distilled seed above every scratch seed — a fixed 0.5-pt bar
    # called it "qualified"; significance calls it supported
    ([81.37, 81.47, 81.57], [80.90, 81.00, 81.10], "supported"),
    ([80.0, 81.5, 79.0], [80.0, 79.5, 80.5], "qualified"),         # positive but within the noise
    ([81.0, 81.1], [80.0, 80.1], "qualified"),                     # clear, but fewer than 3 seeds
    ([81.0], [80.0], "qualified"),
    ([79.0, 79.1, 79.2], [80.0, 80.1, 80.2], "refuted"),           # distillation hurt
    ([80.0, 80.1, 80.2], [80.0, 80.1, 80.2], "refuted"),           # no gain at all
    ([79.0], [80.0], "refuted"),
])
def test_rule_c11(kd, scratch, verdict):
    m = claims.c11_metrics(kd, scratch, teacher_acc=88.0)
    assert claims.rule_c11(m) == verdict
    assert judge("C11", m, profile="full").verdict == verdict


def test_rule_c11_threshold_is_p_at_0_05():
    # sample std 1 on both sides, 3 seeds: Welch df = 4, t = d / sqrt(2/3); t(0.95, 4) = 2.1318,
    # so p < 0.05 exactly when d > 2.1318 * sqrt(2/3) = 1.7407 pt
    edge = 2.131847 * math.sqrt(2 / 3)
    above = claims.c11_metrics(_sd1(80.0 + edge + 0.01), _sd1(80.0))
    below = claims.c11_metrics(_sd1(80.0 + edge - 0.01), _sd1(80.0))
    assert above["p_value"] < claims.C11_P < below["p_value"]
    assert claims.rule_c11(above) == "supported" and claims.rule_c11(below) == "qualified"
    assert above["welch_df"] == pytest.approx(4.0)


def test_rule_c11_recomputes_from_the_values():
    m = claims.c11_metrics([79.0, 79.1, 79.2], [80.0, 80.1, 80.2])
    m.update(gain_pt=5.0, p_value=0.0)              # derived numbers cannot fool the rule
    assert claims.rule_c11(m) == "refuted"
    with pytest.raises(ValueError, match="at least one seed of each arm"):
        claims.rule_c11({"kd_values": [], "scratch_values": [80.0]})


def test_c11_metrics_report_the_gap_closed_and_the_goal():
    m = claims.c11_metrics([81.0, 81.2, 81.4], [80.0, 80.2, 80.4], teacher_acc=84.2)
    assert m["gain_pt"] == pytest.approx(1.0) and m["gap_closed"] == pytest.approx(1.0 / 4.0)
    assert m["goal_pt"] == claims.C11_GOAL_PT and m["goal_met"] is True
    small = claims.c11_metrics([80.3, 80.4, 80.5], [80.0, 80.1, 80.2], teacher_acc=84.0)
    assert small["goal_met"] is False and claims.rule_c11(small) == "supported"   # the goal does not decide
    one = claims.c11_metrics([81.0], [80.0])
    assert one["p_value"] is None and one["gap_closed"] is None and one["kd_std"] == 0.0


def test_c11_text_names_its_constants():
    assert f"p < {claims.C11_P}" in claims.C11_TEXT and f">= {claims.C11_MIN_SEEDS} seeds" in claims.C11_TEXT
    assert "gap closed" in claims.C11_TEXT and "measure whether" in claims.C11_TEXT


# ---------------------------------------------------------------------------------------------
# C12: the student against the best compressed teacher of equal size

@pytest.mark.parametrize("base,verdict", [
    ({"prune": 60.0, "quant": 79.0, "lowrank": 65.0}, "supported"),      # beats the best by 1 pt
    ({"prune": 60.0, "quant": 79.5}, "supported"),                        # exactly the tie margin
    ({"prune": 60.0, "quant": 79.8, "lowrank": 65.0}, "qualified"),      # on par with the best
    ({"prune": 80.3, "quant": 70.0}, "qualified"),                        # on par, slightly behind
    ({"prune": 80.5, "quant": 70.0}, "refuted"),                          # exactly the margin behind
    # the v1 evidence: beat low rank, lost 5.8–7.5 pt to pruning, quantization and k-means —
    # "qualified" against the weakest, refuted against the methods as a whole
    ({"low-rank": 70.0, "pruned": 85.8, "quantized": 87.5, "k-means": 86.9}, "refuted"),
])
def test_rule_c12(base, verdict):
    m = {"distilled_acc": 80.0, "baseline_acc": base}
    assert claims.rule_c12(m) == verdict
    assert judge("C12", m, profile="quick").label == "quick — not evidence"
    sized = {**m, "distilled_params": 100, "distilled_bytes": 400, "baseline_size": {k: 90 for k in base},
             "baseline_matched": {k: "params" for k in base}}
    assert claims.rule_c12(sized) == verdict                          # every baseline within the student's size
    with pytest.raises(ValueError, match="at least one compressed-teacher baseline"):
        claims.rule_c12({"distilled_acc": 80.0, "baseline_acc": {}})


def test_rule_c12_refuses_baselines_larger_than_the_student():
    m = {"distilled_acc": 80.0, "distilled_params": 100, "distilled_bytes": 400,
         "baseline_acc": {"pruned @ params": 60.0, "8-bit @ bytes": 70.0},
         "baseline_size": {"pruned @ params": 100, "8-bit @ bytes": 401},
         "baseline_matched": {"pruned @ params": "params", "8-bit @ bytes": "bytes"}}
    with pytest.raises(ValueError, match="'8-bit @ bytes' has 401 bytes, more than the student's 400"):
        claims.rule_c12(m)
    m["baseline_size"]["8-bit @ bytes"] = 400
    assert claims.rule_c12(m) == "supported"
    with pytest.raises(ValueError, match="must name the same baselines"):
        claims.rule_c12({**m, "baseline_matched": {"pruned @ params": "params"}})


def test_c12_latency_axis_is_reported_not_decisive():
    axis = claims.c12_latency_axis(0.5, {"pruned": 1.5, "quantized": 1.0})
    assert axis["speedup"] == {"pruned": 3.0, "quantized": 2.0}
    assert (axis["speedup_min"], axis["speedup_max"], axis["faster_than_all"]) == (2.0, 3.0, True)
    assert claims.c12_latency_axis(1.2, {"pruned": 1.5, "quantized": 1.0})["faster_than_all"] is False
    m = {"distilled_acc": 80.0, "baseline_acc": {"pruned": 85.0}}
    assert claims.rule_c12({**m, "latency": axis}) == claims.rule_c12(m) == "refuted"
    with pytest.raises(ValueError, match="needs the student's latency"):
        claims.c12_latency_axis(0.0, {"pruned": 1.0})
    assert "batch 1" in claims.C12_05_TEXT and "BEST compressed teacher" in claims.C12_05_TEXT
    assert f"+{claims.C12_TIE_PT:g} pt" in claims.C12_05_TEXT
