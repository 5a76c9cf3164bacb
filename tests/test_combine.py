"""slimlab.combine: Pareto frontier, Huffman and gap streams, the packed file, activation memory,
pipelines end to end on a tiny model, the C3/C12/C13/C14 capstone rules on made-up metrics."""
import json
import types

import numpy as np
import pytest

from slimlab import claims
from slimlab import packing as Pk
import torch
import torch.nn as nn

from slimlab import combine as C
from slimlab import ledger, models
from slimlab.train import evaluate, predict


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


# ------------------------------------------------------------------------------------ coding

def test_huffman_lengths_are_optimal_and_round_trip():
    counts = [45, 13, 12, 16, 9, 5]               # the textbook example: lengths 1,3,3,3,4,4
    assert Pk.huffman_lengths(counts).tolist() == [1, 3, 3, 3, 4, 4]
    assert Pk.huffman_lengths([0, 7, 0]).tolist() == [0, 1, 0]
    rng = np.random.default_rng(0)
    s = rng.choice(8, size=5000, p=[.5, .2, .1, .08, .05, .04, .02, .01])
    lengths, data, nbits = Pk.huffman_code(s, 8)
    assert nbits == int(lengths.astype(np.int64)[s].sum()) and len(data) == (nbits + 7) // 8
    p = np.bincount(s, minlength=8) / len(s)
    entropy = -(p[p > 0] * np.log2(p[p > 0])).sum() * len(s)
    assert entropy <= nbits < entropy + len(s)      # within one bit per symbol of the bound
    assert np.array_equal(Pk.huffman_decode(lengths, data, len(s)), s)
    with pytest.raises(ValueError, match=r"symbols must lie in \[0, 8\)"):
        Pk.huffman_code(np.array([8]), 8)
    with pytest.raises(ValueError, match="ended after"):
        Pk.huffman_decode(lengths, data[:10], len(s))


def test_gap_stream_round_trip_with_fillers():
    mask = np.zeros(100, dtype=bool)
    mask[[0, 3, 4, 50, 99]] = True
    t = Pk.gaps_from_mask(mask, max_gap=8)
    # 0 zeros; 2 zeros; 0 zeros; 45 zeros = 5 fillers + 5; 48 zeros = 6 fillers + 0
    assert t.tolist() == [0, 2, 0, 8, 8, 8, 8, 8, 5, 8, 8, 8, 8, 8, 8, 0]
    assert np.array_equal(Pk.mask_from_gaps(t, 8, 100), mask)
    rng = np.random.default_rng(1)
    m = rng.random(1000) < 0.1
    assert np.array_equal(Pk.mask_from_gaps(Pk.gaps_from_mask(m, 5), 5, 1000), m)
    with pytest.raises(ValueError, match="max_gap must be >= 1"):
        Pk.gaps_from_mask(m, 0)


# ------------------------------------------------------------------------------------ files

def _tiny(seed=0):
    torch.manual_seed(seed)
    m = models.build("resnet8", width=0.25)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):     # non-trivial folded scale and shift
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


@pytest.mark.parametrize("kw", [dict(sparse=False), dict(sparse=True), dict(sparse=True, entropy=True)])
def test_packed_file_is_exact_for_float32_values(tmp_path, kw):
    from slimlab.prune import prune_magnitude, remove_masks
    m = remove_masks(prune_magnitude(_tiny(), 0.6))
    rep = C.save_packed(m, tmp_path / "m.slpk", **kw)
    assert rep.bytes == (tmp_path / "m.slpk").stat().st_size == sum(rep.parts.values())
    back = C.load_packed(tmp_path / "m.slpk")
    x = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(predict(back, x), predict(m, x), atol=1e-5, rtol=1e-5)
    assert ("positions" in rep.parts) == kw["sparse"]


def test_pruning_sharing_and_entropy_shrink_the_file(tmp_path):
    from slimlab.prune import prune_magnitude, remove_masks
    dense = C.save_packed(_tiny(), tmp_path / "d.slpk", sparse=False).bytes
    pruned_m = remove_masks(prune_magnitude(_tiny(), 0.8))
    pruned = C.save_packed(pruned_m, tmp_path / "p.slpk").bytes
    shared_m = C.share_sparse(pruned_m, 3)
    shared = C.save_packed(shared_m, tmp_path / "s.slpk").bytes
    coded = C.save_packed(shared_m, tmp_path / "h.slpk", entropy=True, half=True).bytes
    assert dense > pruned > shared > coded
    # sharing keeps pruned zeros at zero and at most 2^3 distinct values per layer
    back = C.load_packed(tmp_path / "s.slpk")
    for (_, a), (_, b) in zip(C.weight_layers(back), C.weight_layers(pruned_m)):
        assert torch.equal(a.weight == 0, b.weight == 0)
        assert len(torch.unique(a.weight[a.weight != 0])) <= 8
    with pytest.raises(ValueError, match="save it with sparse=True"):
        C.save_packed(shared_m, tmp_path / "x.slpk", sparse=False)


