"""The precision paths of `fit` (fp32 / bf16 autocast / auto), cutout, and resuming across new options."""
from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from slimlab import machine
from slimlab import train as T
from slimlab.data import augment
from slimlab.models import CIFAR_MEAN, build


def _tiny(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_resolve_precision_follows_native_bf16(monkeypatch):
    monkeypatch.setattr(machine, "cpu_bf16_native", lambda: True)
    assert T.resolve_precision("auto", "cpu") == "bf16"
    assert T.resolve_precision("bf16", "cpu") == "bf16"
    assert T.resolve_precision("fp32", "cpu") == "fp32"
    monkeypatch.setattr(machine, "cpu_bf16_native", lambda: False)
    assert T.resolve_precision("auto", "cpu") == "fp32"          # AVX2-only: emulated bf16 would be slower
    with pytest.raises(ValueError, match="needs native bf16"):
        T.resolve_precision("bf16", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        T.resolve_precision("fp16", "cpu")


def test_config_validates_precision_and_cutout():
    with pytest.raises(ValueError, match="precision must be one of"):
        T.TrainConfig(precision="half").validate()
    for bad in (-1, 33, 2.5, True):
        with pytest.raises(ValueError, match="cutout must be an int"):
            T.TrainConfig(cutout=bad).validate()


def test_cutout_blanks_one_square_in_the_mean_colour():
    x = torch.full((64, 3, 32, 32), 7, dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    out = augment(x, g, pad=0, cutout=8)
    fill = torch.tensor([round(255 * m) for m in CIFAR_MEAN], dtype=torch.uint8).view(3, 1, 1)
    for img in out:
        hole = (img == fill).all(0)                       # (H, W) pixels in the mean colour
        rows, cols = hole.any(1).nonzero().flatten(), hole.any(0).nonzero().flatten()
        assert 1 <= len(rows) <= 8 and 1 <= len(cols) <= 8
        assert int(hole.sum()) == len(rows) * len(cols)    # one axis-aligned rectangle, clipped at the border
        assert (img[:, ~hole] == 7).all()                  # everything else untouched
    assert any(int((img == fill).all(0).sum()) == 64 for img in out)   # an unclipped square is 8 x 8


def test_cutout_zero_keeps_the_random_stream():
    x, _ = _tiny()
    a = augment(x, torch.Generator().manual_seed(3))
    b = augment(x, torch.Generator().manual_seed(3), cutout=0)
    torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_fit_records_precision_and_machine(precision):
    x, y = _tiny()
    torch.manual_seed(0)
    h = T.fit(build("resnet8", width=0.25), x, y, T.TrainConfig(steps=2, batch_size=32, precision=precision),
              progress=False, device="cpu")
    assert h.precision == T.resolve_precision(precision, "cpu")
    assert h.machines == [machine.describe()]


@pytest.mark.skipif(not machine.cpu_bf16_native(), reason="this CPU does not compute bf16 natively")
def test_bf16_path_keeps_fp32_master_weights_and_changes_the_numbers():
    x, y = _tiny()
    out = {}
    for p in ("fp32", "bf16"):
        torch.manual_seed(0)
        m = build("resnet8", width=0.25)
        T.fit(m, x, y, T.TrainConfig(steps=3, batch_size=32, precision=p), progress=False, device="cpu")
        assert all(t.dtype == torch.float32 for t in m.parameters())
        out[p] = torch.cat([t.flatten() for t in m.parameters()])
    assert not torch.equal(out["fp32"], out["bf16"])       # autocast really ran in bf16
    assert torch.allclose(out["fp32"], out["bf16"], atol=0.05)


def test_resume_accepts_a_checkpoint_written_before_new_options(tmp_path):
    x, y = _tiny()
    cfg = T.TrainConfig(epochs=2, batch_size=32, precision="fp32")
    ck = tmp_path / "resume.pt"
    torch.manual_seed(0)
    T.fit(build("resnet8", width=0.25), x, y, T.TrainConfig(epochs=1, batch_size=32, precision="fp32"),
          checkpoint=ck, progress=False, device="cpu")
    state = torch.load(ck, weights_only=True)
    old = {k: v for k, v in asdict(cfg).items() if k != "cutout"}   # as written before `cutout` existed
    state["config"] = old
    torch.save(state, ck)
    h = T.fit(build("resnet8", width=0.25), x, y, cfg, checkpoint=ck, progress=False, device="cpu")
    assert h.step[-1] == 4                                 # resumed at step 2, ran epoch 2
    with pytest.raises(ValueError, match="another TrainConfig"):
        T.fit(build("resnet8", width=0.25), x, y, T.TrainConfig(epochs=2, batch_size=32, precision="fp32", cutout=4),
              checkpoint=ck, progress=False, device="cpu")


@pytest.mark.skipif(not machine.cpu_bf16_native(), reason="needs native bf16 to write a bf16 checkpoint")
def test_resume_refuses_another_precision(tmp_path, monkeypatch):
    x, y = _tiny()
    ck = tmp_path / "resume.pt"
    cfg = T.TrainConfig(epochs=2, batch_size=32, precision="auto")
    T.fit(build("resnet8", width=0.25), x, y, cfg, checkpoint=ck, progress=False, device="cpu")
    state = torch.load(ck, weights_only=True)
    state["epoch"], state["step"] = 1, 2                   # as if stopped after epoch 1
    torch.save(state, ck)
    monkeypatch.setattr(T, "resolve_precision", lambda p, d: "fp32")   # an AVX2-only machine
    with pytest.raises(ValueError, match="trained in bf16"):
        T.fit(build("resnet8", width=0.25), x, y, cfg, checkpoint=ck, progress=False, device="cpu")
