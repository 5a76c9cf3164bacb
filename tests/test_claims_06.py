"""The rules of notebook 06 (C13, and the capstone views of C14, C3, C12) on made-up metrics: every
verdict reachable, and cases that would pass a wrong rule."""
import pytest

from slimlab import claims, ledger
from slimlab.combine import pareto_front
from slimlab.measure import FLASH_BYTES, SRAM_BYTES


def _v(claim, m):
    return ledger.judge(claim, m, name="capstone", profile="full").verdict


# ------------------------------------------------------------------------------------ C13

SINGLES = {"prune": [[300, 88.0]], "share": [[150, 87.0]]}


def _seeded(c_bytes, c_accs, s_bytes, s_accs):
    return {"combined": {"bytes": c_bytes, "test_accs": c_accs}, "single": {"bytes": s_bytes, "test_accs": s_accs}}


AHEAD = _seeded(100, [88.0, 88.2, 87.8], 150, [87.0, 87.1, 86.9])     # smaller and not worse
BEHIND = _seeded(200, [87.0, 87.2, 86.8], 150, [87.0, 87.1, 86.9])    # larger, no more accurate
TIE = _seeded(100, [85.0, 85.1, 84.9], 150, [87.0, 87.1, 86.9])       # smaller but clearly less accurate


def _c13(combined, seeded, ref=88.5, singles=SINGLES):
    return _v("C13", {"singles": singles, "combined": combined, "ref_test_acc": ref, "seeded": seeded})


def test_c13_rule_reaches_every_verdict():
    assert _c13([[100, 88.0]], AHEAD) == "supported"
    assert _c13([[100, 88.0]], TIE) == "qualified"      # dominates every method, but the seeded pair is a trade-off
    assert _c13([[140, 87.5]], AHEAD) == "qualified"    # ahead over seeds, dominates share only
    assert _c13([[50, 86.0]], TIE) == "qualified"       # only a new frontier point within 3 pt
    few = _seeded(100, [88.0, 88.2], 150, [87.0, 87.1])
    assert _c13([[100, 88.0]], few) == "qualified"      # ahead, but fewer than 3 seeds a side
    assert _c13([[400, 80.0]], TIE) == "refuted"        # neither ahead, nothing dominated, no useful point
    assert _c13([[100, 88.0]], BEHIND) == "refuted"     # the best single method beats the best pipeline
    with pytest.raises(ValueError, match="at least one single method"):
        _c13([[1, 1]], AHEAD, singles={})
    with pytest.raises(ValueError, match="ref_test_acc"):
        _v("C13", {"singles": SINGLES, "combined": [[100, 88.0]], "seeded": AHEAD})
    with pytest.raises(ValueError, match="seeded"):
        _v("C13", {"singles": SINGLES, "combined": [[100, 88.0]], "ref_test_acc": 88.5})
    with pytest.raises(ValueError, match="test_accs is empty"):
        _c13([[100, 88.0]], _seeded(100, [], 150, [87.0]))


def test_c13_seeded_comparison_uses_mean_and_std():
    # same mean gap of 0.3 pt, smaller file: ahead when the noise covers it, not when 3 seeds are tight
    # and the pipeline is 0.3 pt worse with std 0.05 (0.3 > 0.05 + 0.05)
    noisy = _seeded(100, [87.0, 88.0, 86.2], 150, [87.2, 87.5, 87.4])
    tight = _seeded(100, [86.95, 87.05, 87.0], 150, [87.25, 87.35, 87.3])
    assert claims.seeded_ahead(noisy["combined"], noisy["single"])
    assert not claims.seeded_ahead(tight["combined"], tight["single"])
    assert not claims.seeded_ahead(tight["single"], tight["combined"])   # larger file, not beyond the noise
    # the same size: ahead only beyond mean ± std
    same = _seeded(150, [88.0, 88.1, 87.9], 150, [87.0, 87.1, 86.9])
    assert claims.seeded_ahead(same["combined"], same["single"]) and not claims.seeded_ahead(same["single"], same["combined"])
    close = _seeded(150, [87.2, 87.6, 86.8], 150, [87.0, 87.1, 86.9])
    assert not claims.seeded_ahead(close["combined"], close["single"])
    # the std is the sample std (ddof = 1): 3 seeds 86, 87, 88 -> 1.0
    assert claims._seeded({"bytes": 1, "test_accs": [86, 87, 88]}, "x")[1:] == (87.0, 1.0, 3)


