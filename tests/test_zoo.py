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
    present = [n for n in zoo.RECIPES if (zoo.CHECKPOINT_DIR / f"{n}.pt").is_file()]
    if not present:
        pytest.skip("no checkpoint committed yet")
    for name in present:
        p = zoo.CHECKPOINT_DIR / f"{name}.pt"
        card = zoo.card(name)
        assert card["sha256"] == zoo.sha256_file(p) == zoo.SHA256[name]
        assert f"python -m slimlab.zoo train {name}" in card["command"]
        m = zoo.load(name)
        assert sum(t.numel() for t in m.parameters()) == card["params"]


def test_files_that_are_not_reference_checkpoints_give_one_clear_error(tmp_path, monkeypatch):
    from slimlab.files import CheckpointError
    monkeypatch.setattr(zoo, "CHECKPOINT_DIR", tmp_path)
    monkeypatch.setattr(zoo, "SHA256", {})
    p = tmp_path / "resnet8.pt"

    def plant(obj):
        torch.save(obj, p)
        (tmp_path / "resnet8.json").write_text(json.dumps({"sha256": zoo.sha256_file(p)}))

    class RunsCode:
        def __reduce__(self):
            import os
            return (os.system, ("echo must-not-run",))
    plant({"arch": RunsCode(), "state_dict": {}})
    with pytest.raises(CheckpointError, match=r"resnet8\.pt is not a slimlab reference checkpoint.*refused"):
        zoo.load("resnet8")
    plant({"state_dict": build("resnet8").state_dict()})            # the old code raised KeyError('arch')
    with pytest.raises(CheckpointError, match="lacks 'arch'"):
        zoo.load("resnet8")
    r20 = build("resnet20")
    plant({"arch": dict(r20.arch), "state_dict": r20.state_dict()})   # another architecture under the name
    with pytest.raises(CheckpointError, match="holds a resnet20 of width 1.0, but 'resnet8' is a resnet8"):
        zoo.load("resnet8")
    r8 = build("resnet8")
    state = r8.state_dict()
    state["fc.weight"] = torch.zeros(3, 64)
    plant({"arch": dict(r8.arch), "state_dict": state})               # right arch, wrong tensors
    with pytest.raises(CheckpointError, match="does not fit .*size mismatch for fc.weight"):
        zoo.load("resnet8")
    (tmp_path / "resnet8.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a checkpoint card"):
        zoo.load("resnet8")


def test_a_trained_card_holds_no_machine_path(tmp_path, monkeypatch):
    from slimlab.data import CIFAR10, CLASSES
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.arange(40) % 10
    secret = str(tmp_path / "private" / "home" / "cifar10-jpeg.tar.gz")
    fake = CIFAR10(x, y, x[:10], y[:10], x[:10], y[:10], CLASSES, "f" * 64, secret)
    monkeypatch.setattr(zoo, "load_cifar10", lambda *a, **k: fake)
    monkeypatch.setitem(zoo.RECIPES, "resnet8", zoo.Recipe("resnet8", 1.0, zoo.TrainConfig(
        steps=1, batch_size=20, precision="fp32")))
    info = zoo.train("resnet8", out_dir=tmp_path / "out", resume=tmp_path / "r.pt", progress=False)
    text = (tmp_path / "out" / "resnet8.json").read_text()
    assert info["data_source"] == "cifar10-jpeg.tar.gz" and json.loads(text)["data_source"] == "cifar10-jpeg.tar.gz"
    assert str(tmp_path) not in text and "private" not in text
    assert info["precision"] == "fp32" and info["machine_info"]["cpu_model"]