def test_uniform_grid_quantization_in_the_file(tmp_path):
    m = _tiny()
    C.save_packed(m, tmp_path / "q.slpk", sparse=False, value_bits=3)
    back = C.load_packed(tmp_path / "q.slpk")
    for (_, a), (_, b) in zip(C.weight_layers(back), C.weight_layers(m)):
        levels = torch.unique(a.weight)
        assert len(levels) <= 8
        step = (b.weight.max() - b.weight.min()) / 7
        assert (a.weight - b.weight).abs().max() <= step / 2 + 1e-6


def test_packed_bad_inputs(tmp_path):
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        C.save_packed("model", tmp_path / "x")
    with pytest.raises(TypeError, match="slimlab CIFAR ResNet"):
        C.save_packed(nn.Linear(2, 2), tmp_path / "x")
    with pytest.raises(ValueError, match="value_bits must be in 1..16"):
        C.save_packed(_tiny(), tmp_path / "x", value_bits=17)
    (tmp_path / "bad").write_bytes(b"nope")
    with pytest.raises(ValueError, match="bad magic"):
        C.load_packed(tmp_path / "bad")


# ------------------------------------------------------------------------------------ memory

def test_activation_memory_on_a_hand_computable_net():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(inplace=True),
                        nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    am = C.activation_memory(net, (1, 1, 8, 8), bytes_per_value=4)
    # conv: 64 in + 128 out; in-place ReLU: 128 (in = out); conv: 128 + 64; flatten: a view, 64;
    # linear: 64 + 3
    assert am.per_layer == [("0", 192 * 4), ("1", 128 * 4), ("2", 192 * 4), ("3", 64 * 4), ("4", 67 * 4)]
    assert am.peak_bytes == 768 and am.peak_layer == "0"
    assert C.activation_memory(net, (1, 1, 8, 8), bytes_per_value=1).peak_bytes == 192


def test_activation_memory_counts_the_residual_input():
    m = models.build("resnet8", width=0.25)          # 4 channels in stage 1: 4*32*32 = 4096 values
    am = C.activation_memory(m, bytes_per_value=1)
    rows = dict(am.per_layer)
    assert rows["layer1.0.conv1"] == 2 * 4096          # its input is the block's input: counted once
    assert rows["layer1.0.conv2"] == 3 * 4096          # block input held + conv2 in + out
    assert am.peak_bytes == 3 * 4096
    with pytest.raises(ValueError, match="bytes_per_value must be an int >= 1"):
        C.activation_memory(m, bytes_per_value=0)
    with pytest.raises(ValueError, match="input_size"):
        C.activation_memory(m, input_size=[1, 3, 32, 32])


# ------------------------------------------------------------------------------------ pipelines

def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    return types.SimpleNamespace(train_x=x, train_y=torch.randint(0, 10, (n,), generator=g))


def test_pipeline_end_to_end_writes_the_file_it_reports(tmp_path):
    data = _data()
    cfg = C.StepConfig(steps=2, distill_steps=2, batch_size=16, sparsity=0.75, share_bits=2, quant_bits=4)
    evalf = lambda m: {"val_acc": evaluate(m, data.train_x[:32], data.train_y[:32])["acc"]}
    rows = C.run_chain("dc", ["prune", "share", "quantize", "entropy"], _tiny(), data, cfg,
                       evaluate_fn=evalf, workdir=tmp_path / "w", progress=False)
    assert [r["step"] for r in rows] == ["prune", "share", "quantize", "entropy"]
    for r in rows:
        assert (tmp_path / "w" / r["file"]).stat().st_size == r["bytes"]
    sizes = [r["bytes"] for r in rows]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[-2]
    total = rows[0]["params"] - sum(p.numel() for n, p in _tiny().named_parameters() if "bn" in n or "bias" in n)
    assert rows[-1]["nonzero"] <= rows[-1]["params"] - 0.74 * total
    back = C.load_packed(tmp_path / "w" / rows[-1]["file"])
    assert evalf(back)["val_acc"] == rows[-1]["val_acc"]


def test_pipeline_resumes_from_parts_and_distils(tmp_path):
    data = _data()
    cfg = C.StepConfig(steps=2, distill_steps=2, batch_size=16, sparsity=0.5, quant_bits=6)
    evalf = lambda m: {"val_acc": evaluate(m, data.train_x, data.train_y)["acc"]}
    teacher = _tiny(1)
    kw = dict(evaluate_fn=evalf, workdir=tmp_path / "w", parts=tmp_path / "parts", teacher=teacher, progress=False)
    rows = C.run_chain("kd", ["distill", "prune", "quantize"], _tiny(), data, cfg, **kw)
    assert len(list((tmp_path / "parts").glob("*.json"))) == 3
    again = C.run_chain("kd", ["distill", "prune", "quantize"], _tiny(), data, cfg, **kw)
    assert again == json.loads(json.dumps(rows))
    with pytest.raises(ValueError, match="needs a teacher"):
        C.run_chain("x", ["distill"], _tiny(), data, cfg, evaluate_fn=evalf, workdir=tmp_path)
    with pytest.raises(ValueError, match="steps must be a non-empty list"):
        C.run_chain("x", ["shrink"], _tiny(), data, cfg, evaluate_fn=evalf, workdir=tmp_path)
    with pytest.raises(ValueError, match="sparsity must be a number in"):
        C.StepConfig(sparsity=1.5).validate()


