"""Tests of slimlab.deploy: ONNX Runtime int8 and fp32 against torch, torchao's PT2E and weight-only int8
routes, and that none of them changes global state (loggers, inductor's config)."""
import io
import logging

import pytest
import torch
import torch.nn as nn

from slimlab import deploy as D
from slimlab import quantize as Q
from slimlab.models import build, weight_layers


@pytest.fixture(scope="module")
def tiny():
    """A small untrained ResNet-8 and 32 uint8 images."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (32, 3, 32, 32), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    return build("resnet8", width=0.5).eval(), images


def test_onnx_fp32_equals_torch_and_int8_is_int8(tiny, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnx
    from slimlab.data import to_float
    model, x = tiny
    root = logging.getLogger()
    level = root.level
    fp, q8 = tmp_path / "m.onnx", tmp_path / "m8.onnx"
    n32, n8 = D.export_onnx(model, fp), D.quantize_onnx_int8(fp, q8, x)
    assert root.level == level                          # the quantizer's chatter was silenced for the call only
    assert n32 == fp.stat().st_size and n8 == q8.stat().st_size
    s32, s8 = D.ort_session(fp, 1), D.ort_session(q8, 1)
    ref = model(to_float(x)).detach()
    torch.testing.assert_close(D.ort_predict(s32, x), ref, atol=1e-4, rtol=1e-4)
    # the int8 graph holds int8 weights (every conv's) and stays near the float logits
    g = onnx.load(str(q8)).graph
    int8_inits = [i for i in g.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 4]
    assert len(int8_inits) == sum(isinstance(m, nn.Conv2d) for m in weight_layers(model).values())
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in g.node}
    out8 = D.ort_predict(s8, x)
    assert float((out8 - ref).norm() / ref.norm()) < 0.1
    lat = D.ort_latency(s8, 2, repeats=2, warmup=0)
    assert lat.batch_size == 2 and lat.repeats == 2 and lat.median_ms > 0
    assert D.ort_runner(s32)(torch.rand(3, 3, 32, 32))[0].shape == (3, 10)


def test_cpu_int8_features_come_from_machine_flags():
    from slimlab.machine import cpu_flags
    f = D.cpu_int8_features()
    assert tuple(f) == D.INT8_FLAGS
    assert all(f[k] == cpu_flags()[k] for k in f)


def test_quiet_logging_restores_levels():
    lg = logging.getLogger("slimlab-test-logger")
    lg.setLevel(logging.INFO)
    with D.quiet_logging(names=("slimlab-test-logger",)):
        assert lg.level == logging.ERROR
    assert lg.level == logging.INFO
    with pytest.raises(RuntimeError), D.quiet_logging(names=("slimlab-test-logger",)):
        raise RuntimeError("boom")
    assert lg.level == logging.INFO


def test_bad_inputs(tmp_path):
    m = build("resnet8", width=0.25)
    with pytest.raises(ValueError, match="calib_x is empty"):
        D.quantize_onnx_int8(tmp_path / "x.onnx", tmp_path / "y.onnx", torch.empty(0))
    with pytest.raises(ValueError, match="batch_size must be"):
        D.ort_latency(None, 0)
    with pytest.raises(TypeError, match="nn.Module"):
        D.export_onnx("resnet8", tmp_path / "x.onnx")
    with pytest.raises(TypeError, match="nn.Module"):
        D.torchao_int8("resnet8", torch.zeros(4, 3, 32, 32))
    with pytest.raises(TypeError, match="image tensor"):
        D.torchao_int8(m, torch.zeros(0, 3, 32, 32))
    with pytest.raises(ValueError, match="image batch"):
        D.torchao_int8(m, torch.zeros(4, 3 * 32 * 32))
    with pytest.raises(ValueError, match="example_batch"):
        D.torchao_int8(m, torch.zeros(4, 3, 32, 32), example_batch=0)
    with pytest.raises(TypeError, match="nn.Module"):
        D.torchao_weight_only_int8(None)


@pytest.mark.skipif(not D.torchao_available(), reason="torchao does not import")
def test_torchao_int8_converted_graph_is_quantized_and_close():
    import torch._inductor.config as inductor_config
    torch.manual_seed(0)
    m = build("resnet8", width=0.25).eval()
    x = torch.rand(64, 3, 32, 32)
    freezing = inductor_config.freezing
    q = D.torchao_int8(m, (x * 255).round().to(torch.uint8), compile=False)  # loaders give uint8
    targets = {str(n.target) for n in q.graph.nodes if n.op == "call_function"}
    assert any("quantize_per_channel" in t for t in targets), targets
    assert any("quantize_per_tensor" in t for t in targets), targets
    with torch.no_grad():
        ref, out, one = m(x), q(x), q(x[:1])
    assert out.shape == ref.shape and one.shape == (1, 10)   # the export is dynamic in the batch
    assert float((out - ref).norm() / ref.norm()) < 0.1
    D.torchao_int8(m, x[:8], compile=True)                    # compiles lazily: no global switch flipped
    assert inductor_config.freezing == freezing


@pytest.mark.skipif(not D.torchao_available(), reason="torchao does not import")
def test_torchao_weight_only_int8_matches_slimlab_8bit_closely(tiny):
    """torchao's one-liner quantizes every conv and linear weight to int8; its outputs are as close to the
    float model as slimlab's weight-only 8-bit PTQ (both are 8-bit symmetric weights, float activations)."""
    import torch._inductor.config as inductor_config
    model, x = tiny
    from slimlab.data import to_float
    folded = Q.fold_bn(model)
    def config():   # torchao's x86 module installs a fresh pre-grad pass object when imported: not ours
        return {k: v for k, v in inductor_config.get_config_copy().items() if k != "pre_grad_custom_pass"}
    before = config()
    ao = D.torchao_weight_only_int8(folded)
    assert config() == before                         # torchao's recommended_inductor_config_setter not run
    assert all(m.weight.qdata.dtype == torch.int8 for m in weight_layers(ao).values())
    xf = to_float(x)
    with torch.no_grad():
        ref, out_ao = folded(xf), ao(xf)
        out_sl = Q.quantize_model(model, Q.QuantConfig(bits=8, act_bits=None))(xf)
    err_ao, err_sl = (out_ao - ref).norm() / ref.norm(), (out_sl - ref).norm() / ref.norm()
    assert err_ao < 0.02 and err_sl < 0.02
    buf = io.BytesIO()
    torch.save(ao.state_dict(), buf)                                # it can be saved, and it is smaller
    buf32 = io.BytesIO()
    torch.save(folded.state_dict(), buf32)
    assert len(buf.getvalue()) < 0.6 * len(buf32.getvalue())
