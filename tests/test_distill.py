"""slimlab.distill: the KD loss against hand computations and torch, the fit hook, students, seed statistics."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from slimlab import distill as D
from slimlab.models import build


def _logits(seed=0, n=4, k=5, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * scale


# ---------------------------------------------------------------------------------------------
# the losses

def test_soften_is_softmax_at_temperature():
    z = torch.tensor([[1.0, 2.0, 4.0]])
    for t in (1.0, 4.0, 10.0):
        e = [math.exp(v / t) for v in (1.0, 2.0, 4.0)]
        torch.testing.assert_close(D.soften(z, t), torch.tensor([[v / sum(e) for v in e]]))
    # higher temperature -> softer: the largest probability falls, the smallest rises
    p1, p10 = D.soften(z, 1.0), D.soften(z, 10.0)
    assert p10.max() < p1.max() and p10.min() > p1.min()


def test_kd_loss_matches_a_hand_computation():
    s = [[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]]
    t = [[3.0, 1.0, 0.0], [0.0, 1.0, 2.0]]
    y = [0, 2]
    temp, alpha = 2.0, 0.7

    def sm(row, tt):
        e = [math.exp(v / tt) for v in row]
        return [v / sum(e) for v in e]
    ce = sum(-math.log(sm(s[i], 1.0)[y[i]]) for i in range(2)) / 2
    kl = sum(sum(pt * math.log(pt / ps) for pt, ps in zip(sm(t[i], temp), sm(s[i], temp))) for i in range(2)) / 2
    want = (1 - alpha) * ce + alpha * temp ** 2 * kl
    got = D.kd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), temp, alpha)
    assert got.item() == pytest.approx(want, rel=1e-6)
    assert D.soft_loss(torch.tensor(s), torch.tensor(t), temp).item() == pytest.approx(temp ** 2 * kl, rel=1e-6)
    # alpha = 0 is plain cross-entropy, alpha = 1 the soft part alone
    assert D.kd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), temp, 0.0).item() == pytest.approx(ce, rel=1e-6)


def test_soft_part_is_zero_when_student_equals_teacher():
    z = _logits()
    y = torch.tensor([0, 1, 2, 3])
    for t in (1.0, 4.0, 10.0):
        assert D.soft_loss(z, z.clone(), t).item() == 0.0
        torch.testing.assert_close(D.kd_loss(z, z.clone(), y, t, 1.0), torch.tensor(0.0), atol=0, rtol=0)


def test_gradient_of_soft_part_is_t_times_probability_gap():
    s, t = _logits(0).requires_grad_(), _logits(1)
    for temp in (1.0, 3.0):
        s.grad = None
        D.soft_loss(s, t, temp).backward()
        want = temp * (F.softmax(s.detach() / temp, 1) - F.softmax(t / temp, 1)) / len(s)
        torch.testing.assert_close(s.grad, want, rtol=1e-5, atol=1e-7)


def test_t_squared_keeps_the_gradient_size_as_t_grows():
    # For T much larger than the logits, grad -> (z_s - z_t) / (K N): the same at T=20 and T=40.
    # Without the T² factor it would shrink 4x.
    s, t = _logits(0, scale=0.5), _logits(1, scale=0.5)
    s, t = s - s.mean(1, keepdim=True), t - t.mean(1, keepdim=True)
    norms = []
    for temp in (20.0, 40.0):
        x = s.clone().requires_grad_()
        D.soft_loss(x, t, temp).backward()
        norms.append(x.grad.norm().item())
    assert norms[1] / norms[0] == pytest.approx(1.0, abs=0.02)
    limit = (s - t) / (s.shape[1] * s.shape[0])
    x = s.clone().requires_grad_()
    D.soft_loss(x, t, 1000.0).backward()
    torch.testing.assert_close(x.grad, limit, rtol=1e-2, atol=1e-4)


def test_teacher_gets_no_gradient_from_kd_loss():
    s, t = _logits(0).requires_grad_(), _logits(1).requires_grad_()
    D.kd_loss(s, t, torch.tensor([0, 1, 2, 3]), 4.0, 0.9).backward()
    assert t.grad is None and s.grad is not None


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(temperature=0.0), ValueError, r"temperature must be a finite number in \(0, inf\]"),
    (dict(temperature=-1.0), ValueError, r"temperature must be a finite number in \(0"),
    (dict(temperature=float("nan")), ValueError, "temperature must be a finite number"),
    (dict(temperature="4"), TypeError, "temperature must be a number"),
    (dict(alpha=1.5), ValueError, r"alpha must be a finite number in \[0, 1\]"),
    (dict(alpha=-0.1), ValueError, r"alpha must be a finite number in \[0, 1\]"),
    (dict(teacher_logits=torch.zeros(4, 6)), ValueError, "same shape"),
    (dict(student_logits=torch.zeros(4)), ValueError, r"shape \(batch, classes\)"),
    (dict(student_logits=[[0.0]]), TypeError, "student_logits must be a torch.Tensor"),
    (dict(targets=torch.tensor([0, 1])), ValueError, "targets must be int64 class indices"),
    (dict(targets=torch.zeros(4)), ValueError, "targets must be int64 class indices"),
])
def test_kd_loss_rejects_bad_inputs(kwargs, err, match):
    args = dict(student_logits=_logits(0), teacher_logits=_logits(1), targets=torch.tensor([0, 1, 2, 3]),
                temperature=4.0, alpha=0.9)
    args.update(kwargs)
    with pytest.raises(err, match=match):
        D.kd_loss(**args)


def test_soften_rejects_bad_inputs():
    with pytest.raises(ValueError, match="temperature must be a finite number"):
        D.soften(_logits(), 0)
    with pytest.raises(ValueError, match="logits must be float logits"):
        D.soften(torch.zeros(3, dtype=torch.int64), 1.0)


def test_attention_map_by_hand():
    f = torch.zeros(1, 2, 1, 2)
    f[0, 0, 0] = torch.tensor([1.0, 2.0])
    f[0, 1, 0] = torch.tensor([-3.0, 0.0])
    q = torch.tensor([(1 + 9) / 2, (4 + 0) / 2])                 # mean over channels of a²
    torch.testing.assert_close(D.attention_map(f), (q / q.norm())[None])
    # different channel counts, same spatial size: fine; identical maps -> zero loss
    a = torch.rand(3, 4, 5, 5)
    assert D.at_loss([a], [a.repeat(1, 2, 1, 1)]).item() == pytest.approx(0.0, abs=1e-12)
    b = torch.rand(3, 8, 5, 5)
    want = (D.attention_map(a) - D.attention_map(b)).pow(2).mean()
    torch.testing.assert_close(D.at_loss([a, a], [b, b]), 2 * want)


def test_attention_errors():
    with pytest.raises(ValueError, match=r"features must be a \(B, C, H, W\)"):
        D.attention_map(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="p must be >= 1"):
        D.attention_map(torch.zeros(1, 1, 2, 2), p=0)
    with pytest.raises(ValueError, match="same, non-zero number"):
        D.at_loss([torch.zeros(1, 1, 2, 2)], [])
    with pytest.raises(ValueError, match="must agree in batch and spatial size"):
        D.at_loss([torch.zeros(1, 1, 2, 2)], [torch.zeros(1, 1, 4, 4)])


# ---------------------------------------------------------------------------------------------
# the fit hook

def _tiny(seed):
    torch.manual_seed(seed)
    return build("resnet8", width=0.25).eval()


def test_capture_removes_its_hooks():
    m = _tiny(0)
    with D.capture(m, ["layer1", "layer3"]) as feats:
        m(torch.rand(2, 3, 32, 32))
        assert feats["layer1"].shape == (2, 4, 32, 32) and feats["layer3"].shape == (2, 16, 8, 8)
    assert all(not mod._forward_hooks for mod in m.modules())
    with pytest.raises(ValueError, match="no submodule"):
        with D.capture(m, ["layer9"]):
            pass


def test_distillation_hook_makes_fits_loss_the_kd_loss():
    teacher, student = _tiny(0), _tiny(1).train()
    calls = []
    teacher.register_forward_hook(lambda *a: calls.append(1))
    teacher.train()
    x, y = torch.rand(6, 3, 32, 32), torch.tensor([0, 1, 2, 3, 4, 5])
    kd = D.KDConfig(temperature=3.0, alpha=0.8)
    with D.distillation(teacher, student, kd, label_smoothing=0.1) as extra:
        assert not teacher.training                       # the teacher runs in eval mode
        logits = student(x)
        total = F.cross_entropy(logits, y, label_smoothing=0.1) + extra(student, x, y, logits)
        total.backward()
        with torch.no_grad():
            want = D.kd_loss(logits, teacher(x), y, 3.0, 0.8, label_smoothing=0.1)
    torch.testing.assert_close(total, want)
    assert len(calls) == 2                                 # once in the hook, once for `want`
    assert all(p.grad is None for p in teacher.parameters())
    assert teacher.training                               # restored on exit
    assert all(not m._forward_hooks for m in student.modules())


def test_attention_transfer_hook_adds_beta_half_at():
    teacher, student = _tiny(0), _tiny(1).train()
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    kd = D.KDConfig(alpha=0.0, beta=100.0, layers=("layer2", "layer3"))
    with D.distillation(teacher, student, kd) as extra:
        logits = student(x)
        got = extra(student, x, y, logits)
    with torch.no_grad(), D.capture(teacher, kd.layers) as tf, D.capture(student, kd.layers) as sf:
        teacher(x), student(x)
        want = 50.0 * D.at_loss([sf[n] for n in kd.layers], [tf[n] for n in kd.layers])
    torch.testing.assert_close(got.detach(), want)


@pytest.mark.parametrize("kd,match", [
    (D.KDConfig(temperature=0), "temperature must be a finite number"),
    (D.KDConfig(alpha=2.0), r"alpha must be a finite number in \[0, 1\]"),
    (D.KDConfig(beta=-1.0), r"beta must be a finite number in \[0, inf\]"),
    (D.KDConfig(alpha=0.0, beta=0.0), "nothing to distil"),
    (D.KDConfig(layers=()), "layers must be a non-empty tuple"),
])
def test_kdconfig_validation(kd, match):
    with pytest.raises(ValueError, match=match):
        kd.validate()


def test_distillation_argument_errors():
    t, s = _tiny(0), _tiny(1)
    with pytest.raises(TypeError, match="teacher must be an nn.Module"):
        with D.distillation("t", s, D.KDConfig()):
            pass
    with pytest.raises(TypeError, match="student must be an nn.Module"):
        with D.distillation(t, None, D.KDConfig()):
            pass
    with pytest.raises(TypeError, match="kd must be a KDConfig"):
        with D.distillation(t, s, {"temperature": 4}):
            pass
    with pytest.raises(ValueError, match=r"label_smoothing must be a finite number in \[0, 1\)"):
        with D.distillation(t, s, D.KDConfig(), label_smoothing=1.0):
            pass


def test_kdconfig_names():
    assert D.KDConfig(4.0, 0.9).name == "KD T=4 α=0.9"
    assert D.KDConfig(4.0, 0.9, 1000.0).name == "KD+AT T=4 α=0.9 β=1000"
    assert D.KDConfig(4.0, 0.0, 1000.0).name == "AT β=1000"


# ---------------------------------------------------------------------------------------------
# training students

def _toy_data(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.arange(n) % 10
    return SimpleNamespace(train_x=x, train_y=y, val_x=x[:20], val_y=y[:20], test_x=x[:20], test_y=y[:20],
                           fingerprint="toy")


def test_train_student_is_seeded_and_resumes_from_its_store(tmp_path):
    from slimlab.parts import PartStore
    data, teacher = _toy_data(), _tiny(0)
    cfg = D.student_config(epochs=1, seed=3, batch_size=32)
    kd = D.KDConfig(4.0, 0.9)
    store = PartStore(tmp_path / "parts", tmp_path / "work", profile="full")
    row, model = D.train_student(data, teacher, kd, cfg, store=store, progress=False)
    assert row["steps"] == 2 and row["seed"] == 3 and row["label"] == "KD T=4 α=0.9"
    assert {"val_acc", "test_acc", "params"} <= set(row) and 0 <= row["test_acc"] <= 100
    assert row["params"] == sum(p.numel() for p in build("resnet8").parameters())
    assert row["key"] == D.run_key("resnet8", kd, cfg, 0, 0, "toy", D.model_sha(teacher))
    assert (tmp_path / "parts" / f"{row['key']}.json").is_file() and (tmp_path / "work" / f"{row['key']}.pt").is_file()
    again_store = PartStore(tmp_path / "parts", tmp_path / "work", profile="full")      # a new session
    again, model2 = D.train_student(data, teacher, kd, cfg, store=again_store, progress=False)   # read back
    assert again == row and again_store.loaded == [row["key"]] and not again_store.computed
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert D.train_student(data, teacher, kd, cfg, store=again_store, need_model=False, progress=False) == (row, None)
    fresh, model3 = D.train_student(data, teacher, kd, cfg, progress=False)                   # retrained
    for a, b in zip(model.state_dict().values(), model3.state_dict().values()):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    other = D.train_student(data, teacher, D.KDConfig(2.0, 0.9), cfg, store=again_store, progress=False)[0]
    assert other["key"] != row["key"] and len(again_store.computed) == 1                 # another config: trained
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("*resume*"))
    assert next(teacher.parameters()).device.type == "cpu"
    with pytest.raises(TypeError, match="store must be a slimlab.parts.PartStore"):
        D.train_student(data, teacher, kd, cfg, store=tmp_path, progress=False)


def test_train_student_argument_errors():
    data, cfg = _toy_data(), D.student_config(epochs=1)
    with pytest.raises(TypeError, match="needs the teacher"):
        D.train_student(data, None, D.KDConfig(), cfg)
    with pytest.raises(TypeError, match="train must be a TrainConfig"):
        D.train_student(data, None, None, {"epochs": 1})
    with pytest.raises(ValueError, match=r"each of splits must be one of \('train', 'val', 'test'\)"):
        D.train_student(data, None, None, cfg, splits=("holdout",))
    with pytest.raises(ValueError, match=r"train_images \(0 = all\) must be >= 0"):
        D.train_student(data, None, None, cfg, train_images=-1)
    with pytest.raises(TypeError, match=r"eval_images \(0 = all\) must be an int"):
        D.train_student(data, None, None, cfg, eval_images=1.5)


def test_seed_stats_and_over_seeds():
    st = D.seed_stats([1.0, 2.0, 6.0])
    assert (st.mean, st.lo, st.hi) == (3.0, 1.0, 6.0)
    assert st.std == pytest.approx(math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + (6 - 3) ** 2) / 2))
    assert D.seed_stats([5.0]).std == 0.0
    stats, rows = D.over_seeds(lambda s: {"test_acc": 10.0 * s}, [1, 2, 3])
    assert stats.values == (10.0, 20.0, 30.0) and [r["test_acc"] for r in rows] == [10.0, 20.0, 30.0]
    with pytest.raises(ValueError, match="at least one value"):
        D.seed_stats([])
    with pytest.raises(TypeError, match="run must be callable"):
        D.over_seeds(None, [0])
    with pytest.raises(ValueError, match="seeds must be a non-empty sequence of ints"):
        D.over_seeds(lambda s: {"test_acc": 1.0}, [])
    with pytest.raises(ValueError, match="must return a dict holding 'test_acc'"):
        D.over_seeds(lambda s: {"acc": 1.0}, [0])


def test_student_config_is_the_reference_recipe_but_epochs_seed_and_batch():
    from dataclasses import asdict
    from slimlab.zoo import RECIPES
    cfg, ref = asdict(D.student_config(epochs=7, seed=2, batch_size=64)), asdict(RECIPES["resnet8"].config)
    assert (cfg["epochs"], cfg["seed"], cfg["batch_size"], cfg["steps"]) == (7, 2, 64, None)
    assert {k: v for k, v in cfg.items() if k not in ("epochs", "seed", "batch_size")} == \
        {k: v for k, v in ref.items() if k not in ("epochs", "seed", "batch_size")}
    with pytest.raises(ValueError, match="epochs must be > 0"):
        D.student_config(epochs=0)


def test_row_reports_the_cost_per_step():
    data, teacher = _toy_data(), _tiny(0)
    cfg = D.student_config(epochs=1, seed=0, batch_size=32)
    row, _ = D.train_student(data, None, None, cfg, progress=False)
    assert row["steps"] == 2 and 0 < row["seconds_per_step"] * 2 <= row["seconds"] + 0.05   # seconds: rounded to 0.1
    assert row["precision"] in ("fp32", "bf16")


def _t4_sf(t):
    """Survival function of Student's t with 4 degrees of freedom (closed form)."""
    x = t / math.sqrt(1 + t * t / 4)
    return 0.5 - 0.375 * x * (1 - t * t / (12 * (1 + t * t / 4)))


