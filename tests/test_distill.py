"""slimlab.distill: the KD loss against hand computations, the fit hook, seeds, C12 baselines, rules."""
import math
from types import SimpleNamespace

import pytest

from slimlab import claims
import torch
import torch.nn as nn
import torch.nn.functional as F

from slimlab import distill as D
from slimlab.ledger import judge
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
    (dict(temperature=0.0), ValueError, "temperature must be > 0"),
    (dict(temperature=-1.0), ValueError, "temperature must be > 0"),
    (dict(temperature="4"), TypeError, "temperature must be a number"),
    (dict(alpha=1.5), ValueError, r"alpha must be in \[0, 1\]"),
    (dict(alpha=-0.1), ValueError, r"alpha must be in \[0, 1\]"),
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
    with pytest.raises(ValueError, match="temperature must be > 0"):
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
    with pytest.raises(ValueError, match="p must be an int >= 1"):
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
    (D.KDConfig(temperature=0), "temperature must be > 0"),
    (D.KDConfig(alpha=2.0), r"alpha must be in \[0, 1\]"),
    (D.KDConfig(beta=-1.0), "beta must be a number >= 0"),
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
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\)"):
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
    with pytest.raises(ValueError, match="splits must be among"):
        D.train_student(data, None, None, cfg, splits=("holdout",))
    with pytest.raises(ValueError, match="train_images must be an int >= 0"):
        D.train_student(data, None, None, cfg, train_images=-1)
    with pytest.raises(ValueError, match="eval_images must be an int >= 0"):
        D.train_student(data, None, None, cfg, eval_images=1.5)


def test_student_config_is_the_reference_recipe():
    from slimlab.zoo import RECIPES
    cfg, ref = D.student_config(epochs=7, seed=2), RECIPES["resnet8"].config
    assert (cfg.epochs, cfg.seed) == (7, 2)
    assert (cfg.lr, cfg.label_smoothing, cfg.schedule, cfg.weight_decay) == (ref.lr, ref.label_smoothing,
                                                                             ref.schedule, ref.weight_decay)
    with pytest.raises(ValueError, match="epochs must be > 0"):
        D.student_config(epochs=0)


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


# ---------------------------------------------------------------------------------------------
# baselines for C12: slimlab's own methods, sizes from real files

def test_match_size_finds_the_largest_knob_that_fits():
    make = lambda k: nn.Linear(1, max(1, round(100 * k)), bias=False)     # size = round(100 k) params
    size = lambda m: m.weight.numel()
    knob, m = D.match_size(make, size, 37)
    assert size(m) == 37 and make(knob + 0.01).weight.numel() > 37
    assert D.match_size(make, size, 500)[0] == 1.0
    with pytest.raises(ValueError, match="cannot reach size 0|target must be a positive int"):
        D.match_size(make, size, 0)
    with pytest.raises(ValueError, match="cannot reach size"):
        D.match_size(lambda k: nn.Linear(1, 10), size, 5)
    with pytest.raises(TypeError, match="make and size must be callables"):
        D.match_size(None, size, 5)


@pytest.fixture(scope="module")
def c12(tmp_path_factory):
    """The six baselines of a small teacher at a small student's size, files on disk."""
    d = tmp_path_factory.mktemp("c12")
    torch.manual_seed(0)
    teacher, student = build("resnet20", width=0.5).eval(), build("resnet8", width=0.5).eval()
    params = sum(p.numel() for p in student.parameters())
    nbytes = D.student_file_bytes(student, d / "student.shr")
    data = _toy_data(32)
    out = D.c12_baselines(teacher, params, nbytes, d, test=(data.test_x, data.test_y))
    return SimpleNamespace(teacher=teacher, student=student, params=params, nbytes=nbytes, out=out, dir=d, data=data)


def test_student_bytes_are_its_fp32_file(c12):
    from slimlab.share import load_shared
    assert c12.nbytes == (c12.dir / "student.shr").stat().st_size
    assert 4 * c12.params <= c12.nbytes <= 4 * c12.params + 20_000      # fp32 weights + buffers + a header
    back = load_shared(c12.dir / "student.shr")
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(back(x), c12.student(x), atol=0, rtol=0)


def test_c12_baselines_use_slimlabs_methods_and_fit_their_budgets(c12):
    from slimlab import prune, quantize, share
    from slimlab.measure import count_params, file_bytes
    recs = {r["name"]: (r, m) for r, m in c12.out}
    assert list(recs) == [name for name, _, _ in D.C12_PLAN]
    for name, (r, model) in recs.items():
        path = c12.dir / f"c12-{r['method']}-{r['matched']}{D.FILE_SUFFIX[r['method']]}"
        assert r["file_bytes"] == file_bytes(path), name                     # the size is the real file's
        assert 0 <= r["test_acc"] <= 100 and r["nonzero"] == count_params(model).nonzero
        if r["matched"] == "params":   # integer ranks make low rank coarser than pruning
            assert (0.97 if r["method"] == "prune" else 0.85) * c12.params <= r["nonzero"] <= c12.params, name
        else:
            assert 0.8 * c12.nbytes <= r["file_bytes"] <= c12.nbytes, name
    # each file is its method's own format, and the model comes back from the file alone
    pr = recs["pruned @ bytes"][0]
    assert isinstance(prune.load_sparse(c12.dir / "c12-prune-bytes.sparse.pt"), nn.Module)
    assert pr["nonzero"] < 0.5 * count_params(c12.teacher).total                # really pruned
    lr = share.load_shared(c12.dir / "c12-low-rank-params.shr")
    assert lr.arch["low_rank"] and any(isinstance(m, nn.Sequential) for m in lr.modules())
    km, q = recs["k-means @ bytes"][0], recs["quantized @ bytes"][0]
    assert km["knob"] in range(1, 9) and q["knob"] in range(2, 9)              # bits: the most that fit
    assert q["knob"] == 8 or file_bytes_at(c12, "quantize", int(q["knob"]) + 1) > c12.nbytes
    assert km["knob"] == 8 or file_bytes_at(c12, "kmeans", int(km["knob"]) + 1) > c12.nbytes
    qm = quantize.load_quantized(c12.dir / "c12-quantize-bytes.slq")
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(qm(x), recs["quantized @ bytes"][1](x))   # the file's model is what was measured


