"""Tests of slimlab.quantize: tensor math, calibration, STE, BN folding, PTQ, packed files, ONNX, rules."""
import math

import pytest

from slimlab import claims
import torch
import torch.nn as nn
import torch.nn.utils.parametrize as parametrize
from hypothesis import given, settings
from hypothesis import strategies as st

from slimlab import quantize as Q
from slimlab.models import build

FAST = settings(max_examples=40, deadline=None)


def _tensor(seed, shape, scale=1.0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale


# --------------------------------------------------------------------------- tensor level, by hand

def test_qrange_and_dtypes():
    assert Q.qrange(8, True) == (-127, 127)
    assert Q.qrange(8, False) == (0, 255)
    assert Q.qrange(2, True) == (-1, 1)
    assert Q.qrange(1, False) == (0, 1)
    assert Q.storage_dtype(4, True) == torch.int8 and Q.storage_dtype(8, False) == torch.uint8
    assert Q.storage_dtype(12, True) == torch.int16 and Q.storage_dtype(16, False) == torch.int32


def test_quantize_by_hand_asymmetric():
    x = torch.tensor([-1.0, 0.0, 0.5, 2.0])
    scale, zp = Q.qparams_from_range(torch.tensor(-1.0), torch.tensor(2.0), 2, symmetric=False)
    assert scale.item() == pytest.approx(1.0) and zp.item() == 1          # grid {-1, 0, 1, 2}
    q = Q.quantize_affine(x, scale, zp, 2, symmetric=False)
    torch.testing.assert_close(q, torch.tensor([0, 1, 1, 3], dtype=torch.uint8), atol=0, rtol=0)
    torch.testing.assert_close(Q.dequantize_affine(q, scale, zp), torch.tensor([-1.0, 0.0, 0.0, 2.0]),
                               atol=0, rtol=0)


def test_quantize_by_hand_symmetric_per_channel():
    w = torch.tensor([[1.0, -0.5, 0.2], [10.0, 3.0, -10.0]])
    lo, hi = Q.calibrate_range(w, "minmax", bits=3, axis=0)
    scale, zp = Q.qparams_from_range(lo, hi, 3, True)                    # qmax = 3
    torch.testing.assert_close(scale, torch.tensor([1 / 3, 10 / 3]), atol=0, rtol=0)
    q = Q.quantize_affine(w, scale, zp, 3, True, axis=0)
    torch.testing.assert_close(q, torch.tensor([[3, -2, 1], [3, 1, -3]], dtype=torch.int8), atol=0, rtol=0)


def test_zero_range_gets_unit_scale():
    s, z = Q.qparams_from_range(torch.tensor(0.0), torch.tensor(0.0), 8, True)
    assert s.item() == 1.0 and z.item() == 0


# --------------------------------------------------------------------------- properties (hypothesis)

@FAST
@given(seed=st.integers(0, 10_000), bits=st.integers(1, 16), symmetric=st.booleans(),
       per_channel=st.booleans(), mag=st.floats(1e-3, 1e3))
def test_roundtrip_error_within_half_step_and_codes_in_range(seed, bits, symmetric, per_channel, mag):
    if symmetric and bits == 1:
        symmetric = False
    x = _tensor(seed, (6, 5, 3), mag)
    axis = 1 if per_channel else None
    lo, hi = Q.calibrate_range(x, "minmax", bits=bits, symmetric=symmetric, axis=axis)
    scale, zp = Q.qparams_from_range(lo, hi, bits, symmetric)
    q = Q.quantize_affine(x, scale, zp, bits, symmetric, axis)
    qmin, qmax = Q.qrange(bits, symmetric)
    assert q.dtype == Q.storage_dtype(bits, symmetric)
    assert int(q.min()) >= qmin and int(q.max()) <= qmax
    err = (Q.dequantize_affine(q, scale, zp, axis) - x).abs()
    half = (scale / 2).view(1, -1, 1) if per_channel else scale / 2
    assert bool((err <= half * (1 + 1e-4) + 1e-6 * mag).all())


@FAST
@given(seed=st.integers(0, 10_000), axis=st.integers(-3, 2), bits=st.integers(2, 8))
def test_per_channel_shapes_and_axes(seed, axis, bits):
    x = _tensor(seed, (4, 7, 3))
    lo, hi = Q.calibrate_range(x, "minmax", bits=bits, axis=axis)
    assert lo.shape == (x.shape[axis],) and hi.shape == (x.shape[axis],)
    scale, zp = Q.qparams_from_range(lo, hi, bits, True)
    q = Q.quantize_affine(x, scale, zp, bits, True, axis)
    assert q.shape == x.shape
    # per-channel = per-tensor applied to each slice along the axis
    a = axis % 3
    for c in range(x.shape[a]):
        xs = x.select(a, c)
        qs = Q.quantize_affine(xs, scale[c], zp[c], bits, True)
        torch.testing.assert_close(q.select(a, c), qs, atol=0, rtol=0)


@FAST
@given(data=st.data(), bits=st.integers(1, 16))
def test_pack_unpack_exact(data, bits):
    n = data.draw(st.integers(0, 200))
    codes = torch.tensor(data.draw(st.lists(st.integers(0, 2 ** bits - 1), min_size=n, max_size=n)),
                         dtype=torch.int64)
    packed = Q.pack_bits(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(n * bits / 8)
    torch.testing.assert_close(Q.unpack_bits(packed, bits, n), codes, atol=0, rtol=0)


def test_pack_layout_two_and_four_per_byte():
    torch.testing.assert_close(Q.pack_bits(torch.tensor([1, 2, 15, 0]), 4),
                               torch.tensor([0x21, 0x0F], dtype=torch.uint8), atol=0, rtol=0)
    torch.testing.assert_close(Q.pack_bits(torch.tensor([1, 2, 3, 0]), 2),
                               torch.tensor([0b00111001], dtype=torch.uint8), atol=0, rtol=0)


@FAST
@given(seed=st.integers(0, 10_000), bits=st.integers(2, 8), symmetric=st.booleans())
def test_ste_gradient_identity_inside_zero_outside(seed, bits, symmetric):
    x = _tensor(seed, (50,), 2.0).requires_grad_()
    scale, zp = Q.qparams_from_range(torch.tensor(-1.0), torch.tensor(1.0), bits, symmetric)
    y = Q.fake_quantize(x, scale, zp, bits, symmetric)
    y.sum().backward()
    qmin, qmax = Q.qrange(bits, symmetric)
    lo, hi = (qmin - zp.item()) * scale.item(), (qmax - zp.item()) * scale.item()
    inside = (x.detach() >= lo) & (x.detach() <= hi)
    torch.testing.assert_close(x.grad, inside.float(), atol=0, rtol=0)
    ref = Q.dequantize_affine(Q.quantize_affine(x.detach(), scale, zp, bits, symmetric), scale, zp)
    torch.testing.assert_close(y.detach(), ref, atol=0, rtol=0)


# --------------------------------------------------------------------------- calibration

def test_calibrators_on_outliers():
    x = torch.cat([torch.linspace(-1, 1, 10_001), torch.tensor([10.0])])
    lo, hi = Q.calibrate_range(x, "minmax")
    assert (lo.item(), hi.item()) == (-1.0, 10.0)
    lo, hi = Q.calibrate_range(x, "percentile", percentile=99.9)
    assert hi.item() < 1.01 and lo.item() > -1.01
    lo, hi = Q.calibrate_range(x, "mse", bits=4)
    assert hi.item() < 5.0                       # the MSE range clips the lone outlier
    err = {m: Q.quant_error(x, 4, calibrator=m)["rms"] for m in Q.CALIBRATORS}
    assert err["mse"] <= err["minmax"]


# --------------------------------------------------------------------------- modules and models

def test_weight_parametrization_keeps_original_and_quantizes():
    lin = nn.Linear(8, 4)
    w0 = lin.weight.detach().clone()
    parametrize.register_parametrization(lin, "weight", Q.WeightFakeQuant(3, granularity="per_channel"))
    torch.testing.assert_close(lin.parametrizations.weight.original, w0, atol=0, rtol=0)
    for row in lin.weight.detach():
        assert len(torch.unique(row)) <= 7                       # 3-bit symmetric: at most 7 levels
    parametrize.remove_parametrizations(lin, "weight", leave_parametrized=False)
    torch.testing.assert_close(lin.weight.detach(), w0, atol=0, rtol=0)


def test_act_fake_quant_needs_calibration_then_quantizes():
    a = Q.ActFakeQuant(4)
    with pytest.raises(RuntimeError, match="not calibrated"):
        a(torch.rand(3))
    a.observe()
    a(torch.linspace(0, 3, 100))
    a.freeze()
    assert a.scale.item() == pytest.approx(3 / 15) and int(a.zero_point) == 0
    assert len(torch.unique(a(torch.rand(1000) * 3))) <= 16


def test_fold_bn_matches_eval_outputs():
    torch.manual_seed(0)
    m = build("resnet8")
    for mod in m.modules():                       # non-trivial BN statistics
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    m.eval()
    f = Q.fold_bn(m)
    assert not any(isinstance(x, nn.BatchNorm2d) for x in f.modules())
    x = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(f(x), m(x), atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = build("resnet8", width=0.5).eval()
    x = (torch.rand(32, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    return model, x


def test_quantize_model_leaves_original_and_sets_bits(tiny):
    model, x = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    qm = Q.quantize_model(model, Q.QuantConfig(bits=4, edge_bits=8), x)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], atol=0, rtol=0)
    bits = Q.weight_bits(qm)
    names = Q.quantizable_layers(model)
    assert bits[names[0]] == 8 and bits[names[-1]] == 8 and bits[names[1]] == 4
    assert sum(isinstance(m, Q.ActFakeQuant) for m in qm.modules()) == len(names)


def test_8bit_ptq_close_to_float(tiny):
    model, x = tiny
    from slimlab.data import to_float
    qm = Q.quantize_model(model, Q.QuantConfig(bits=8), x)
    xf = to_float(x[:16])
    assert (qm(xf).argmax(1) == model(xf).argmax(1)).float().mean() >= 0.9


@pytest.mark.parametrize("bits,symmetric", [(8, True), (2, True), (4, False)])
def test_saved_file_reloads_and_agrees(tiny, tmp_path, bits, symmetric):
    model, x = tiny
    from slimlab.data import to_float
    from slimlab.measure import file_bytes
    qm = Q.quantize_model(model, Q.QuantConfig(bits=bits, symmetric=symmetric), x)
    path = tmp_path / f"m{bits}.slq"
    n = Q.save_quantized(qm, path)
    assert n == file_bytes(path)
    loaded = Q.load_quantized(path)
    xf = to_float(x)
    with torch.no_grad():
        agree = (loaded(xf).argmax(1) == qm(xf).argmax(1)).float().mean().item()
    assert agree >= 0.99
    # weights reloaded exactly equal the fake-quantized ones
    for name in Q.quantizable_layers(qm):
        if name.endswith(".layer"):
            torch.testing.assert_close(loaded.get_submodule(name).weight, qm.get_submodule(name).weight,
                                       atol=0, rtol=0)


def test_file_sizes_scale_with_bits(tiny, tmp_path):
    model, x = tiny
    n_w = sum(model.get_submodule(n).weight.numel() for n in Q.quantizable_layers(model))
    fp32 = Q.save_quantized(Q.fold_bn(model), tmp_path / "f.slq")
    sizes = {b: Q.save_quantized(Q.quantize_model(model, Q.QuantConfig(bits=b, act_bits=None)),
                                 tmp_path / f"{b}.slq") for b in (8, 4, 2)}
    assert fp32 - sizes[8] >= 3 * n_w - 2048     # 4 bytes -> 1 byte per weight (scales + header < 2 KB)
    assert sizes[8] - sizes[4] >= n_w // 2 - 8   # two 4-bit codes per byte
    assert sizes[4] - sizes[2] >= n_w // 4 - 8   # four 2-bit codes per byte
    reloaded = Q.load_quantized(tmp_path / "f.slq")
    xf = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(reloaded(xf), Q.fold_bn(model)(xf), atol=0, rtol=0)


def test_low_precision_storage_keeps_weights_on_grid():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Linear(6, 3))
    store = Q.LowPrecisionStorage(bits=4).attach(lin)
    with torch.no_grad():
        w = lin[0].weight                      # updates far below half a step, range unchanged
        w.sub_(1e-6 * torch.where(w == 0, -torch.ones_like(w), w.sign()))
    before = store._prev[id(lin[0])].clone()
    store(1, 1, lin)
    torch.testing.assert_close(lin[0].weight.detach(), before, atol=0, rtol=0)
    s = store.summary()
    assert s["updates"] == 18 and s["below_half"] == 1.0 and s["erased"] == 1.0
    assert int(store.counts.sum()) == 18


def test_stochastic_rounding_is_unbiased_on_average():
    w = torch.full((1, 4001), 0.3)
    w[0, 0] = 1.0                                  # 2 bits symmetric: grid {-1, 0, 1}, step 1
    rtn, _ = Q.LowPrecisionStorage(bits=2)._round(w)
    assert rtn[0, 1:].abs().max().item() == 0.0    # round-to-nearest erases 0.3 every time
    sr, _ = Q.LowPrecisionStorage(bits=2, rounding="stochastic", seed=0)._round(w)
    assert set(sr[0, 1:].unique().tolist()) == {0.0, 1.0}
    assert abs(sr[0, 1:].mean().item() - 0.3) < 0.03  # ... stochastic rounding keeps it on average


def test_onnx_int8_runs_and_agrees(tiny, tmp_path):
    pytest.importorskip("onnxruntime")
    model, x = tiny
    from slimlab.data import to_float
    fp = tmp_path / "m.onnx"
    assert Q.export_onnx(model, fp) > 0
    q8 = tmp_path / "m8.onnx"
    assert Q.quantize_onnx_int8(fp, q8, x) > 0
    s32, s8 = Q.ort_session(fp, 1), Q.ort_session(q8, 1)
    ref = model(to_float(x)).detach()
    torch.testing.assert_close(Q.ort_predict(s32, x), ref, atol=1e-4, rtol=1e-4)
    assert (Q.ort_predict(s8, x).argmax(1) == ref.argmax(1)).float().mean() >= 0.8
    assert Q.ort_latency(s8, 2, repeats=1, warmup=0).median_ms > 0
    assert set(Q.cpu_int8_features()) >= {"avx2", "avx512_vnni", "amx_int8"}


# --------------------------------------------------------------------------- bad inputs

def test_bad_bits():
    x = torch.randn(4)
    s, z = torch.tensor(1.0), torch.tensor(0)
    with pytest.raises(ValueError, match="bits must be in 1..16"):
        Q.quantize_affine(x, s, z, 0)
    with pytest.raises(ValueError, match="bits must be in 1..16"):
        Q.quantize_affine(x, s, z, 17)
    with pytest.raises(TypeError, match="bits must be an int"):
        Q.quantize_affine(x, s, z, 8.0)
    with pytest.raises(ValueError, match="symmetric quantization needs bits >= 2"):
        Q.qrange(1, True)
    with pytest.raises(ValueError, match="bits must be in 1..16"):
        Q.pack_bits(torch.tensor([0]), 17)  # packing.check_int: "bits must be an int in 1..16"


def test_bad_axis():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        Q.calibrate_range(x, axis=2)
    with pytest.raises(ValueError, match="out of range"):
        Q.quantize_affine(x, torch.ones(3), torch.zeros(3), 8, axis=-3)
    with pytest.raises(ValueError, match="scale has shape"):
        Q.quantize_affine(x, torch.ones(2), torch.zeros(2, dtype=torch.int32), 8, axis=1)
    with pytest.raises(TypeError, match="axis must be an int"):
        Q.quantize_affine(x, torch.ones(3), torch.zeros(3), 8, axis=1.0)


def test_empty_and_non_float_inputs():
    with pytest.raises(ValueError, match="empty"):
        Q.quantize_affine(torch.empty(0), torch.tensor(1.0), torch.tensor(0), 8)
    with pytest.raises(ValueError, match="empty"):
        Q.calibrate_range(torch.empty(0, 3))
    with pytest.raises(TypeError, match="floating-point"):
        Q.quantize_affine(torch.arange(4), torch.tensor(1.0), torch.tensor(0), 8)
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        Q.quantize_affine([1.0, 2.0], torch.tensor(1.0), torch.tensor(0), 8)
    with pytest.raises(TypeError, match="integer codes"):
        Q.dequantize_affine(torch.randn(3), torch.tensor(1.0), torch.tensor(0))


def test_bad_scale_and_ranges():
    with pytest.raises(ValueError, match="scale must be > 0"):
        Q.quantize_affine(torch.randn(3), torch.tensor(0.0), torch.tensor(0), 8)
    with pytest.raises(ValueError, match="lo must be <= its hi"):
        Q.qparams_from_range(torch.tensor(1.0), torch.tensor(0.0), 8)
    with pytest.raises(ValueError, match="same shape"):
        Q.qparams_from_range(torch.zeros(2), torch.ones(3), 8)


def test_bad_calibrator_granularity_percentile():
    x = torch.randn(10)
    with pytest.raises(ValueError, match="calibrator must be one of"):
        Q.calibrate_range(x, "entropy")
    with pytest.raises(ValueError, match="percentile must be a number in"):
        Q.calibrate_range(x, "percentile", percentile=10)
    with pytest.raises(ValueError, match="granularity must be one of"):
        Q.WeightFakeQuant(8, granularity="per_group")
    with pytest.raises(ValueError, match="rounding must be one of"):
        Q.LowPrecisionStorage(bits=4, rounding="floor")


def test_bad_pack_inputs():
    with pytest.raises(ValueError, match="codes must lie in"):
        Q.pack_bits(torch.tensor([4]), 2)
    with pytest.raises(TypeError, match="integer torch.Tensor"):
        Q.pack_bits(torch.tensor([1.0]), 2)
    with pytest.raises(TypeError, match="uint8"):
        Q.unpack_bits(torch.tensor([1]), 2, 1)
    with pytest.raises(ValueError, match="n must be an int"):
        Q.unpack_bits(torch.tensor([1], dtype=torch.uint8), 2, 5)


def test_bad_model_and_config(tiny, tmp_path):
    model, x = tiny
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        Q.quantize_model("resnet8")
    with pytest.raises(TypeError, match="config must be a QuantConfig"):
        Q.quantize_model(model, {"bits": 8})
    with pytest.raises(ValueError, match="needs calibration images"):
        Q.quantize_model(model, Q.QuantConfig(bits=8))
    with pytest.raises(ValueError, match="unknown layers"):
        Q.quantize_model(model, Q.QuantConfig(act_bits=None, layers=("nope",)))
    with pytest.raises(ValueError, match="bits must be in 1..16"):
        Q.quantize_model(model, Q.QuantConfig(bits=0, act_bits=None))
    with pytest.raises(ValueError, match="calibration images must be"):
        Q.calibrate(model, torch.empty(0, 3, 32, 32))
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        Q.fold_bn(None)
    with pytest.raises(FileNotFoundError):
        Q.load_quantized(tmp_path / "missing.slq")
    bad = tmp_path / "bad.slq"
    bad.write_bytes(b"NOPE0000")
    with pytest.raises(ValueError, match="not a slimlab quantized file"):
        Q.load_quantized(bad)
    with pytest.raises(ValueError, match="calib_x must be"):
        Q.quantize_onnx_int8(tmp_path / "x.onnx", tmp_path / "y.onnx", torch.empty(0))
    with pytest.raises(ValueError, match="batch_size must be"):
        Q.ort_latency(None, 0)


# --------------------------------------------------------------------------- rules on made-up metrics

def test_c4_rule_reaches_every_verdict():
    assert claims.c4_rule({"fp32_bytes": 1000, "int8_bytes": 260}) == "supported"
    assert claims.c4_rule({"fp32_bytes": 1000, "int8_bytes": 350}) == "qualified"
    assert claims.c4_rule({"fp32_bytes": 1000, "int8_bytes": 500}) == "refuted"
    with pytest.raises(ValueError, match="must be > 0"):
        claims.c4_rule({"fp32_bytes": 0, "int8_bytes": 1})


def _c5(fp=80.0, lp8=70.0, lp4=50.0, p8=79.5, p4=75.0):
    return {"fp32_train_acc": fp, "lowprec8_acc": lp8, "lowprec4_acc": lp4, "ptq8_acc": p8, "ptq4_acc": p4}


def test_c5_rule_reaches_every_verdict():
    assert claims.c5_rule(_c5()) == "supported"
    assert claims.c5_rule(_c5(lp8=79.8)) == "qualified"          # 8-bit storage trains fine, 4-bit does not
    assert claims.c5_rule(_c5(lp8=79.8, lp4=79.0)) == "refuted"  # low-precision training does not hurt
    assert claims.c5_rule(_c5(p8=70.0)) == "refuted"             # inference does not tolerate 8 bits
    assert claims.c5_rule(_c5(lp4=74.5, lp8=79.8)) == "refuted"  # 4-bit training no worse than 4-bit PTQ (+1)


def test_c14_rule_reaches_every_verdict():
    base = {"fp32_bytes": 1_090_000, "int8_bytes": 290_000, "flash_bytes": 1_048_576,
            "ort_fp32_ms_b64": 43.5, "ort_int8_ms_b64": 30.7}
    assert claims.c14_quant_rule(base) == "supported"
    assert claims.c14_quant_rule({**base, "ort_int8_ms_b64": 40.0}) == "qualified"
    assert claims.c14_quant_rule({**base, "int8_bytes": 1_100_000}) == "refuted"
    assert claims.c14_quant_rule({**base, "int8_bytes": 500_000}) == "refuted"


def test_rules_registered():
    from slimlab.ledger import rules
    r = rules()
    assert ("C4", "default") in r and ("C5", "default") in r and ("C14", "quantization") in r


# --------------------------------------------------------------------------- torchao PT2E route

def test_torchao_int8_bad_inputs():
    m = build("resnet8", width=0.25)
    with pytest.raises(TypeError, match="nn.Module"):
        Q.torchao_int8("resnet8", torch.zeros(4, 3, 32, 32))
    with pytest.raises(TypeError, match="image tensor"):
        Q.torchao_int8(m, torch.zeros(0, 3, 32, 32))
    with pytest.raises(ValueError, match="image batch"):
        Q.torchao_int8(m, torch.zeros(4, 3 * 32 * 32))
    with pytest.raises(ValueError, match="example_batch"):
        Q.torchao_int8(m, torch.zeros(4, 3, 32, 32), example_batch=0)


@pytest.mark.skipif(not Q.torchao_available(), reason="torchao not installed")
def test_torchao_int8_converted_graph_is_quantized_and_close():
    torch.manual_seed(0)
    m = build("resnet8", width=0.25).eval()
    x = torch.rand(64, 3, 32, 32)
    q = Q.torchao_int8(m, (x * 255).round().to(torch.uint8), compile=False)  # loaders give uint8
    # the converted graph carries int8 quantize/dequantize ops around the convolutions...
    targets = {str(n.target) for n in q.graph.nodes if n.op == "call_function"}
    assert any("quantize_per_channel" in t for t in targets), targets
    assert any("quantize_per_tensor" in t for t in targets), targets
    # ...runs any batch size (the export is dynamic in the batch dimension)...
    with torch.no_grad():
        ref, out, one = m(x), q(x), q(x[:1])
    assert out.shape == ref.shape and one.shape == (1, 10)
    # ...and stays close to the float model (8-bit error, not garbage)
    rel = (out - ref).norm() / ref.norm()
    assert rel < 0.1, float(rel)