def test_welch_test_against_a_hand_computation():
    # equal sizes and variances (1 and 1): df = 2 (n - 1) = 4, t = diff / sqrt(2/3)
    w = D.welch_test([81.0, 82.0, 83.0], [80.0, 81.0, 79.0])
    assert w.diff == pytest.approx(2.0) and w.t == pytest.approx(math.sqrt(6)) and w.df == pytest.approx(4.0)
    assert w.p == pytest.approx(_t4_sf(math.sqrt(6)), rel=1e-9) and w.p == pytest.approx(0.03524, abs=1e-5)
    # one-sided in the stated direction: the other way round p = 1 - p
    assert D.welch_test([80.0, 81.0, 79.0], [81.0, 82.0, 83.0]).p == pytest.approx(1 - w.p)
    # unequal variances: the Welch–Satterthwaite df
    a, b = [80.1, 80.4, 80.7], [79.6, 79.9, 79.8]
    va, vb = 0.09, ((79.6 - 79.7667) ** 2 + (79.9 - 79.7667) ** 2 + (79.8 - 79.7667) ** 2) / 2
    w = D.welch_test(a, b)
    assert w.df == pytest.approx((va / 3 + vb / 3) ** 2 / ((va / 3) ** 2 / 2 + (vb / 3) ** 2 / 2), rel=1e-3)
    assert w.t == pytest.approx((80.4 - 79.76667) / math.sqrt(va / 3 + vb / 3), rel=1e-4)