def test_cached_rows(tmp_path):
    calls = []
    fn = lambda: calls.append(1) or {"acc": 1.0}
    assert C.cached(tmp_path, "k", {"a": 1}, fn) == {"acc": 1.0}
    assert C.cached(tmp_path, "k", {"a": 1}, fn) == {"acc": 1.0} and len(calls) == 1
    C.cached(tmp_path, "k", {"a": 2}, fn)
    assert len(calls) == 2
    C.cached(None, "k", {"a": 1}, fn)
    assert len(calls) == 3


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


# ------------------------------------------------------------------------------------ rules

def _v(claim, m):
    return ledger.judge(claim, m, name="capstone", profile="full").verdict


def test_c13_rule_reaches_every_verdict():
    singles = {"prune": [[300, 88.0]], "share": [[150, 87.0]]}
    j = lambda combined, ref=88.5: _v("C13", {"singles": singles, "combined": combined, "ref_test_acc": ref})
    assert j([[100, 88.0]]) == "supported"
    assert j([[140, 87.5]]) == "qualified"      # beats share only
    assert j([[50, 86.0]]) == "qualified"       # a new frontier point within 3 pt of the reference
    assert j([[400, 80.0]]) == "refuted"
    with pytest.raises(ValueError, match="at least one single method"):
        _v("C13", {"singles": {}, "combined": [[1, 1]], "ref_test_acc": 88.5})
    with pytest.raises(ValueError, match="ref_test_acc"):
        _v("C13", {"singles": singles, "combined": [[100, 88.0]]})


def test_c13_rule_ignores_a_tiny_useless_point():
    """The smallest file is always on the whole frontier, even at chance accuracy: it must not qualify C13."""
    singles = {"prune": [[300, 88.0]], "share": [[150, 87.0]]}
    m = {"singles": singles, "combined": [[50, 60.0]], "ref_test_acc": 88.5}
    assert C.pareto_front([{"bytes": 50, "acc": 60.0}, {"bytes": 150, "acc": 87.0}])[0]["bytes"] == 50
    assert _v("C13", m) == "refuted"
    assert _v("C13", {**m, "ref_test_acc": 62.0}) == "qualified"   # within 3 pt of a weak reference it counts


def test_c14_capstone_rule_reaches_every_verdict():
    m = {"bytes": 50_000, "flash_bytes": C.FLASH_BYTES, "peak_int8_bytes": 49_152, "sram_bytes": C.SRAM_BYTES,
         "int8_loss_pt": 0.5, "ref_ort_fp32_ms": 1.0, "ort_int8_ms": 0.5}
    assert _v("C14", m) == "supported"
    assert _v("C14", {**m, "ort_int8_ms": 0.9}) == "qualified"
    assert _v("C14", {**m, "bytes": 2_000_000}) == "qualified"
    assert _v("C14", {**m, "bytes": 2_000_000, "ort_int8_ms": 0.9}) == "refuted"
    assert _v("C14", {**m, "int8_loss_pt": 2.0, "ort_int8_ms": 0.9}) == "refuted"


def test_c3_capstone_rule_reaches_every_verdict():
    ref = 1000
    assert _v("C3", {"ref_params": ref, "models": [{"nonzero": 200, "loss_pt": 0.8}]}) == "supported"
    assert _v("C3", {"ref_params": ref, "models": [{"nonzero": 400, "loss_pt": 0.8}]}) == "qualified"
    assert _v("C3", {"ref_params": ref, "models": [{"nonzero": 200, "loss_pt": 2.5}]}) == "qualified"
    assert _v("C3", {"ref_params": ref, "models": [{"nonzero": 900, "loss_pt": 0.1},
                                                  {"nonzero": 100, "loss_pt": 9.0}]}) == "refuted"
    with pytest.raises(ValueError, match="ref_params must be a positive int"):
        claims.best_cut([], 0, 1.0)


def test_c12_capstone_rule_reaches_every_verdict():
    others = {"prune": [[300, 80.0], [100, 60.0]], "quantize": [[290, 85.0]]}
    assert _v("C12", {"student": [310, 86.0], "others": others}) == "supported"
    assert _v("C12", {"student": [310, 82.0], "others": others}) == "qualified"
    assert _v("C12", {"student": [310, 70.0], "others": others}) == "refuted"
    assert _v("C12", {"student": [50, 70.0], "others": others}) == "qualified"           # none that small
    with pytest.raises(ValueError, match=r"\[bytes, acc\] pair"):
        _v("C12", {"student": [310], "others": others})


def test_capstone_rules_are_registered_under_distinct_names():
    names = {(c, n) for c, n in ledger.rules() if n == "capstone"}
    assert names == {("C3", "capstone"), ("C12", "capstone"), ("C13", "capstone"), ("C14", "capstone")}