def file_bytes_at(c12, method, bits):
    from slimlab import quantize, share
    m = (share.kmeans_share(c12.teacher, share.KMeansConfig(bits=bits, grad="mean")) if method == "kmeans" else
         quantize.quantize_model(c12.teacher, quantize.QuantConfig(bits=bits, act_bits=None)))
    return D.write_compressed(m, method, c12.dir / f"probe-{method}-{bits}")


def test_c12_baseline_accuracy_is_the_files(c12):
    from slimlab.train import evaluate
    for r, model in c12.out:   # the record's accuracy is that of the model read back from the file
        back = D.read_compressed(r["method"], c12.dir / f"c12-{r['method']}-{r['matched']}{D.FILE_SUFFIX[r['method']]}")
        assert evaluate(back, c12.data.test_x, c12.data.test_y)["acc"] == r["test_acc"]


def test_finetune_keeps_each_compression():
    from slimlab import prune, share
    data = _toy_data(32)
    m = prune.prune_magnitude(_tiny(0), 0.6, "global")
    zeros = {n: w == 0 for n, w in prune.plain_state_dict(m).items() if n.endswith("weight") and w.dim() > 1}
    before = prune.plain_state_dict(m)
    m = D.finetune(m, data.train_x, data.train_y, steps=2, progress=False)
    after = prune.plain_state_dict(m)
    assert all(bool((after[n][z] == 0).all()) for n, z in zeros.items())     # pruned weights stay zero
    assert any(not torch.equal(after[n], before[n]) for n in zeros)         # and it did train
    k = share.kmeans_share(_tiny(0), share.KMeansConfig(bits=2, grad="mean"))
    k = D.finetune(k, data.train_x, data.train_y, steps=2, progress=False)
    assert all(p.codebook.numel() == 4 for p in share.shared_layers(k).values())   # still 4 values per layer
    with pytest.raises(ValueError, match="steps must be a positive int"):
        D.finetune(m, data.train_x, data.train_y, steps=0)


def test_compress_to_size_rejects_bad_input(tmp_path):
    t = _tiny(0)
    with pytest.raises(TypeError, match="teacher must be an nn.Module"):
        D.compress_to_size(None, "prune", "params", 10, 10, tmp_path / "x")
    with pytest.raises(ValueError, match="method must be one of"):
        D.compress_to_size(t, "distill", "params", 10, 10, tmp_path / "x")
    with pytest.raises(ValueError, match="matched must be 'params' or 'bytes'"):
        D.compress_to_size(t, "prune", "flops", 10, 10, tmp_path / "x")
    with pytest.raises(ValueError, match="params must be a positive int"):
        D.compress_to_size(t, "prune", "params", 0, 10, tmp_path / "x")
    with pytest.raises(ValueError, match="only be matched by bytes"):
        D.compress_to_size(t, "quantize", "params", 10, 10, tmp_path / "x")
    with pytest.raises(ValueError, match="cannot reach 100 bytes with kmeans"):
        D.compress_to_size(t, "kmeans", "bytes", 10, 100, tmp_path / "x")
    with pytest.raises(ValueError, match="fine-tuning a baseline needs train"):
        D.c12_baseline(t, "p", "prune", "params", 10 ** 6, 10 ** 7, tmp_path / "p.pt", finetune_steps=2)


# ---------------------------------------------------------------------------------------------
# rules

@pytest.mark.parametrize("m,verdict", [
    (dict(kd_mean=80.0, scratch_mean=79.0, kd_std=0.2, scratch_std=0.3), "supported"),
    (dict(kd_mean=80.0, scratch_mean=79.0, kd_std=0.6, scratch_std=0.3), "qualified"),   # within noise
    (dict(kd_mean=79.3, scratch_mean=79.0, kd_std=0.0, scratch_std=0.0), "qualified"),   # too small
    (dict(kd_mean=78.0, scratch_mean=79.0, kd_std=0.1, scratch_std=0.1), "refuted"),
    (dict(kd_mean=79.0, scratch_mean=79.0), "refuted"),
])
def test_rule_c11(m, verdict):
    assert claims.rule_c11(m) == verdict
    assert judge("C11", m, profile="full").verdict == verdict


@pytest.mark.parametrize("base,verdict", [
    ({"prune": 60.0, "quant": 70.0, "lowrank": 65.0}, "supported"),
    ({"prune": 60.0, "quant": 79.8, "lowrank": 65.0}, "qualified"),
    ({"prune": 79.9, "quant": 85.0}, "refuted"),
])
def test_rule_c12(base, verdict):
    m = {"distilled_acc": 80.0, "baseline_acc": base}
    assert claims.rule_c12(m) == verdict
    assert judge("C12", m, profile="quick").label == "quick — not evidence"
    with pytest.raises(ValueError, match="at least one compressed-teacher baseline"):
        claims.rule_c12({"distilled_acc": 80.0, "baseline_acc": {}})
    sized = {**m, "distilled_params": 100, "distilled_bytes": 400, "baseline_size": {k: 90 for k in base},
             "baseline_matched": {k: "params" for k in base}}
    assert claims.rule_c12(sized) == verdict                          # every baseline within the student's size


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
