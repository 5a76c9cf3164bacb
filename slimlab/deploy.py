"""Deployment: real int8 inference of a trained model on a CPU, through the maintained runtimes.

`slimlab.quantize` *simulates* integers (fake quantization) to study accuracy and write small files;
this module hands a float model to the runtimes that execute int8 arithmetic:

* ONNX Runtime — `export_onnx` (fp32 ONNX), `quantize_onnx_int8` (static int8: per-channel int8
  weights, uint8 activations calibrated on training images), `ort_session`, `ort_predict`,
  `ort_runner` (a callable for `measure.compare_latency`) and `ort_latency`;
* torchao — `torchao_int8` (PT2E static int8 with the x86 inductor quantizer, compiled by inductor)
  and `torchao_weight_only_int8` (torchao's one-line `quantize_(model, IntxWeightOnlyConfig(...))`,
  int8 weights, float activations);
* `cpu_int8_features` — which int8 dot-product instructions this CPU has (from `machine.cpu_flags`).

Nothing here changes global state: loggers and inductor options are set for the call only.
Units: sizes in bytes, latencies in ms.
"""
from __future__ import annotations

import copy
import logging
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn as nn

from .checks import check_int, check_model, check_tensor
from .files import atomic_path
from .machine import cpu_flags
from .measure import Latency, time_fn

INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


@contextmanager
def quiet_logging(level: int = logging.ERROR, names: tuple[str, ...] = ("",)) -> Iterator[None]:
    """Raise the level of the named loggers ('' = root) to `level` inside the block, then restore it."""
    loggers = [logging.getLogger(n or None) for n in names]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(level, lg.level))
    try:
        yield
    finally:
        for lg, lv in zip(loggers, old):
            lg.setLevel(lv)


def _check_images(x, what: str = "calib_x") -> torch.Tensor:
    check_tensor(x, what)
    if x.dim() != 4:
        raise ValueError(f"{what} must be an image batch (N, C, H, W), got shape {tuple(x.shape)}")
    return x


# --------------------------------------------------------------------------- ONNX Runtime