def test_c13_rule_ignores_a_tiny_useless_point():
    """The smallest file is always on the whole frontier, even at chance accuracy: it must not qualify C13."""
    m = {"singles": SINGLES, "combined": [[50, 60.0]], "ref_test_acc": 88.5, "seeded": TIE}
    assert pareto_front([{"bytes": 50, "acc": 60.0}, {"bytes": 150, "acc": 87.0}])[0]["bytes"] == 50
    assert _v("C13", m) == "refuted"
    assert _v("C13", {**m, "ref_test_acc": 62.0}) == "qualified"   # within 3 pt of a weak reference it counts


# ------------------------------------------------------------------------------------ C14

C14 = {"bytes": 50_000, "peak_int8_bytes": 49_152, "int8_loss_pt": 0.5, "ref_ort_fp32_ms": 1.0, "ort_int8_ms": 0.5}


def test_c14_capstone_rule_reaches_every_verdict():
    assert _v("C14", C14) == "supported"
    assert _v("C14", {**C14, "ort_int8_ms": 0.9}) == "qualified"                 # 1.11x: not faster
    assert _v("C14", {**C14, "bytes": 2_000_000}) == "qualified"
    assert _v("C14", {**C14, "bytes": 2_000_000, "ort_int8_ms": 0.9}) == "refuted"
    assert _v("C14", {**C14, "int8_loss_pt": 2.0, "ort_int8_ms": 0.9}) == "refuted"


def test_c14_capstone_uses_the_course_budget():
    assert _v("C14", {**C14, "bytes": FLASH_BYTES}) == "supported"                # 1 MiB fits exactly
    assert _v("C14", {**C14, "bytes": FLASH_BYTES + 1, "ort_int8_ms": 0.9}) == "refuted"
    assert _v("C14", {**C14, "peak_int8_bytes": SRAM_BYTES + 1}) == "qualified"   # 320 KiB, not 320 kB
    assert _v("C14", {**C14, "bytes": 1_040_000, "flash_bytes": FLASH_BYTES}) == "supported"
    with pytest.raises(ValueError, match="one edge budget"):
        _v("C14", {**C14, "flash_bytes": 1_000_000})


# ------------------------------------------------------------------------------------ C3, C12

def test_c3_capstone_rule_reaches_every_verdict():
    ref = 1000
    assert _v("C3", {"ref_params": ref, "models": [{"nonzero": 200, "loss_pt": 0.8}]}) == "supported"
    assert _v("C3", {"ref_params": ref, "models": [{"nonzero": 400, "loss_pt": 0.8}]}) == "qualified"
    assert _v("C3", {"ref_params": ref, "models": [{"nonzero": 200, "loss_pt": 2.5}]}) == "qualified"
    assert _v("C3", {"ref_params": ref, "models": [{"nonzero": 900, "loss_pt": 0.1},
                                                  {"nonzero": 100, "loss_pt": 9.0}]}) == "refuted"
    with pytest.raises(ValueError, match="ref_params must be a positive int"):
        claims.best_cut([], 0, 1.0)


def test_c12_capstone_rule_reaches_every_verdict():
    others = {"prune": [[300, 80.0], [100, 60.0]], "quantize": [[290, 85.0]]}
    assert _v("C12", {"student": [310, 86.0], "others": others}) == "supported"      # +1.0 over the best (85.0)
    assert _v("C12", {"student": [310, 85.2], "others": others}) == "qualified"      # on par with the best
    # beating the weakest method (prune, 80.0) while losing 3 pt to the best is not "qualified": the
    # claim is about the methods as a whole (the rule before 2026-12-01 said qualified here)
    assert _v("C12", {"student": [310, 82.0], "others": others}) == "refuted"
    assert _v("C12", {"student": [310, 70.0], "others": others}) == "refuted"
    assert _v("C12", {"student": [290, 84.6], "others": {"quantize": [[290, 85.0]], "prune": [[300, 99.0]]}}) \
        == "qualified"                                                                # prune's 300 B is larger
    assert _v("C12", {"student": [50, 70.0], "others": others}) == "qualified"           # none that small
    with pytest.raises(ValueError, match=r"\[bytes, acc\] pair"):
        _v("C12", {"student": [310], "others": others})


def test_capstone_rules_are_registered_under_distinct_names():
    names = {(c, n) for c, n in ledger.rules() if n == "capstone"}
    assert names == {("C3", "capstone"), ("C12", "capstone"), ("C13", "capstone"), ("C14", "capstone")}
