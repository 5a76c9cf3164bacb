"""The C9 / C10 verdict rules of notebook 04 (slimlab.claims), on made-up metrics: each verdict is
reached, the boundaries sit where the constants say, and the seed band (mean ± std) is used."""
import pytest

from slimlab import claims, ledger


def _c9(acc, saving, ref=90.0):
    return ledger.judge("C9", {"ref_acc": ref, "acc": acc, "param_saving": saving}).verdict


@pytest.mark.parametrize("acc,saving,verdict", [
    (89.5, 0.40, "supported"),
    (90.0 - claims.C9_LOSS_PT, claims.C9_SAVING, "supported"),        # both bounds inclusive
    (89.0 - 1e-6, 0.40, "qualified"),                                  # just over 1 pt lost
    (89.5, claims.C9_SAVING - 1e-6, "qualified"),                      # just under 30% fewer
    (88.0, 0.40, "qualified"),
    (89.9, 0.15, "qualified"),
    (90.0 - claims.C9_QUALIFIED_LOSS_PT - 1e-6, 0.60, "refuted"),
    (85.0, 0.60, "refuted"),
    (90.0, 0.05, "refuted"),
])
def test_c9_rule(acc, saving, verdict):
    assert _c9(acc, saving) == verdict


def test_c9_text_names_its_thresholds():
    text = ledger.rules()[("C9", "default")].text
    assert "measure whether" in text and "30%" in text and "1 pt" in text and "3 pt" in text


def test_seed_band_by_hand():
    assert claims.seed_band([2.0]) == (2.0, 0.0)
    mean, std = claims.seed_band([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0) and std == pytest.approx(1.0)            # sample std (n - 1)
    with pytest.raises(ValueError, match="at least one value"):
        claims.seed_band([])


def _km(m):
    return ledger.judge("C10", {"ref_acc": 90.0, "bytes_ratio": 0.14, **m}, name="kmeans").verdict


@pytest.mark.parametrize("metrics,verdict", [
    ({"acc": 89.8}, "supported"),                                      # one seed: std 0, the old rule
    ({"acc": 89.0}, "supported"),                                      # loss exactly 1 pt
    ({"acc": 88.98}, "qualified"),                                     # 1.02 pt: the committed 3-bit case
    ({"acc": 88.0}, "qualified"),
    ({"acc": 89.9, "bytes_ratio": 0.30}, "qualified"),
    ({"acc": 80.0, "bytes_ratio": 0.07}, "refuted"),
    ({"acc": 90.0, "bytes_ratio": 1.01}, "refuted"),
    ({"test_accs": [89.6, 89.5, 89.4]}, "supported"),                  # loss 0.5, std 0.1: band within 1 pt
    ({"test_accs": [89.6, 89.5, 89.4], "acc": 89.5}, "supported"),
    ({"test_accs": [89.9, 89.2, 88.9]}, "qualified"),                  # mean loss 0.67 <= 1, but + std 0.51 > 1
    ({"test_accs": [87.0, 87.5, 88.0]}, "qualified"),                  # mean loss 2.5 pt
    ({"test_accs": [86.0, 86.5, 86.9], "bytes_ratio": 1.2}, "refuted"),
    ({"test_accs": [85.0, 86.0, 87.0]}, "refuted"),                    # mean loss 4 pt
])
def test_c10_kmeans_rule(metrics, verdict):
    assert _km(metrics) == verdict


def test_c10_kmeans_rule_uses_the_band_not_the_best_seed():
    """The same mean loss (0.8 pt) is supported when the seeds agree and qualified when they scatter."""
    assert _km({"test_accs": [89.25, 89.2, 89.15]}) == "supported"
    assert _km({"test_accs": [90.0, 89.2, 88.4]}) == "qualified"
    with pytest.raises(ValueError, match="is not the mean of test_accs"):
        _km({"test_accs": [89.0, 89.2], "acc": 89.5})


def _hash(margins, seeds=None):
    m = {"margins": margins} if seeds is None else {"margins": margins, "margin_seeds": seeds}
    return ledger.judge("C10", m, name="hashing").verdict


@pytest.mark.parametrize("margins,seeds,verdict", [
    ([1.0, 0.2, -0.4], None, "supported"),
    ([1.0, 0.2, -claims.C10_HASH_TOL_PT], None, "supported"),         # the bound is inclusive
    ([1.0, -2.0], None, "qualified"),
    ([-0.6, -3.0], None, "refuted"),
    ([0.7, 4.8], [[1.2, 0.7, 0.2], [4.8]], "supported"),              # 2x: 0.7 ± 0.5, band above -0.5
    ([0.0, 4.8], [[1.5, 0.0, -1.5], [4.8]], "qualified"),             # 2x: 0.0 ± 1.5 reaches -1.5: unclear
    ([-0.4, -3.0], [[0.6, -0.4, -1.4], [-3.0]], "qualified"),         # one unclear, one failing
    ([-1.0, -3.0], [[-0.8, -1.0, -1.2], [-3.0]], "refuted"),          # -1.0 ± 0.2: whole band below
])
def test_c10_hashing_rule(margins, seeds, verdict):
    assert _hash(margins, seeds) == verdict


def test_c10_hashing_rule_rejects_inconsistent_metrics():
    with pytest.raises(ValueError, match="at least one margin"):
        _hash([])
    with pytest.raises(ValueError, match="margin_seeds has 1 factors"):
        _hash([0.1, 0.2], [[0.1]])
    with pytest.raises(ValueError, match="is not the mean"):
        _hash([0.5], [[0.1, 0.2]])


def test_c10_texts_say_what_is_measured_and_use_the_band():
    for name in ("kmeans", "hashing"):
        text = ledger.rules()[("C10", name)].text
        assert text.startswith("measure whether") and "std" in text
