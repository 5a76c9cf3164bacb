import dataclasses

import pytest

from slimlab.profile import FULL, QUICK, get_profile


def test_default_is_quick(monkeypatch):
    monkeypatch.delenv("SLIMLAB_PROFILE", raising=False)
    assert get_profile().name == "quick"
    monkeypatch.setenv("SLIMLAB_PROFILE", "full")
    assert get_profile() is FULL
    assert get_profile("quick") is QUICK


def test_profiles_have_the_same_sections():
    for f in dataclasses.fields(QUICK):
        q, full = getattr(QUICK, f.name), getattr(FULL, f.name)
        assert type(q) is type(full), f.name


def test_profile_errors():
    with pytest.raises(ValueError, match="unknown profile 'fast'; allowed: quick, full"):
        get_profile("fast")
    with pytest.raises(TypeError, match="profile name must be a str"):
        get_profile(1)


@pytest.mark.parametrize("prof", [QUICK, FULL], ids=["quick", "full"])
def test_qat_pilots_are_runnable(prof):
    """Notebook 02 pilots each weight calibrator on validation before the full QAT run: the calibrators must
    exist, and a choice among several needs pilots that are shorter than the run they choose for."""
    from slimlab.quantize import CALIBRATORS
    q = prof.quantize
    assert q.qat_weight_calibrators and set(q.qat_weight_calibrators) <= set(CALIBRATORS)
    if len(q.qat_weight_calibrators) > 1:
        assert 1 <= q.qat_pilot_steps < q.qat_steps
