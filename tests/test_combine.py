"""slimlab.combine: Pareto frontier, choosing on validation, sparse sharing with share.Codebook, the
equal fine-tune budget, pipelines end to end on a tiny model (files as reported, resuming from parts),
stored points. The packed file is tested in test_packing.py, the rules in test_claims_06.py."""
import json
import types

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from slimlab import combine as C
from slimlab import models
from slimlab.packing import load_packed
from slimlab.parts import PartStore
from slimlab.share import Codebook
from slimlab.train import evaluate


def _pts(*pairs):
    return [{"name": f"p{i}", "bytes": b, "acc": a} for i, (b, a) in enumerate(pairs)]


# ------------------------------------------------------------------------------------ Pareto

def test_pareto_front_hand_cases():
    pts = _pts((100, 90), (50, 85), (60, 80), (10, 50), (100, 89), (200, 90), (10, 40))
    front = C.pareto_front(pts)
    # (60, 80) is beaten by (50, 85); (100, 89) and (200, 90) by (100, 90); (10, 40) by (10, 50)
    assert [(p["bytes"], p["acc"]) for p in front] == [(10, 50), (50, 85), (100, 90)]
    assert C.dominates(pts[1], pts[2]) and not C.dominates(pts[2], pts[1])
    assert not C.dominates(pts[0], pts[0])          # a point does not dominate itself
    lat = [{"name": "a", "latency_ms": 2.0, "acc": 70}, {"name": "b", "latency_ms": 1.0, "acc": 71}]
    assert [p["name"] for p in C.pareto_front(lat, cost="latency_ms")] == ["b"]


def test_pareto_front_bad_input():
    with pytest.raises(ValueError, match="at least one point"):
        C.pareto_front([])
    with pytest.raises(ValueError, match="has no 'bytes'"):
        C.pareto_front([{"name": "x", "acc": 1}])
    with pytest.raises(ValueError, match="must be a number"):
        C.pareto_front([{"name": "x", "acc": 1, "bytes": None}])
    with pytest.raises(TypeError, match="points must be dicts"):
        C.pareto_front([(1, 2)])


def test_choose_takes_the_smallest_file_within_the_budget_on_validation():
    pts = [{"name": "big", "bytes": 900, "val_acc": 90.0, "test_acc": 80.0},
           {"name": "mid", "bytes": 300, "val_acc": 89.2, "test_acc": 95.0},
           {"name": "tiny", "bytes": 10, "val_acc": 60.0, "test_acc": 99.0}]
    assert C.choose(pts, 90.0)["name"] == "mid"                # test accuracy plays no part
    assert C.choose(pts, 90.0, max_loss_pt=0.5)["name"] == "big"
    assert C.choose(pts[1:], 99.0)["name"] == "mid"            # none within: the most accurate on val
    with pytest.raises(ValueError, match="at least one point"):
        C.choose([], 90.0)


def test_budget_split_is_even_and_sums_to_the_budget():
    assert C.budget_split(["qat"], 800) == {"qat": 800}
    assert C.budget_split(["prune", "share", "quantize", "entropy"], 800) == {"prune": 400, "share": 400}
    assert C.budget_split(["distill", "prune", "share", "quantize"], 100) == {"distill": 34, "prune": 33, "share": 33}
    assert C.budget_split(["quantize"], 5) == {}
    with pytest.raises(ValueError, match="cannot be split"):
        C.budget_split(["distill", "prune", "share"], 2)


# ------------------------------------------------------------------------------------ sharing

def _tiny(seed=0):
    torch.manual_seed(seed)
    m = models.build("resnet8", width=0.25)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    return m.eval()


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    return types.SimpleNamespace(train_x=x, train_y=torch.randint(0, 10, (n,), generator=g))


def test_share_sparse_uses_share_codebook_and_zeros_stay_zero_through_finetuning():
    from slimlab.prune import prune_magnitude, remove_masks_
    pruned = remove_masks_(prune_magnitude(_tiny(), 0.8))
    data = _data()
    cfg = C.StepConfig(steps=3, batch_size=16, share_bits=2, lr=0.05)
    m = C.share_step(pruned, data.train_x, data.train_y, cfg, progress=False)
    before = {n: l.weight.detach().clone() for n, l in models.weight_layers(C.share_sparse(pruned, 2)).items()}
    for name, layer in models.weight_layers(m).items():
        p = layer.parametrizations.weight[0]
        assert isinstance(p, Codebook) and p.mask is not None
        w = layer.weight.detach()
        assert torch.equal(w == 0, models.weight_layers(pruned)[name].weight == 0)   # exact zeros kept
        assert len(torch.unique(w[w != 0])) <= 4                                      # still shared
    assert any(not torch.equal(before[n], l.weight.detach()) for n, l in models.weight_layers(m).items())


def test_qat_step_ends_on_the_grid_the_file_stores(tmp_path):
    from slimlab.packing import save_packed
    data = _data()
    cfg = C.StepConfig(steps=3, batch_size=16, quant_bits=3, lr=0.05)
    m = C.qat_step(_tiny(), data.train_x, data.train_y, cfg, progress=False)
    assert not any(parametrize.is_parametrized(l) for l in models.weight_layers(m).values())
    for layer in models.weight_layers(m).values():
        assert len(torch.unique(layer.weight)) <= 8
    save_packed(m, tmp_path / "q.slpk", sparse=False, value_bits=3)
    back = load_packed(tmp_path / "q.slpk")
    for name, layer in models.weight_layers(back).items():      # the file keeps the QAT grid exactly
        torch.testing.assert_close(layer.weight, models.weight_layers(m)[name].weight, atol=0, rtol=0)


