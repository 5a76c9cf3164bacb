import io

import pytest
import torch
import torch.nn as nn
import torch.nn.utils.parametrize as P

from slimlab.measure import count_macs, count_params, file_bytes, latency, serialized_bytes, time_fn
from slimlab import models
from slimlab.models import build


def test_count_params_by_hand():
    m = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        m[0].weight.zero_()
    c = count_params(m)
    assert c.total == 3 * 4 + 4 + 4 * 2
    assert c.nonzero == c.total - 12
    assert c.sparsity == pytest.approx(12 / 24)


def test_count_params_sees_through_parametrizations():
    class Half(nn.Module):
        def forward(self, w):
            return w * (torch.arange(w.numel()).reshape(w.shape) % 2)
    lin = nn.Linear(4, 4, bias=False)
    P.register_parametrization(lin, "weight", Half())
    c = count_params(lin)
    assert c.total == 16 and c.nonzero == 8


def test_macs_by_hand():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_macs(conv, (1, 3, 32, 32)) == 8 * 3 * 9 * 32 * 32
    assert count_macs(nn.Linear(10, 5), (2, 10)) == 2 * 10 * 5
    m = count_macs(build("resnet20"))
    assert 39e6 < m < 42e6  # ResNet-20 is about 41 M MACs (0.041 GFLOPs in the usual count)


def test_serialized_bytes_is_what_torch_save_writes(tmp_path):
    m = build("resnet8")
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    assert serialized_bytes(m) == len(buf.getvalue())
    rep = serialized_bytes(m, compressed=True)
    assert rep.raw_bytes == len(buf.getvalue()) and rep.zlib_bytes < rep.raw_bytes
    zeros = {"w": torch.zeros(10000)}
    assert serialized_bytes(zeros, compressed=True).zlib_bytes < 2000  # zeros compress away
    p = tmp_path / "m.pt"
    torch.save(m.state_dict(), p)
    assert file_bytes(p) == p.stat().st_size
    with pytest.raises(FileNotFoundError, match="no file"):
        file_bytes(tmp_path / "missing.pt")


def test_latency_and_time_fn_report_sane_numbers():
    lat = latency(build("resnet8", width=0.25), batch_size=2, repeats=3, warmup=1)
    assert lat.repeats == 3 and lat.batch_size == 2 and lat.threads >= 1
    assert 0 < lat.p10_ms <= lat.median_ms <= lat.p90_ms
    calls = []
    t = time_fn(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6 and t.median_ms >= 0


def test_measure_errors():
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        count_params([1, 2])
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        latency("resnet8")
    with pytest.raises(ValueError, match="input_size must be a tuple"):
        count_macs(nn.Linear(2, 2), [1, 2])
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        latency(nn.Linear(2, 2), batch_size=0)
    with pytest.raises(ValueError, match="repeats must be an int >= 1"):
        time_fn(lambda: None, repeats=0)
    with pytest.raises(TypeError, match="fn must be callable"):
        time_fn(3)


def test_latency_leaves_the_callers_model_as_it_was():
    m = build("resnet8", width=0.25).train()
    before = {k: (v.clone(), v.is_contiguous()) for k, v in m.state_dict().items()}
    latency(m, batch_size=2, repeats=2, warmup=1)
    assert m.training
    for k, v in m.state_dict().items():   # the old code switched every weight to channels_last in place
        assert v.is_contiguous() == before[k][1] and torch.equal(v, before[k][0]), k


def test_compare_latency_interleaves_restores_threads_and_reports_spread():
    from slimlab.measure import compare_latency
    old = torch.get_num_threads()
    calls = []
    seen_threads = []

    def fake(tag):
        def f(x):
            calls.append(tag)
            seen_threads.append(torch.get_num_threads())
            return x
        return f
    small = build("resnet8", width=0.25).train()
    res = compare_latency({"a": fake("a"), "b": fake("b"), "net": small}, batch_size=2,
                          rounds=4, repeats=3, warmup=1, threads=1)
    assert torch.get_num_threads() == old and small.training
    assert set(seen_threads) == {1}
    assert set(res) == {"a", "b", "net"}
    for r in res.values():
        assert r.rounds == 4 and r.repeats == 3 and r.threads == 1 and len(r.rounds_ms) == 4
        assert r.min_ms <= r.q1_ms <= r.median_ms <= r.q3_ms <= r.max_ms and r.iqr_ms >= 0
    # after the warm-ups, the rounds interleave: a's 3 calls, b's 3, then b first in round 2 …
    timed = calls[2:]
    assert timed[:6] == ["a"] * 3 + ["b"] * 3 and timed[6:12] == ["b"] * 3 + ["a"] * 3
    assert calls.count("a") == 1 + 4 * 3
    # the network (a real forward pass) is slower than an identity callable
    assert res["net"].median_ms > res["a"].median_ms
    torch.set_num_threads(old)


def test_compare_latency_restores_threads_when_a_candidate_fails():
    from slimlab.measure import compare_latency
    old = torch.get_num_threads()

    def boom(x):
        raise RuntimeError("candidate failed")
    with pytest.raises(RuntimeError, match="candidate failed"):
        compare_latency({"x": boom}, threads=1 if old > 1 else 2, warmup=0)
    assert torch.get_num_threads() == old
    with pytest.raises(TypeError, match="non-empty dict"):
        compare_latency({})
    with pytest.raises(TypeError, match="nn.Module or callables"):
        compare_latency({"x": 3})
    with pytest.raises(ValueError, match="rounds must be an int >= 1"):
        compare_latency({"x": boom}, rounds=0)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        compare_latency({"x": boom}, batch_size=0)


# --------------------------------------------------------------------------- activation memory (moved from combine)

def test_activation_memory_on_a_hand_computable_net():
    from slimlab.measure import activation_memory
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(inplace=True),
                        nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    am = activation_memory(net, (1, 1, 8, 8), bytes_per_value=4)
    # conv: 64 in + 128 out; in-place ReLU: 128 (in = out); conv: 128 + 64; flatten: a view, 64; linear: 64 + 3
    assert am.per_layer == [("0", 192 * 4), ("1", 128 * 4), ("2", 192 * 4), ("3", 64 * 4), ("4", 67 * 4)]
    assert am.peak_bytes == 768 and am.peak_layer == "0"
    assert activation_memory(net, (1, 1, 8, 8), bytes_per_value=1).peak_bytes == 192


def test_activation_memory_counts_the_residual_input():
    from slimlab.measure import activation_memory
    m = models.build("resnet8", width=0.25)          # 4 channels in stage 1: 4*32*32 = 4096 values
    am = activation_memory(m, bytes_per_value=1)
    rows = dict(am.per_layer)
    assert rows["layer1.0.conv1"] == 2 * 4096          # its input is the block's input: counted once
    assert rows["layer1.0.conv2"] == 3 * 4096          # block input held + conv2 in + out
    assert am.peak_bytes == 3 * 4096
    with pytest.raises(ValueError, match="bytes_per_value must be >= 1"):
        activation_memory(m, bytes_per_value=0)
    with pytest.raises(ValueError, match="input_size"):
        activation_memory(m, input_size=[1, 3, 32, 32])
