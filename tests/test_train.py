import pytest
import torch
import torch.nn as nn

from slimlab.models import build
from slimlab.train import History, TrainConfig, evaluate, fit, lr_at, predict, seed_everything


def toy(n=256, seed=0):
    """Separable toy images: class k has a bright k-th horizontal band."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randint(0, 60, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    for k in range(4):
        x[y == k, :, 8 * k:8 * k + 8, :] = 250
    return x, y


def small():
    return build("resnet8", width=0.25, num_classes=4)


def test_fit_learns_a_separable_task_and_reports_history():
    x, y = toy()
    seed_everything(0)
    m = small()
    h = fit(m, x, y, TrainConfig(epochs=8, batch_size=32, lr=0.1, augment=False), val=(x, y), progress=False)
    assert isinstance(h, History) and len(h.epoch) == 8 and h.step[-1] == 8 * 8
    assert h.train_loss[-1] < h.train_loss[0]
    assert evaluate(m, x, y)["acc"] > 90


def test_same_seed_same_numbers_on_cpu():
    x, y = toy()
    out = []
    for _ in range(2):
        seed_everything(7)
        m = small()
        h = fit(m, x, y, TrainConfig(epochs=1, batch_size=32, seed=7), progress=False, device="cpu")
        out.append((h.train_loss[-1], predict(m, x[:8])))
    assert out[0][0] == out[1][0]
    torch.testing.assert_close(out[0][1], out[1][1], atol=0, rtol=0)


def test_hooks_are_called_and_extra_loss_counts():
    x, y = toy(64)
    calls = []
    fit(small(), x, y, TrainConfig(steps=5, batch_size=16), on_step=lambda s, t, m: calls.append((s, t)),
        progress=False)
    assert calls == [(i, 5) for i in range(1, 6)]
    seed_everything(0)
    h0 = fit(small(), x, y, TrainConfig(steps=2, batch_size=16), progress=False)
    seed_everything(0)
    h1 = fit(small(), x, y, TrainConfig(steps=2, batch_size=16), progress=False,
             extra_loss=lambda m, xb, yb, logits: torch.tensor(10.0))
    assert h1.train_loss[-1] == pytest.approx(h0.train_loss[-1] + 10.0, rel=1e-5)


def test_checkpoint_resume_matches_uninterrupted(tmp_path):
    x, y = toy(128)
    cfg = TrainConfig(epochs=2, batch_size=32, seed=1)
    seed_everything(1)
    a = small()
    fit(a, x, y, cfg, progress=False)
    # interrupted after epoch 1: run a 1-epoch-long process by raising from the hook, then resume
    seed_everything(1)
    b = small()
    ck = tmp_path / "ck.pt"

    def stop(step, total, m):
        if step == 5:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        fit(b, x, y, cfg, checkpoint=ck, on_step=stop, progress=False)
    assert ck.is_file() and not list(tmp_path.glob("*.tmp"))
    c = small()
    h = fit(c, x, y, cfg, checkpoint=ck, progress=False)
    assert h.step[-1] == 8
    for (k, va), vc in zip(a.state_dict().items(), c.state_dict().values()):
        torch.testing.assert_close(va, vc, atol=1e-6, rtol=1e-5, msg=k)
    with pytest.raises(ValueError, match="another TrainConfig"):
        fit(small(), x, y, TrainConfig(epochs=3, batch_size=32), checkpoint=ck, progress=False)


def test_schedules():
    cfg = TrainConfig(lr=1.0, warmup=0.2, schedule="onecycle")
    assert lr_at(0, 100, cfg) == pytest.approx(0.1)
    assert lr_at(20, 100, cfg) == pytest.approx(1.0)
    assert lr_at(100, 100, cfg) == pytest.approx(0.0)
    cos = TrainConfig(lr=1.0, warmup=0.0, schedule="cosine")
    assert lr_at(50, 100, cos) == pytest.approx(0.5)
    assert lr_at(7, 100, TrainConfig(lr=0.3, schedule="constant")) == 0.3


def test_evaluate_on_hand_made_logits():
    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.stack([x[:, 0, 0, 0], 1 - x[:, 0, 0, 0]], 1) * 10
    x = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    x[:2, 0, 0, 0] = 255
    y = torch.tensor([0, 1, 1, 1])
    assert evaluate(Fixed(), x, y)["acc"] == pytest.approx(75.0)


@pytest.mark.parametrize("kw,match", [
    ({"epochs": 0}, "epochs must be > 0"), ({"steps": -1}, "steps must be a positive int"),
    ({"batch_size": 0}, "batch_size"), ({"lr": 0}, "lr must be > 0"),
    ({"schedule": "step"}, "schedule must be one of"), ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"warmup": 1.0}, "warmup"), ({"momentum": 1.5}, "momentum"),
])
def test_config_errors(kw, match):
    x, y = toy(16)
    with pytest.raises(ValueError, match=match):
        fit(small(), x, y, TrainConfig(**kw), progress=False)


def test_fit_argument_errors():
    x, y = toy(16)
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        fit("resnet8", x, y, progress=False)
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        fit(small(), x, y, {"epochs": 1}, progress=False)
    with pytest.raises(ValueError, match="equal length"):
        fit(small(), x, y[:3], progress=False)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        evaluate(small(), x[0], y)
    with pytest.raises(TypeError, match="seed must be an int"):
        seed_everything("0")


def test_inputs_are_checked_before_any_work():
    x, y = toy(32)
    m = small()
    xf = x.float()                          # 0..255 floats: the old code scored them silently near chance
    with pytest.raises(ValueError, match=r"float x, y images must be in \[0, 1\].*divide by 255"):
        evaluate(m, xf, y)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        predict(m, xf)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        fit(m, xf, y, TrainConfig(steps=1, batch_size=16), progress=False)
    assert evaluate(m, xf / 255, y)["acc"] == evaluate(m, x, y)["acc"]   # [0, 1] floats equal uint8
    with pytest.raises(ValueError, match="channels-last"):
        evaluate(m, x.permute(0, 2, 3, 1).contiguous(), y)
    with pytest.raises(ValueError, match="C = 3"):
        evaluate(m, x[:, :1], y)
    with pytest.raises(ValueError, match="NaN"):
        evaluate(m, torch.full((2, 3, 32, 32), float("nan")), y[:2])
    with pytest.raises(ValueError, match="uint8 .* or float"):
        evaluate(m, x.long(), y)
    with pytest.raises(ValueError, match=r"labels of shape \(N,\)"):
        evaluate(m, x, y[:, None])
    with pytest.raises(ValueError, match="integer class indices"):
        evaluate(m, x, y.float())
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.3, got values in \[1, 7\]"):
        evaluate(m, x, torch.where(y == 0, 7, y))      # the model has 4 classes
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.3"):
        fit(m, x, y + 4, TrainConfig(steps=1, batch_size=16), progress=False)
    with pytest.raises(ValueError, match=r"val labels must be in 0\.\.3"):
        fit(m, x, y, TrainConfig(steps=1, batch_size=16), val=(x, y - 1), progress=False)


def test_a_bad_resume_file_gives_one_clear_error(tmp_path):
    from slimlab.files import CheckpointError
    x, y = toy(64)
    cfg = TrainConfig(steps=2, batch_size=32, precision="fp32")
    ck = tmp_path / "ck.pt"
    fit(small(), x, y, cfg, checkpoint=ck, progress=False, device="cpu")
    good = ck.read_bytes()
    ck.write_bytes(good[: len(good) // 2])                         # truncated by a crash or a full disk
    with pytest.raises(CheckpointError, match=r"ck\.pt is not a fit resume checkpoint: .*damaged or truncated"):
        fit(small(), x, y, cfg, checkpoint=ck, progress=False, device="cpu")
    torch.save({"model": {}}, ck)                                  # some other torch file
    with pytest.raises(CheckpointError, match="lacks 'optimizer'"):
        fit(small(), x, y, cfg, checkpoint=ck, progress=False, device="cpu")
    ck.write_bytes(good)                                            # the right file, another architecture
    wider = build("resnet8", width=0.5, num_classes=4)
    with pytest.raises(CheckpointError, match=r"ck\.pt: the fit resume checkpoint does not fit .*size mismatch"):
        fit(wider, x, y, cfg, checkpoint=ck, progress=False, device="cpu")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_same_seed_gives_identical_weights_on_this_machine(precision):
    """Property: two fits with the same seed, data and precision path give bit-identical weights."""
    from slimlab.machine import cpu_bf16_native
    if precision == "bf16" and not cpu_bf16_native():
        pytest.skip("this CPU has no native bf16")
    x, y = toy(96, seed=3)
    states = []
    for _ in range(2):
        seed_everything(11)
        m = small()
        h = fit(m, x, y, TrainConfig(steps=4, batch_size=32, seed=11, cutout=8, precision=precision),
                progress=False, device="cpu")
        assert h.precision == precision
        states.append({k: v.clone() for k, v in m.state_dict().items()})
    assert states[0].keys() == states[1].keys()
    for k in states[0]:
        torch.testing.assert_close(states[0][k], states[1][k], atol=0, rtol=0, msg=k)
    seed_everything(12)                              # and a different seed gives different weights
    m = small()
    fit(m, x, y, TrainConfig(steps=4, batch_size=32, seed=12, cutout=8, precision=precision),
        progress=False, device="cpu")
    assert not torch.equal(m.fc.weight, states[0]["fc.weight"])