# ------------------------------------------------------------------------------------ pipelines

def _store(tmp_path, enabled):
    return PartStore(tmp_path / "parts", tmp_path / "w", enabled=enabled, profile="full" if enabled else "quick")


def test_pipeline_end_to_end_writes_the_file_it_reports(tmp_path):
    data = _data()
    cfg = C.StepConfig(steps=4, batch_size=16, sparsity=0.75, share_bits=2, quant_bits=4)
    evalf = lambda m: {"val_acc": evaluate(m, data.train_x[:32], data.train_y[:32])["acc"]}
    store = _store(tmp_path, False)
    rows = C.run_chain("dc", ["prune", "share", "quantize", "entropy"], _tiny(), data, cfg,
                       evaluate_fn=evalf, store=store, progress=False)
    assert [r["step"] for r in rows] == ["prune", "share", "quantize", "entropy"]
    assert [r["finetune_steps"] for r in rows] == [2, 4, 4, 4]          # the budget, split over prune + share
    for r in rows:
        assert (store.work / r["file"]).stat().st_size == r["bytes"]
    sizes = [r["bytes"] for r in rows]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[-2]
    total = rows[0]["params"] - sum(p.numel() for n, p in _tiny().named_parameters() if "bn" in n or "bias" in n)
    assert rows[-1]["nonzero"] <= rows[-1]["params"] - 0.74 * total
    back = load_packed(store.work / rows[-1]["file"])
    assert evalf(back)["val_acc"] == rows[-1]["val_acc"]
    assert store.stored() == 0                                           # disabled: nothing recorded


def test_pipeline_resumes_from_parts_and_distils(tmp_path):
    data = _data()
    cfg = C.StepConfig(steps=4, batch_size=16, sparsity=0.5, quant_bits=6)
    evalf = lambda m: {"val_acc": evaluate(m, data.train_x, data.train_y)["acc"]}
    teacher = _tiny(1)
    kw = dict(evaluate_fn=evalf, store=_store(tmp_path, True), teacher=teacher, progress=False,
              base_key={"base": "tiny"})
    rows = C.run_chain("kd", ["distill", "prune", "quantize"], _tiny(), data, cfg, **kw)
    assert len(list((tmp_path / "parts").glob("*.json"))) == 3
    assert [r["finetune_steps"] for r in rows] == [2, 4, 4]
    again = C.run_chain("kd", ["distill", "prune", "quantize"], _tiny(), data, cfg, **kw)
    assert again == json.loads(json.dumps(rows)) and len(kw["store"].loaded) == 3


def test_pipeline_bad_inputs(tmp_path):
    data, store = _data(), _store(tmp_path, False)
    cfg = C.StepConfig(steps=2, batch_size=16)
    evalf = lambda m: {}
    with pytest.raises(ValueError, match="needs a teacher"):
        C.run_chain("x", ["distill"], _tiny(), data, cfg, evaluate_fn=evalf, store=store)
    with pytest.raises(ValueError, match="steps must be a non-empty list"):
        C.run_chain("x", ["shrink"], _tiny(), data, cfg, evaluate_fn=evalf, store=store)
    with pytest.raises(ValueError, match="'qat' is a single method"):
        C.run_chain("x", ["prune", "qat"], _tiny(), data, cfg, evaluate_fn=evalf, store=store)
    with pytest.raises(TypeError, match="PartStore"):
        C.run_chain("x", ["prune"], _tiny(), data, cfg, evaluate_fn=evalf, store=tmp_path)
    with pytest.raises(ValueError, match="sparsity must be a finite number in"):
        C.StepConfig(sparsity=1.5).validate()


# ------------------------------------------------------------------------------------ stored points

def test_stored_points_reads_what_exists(tmp_path):
    pts, notes = C.stored_points("quick", results_dir=tmp_path)
    assert pts == [] and len(notes) == 4 and all("missing" in n for n in notes)
    doc = {"provenance": {}, "extra": {"table": [{"name": "student KD", "bytes": 300, "acc": 80.0,
                                                  "latency_ms": 1.0}]}, "records": []}
    (tmp_path / "05_distillation.json").write_text(json.dumps(doc))
    pts, notes = C.stored_points("quick", results_dir=tmp_path)
    assert pts == [{"name": "student KD (05)", "method": "distill", "bytes": 300, "acc": 80.0,
                    "latency_ms": 1.0, "source": "notebook 05"}]
    with pytest.raises(ValueError, match="profile must be"):
        C.stored_points("medium")


def test_later_steps_continue_from_the_trained_batch_norm_not_the_folded_file(tmp_path):
    """The file folds batch norm (running stats 0 / 1); fine-tuning that in train mode would normalise by
    batch statistics the folded layers were never meant for. A chain carries the trained BN instead."""
    from slimlab.packing import save_packed
    from slimlab.train import predict
    m = _tiny()
    save_packed(m, tmp_path / "m.slpk", sparse=False, value_bits=4)       # the file changes the weights
    back = load_packed(tmp_path / "m.slpk")
    carry = C._carry(m, back)
    bn = dict(carry.named_modules())["bn1"]
    assert torch.equal(bn.running_mean, dict(m.named_modules())["bn1"].running_mean)          # trained BN kept
    for name, layer in models.weight_layers(carry).items():                                   # the file's weights
        assert torch.equal(layer.weight, models.weight_layers(back)[name].weight)
    x = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(predict(carry, x), predict(back, x), atol=1e-4, rtol=1e-4)     # the same function