def export_onnx(model: nn.Module, path: str | os.PathLike, *, opset: int = 17) -> int:
    """Export an fp32 model (images (B, 3, 32, 32) in [0, 1], dynamic batch) to ONNX; returns bytes on disk.

    Uses the TorchScript exporter (`dynamo=False`): torch's default dynamo exporter needs the
    `onnxscript` package, which this course does not install."""
    check_model(model)
    m = copy.deepcopy(model).cpu().eval().to(memory_format=torch.contiguous_format)
    p = Path(path)
    with atomic_path(p, suffix=".tmp.onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.rand(1, 3, 32, 32),), str(tmp), dynamo=False, opset_version=opset,
                          input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
    return p.stat().st_size


def quantize_onnx_int8(fp32_path: str | os.PathLike, out_path: str | os.PathLike, calib_x: torch.Tensor, *,
                       per_channel: bool = True, batch_size: int = 64) -> int:
    """Static int8 quantization of an ONNX model with ONNX Runtime's tools (QDQ format, int8 weights
    per channel, uint8 activations, min-max calibration on uint8 images `calib_x`); returns bytes on disk."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .data import to_float
    _check_images(calib_x)
    check_int(batch_size, "batch_size", 1)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(range(0, len(calib_x), batch_size))

        def get_next(self):
            i = next(self.it, None)
            return None if i is None else {"images": to_float(calib_x[i:i + batch_size]).numpy()}

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as td, quiet_logging():
        pre, tmp = Path(td) / "pre.onnx", Path(td) / "q.onnx"
        quant_pre_process(str(fp32_path), str(pre))
        quantize_static(str(pre), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
        os.replace(tmp, out)
    return out.stat().st_size


def ort_session(path: str | os.PathLike, threads: int | None = None):
    """An ONNX Runtime CPU InferenceSession with `threads` intra-op threads (default: torch's count)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads() if threads is None else check_int(threads, "threads", 1)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_predict(session, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Logits (N, classes) of an ONNX Runtime session on uint8 images `x`."""
    from .data import to_float
    _check_images(x, "x")
    outs = [session.run(None, {"images": to_float(x[i:i + batch_size]).numpy()})[0]
            for i in range(0, len(x), batch_size)]
    return torch.from_numpy(np.concatenate(outs))


def ort_runner(session) -> Callable[[torch.Tensor], object]:
    """`lambda x: session.run(...)` on a float batch: an ONNX Runtime candidate for `measure.compare_latency`."""
    return lambda x: session.run(None, {"images": x.detach().cpu().contiguous().numpy()})


def ort_latency(session, batch_size: int = 1, *, repeats: int = 20, warmup: int = 3) -> Latency:
    """Latency (ms) of one ONNX Runtime forward pass on a random batch, via `measure.time_fn`
    (to compare several candidates fairly, give `ort_runner(session)` to `measure.compare_latency`)."""
    check_int(batch_size, "batch_size", 1)
    x = torch.rand((batch_size, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    run = ort_runner(session)
    return time_fn(lambda: run(x), repeats=repeats, warmup=warmup, batch_size=batch_size,
                   device="cpu (onnxruntime)")


def cpu_int8_features() -> dict[str, bool]:
    """Which int8 dot-product instructions this CPU has (`machine.cpu_flags`; all False if unknown):
    avx2 (8-bit multiply via vpmaddubsw, 16-bit intermediates), avx512_vnni / avx_vnni (one-instruction
    int8 dot products), amx_int8 (tile matrix multiply)."""
    flags = cpu_flags()
    return {k: bool(flags.get(k, False)) for k in INT8_FLAGS}


# --------------------------------------------------------------------------- torchao


def torchao_available() -> bool:
    """True when torchao (a core dependency of slimlab) imports with this torch."""
    try:
        # torchao registers an Enum with torch's pytree at import, which torch 2.14 logs as deprecated: not ours
        with quiet_logging(names=("torch.utils._pytree",)):
            import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401
    except Exception:  # ImportError, or a torchao built for another torch
        return False
    return True


def _need_torchao() -> None:
    if not torchao_available():
        raise ImportError("torchao does not import with this torch (it is a dependency of slimlab: "
                          "reinstall the pinned environment), or use the ONNX Runtime route: "
                          "export_onnx + quantize_onnx_int8")


def torchao_int8(model: nn.Module, calib_x: torch.Tensor, *, example_batch: int = 1,
                 batch_size: int = 256, compile: bool = True):
    """int8 static quantization of `model` through torch's own maintained route: torch.export, then
    torchao's PT2E flow with the x86 inductor quantizer (per-channel int8 weights, uint8 activations
    calibrated on `calib_x`), then `torch.compile` with inductor freezing (on during its calls only,
    `FrozenInductor`), which lowers the quantize/dequantize pairs to oneDNN int8 kernels. Returns the
    (compiled) quantized module, which takes float images in 0..1 like the model (`calib_x` may be
    uint8 0..255 as the loaders give them).

    The export traces the batch size of `example_batch` as dynamic, so any batch size runs. Compiling takes
    tens of seconds on a laptop CPU (a C++ compiler must be present); `compile=False` returns the converted
    graph that runs int8 arithmetic *simulated* in float (correct numbers, no speed-up).
    """
    check_model(model)
    from .data import to_float
    if not isinstance(calib_x, torch.Tensor) or calib_x.numel() == 0:
        raise TypeError("calib_x must be a non-empty image tensor (uint8 0..255 or float 0..1)")
    x = to_float(calib_x)
    _check_images(x)
    if isinstance(example_batch, bool) or not isinstance(example_batch, int) or example_batch < 1:
        raise ValueError(f"example_batch must be a positive int, got {example_batch!r}")
    _need_torchao()
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq

    model = copy.deepcopy(model).eval().cpu()
    example = x[:max(2, example_batch)]
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    exported = torch.export.export(model, (example,), dynamic_shapes=({0: batch},)).module()
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported, quantizer)
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            prepared(x[i:i + batch_size])
    converted = convert_pt2e(prepared)
    if not compile:
        return converted
    return FrozenInductor(torch.compile(converted))


class FrozenInductor(nn.Module):
    """A `torch.compile`d module called with inductor's `freezing` on, for the call only.

    Freezing constant-folds the weights so that inductor can pick the oneDNN int8 kernels (without it the
    int8 weight pre-packing is an unsupported op). Compilation is lazy, so the option must hold whenever a
    call may compile; `torch._inductor.config.patch` sets it inside each call and restores it after, leaving
    the global config as it was (`torch.compile(options={"freezing": True})` is not honoured for this)."""

    def __init__(self, compiled: nn.Module):
        super().__init__()
        self.compiled = compiled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch._inductor.config as inductor_config
        with inductor_config.patch(freezing=True):
            return self.compiled(x)


def torchao_weight_only_int8(model: nn.Module) -> nn.Module:
    """A copy of `model` (eval, CPU) whose Conv2d and Linear weights are int8 tensors made by torchao's own
    one-liner, `quantize_(model, IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0)))`:
    symmetric int8 weights, float activations — the counterpart of `quantize.quantize_model(model,
    QuantConfig(bits=8, act_bits=None))`. For a conv weight (C_out, C_in, kh, kw), torchao 0.18's
    PerAxis(0) keeps one scale per output channel *and kernel position* (blocks run along C_in).

    (`Int8WeightOnlyConfig`, the name one reaches for first, converts nn.Linear only: its int8 tensor
    has no convolution kernel.) Fold batch norm first (`quantize.fold_bn`) to compare like with like."""
    check_model(model)
    _need_torchao()
    from torchao.quantization import IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerAxis
    m = copy.deepcopy(model).eval().cpu()
    quantize_(m, IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0)),
              filter_fn=lambda mod, fqn: isinstance(mod, (nn.Conv2d, nn.Linear)))
    return m