def test_welch_test_degenerate_and_bad_input():
    assert D.welch_test([80.0, 80.0, 80.0], [79.0, 79.0, 79.0]).p == 0.0
    assert D.welch_test([79.0, 79.0], [80.0, 80.0]).p == 1.0
    assert D.welch_test([80.0, 80.0], [80.0, 80.0]).p == 0.5
    with pytest.raises(ValueError, match="at least 2 values on each side"):
        D.welch_test([80.0], [79.0, 78.0])


def test_gap_closed():
    assert D.gap_closed(81.0, 80.0, 84.0) == pytest.approx(0.25)
    assert D.gap_closed(80.0, 80.0, 84.0) == 0.0
    assert D.gap_closed(79.0, 80.0, 84.0) == pytest.approx(-0.25)
    assert D.gap_closed(81.0, 80.0, 80.0) is None and D.gap_closed(81.0, 82.0, 80.0) is None
    with pytest.raises(TypeError, match="teacher must be a number"):
        D.gap_closed(81.0, 80.0, None)


def test_kd_loss_against_torch_in_both_forms():
    # KL(p_t || p_s) = sum p_t log p_t - sum p_t log p_s: the soft-target cross-entropy differs by the
    # teacher's entropy, a constant, so the two forms have the same gradient in the student's logits
    s, t, y = _logits(0, n=8, k=10), _logits(1, n=8, k=10), torch.arange(8) % 10
    T, a = 4.0, 0.9
    x = s.clone().requires_grad_()
    D.kd_loss(x, t, y, T, a).backward()
    x2 = s.clone().requires_grad_()
    p_t = F.softmax(t / T, 1)
    soft_ce = -(p_t * F.log_softmax(x2 / T, 1)).sum(1).mean()
    ((1 - a) * F.cross_entropy(x2, y) + a * T * T * soft_ce).backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-7)
    want = (1 - a) * F.cross_entropy(s, y) + a * T * T * F.kl_div(F.log_softmax(s / T, 1), p_t, reduction="batchmean")
    torch.testing.assert_close(D.kd_loss(s, t, y, T, a), want)


