"""Quantization from scratch: affine tensors, calibration, fake quantization, PTQ/QAT, packed files, int8 runtime.

Layers of this module, from the bottom up:

* tensor level — `qrange`, `qparams_from_range`, `quantize_affine` / `dequantize_affine` (explicit
  scale and zero-point; symmetric or asymmetric; per-tensor or per-channel via `axis`; 1–16 bits);
* calibration — `calibrate_range` with 'minmax', 'percentile' or 'mse';
* fake quantization — `fake_quantize` (straight-through estimator), `WeightFakeQuant` (a
  `torch.nn.utils.parametrize` parametrization on a weight) and `ActFakeQuant` (a small module);
* models — `fold_bn`, `QuantConfig`, `quantize_model` (PTQ), `calibrate`; QAT is `train.fit` on
  the result (no second loop);
* storage — `pack_bits` / `unpack_bits`, `save_quantized` / `load_quantized` (a real file with
  packed integer weights plus scales and zero-points);
* deployment — real int8 inference through ONNX Runtime (`export_onnx`, `quantize_onnx_int8`,
  `ort_session`, `ort_predict`, `ort_latency`) and `cpu_int8_features`;
* claim C5 — `LowPrecisionStorage`, an `on_step` hook that keeps weights on a b-bit grid during
  training (round-to-nearest or stochastic) and records |update| / step;
* rules for C4, C5 and the quantization part of C14.

Units: sizes in bytes, latencies in ms, accuracies in %, widths in bits.
"""
from __future__ import annotations

import copy
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.utils.parametrize as parametrize

from .files import atomic_path, read_container, write_container
from .packing import pack_bits, unpack_bits
from .measure import Latency, time_fn

GRANULARITIES = ("per_tensor", "per_channel")
CALIBRATORS = ("minmax", "percentile", "mse")
ROUNDINGS = ("nearest", "stochastic")
FILE_MAGIC = b"SLQ1"

# --------------------------------------------------------------------------- validation helpers


def _check_bits(bits, symmetric: bool = False, name: str = "bits") -> int:
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"{name} must be an int in 1..16, got {type(bits).__name__}")
    if not 1 <= bits <= 16:
        raise ValueError(f"{name} must be in 1..16, got {bits}")
    if symmetric and bits < 2:
        raise ValueError(f"symmetric quantization needs {name} >= 2 (1 bit has no signed grid "
                         f"around zero); use symmetric=False for 1 bit")
    return bits


