import json

import pytest
import torch

from slimlab import zoo
from slimlab.models import build


def _fake_checkpoint(dirpath, name="resnet8"):
    m = build(name, width=1.0)
    p = dirpath / f"{name}.pt"
    torch.save({"arch": dict(m.arch), "state_dict": m.state_dict()}, p)
    (dirpath / f"{name}.json").write_text(json.dumps({"sha256": zoo.sha256_file(p), "test_acc": 0}))
    return m, p


def test_load_checks_sha_and_round_trips(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "CHECKPOINT_DIR", tmp_path)
    monkeypatch.setattr(zoo, "SHA256", {})
    m, p = _fake_checkpoint(tmp_path)
    got = zoo.load("resnet8")
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(got(x), m.eval()(x), atol=0, rtol=0)
    assert not got.training
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # corrupt one byte
    p.write_bytes(bytes(raw))
    with pytest.raises(zoo.ChecksumError, match="does not match"):
        zoo.load("resnet8")


def test_missing_checkpoint_is_not_trained_unless_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "CHECKPOINT_DIR", tmp_path / "none")
    monkeypatch.setattr(zoo, "CACHE_DIR", tmp_path / "none2")
    with pytest.raises(FileNotFoundError, match="python -m slimlab.zoo train resnet20"):
        zoo.load("resnet20")


def test_zoo_errors():
    with pytest.raises(ValueError, match="unknown checkpoint 'vgg'; allowed: resnet20, resnet8"):
        zoo.load("vgg")
    with pytest.raises(TypeError, match="checkpoint name must be a str"):
        zoo.load(None)


def test_committed_checkpoints_match_their_cards():
    for name in zoo.RECIPES:
        p = zoo.CHECKPOINT_DIR / f"{name}.pt"
        if not p.is_file():
            pytest.skip(f"{name} not committed yet")
        card = zoo.card(name)
        assert card["sha256"] == zoo.sha256_file(p) == zoo.SHA256[name]
        assert f"python -m slimlab.zoo train {name}" in card["command"]
        m = zoo.load(name)
        assert sum(t.numel() for t in m.parameters()) == card["params"]