def test_kd_loss_exercise_accepts_the_soft_target_cross_entropy_form():
    import torch.nn.functional as F2
    from slimlab.exercises import check

    def ce_form(s, t, y, T, alpha):
        soft = -(F2.softmax(t.detach() / T, -1) * F2.log_softmax(s / T, -1)).sum(-1).mean()
        return (1 - alpha) * F2.cross_entropy(s, y) + alpha * T * T * soft

    def off_by_t(s, t, y, T, alpha):          # a wrong form still fails
        return ce_form(s, t, y, T, alpha) / T
    assert check("05-kd-loss", ce_form, verbose=False).status == "passed"
    assert check("05-kd-loss", off_by_t, verbose=False).status == "failed"


def test_wrong_class_agreement_against_scipy():
    from scipy.stats import spearmanr
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(40, 6, generator=g) * 2, 1)
    labels = torch.arange(40) % 6
    rho = D.wrong_class_agreement(probs, labels)
    for i in (0, 7, 39):
        c = int(labels[i])
        others = probs[(labels == c) & (torch.arange(40) != i)].mean(0)
        keep = [j for j in range(6) if j != c]
        assert rho[i].item() == pytest.approx(spearmanr(probs[i, keep], others[keep]).statistic, abs=1e-6)
    # a class whose images share one wrong-class order agrees perfectly; one image alone gives NaN
    base = torch.tensor([0.5, 0.2, 0.12, 0.05, 0.09, 0.04])
    same = torch.stack([base + 0.001 * k * torch.tensor([0, 1, 0.8, 0.3, 0.5, 0.1]) for k in range(4)])
    assert torch.allclose(D.wrong_class_agreement(same, torch.zeros(4, dtype=torch.int64)), torch.ones(4))
    assert D.wrong_class_agreement(probs[:2], torch.tensor([0, 1])).isnan().all()
    with pytest.raises(ValueError, match="labels must be int64 class indices"):
        D.wrong_class_agreement(probs, labels[:5])