def _check_float(x, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty; quantization needs at least one value")
    return x


def _check_axis(axis, x: torch.Tensor) -> int | None:
    if axis is None:
        return None
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(f"axis must be an int or None, got {type(axis).__name__}")
    if not -x.dim() <= axis < x.dim():
        raise ValueError(f"axis {axis} is out of range for a tensor with {x.dim()} dims; "
                         f"allowed: {-x.dim()}..{x.dim() - 1} or None (per-tensor)")
    return axis % x.dim()


def _check_choice(value, allowed: tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def _bcast(t: torch.Tensor, x: torch.Tensor, axis: int | None) -> torch.Tensor:
    """Reshape a per-channel vector `t` so it broadcasts along `axis` of `x`."""
    if axis is None or t.dim() == 0:
        return t
    shape = [1] * x.dim()
    shape[axis] = -1
    return t.reshape(shape)


def _per_channel_view(x: torch.Tensor, axis: int | None) -> torch.Tensor:
    """(C, N) view of `x` with channels along `axis`; (1, N) when per-tensor."""
    if axis is None:
        return x.reshape(1, -1)
    return x.movedim(axis, 0).reshape(x.shape[axis], -1)


# --------------------------------------------------------------------------- tensor level


def qrange(bits: int, symmetric: bool) -> tuple[int, int]:
    """Integer code range (qmin, qmax) for `bits`: symmetric is narrow signed [-(2^(b-1)-1), 2^(b-1)-1]
    with zero-point 0; asymmetric is unsigned [0, 2^b - 1]."""
    _check_bits(bits, symmetric)
    if symmetric:
        q = 2 ** (bits - 1) - 1
        return -q, q
    return 0, 2 ** bits - 1


def storage_dtype(bits: int, symmetric: bool) -> torch.dtype:
    """Smallest torch integer dtype holding the codes (before bit packing)."""
    _check_bits(bits, symmetric)
    if bits <= 8:
        return torch.int8 if symmetric else torch.uint8
    if symmetric or bits <= 15:
        return torch.int16
    return torch.int32


def qparams_from_range(lo: torch.Tensor, hi: torch.Tensor, bits: int, symmetric: bool = True
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale (float32) and zero-point (int32) mapping the range [lo, hi] onto the `bits` grid.

    The range is widened to include 0, so 0 is represented exactly; a zero-width range gets scale 1.
    Shapes follow `lo`/`hi` (scalar per-tensor, (C,) per-channel)."""
    _check_bits(bits, symmetric)
    lo = torch.as_tensor(lo, dtype=torch.float32)
    hi = torch.as_tensor(hi, dtype=torch.float32)
    if lo.shape != hi.shape:
        raise ValueError(f"lo and hi must have the same shape, got {tuple(lo.shape)} and {tuple(hi.shape)}")
    if bool((lo > hi).any()):
        raise ValueError("every lo must be <= its hi")
    qmin, qmax = qrange(bits, symmetric)
    if symmetric:
        amax = torch.maximum(lo.abs(), hi.abs())
        scale = amax / qmax
        zp = torch.zeros_like(scale, dtype=torch.int32)
    else:
        lo, hi = torch.clamp(lo, max=0.0), torch.clamp(hi, min=0.0)
        scale = (hi - lo) / (qmax - qmin)
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        zp = torch.clamp(torch.round(qmin - lo / safe), qmin, qmax).to(torch.int32)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return scale, zp


def _check_qparams(x, scale, zero_point, axis):
    if not isinstance(scale, torch.Tensor) or not isinstance(zero_point, torch.Tensor):
        raise TypeError("scale and zero_point must be torch tensors")
    if not bool((scale > 0).all()):
        raise ValueError("scale must be > 0 everywhere")
    want = () if axis is None else (x.shape[axis],)
    for name, t in (("scale", scale), ("zero_point", zero_point)):
        if t.dim() > 0 and tuple(t.shape) != want:
            raise ValueError(f"{name} has shape {tuple(t.shape)}; with axis={axis} it must be "
                             f"{want if want else 'a scalar'}")
        if axis is None and t.numel() != 1:
            raise ValueError(f"{name} must be a scalar for per-tensor quantization (axis=None)")


def quantize_affine(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, bits: int,
                    symmetric: bool = True, axis: int | None = None) -> torch.Tensor:
    """Integer codes clamp(round(x / scale) + zero_point, qmin, qmax) in `storage_dtype(bits, symmetric)`.

    `axis` None = per-tensor (scalar scale/zero-point); an int = per-channel along that axis."""
    _check_float(x)
    _check_bits(bits, symmetric)
    axis = _check_axis(axis, x)
    _check_qparams(x, scale, zero_point, axis)
    qmin, qmax = qrange(bits, symmetric)
    xf = x.double() if x.dtype == torch.float64 else x.float()
    s = _bcast(scale.to(xf.device, xf.dtype), xf, axis)
    z = _bcast(zero_point.to(xf.device, xf.dtype), xf, axis)
    q = torch.clamp(torch.round(xf / s) + z, qmin, qmax)
    return q.to(storage_dtype(bits, symmetric))


def dequantize_affine(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                      axis: int | None = None) -> torch.Tensor:
    """Float32 values (q - zero_point) * scale of integer codes `q` (per-channel along `axis`)."""
    if not isinstance(q, torch.Tensor):
        raise TypeError(f"q must be a torch.Tensor, got {type(q).__name__}")
    if q.is_floating_point() or q.dtype == torch.bool:
        raise TypeError(f"q must hold integer codes, got dtype {q.dtype}")
    if q.numel() == 0:
        raise ValueError("q is empty")
    axis = _check_axis(axis, q)
    _check_qparams(q, scale, zero_point, axis)
    s = _bcast(scale.to(q.device, torch.float32), q, axis)
    z = _bcast(zero_point.to(q.device, torch.float32), q, axis)
    return (q.float() - z) * s


def quant_error(x: torch.Tensor, bits: int, symmetric: bool = True, axis: int | None = None,
                calibrator: str = "minmax") -> dict[str, float]:
    """Round-trip error of quantizing `x`: {'rms', 'max', 'sqnr_db', 'clipped' (fraction)}."""
    lo, hi = calibrate_range(x, calibrator, bits=bits, symmetric=symmetric, axis=axis)
    scale, zp = qparams_from_range(lo, hi, bits, symmetric)
    xq = dequantize_affine(quantize_affine(x, scale, zp, bits, symmetric, axis), scale, zp, axis)
    err = (xq - x.float())
    qmin, qmax = qrange(bits, symmetric)
    a = _check_axis(axis, x)
    lo_g = _bcast((qmin - zp.float()) * scale, x, a)
    hi_g = _bcast((qmax - zp.float()) * scale, x, a)
    clipped = ((x < lo_g) | (x > hi_g)).float().mean().item()
    sig = x.float().pow(2).mean().item()
    mse = err.pow(2).mean().item()
    return {"rms": mse ** 0.5, "max": err.abs().max().item(),
            "sqnr_db": 10 * np.log10(sig / mse) if mse > 0 else float("inf"), "clipped": clipped}


# --------------------------------------------------------------------------- calibration


def calibrate_range(x: torch.Tensor, method: str = "minmax", *, bits: int = 8, symmetric: bool = True,
                    axis: int | None = None, percentile: float = 99.99, grid: int = 41
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Range (lo, hi) to quantize `x` with: 'minmax' (the extremes), 'percentile' (the `percentile`-th
    and (100-`percentile`)-th percentiles) or 'mse' (the shrunken min-max range, among `grid`
    candidates, with the least squared round-trip error at `bits`). Scalars per-tensor, (C,) per-channel."""
    _check_float(x)
    _check_choice(method, CALIBRATORS, "calibrator")
    _check_bits(bits, symmetric)
    axis = _check_axis(axis, x)
    if not isinstance(percentile, (int, float)) or isinstance(percentile, bool) or not 50 < percentile <= 100:
        raise ValueError(f"percentile must be a number in (50, 100], got {percentile!r}")
    v = _per_channel_view(x.detach().float(), axis)                 # (C, N)
    if method == "percentile":
        if v.shape[1] > 2 ** 20:                                    # torch.quantile's size limit
            idx = torch.randperm(v.shape[1], generator=torch.Generator().manual_seed(0))[: 2 ** 20]
            v = v[:, idx]
        q = torch.tensor([(100 - percentile) / 100, percentile / 100])
        lo, hi = torch.quantile(v, q.to(v.device), dim=1)
    else:
        lo, hi = v.min(dim=1).values, v.max(dim=1).values
        if method == "mse":
            lo, hi = _mse_range(v, lo, hi, bits, symmetric, grid)
    if axis is None:
        lo, hi = lo[0], hi[0]
    return lo.cpu(), hi.cpu()


def _mse_range(v, lo, hi, bits, symmetric, grid):
    """Per-row shrink factor of [lo, hi] in [1/grid, 1] with the least round-trip MSE."""
    best = torch.full_like(lo, float("inf"))
    best_lo, best_hi = lo.clone(), hi.clone()
    qmin, qmax = qrange(bits, symmetric)
    for f in torch.linspace(1.0 / grid, 1.0, grid).tolist():
        l, h = lo * f, hi * f
        scale, zp = qparams_from_range(l.cpu(), h.cpu(), bits, symmetric)
        scale, zp = scale.to(v.device)[:, None], zp.to(v.device).float()[:, None]
        dq = (torch.clamp(torch.round(v / scale) + zp, qmin, qmax) - zp) * scale
        err = (dq - v).pow(2).mean(dim=1)
        better = err < best
        best = torch.where(better, err, best)
        best_lo = torch.where(better, l, best_lo)
        best_hi = torch.where(better, h, best_hi)
    return best_lo, best_hi


# --------------------------------------------------------------------------- fake quantization


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, bits: int,
                  symmetric: bool = True, axis: int | None = None) -> torch.Tensor:
    """dequantize(quantize(x)) in the forward pass; straight-through gradient in the backward pass:
    identity inside the representable range [(qmin-zp)*scale, (qmax-zp)*scale], zero outside.

    Same values as `dequantize_affine(quantize_affine(...))`, computed in float without integer tensors."""
    _check_float(x)
    _check_bits(bits, symmetric)
    a = _check_axis(axis, x)
    _check_qparams(x, scale, zero_point, a)
    qmin, qmax = qrange(bits, symmetric)
    s = _bcast(scale.to(x.device, x.dtype), x, a)
    z = _bcast(zero_point.to(x.device, x.dtype), x, a)
    with torch.no_grad():                                   # in place: one buffer, few passes
        dq = (x / s).round_().add_(z).clamp_(qmin, qmax).sub_(z).mul_(s)
    if not (torch.is_grad_enabled() and x.requires_grad):
        return dq
    xc = torch.clamp(x, (qmin - z) * s, (qmax - z) * s)     # gradient 1 inside the range, 0 outside
    return xc + (dq - xc).detach()


class WeightFakeQuant(nn.Module):
    """Parametrization: weight -> fake-quantized weight, with its range calibrated from the weight itself.

    Register with `parametrize.register_parametrization(layer, "weight", WeightFakeQuant(4))`; the float
    weight stays at `layer.parametrizations.weight.original` (QAT updates it through the STE)."""

    def __init__(self, bits: int = 8, symmetric: bool = True, granularity: str = "per_channel",
                 calibrator: str = "minmax", axis: int = 0, percentile: float = 99.99):
        super().__init__()
        self.bits = _check_bits(bits, symmetric)
        self.symmetric = bool(symmetric)
        self.granularity = _check_choice(granularity, GRANULARITIES, "granularity")
        self.calibrator = _check_choice(calibrator, CALIBRATORS, "calibrator")
        self.axis, self.percentile = axis, percentile

    def qparams(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int | None]:
        """(scale, zero_point, axis) for weight `w` (no gradient flows through them)."""
        axis = self.axis if self.granularity == "per_channel" else None
        with torch.no_grad():
            lo, hi = calibrate_range(w, self.calibrator, bits=self.bits, symmetric=self.symmetric,
                                     axis=axis, percentile=self.percentile)
            scale, zp = qparams_from_range(lo, hi, self.bits, self.symmetric)
        return scale.to(w.device), zp.to(w.device), axis

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        scale, zp, axis = self.qparams(w)
        return fake_quantize(w, scale, zp, self.bits, self.symmetric, axis)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, symmetric={self.symmetric}, {self.granularity}, {self.calibrator}"


class ActFakeQuant(nn.Module):
    """Fake-quantizes activations with a per-tensor range found by calibration.

    Observing (after `observe()`): passes x through and records its range and a sample of values.
    After `freeze()`: fake-quantizes with the frozen scale / zero-point (buffers in the state dict)."""

    def __init__(self, bits: int = 8, calibrator: str = "minmax", symmetric: bool = False,
                 percentile: float = 99.99, samples_per_batch: int = 4096, max_samples: int = 2 ** 18):
        super().__init__()
        self.bits = _check_bits(bits, symmetric)
        self.calibrator = _check_choice(calibrator, CALIBRATORS, "calibrator")
        self.symmetric, self.percentile = bool(symmetric), percentile
        self.samples_per_batch, self.max_samples = samples_per_batch, max_samples
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("zero_point", torch.tensor(0, dtype=torch.int32))
        self.register_buffer("calibrated", torch.tensor(False))
        self.observing = False
        self._lo = self._hi = None
        self._samples: list[torch.Tensor] = []
        self._gen = torch.Generator().manual_seed(0)

    def observe(self) -> None:
        """Start recording ranges (forgets earlier observations)."""
        self.observing, self._lo, self._hi, self._samples = True, None, None, []
        self._gen = torch.Generator().manual_seed(0)

    def freeze(self) -> None:
        """Turn the observations into scale / zero-point and start fake-quantizing."""
        if self._lo is None:
            raise RuntimeError("ActFakeQuant saw no data while observing; run calibration images through the model")
        if self.calibrator == "minmax":
            lo, hi = self._lo, self._hi
        else:
            sample = torch.cat(self._samples)[: self.max_samples]
            lo, hi = calibrate_range(sample, self.calibrator, bits=self.bits, symmetric=self.symmetric,
                                     percentile=self.percentile)
            lo, hi = torch.maximum(lo, self._lo), torch.minimum(hi, self._hi)
        scale, zp = qparams_from_range(lo, hi, self.bits, self.symmetric)
        self.scale.copy_(scale)
        self.zero_point.copy_(zp)
        self.calibrated.fill_(True)
        self.observing, self._samples = False, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            with torch.no_grad():
                flat = x.detach().reshape(-1).float().cpu()
                lo, hi = flat.min(), flat.max()
                self._lo = lo if self._lo is None else torch.minimum(self._lo, lo)
                self._hi = hi if self._hi is None else torch.maximum(self._hi, hi)
                if self.calibrator != "minmax" and sum(len(s) for s in self._samples) < self.max_samples:
                    k = min(self.samples_per_batch, flat.numel())
                    self._samples.append(flat[torch.randperm(flat.numel(), generator=self._gen)[:k]])
            return x
        if not bool(self.calibrated):
            raise RuntimeError("ActFakeQuant is not calibrated: run slimlab.quantize.calibrate(model, images) first")
        return fake_quantize(x, self.scale, self.zero_point, self.bits, self.symmetric, None)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, {self.calibrator}, scale={self.scale.item():.4g}, zp={int(self.zero_point)}"


class QuantizedLayer(nn.Module):
    """A conv / linear layer whose input goes through an `ActFakeQuant` first."""

    def __init__(self, layer: nn.Module, act: ActFakeQuant):
        super().__init__()
        self.act, self.layer = act, layer

    def forward(self, x):
        return self.layer(self.act(x))


# --------------------------------------------------------------------------- models


@torch.no_grad()
def fold_bn(model: nn.Module) -> nn.Module:
    """A copy of `model` (eval mode) with every BatchNorm2d that directly follows a Conv2d among the
    same parent's children folded into that conv (weight scaled per channel, bias added) and
    replaced by Identity. Outputs equal the original's in eval mode up to float rounding."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    m = copy.deepcopy(model).eval()
    for parent in list(m.modules()):
        kids = list(parent.named_children())
        for (cname, conv), (bname, bn) in zip(kids, kids[1:]):
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            if parametrize.is_parametrized(conv):
                raise ValueError(f"fold BN before quantizing: {cname} is already parametrized")
            if bn.running_var is None or bn.num_features != conv.out_channels:
                continue
            g = bn.weight if bn.affine else torch.ones_like(bn.running_var)
            b = bn.bias if bn.affine else torch.zeros_like(bn.running_var)
            k = g / torch.sqrt(bn.running_var + bn.eps)                      # (C_out,)
            w = conv.weight * k.view(-1, *([1] * (conv.weight.dim() - 1)))
            bias0 = conv.bias if conv.bias is not None else torch.zeros_like(k)
            conv.weight = nn.Parameter(w)
            conv.bias = nn.Parameter(b + (bias0 - bn.running_mean) * k)
            setattr(parent, bname, nn.Identity())
    return m


@dataclass
class QuantConfig:
    """How to quantize a model. Weights: `bits`, `granularity`, `symmetric`, `weight_calibrator`;
    `edge_bits` (if set) for the first and last quantized layers. Activations (inputs of the quantized
    layers): `act_bits` (None = weight-only), `act_calibrator`. `layers`: names of the Conv2d/Linear
    layers to quantize (None = all). `fold_bn`: fold batch norm into convs first."""
    bits: int = 8
    granularity: str = "per_channel"
    symmetric: bool = True
    weight_calibrator: str = "minmax"
    edge_bits: int | None = None
    act_bits: int | None = 8
    act_calibrator: str = "minmax"
    percentile: float = 99.99
    layers: tuple[str, ...] | None = None
    fold_bn: bool = True

    def validate(self) -> None:
        _check_bits(self.bits, self.symmetric)
        if self.edge_bits is not None:
            _check_bits(self.edge_bits, self.symmetric, "edge_bits")
        if self.act_bits is not None:
            _check_bits(self.act_bits, False, "act_bits")
        _check_choice(self.granularity, GRANULARITIES, "granularity")
        _check_choice(self.weight_calibrator, CALIBRATORS, "weight_calibrator")
        _check_choice(self.act_calibrator, CALIBRATORS, "act_calibrator")
        if self.layers is not None and (isinstance(self.layers, str) or
                                        not all(isinstance(n, str) for n in self.layers)):
            raise TypeError("layers must be a tuple of layer names or None")


def quantizable_layers(model: nn.Module) -> list[str]:
    """Names of the Conv2d / Linear layers of `model`, in order."""
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def quantize_model(model: nn.Module, config: QuantConfig | None = None, calib_x: torch.Tensor | None = None,
                   *, batch_size: int = 256, progress: bool = False) -> nn.Module:
    """A fake-quantized copy of `model` (the original is untouched): BN folded (if asked), a
    `WeightFakeQuant` parametrization on each chosen layer's weight and, if `config.act_bits`, an
    `ActFakeQuant` on its input calibrated on uint8 images `calib_x` (training images)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    cfg = config if config is not None else QuantConfig()
    if not isinstance(cfg, QuantConfig):
        raise TypeError(f"config must be a QuantConfig, got {type(cfg).__name__}")
    cfg.validate()
    if cfg.act_bits is not None and calib_x is None:
        raise ValueError("activation quantization (act_bits set) needs calibration images calib_x; "
                         "pass training images or set act_bits=None")
    m = fold_bn(model) if cfg.fold_bn else copy.deepcopy(model).eval()
    m = _wrap(m, cfg)
    if cfg.act_bits is not None:
        calibrate(m, calib_x, batch_size=batch_size, progress=progress)
    return m


def _wrap(m: nn.Module, cfg: QuantConfig, weights: bool = True) -> nn.Module:
    names = quantizable_layers(m)
    targets = names if cfg.layers is None else list(cfg.layers)
    unknown = [n for n in targets if n not in names]
    if unknown:
        raise ValueError(f"unknown layers {unknown}; quantizable layers are {names}")
    edges = {targets[0], targets[-1]} if targets and cfg.edge_bits is not None else set()
    for name in targets:
        layer = m.get_submodule(name)
        bits = cfg.edge_bits if name in edges else cfg.bits
        if weights:
            parametrize.register_parametrization(layer, "weight", WeightFakeQuant(
                bits, cfg.symmetric, cfg.granularity, cfg.weight_calibrator, 0, cfg.percentile))
        if cfg.act_bits is not None:
            parent_name, _, child = name.rpartition(".")
            parent = m.get_submodule(parent_name) if parent_name else m
            setattr(parent, child, QuantizedLayer(layer, ActFakeQuant(cfg.act_bits, cfg.act_calibrator,
                                                                      percentile=cfg.percentile)))
    m.quant_config = cfg
    return m


@torch.no_grad()
def calibrate(model: nn.Module, x: torch.Tensor, *, batch_size: int = 256, progress: bool = False) -> nn.Module:
    """Run uint8 images `x` through `model` with every `ActFakeQuant` observing, then freeze them."""
    from tqdm.auto import tqdm

    from .data import to_float
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or len(x) == 0:
        raise ValueError("calibration images must be a non-empty (N, C, H, W) tensor")
    acts = [a for a in model.modules() if isinstance(a, ActFakeQuant)]
    if not acts:
        return model
    for a in acts:
        a.observe()
    model.eval()
    dev = next(model.parameters()).device
    for i in tqdm(range(0, len(x), batch_size), desc="calibrating", disable=not progress):
        model(to_float(x[i:i + batch_size]).to(dev))
    for a in acts:
        a.freeze()
    return model


def weight_bits(model: nn.Module) -> dict[str, int]:
    """{layer name: weight bits} of the fake-quantized layers of `model`."""
    out = {}
    for name, mod in model.named_modules():
        if parametrize.is_parametrized(mod, "weight"):
            for p in mod.parametrizations.weight:
                if isinstance(p, WeightFakeQuant):
                    out[name.removesuffix(".layer")] = p.bits
    return out


# --------------------------------------------------------------------------- packing and files


_NP = {torch.float32: "<f4", torch.int32: "<i4", torch.int64: "<i8", torch.uint8: "u1", torch.bool: "?"}


def save_quantized(model: nn.Module, path: str | os.PathLike, *, float_bits: int = 32) -> int:
    """Write a fake-quantized model (from `quantize_model`) as a real file: each quantized weight as
    packed integer codes (`bits` per weight) plus its float32 scales and (asymmetric only) zero-points,
    every other tensor (biases, activation ranges, buffers) as float32 — or, with `float_bits=32` and a
    model without quantizers, the plain fp32 baseline in the same container. Returns bytes on disk."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if float_bits != 32:
        raise ValueError("only float32 is supported for the non-quantized tensors (float_bits=32)")
    cfg = getattr(model, "quant_config", None)
    arch = getattr(model, "arch", None)
    blobs, offset, tensors, qweights = [], 0, [], []

    def put(t: torch.Tensor) -> dict:
        nonlocal offset
        t = t.detach().cpu().contiguous()
        if t.dtype not in _NP:
            t = t.float()
        raw = t.numpy().astype(_NP[t.dtype]).tobytes()
        blobs.append(raw)
        ref = {"offset": offset, "nbytes": len(raw), "dtype": str(t.dtype).removeprefix("torch."),
               "shape": list(t.shape)}
        offset += len(raw)
        return ref

    skip = set()
    for name, mod in model.named_modules():
        if not parametrize.is_parametrized(mod, "weight"):
            continue
        fq = [p for p in mod.parametrizations.weight if isinstance(p, WeightFakeQuant)]
        if not fq:
            continue
        p = fq[0]
        w = mod.parametrizations.weight.original.detach().cpu().float().contiguous()
        scale, zp, axis = p.qparams(w)
        q = quantize_affine(w, scale, zp, p.bits, p.symmetric, axis)
        qmin, _ = qrange(p.bits, p.symmetric)
        entry = {"name": f"{name}.weight", "bits": p.bits, "symmetric": p.symmetric, "axis": axis,
                 "shape": list(w.shape), "codes": put(pack_bits(q.to(torch.int64) - qmin, p.bits)),
                 "scale": put(scale.float())}
        if not p.symmetric:
            entry["zero_point"] = put(zp.to(torch.uint8 if p.bits <= 8 else torch.int32))
        qweights.append(entry)
        skip.add(f"{name}.parametrizations.weight.original")
    for key, t in model.state_dict().items():
        if key in skip:
            continue
        tensors.append({"name": key, **put(t)})
    folded = not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    header = json.dumps({"format": FILE_MAGIC.decode(), "arch": arch, "bn_folded": folded,
                         "config": asdict(cfg) if cfg is not None else None,
                         "tensors": tensors, "qweights": qweights}, separators=(",", ":")).encode()
    p = Path(path)
    write_container(p, FILE_MAGIC, header, blobs)
    return p.stat().st_size


def load_quantized(path: str | os.PathLike) -> nn.Module:
    """Rebuild a working model (eval mode, CPU) from a `save_quantized` file: the architecture is
    rebuilt with `models.build`, weights are dequantized from their packed codes, activation
    quantizers carry their saved ranges."""
    from .models import build
    p = Path(path)
    header, body = read_container(p, FILE_MAGIC, "slimlab quantized file")
    head = json.loads(header)
    arch = head["arch"]
    if not arch or "name" not in arch:
        raise ValueError(f"{p} has no architecture record; only slimlab.models networks can be reloaded")

    def get(ref) -> torch.Tensor:
        dt = getattr(torch, ref["dtype"])
        arr = np.frombuffer(body[ref["offset"]:ref["offset"] + ref["nbytes"]], dtype=_NP[dt])
        return torch.from_numpy(arr.copy()).reshape(ref["shape"])

    model = build(arch["name"], arch["width"], arch["num_classes"])
    cfg = QuantConfig(**{**head["config"], "layers": tuple(head["config"]["layers"])
                         if head["config"] and head["config"]["layers"] is not None else None}) \
        if head["config"] else None
    model = fold_bn(model) if head.get("bn_folded") else model.eval()
    if cfg is not None:
        model = _wrap(model, cfg, weights=False)
    state = {t["name"]: get(t) for t in head["tensors"]}
    for e in head["qweights"]:
        n = int(np.prod(e["shape"]))
        qmin, _ = qrange(e["bits"], e["symmetric"])
        codes = (unpack_bits(get(e["codes"]), e["bits"], n) + qmin).reshape(e["shape"])
        zp = get(e["zero_point"]).to(torch.int32) if "zero_point" in e else \
            torch.zeros(e["scale"]["shape"], dtype=torch.int32)
        state[e["name"]] = dequantize_affine(codes, get(e["scale"]), zp, e["axis"])
    model.load_state_dict(state, strict=True)
    for a in model.modules():
        if isinstance(a, ActFakeQuant) and not bool(a.calibrated):
            raise ValueError(f"{p}: an activation quantizer has no saved range")
    return model.eval()


# --------------------------------------------------------------------------- real int8 inference (ONNX Runtime)


def export_onnx(model: nn.Module, path: str | os.PathLike, *, opset: int = 17) -> int:
    """Export an fp32 model (images (B, 3, 32, 32) in [0, 1], dynamic batch) to ONNX; returns bytes on disk.

    Uses the TorchScript exporter (`dynamo=False`): torch 2.14's default dynamo exporter needs the
    `onnxscript` package, which this course does not install."""
    import warnings
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
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
    import logging

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .data import to_float
    if not isinstance(calib_x, torch.Tensor) or calib_x.dim() != 4 or len(calib_x) == 0:
        raise ValueError("calib_x must be a non-empty (N, 3, 32, 32) tensor of images")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(range(0, len(calib_x), batch_size))

        def get_next(self):
            i = next(self.it, None)
            return None if i is None else {"images": to_float(calib_x[i:i + batch_size]).numpy()}

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as td:
        pre, tmp = Path(td) / "pre.onnx", Path(td) / "q.onnx"
        logging.getLogger().setLevel(logging.ERROR)
        quant_pre_process(str(fp32_path), str(pre))
        quantize_static(str(pre), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
        os.replace(tmp, out)
    return out.stat().st_size


def ort_session(path: str | os.PathLike, threads: int | None = None):
    """An ONNX Runtime CPU InferenceSession with `threads` intra-op threads (default: torch's count)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_predict(session, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Logits (N, classes) of an ONNX Runtime session on uint8 images `x`."""
    from .data import to_float
    outs = [session.run(None, {"images": to_float(x[i:i + batch_size]).numpy()})[0]
            for i in range(0, len(x), batch_size)]
    return torch.from_numpy(np.concatenate(outs))


def ort_latency(session, batch_size: int = 1, *, repeats: int = 20, warmup: int = 3) -> Latency:
    """Latency (ms) of one ONNX Runtime forward pass on a random batch, via `measure.time_fn`."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    x = torch.rand((batch_size, 3, 32, 32), generator=torch.Generator().manual_seed(0)).numpy()
    return time_fn(lambda: session.run(None, {"images": x}), repeats=repeats, warmup=warmup,
                   batch_size=batch_size, device="cpu (onnxruntime)")


def cpu_int8_features() -> dict[str, bool]:
    """Which int8 dot-product instructions this CPU has (from /proc/cpuinfo; all False if unknown):
    avx2 (8-bit multiply via vpmaddubsw, 16-bit intermediates), avx512_vnni / avx_vnni (one-instruction
    int8 dot products), amx_int8 (tile matrix multiply)."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return {k: k in flags for k in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")}


def torchao_available() -> bool:
    """True when the optional torchao package (`pip install 'slimlab[torchao]'`) imports."""
    try:
        import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401
    except Exception:  # ImportError, or a torchao built for another torch
        return False
    return True


def torchao_int8(model: nn.Module, calib_x: torch.Tensor, *, example_batch: int = 1,
                 batch_size: int = 256, compile: bool = True):
    """int8 static quantization of `model` through torch's own maintained route: torch.export, then
    torchao's PT2E flow with the x86 inductor quantizer (per-channel int8 weights, uint8 activations
    calibrated on `calib_x`), then `torch.compile` with inductor freezing, which lowers the
    quantize/dequantize pairs to oneDNN int8 kernels. Returns the (compiled) quantized module, which takes
    float images in 0..1 like the model (`calib_x` may be uint8 0..255 as the loaders give them).

    The export traces the batch size of `example_batch` as dynamic, so any batch size runs. Compiling takes
    tens of seconds on a laptop CPU (a C++ compiler must be present); `compile=False` returns the converted
    graph that runs int8 arithmetic *simulated* in float (correct numbers, no speed-up).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    from .data import to_float
    if not isinstance(calib_x, torch.Tensor) or calib_x.numel() == 0:
        raise TypeError("calib_x must be a non-empty image tensor (uint8 0..255 or float 0..1)")
    x = to_float(calib_x)
    if x.dim() != 4:
        raise ValueError(f"calib_x must be an image batch (N, C, H, W), got shape {tuple(x.shape)}")
    if not isinstance(example_batch, int) or example_batch < 1:
        raise ValueError(f"example_batch must be a positive int, got {example_batch!r}")
    if not torchao_available():
        raise ImportError("torchao is not installed; install it with `pip install 'slimlab[torchao]'` "
                          "(or use the ONNX Runtime route: export_onnx + quantize_onnx_int8)")
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
    import torch._inductor.config as inductor_config
    inductor_config.freezing = True  # constant-fold the weights so inductor can pick the int8 kernels
    return torch.compile(converted)


# --------------------------------------------------------------------------- C5: low-precision weight storage


@dataclass
class LowPrecisionStorage:
    """`fit(..., on_step=store)` hook keeping every Conv2d / Linear weight on a `bits`-bit grid (symmetric,
    per output channel) after each optimizer step, rounding to nearest or stochastically, as if the
    weights were *stored* in `bits` bits during training (gradients, momentum and BN stay float).
    The grid's step per channel is kept between updates and widened only when a weight outgrows it.
    Records |update| / step of every weight at every step in a log10 histogram."""
    bits: int = 8
    rounding: str = "nearest"
    seed: int = 0
    bin_edges: torch.Tensor = field(default_factory=lambda: torch.linspace(-5, 2, 57))  # log10(|du| / step)
    counts: torch.Tensor | None = None
    below_half: int = 0     # nonzero updates smaller than half a quantization step
    erased: int = 0         # nonzero updates that left the stored value unchanged
    updates: int = 0        # nonzero updates seen

    def __post_init__(self):
        _check_bits(self.bits, True)
        _check_choice(self.rounding, ROUNDINGS, "rounding")
        self._gen = torch.Generator().manual_seed(self.seed)
        self.counts = torch.zeros(len(self.bin_edges) - 1, dtype=torch.int64)
        self._prev: dict[int, torch.Tensor] = {}
        self._scale: dict[int, torch.Tensor] = {}

    def _layers(self, model):
        return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]

    @torch.no_grad()
    def _round(self, w: torch.Tensor, scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(w on the grid, per-channel step). The step is `scale` (the grid the weights are stored on),
        widened only where w has outgrown it; None = from w's own range."""
        lo, hi = calibrate_range(w, "minmax", bits=self.bits, symmetric=True, axis=0)
        s_new, _ = qparams_from_range(lo, hi, self.bits, True)
        s = _bcast(s_new.to(w.device), w, 0)
        if scale is not None:
            s = torch.maximum(scale.to(w.device), s)
        qmax = 2 ** (self.bits - 1) - 1
        if self.rounding == "nearest":
            q = torch.round(w / s)
        else:
            u = torch.rand(w.shape, generator=self._gen).to(w.device)
            q = torch.floor(w / s + u)
        return torch.clamp(q, -qmax, qmax) * s, s

    @torch.no_grad()
    def attach(self, model: nn.Module) -> "LowPrecisionStorage":
        """Put the initial weights on the grid; call once before `fit`."""
        for m in self._layers(model):
            w, s = self._round(m.weight)
            m.weight.copy_(w)
            self._prev[id(m)] = m.weight.detach().clone()
            self._scale[id(m)] = s
        return self

    @torch.no_grad()
    def __call__(self, step: int, total: int, model: nn.Module) -> None:
        for m in self._layers(model):
            prev = self._prev.get(id(m))
            if prev is None:
                prev = m.weight.detach().clone()
            new, s = self._round(m.weight, self._scale.get(id(m)))
            self._scale[id(m)] = s
            prev = prev.to(m.weight.device)
            du = (m.weight - prev)
            moved = du != 0
            ratio = (du.abs() / s)[moved]
            self.updates += int(moved.sum())
            self.below_half += int((ratio < 0.5).sum())
            self.erased += int(((new == prev) & moved).sum())
            h = torch.histc(torch.log10(ratio.clamp_min(1e-12)).float().cpu(), bins=len(self.counts),
                            min=float(self.bin_edges[0]), max=float(self.bin_edges[-1]))
            self.counts += h.to(torch.int64)
            m.weight.copy_(new)
            self._prev[id(m)] = new.clone()

    def summary(self) -> dict[str, float]:
        """{'below_half': fraction of updates < half a step, 'erased': fraction rounded away, 'updates': count}."""
        n = max(1, self.updates)
        return {"below_half": self.below_half / n, "erased": self.erased / n, "updates": self.updates}
