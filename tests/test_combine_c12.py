"""The C12 baselines in slimlab.combine: the teacher compressed to the student's size by slimlab's own
methods, sizes read from real files, accuracy from the model read back."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from slimlab import combine as C
from slimlab.models import baked_state_dict, build


def _tiny(seed):
    torch.manual_seed(seed)
    return build("resnet8", width=0.25).eval()


def _images(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """n seeded random uint8 images and labels 0..9 in turn."""
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return x, torch.arange(n) % 10


def test_match_size_finds_the_largest_knob_that_fits():
    make = lambda k: nn.Linear(1, max(1, round(100 * k)), bias=False)     # size = round(100 k) params
    size = lambda m: m.weight.numel()
    knob, m = C.match_size(make, size, 37)
    assert size(m) == 37 and make(knob + 0.01).weight.numel() > 37
    assert C.match_size(make, size, 500)[0] == 1.0
    with pytest.raises(ValueError, match="target must be >= 1"):
        C.match_size(make, size, 0)
    with pytest.raises(ValueError, match="cannot reach size"):
        C.match_size(lambda k: nn.Linear(1, 10), size, 5)
    with pytest.raises(TypeError, match="make and size must be callables"):
        C.match_size(None, size, 5)


@pytest.fixture(scope="module")
def c12(tmp_path_factory):
    """The six baselines of a small teacher at a small student's size, files on disk."""
    d = tmp_path_factory.mktemp("c12")
    torch.manual_seed(0)
    teacher, student = build("resnet20", width=0.5).eval(), build("resnet8", width=0.5).eval()
    params = sum(p.numel() for p in student.parameters())
    nbytes = C.c12_student_bytes(student, d / "student.shr")
    data = _images(20)
    out = C.c12_baselines(teacher, params, nbytes, d, test=data)
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
    assert list(recs) == [name for name, _, _ in C.C12_PLAN]
    for name, (r, model) in recs.items():
        path = c12.dir / f"c12-{r['method']}-{r['matched']}{C.C12_FILE_SUFFIX[r['method']]}"
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
    return C.write_compressed(m, method, c12.dir / f"probe-{method}-{bits}")


def test_c12_baseline_accuracy_is_the_files(c12):
    from slimlab.train import evaluate
    for r, model in c12.out:   # the record's accuracy is that of the model read back from the file
        back = C.read_compressed(r["method"], c12.dir / f"c12-{r['method']}-{r['matched']}{C.C12_FILE_SUFFIX[r['method']]}")
        assert evaluate(back, *c12.data)["acc"] == r["test_acc"]


def test_finetune_keeps_each_compression():
    from slimlab import prune, share
    x, y = _images(32)
    m = prune.prune_magnitude(_tiny(0), 0.6, "global")
    zeros = {n: w == 0 for n, w in baked_state_dict(m).items() if n.endswith("weight") and w.dim() > 1}
    before = baked_state_dict(m)
    m = C.c12_finetune_(m, x, y, steps=2, progress=False)
    after = baked_state_dict(m)
    assert all(bool((after[n][z] == 0).all()) for n, z in zeros.items())     # pruned weights stay zero
    assert any(not torch.equal(after[n], before[n]) for n in zeros)         # and it did train
    k = share.kmeans_share(_tiny(0), share.KMeansConfig(bits=2, grad="mean"))
    k = C.c12_finetune_(k, x, y, steps=2, progress=False)
    assert share.shared_layers(k)                                                  # still shared after training
    for name, w in baked_state_dict(k).items():                                    # <= 2^2 distinct values a layer
        if name.endswith("weight") and w.dim() > 1:
            assert w.unique().numel() <= 4, name
    with pytest.raises(ValueError, match="steps must be >= 1"):
        C.c12_finetune_(m, x, y, steps=0)


def test_compress_to_size_rejects_bad_input(tmp_path):
    t = _tiny(0)
    with pytest.raises(TypeError, match="teacher must be an nn.Module"):
        C.compress_to_size(None, "prune", "params", 10, 10, tmp_path / "x")
    with pytest.raises(ValueError, match="method must be one of"):
        C.compress_to_size(t, "distill", "params", 10, 10, tmp_path / "x")
    with pytest.raises(ValueError, match=r"matched must be one of \('params', 'bytes'\)"):
        C.compress_to_size(t, "prune", "flops", 10, 10, tmp_path / "x")
    with pytest.raises(ValueError, match="params must be >= 1"):
        C.compress_to_size(t, "prune", "params", 0, 10, tmp_path / "x")
    with pytest.raises(ValueError, match="only be matched by bytes"):
        C.compress_to_size(t, "quantize", "params", 10, 10, tmp_path / "x")
    with pytest.raises(ValueError, match="cannot reach 100 bytes with kmeans"):
        C.compress_to_size(t, "kmeans", "bytes", 10, 100, tmp_path / "x")
    with pytest.raises(ValueError, match="fine-tuning a baseline needs train"):
        C.c12_baseline(t, "p", "prune", "params", 10 ** 6, 10 ** 7, tmp_path / "p.pt", finetune_steps=2)


def test_finetune_config_is_the_teachers_recipe_with_a_short_cosine():
    from dataclasses import asdict
    from slimlab.zoo import RECIPES
    cfg, ref = asdict(C.c12_finetune_config(700, seed=1)), asdict(RECIPES["resnet20"].config)
    assert (cfg["steps"], cfg["lr"], cfg["schedule"], cfg["warmup"], cfg["seed"]) == (700, 0.01, "cosine", 0.0, 1)
    same = ("label_smoothing", "weight_decay", "cutout", "augment", "precision", "momentum", "nesterov")
    assert {k: cfg[k] for k in same if k in ref} == {k: ref[k] for k in same if k in ref}