def test_train_seeds_through_an_executor_gives_the_serial_parts(tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    from slimlab.parts import PartStore
    data, teacher = _toy_data(), _tiny(0)
    kd = D.KDConfig(4.0, 0.9)
    trains = [D.student_config(epochs=1, seed=s, batch_size=32) for s in (0, 1, 2)]
    serial = PartStore(tmp_path / "a", tmp_path / "wa", profile="full")
    stats, rows, model = D.train_seeds(data, teacher, kd, trains, store=serial, keep_first=True, progress=False)
    assert model is not None and [r["seed"] for r in rows] == [0, 1, 2] and stats.values == tuple(r["test_acc"] for r in rows)
    assert sorted(serial.computed) == sorted(r["key"] for r in rows)          # every run one part, one key each
    pooled = PartStore(tmp_path / "b", tmp_path / "wb", profile="full")
    with ThreadPoolExecutor(1) as ex:          # one worker: the runs seed torch's global generator
        _, rows2, none = D.train_seeds(data, teacher, kd, trains, store=pooled, executor=ex, progress=False)
    assert none is None and [r["key"] for r in rows2] == [r["key"] for r in rows]
    assert [r["test_acc"] for r in rows2] == [r["test_acc"] for r in rows]     # same runs, same numbers
    again = PartStore(tmp_path / "b", tmp_path / "wb", profile="full")        # a new session reads them back
    assert D.train_seeds(data, teacher, kd, trains, store=again, progress=False)[1] == rows2 and not again.computed
    with pytest.raises(TypeError, match="store must be a slimlab.parts.PartStore"):
        D.train_seeds(data, teacher, kd, trains, store=None)
