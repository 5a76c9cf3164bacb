"""Quantization from scratch: affine tensors, calibration, fake quantization, post-training quantization
(PTQ) and quantization-aware training (QAT), and the packed integer file of a quantized model.

Layers of this module, from the bottom up:

* tensor level — `qrange`, `qparams_from_range`, `quantize_affine` / `dequantize_affine` (explicit
  scale and zero-point; symmetric or asymmetric; per-tensor or per-channel via `axis`; 1–16 bits).
  Codes are computed as torch and torchao compute them, bit for bit: in float32, x * (1 / scale),
  rounded half to even;
* calibration — `calibrate_range` with 'minmax', 'percentile' or 'mse';
* fake quantization — `fake_quantize` (straight-through estimator masked on the rounded code, as
  `torch.fake_quantize_per_channel_affine`), `WeightFakeQuant` (a `torch.nn.utils.parametrize`
  parametrization on a weight) and `ActFakeQuant` (a small module);
* models — `bn_pairs` / `fold_bn`, `QuantConfig`, `quantize_model` (PTQ), `calibrate_`; QAT is
  `train.fit` on the result (no second loop). A pruned model keeps its masks;
* storage — `save_quantized` / `load_quantized` (packed integer weights plus scales and zero-points,
  in the course's one packed format, `slimlab.packing`);
* claim C5 — `LowPrecisionStorage`, an `on_step` hook that keeps weights on a b-bit grid during
  training (round-to-nearest or stochastic) and records |update| / step.

Real int8 runtimes (ONNX Runtime, torchao) live in `slimlab.deploy`; the verdict rules in `slimlab.claims`.
Units: sizes in bytes, widths in bits.
"""
from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.utils.parametrize as parametrize

from .checks import check_choice, check_int, check_model, check_number, check_tensor
from .files import CheckpointError, load_state
from .models import BasicBlock, CifarResNet, weight_layers

GRANULARITIES = ("per_tensor", "per_channel")
CALIBRATORS = ("minmax", "percentile", "mse")
ROUNDINGS = ("nearest", "stochastic")

# --------------------------------------------------------------------------- validation helpers


def _check_bits(bits, symmetric: bool = False, name: str = "bits") -> int:
    check_int(bits, name, 1, 16)
    if symmetric and bits < 2:
        raise ValueError(f"symmetric quantization needs {name} >= 2 (1 bit has no signed grid "
                         f"around zero); use symmetric=False for 1 bit")
    return bits


def _check_float(x, name: str = "x") -> torch.Tensor:
    return check_tensor(x, name, floating=True, finite=True)


def _check_axis(axis, x: torch.Tensor) -> int | None:
    if axis is None:
        return None
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(f"axis must be an int or None, got {type(axis).__name__}")
    if not -x.dim() <= axis < x.dim():
        raise ValueError(f"axis {axis} is out of range for a tensor with {x.dim()} dims; "
                         f"allowed: {-x.dim()}..{x.dim() - 1} or None (per-tensor)")
    return axis % x.dim()


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
    if not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise ValueError("lo and hi must be finite (a NaN or inf range has no grid)")
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
    if not bool((scale > 0).all()) or not bool(torch.isfinite(scale).all()):
        raise ValueError("scale must be > 0 and finite everywhere")
    want = () if axis is None else (x.shape[axis],)
    for name, t in (("scale", scale), ("zero_point", zero_point)):
        if t.dim() > 0 and tuple(t.shape) != want:
            raise ValueError(f"{name} has shape {tuple(t.shape)}; with axis={axis} it must be "
                             f"{want if want else 'a scalar'}")
        if axis is None and t.numel() != 1:
            raise ValueError(f"{name} must be a scalar for per-tensor quantization (axis=None)")


def _codes(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, axis: int | None
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(unclamped codes round(x * (1/scale)) + zero_point, scale, zero_point), all float32, broadcast
    along `axis`. Float32 and the reciprocal are what torch's fake-quant kernels and torchao's
    `quantize_affine` use, so the codes agree bit for bit (also on exact halves)."""
    xf = x.detach().float()
    s = _bcast(scale.to(xf.device, torch.float32), xf, axis)
    z = _bcast(zero_point.to(xf.device, torch.float32), xf, axis)
    return torch.round(xf * (1.0 / s)) + z, s, z


def quantize_affine(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, bits: int,
                    symmetric: bool = True, axis: int | None = None) -> torch.Tensor:
    """Integer codes clamp(round(x * (1/scale)) + zero_point, qmin, qmax) in `storage_dtype(bits, symmetric)`,
    computed in float32 whatever x's dtype.

    `axis` None = per-tensor (scalar scale/zero-point); an int = per-channel along that axis."""
    _check_float(x)
    _check_bits(bits, symmetric)
    axis = _check_axis(axis, x)
    _check_qparams(x, scale, zero_point, axis)
    qmin, qmax = qrange(bits, symmetric)
    q, _, _ = _codes(x, scale, zero_point, axis)
    return q.clamp_(qmin, qmax).to(storage_dtype(bits, symmetric))


def dequantize_affine(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                      axis: int | None = None) -> torch.Tensor:
    """Float32 values (q - zero_point) * scale of integer codes `q` (per-channel along `axis`)."""
    check_tensor(q, "q")
    if q.is_floating_point() or q.dtype == torch.bool:
        raise TypeError(f"q must hold integer codes, got dtype {q.dtype}")
    axis = _check_axis(axis, q)
    _check_qparams(q, scale, zero_point, axis)
    s = _bcast(scale.to(q.device, torch.float32), q, axis)
    z = _bcast(zero_point.to(q.device, torch.float32), q, axis)
    return (q.float() - z) * s


def quant_error(x: torch.Tensor, bits: int, symmetric: bool = True, axis: int | None = None,
                calibrator: str = "minmax") -> dict[str, float]:
    """Round-trip error of quantizing `x`: {'rms', 'max', 'sqnr_db', 'clipped' (fraction of values whose
    code fell outside the grid)}."""
    lo, hi = calibrate_range(x, calibrator, bits=bits, symmetric=symmetric, axis=axis)
    scale, zp = qparams_from_range(lo, hi, bits, symmetric)
    a = _check_axis(axis, x)
    xq = dequantize_affine(quantize_affine(x, scale, zp, bits, symmetric, a), scale, zp, a)
    err = xq - x.float()
    qmin, qmax = qrange(bits, symmetric)
    q, _, _ = _codes(x, scale, zp, a)
    clipped = ((q < qmin) | (q > qmax)).float().mean().item()
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
    candidates, with the least squared round-trip error at `bits`). Scalars per-tensor, (C,) per-channel.
    NaN or inf in `x` raise ValueError."""
    _check_float(x)
    check_choice(method, CALIBRATORS, "calibrator")
    _check_bits(bits, symmetric)
    axis = _check_axis(axis, x)
    check_number(percentile, "percentile", 50, 100, lo_open=True)
    check_int(grid, "grid", 1)
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
        q, s, z = _codes(v, scale.to(v.device), zp.to(v.device), 0)
        err = ((q.clamp_(qmin, qmax) - z) * s - v).pow(2).mean(dim=1)
        better = err < best
        best = torch.where(better, err, best)
        best_lo = torch.where(better, l, best_lo)
        best_hi = torch.where(better, h, best_hi)
    return best_lo, best_hi


# --------------------------------------------------------------------------- fake quantization


class _StraightThrough(torch.autograd.Function):
    """Forward: the precomputed fake-quantized value. Backward: the gradient where `inside`, else 0."""

    @staticmethod
    def forward(ctx, x, dq, inside):
        ctx.save_for_backward(inside)
        return dq

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad.masked_fill(~inside, 0), None, None


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, bits: int,
                  symmetric: bool = True, axis: int | None = None) -> torch.Tensor:
    """dequantize(quantize(x)) in the forward pass, in x's dtype (computed in float32); straight-through
    gradient in the backward pass: 1 where the rounded code round(x/scale) + zero_point lies in
    [qmin, qmax], 0 where it was clamped — as `torch.fake_quantize_per_tensor_affine` /
    `torch.fake_quantize_per_channel_affine` (so a weight exactly on a min-max bound gets gradient 1).

    Same values as `dequantize_affine(quantize_affine(...))`, without integer tensors."""
    check_tensor(x, "x", floating=True)
    _check_bits(bits, symmetric)
    a = _check_axis(axis, x)
    _check_qparams(x, scale, zero_point, a)
    qmin, qmax = qrange(bits, symmetric)
    with torch.no_grad():
        q, s, z = _codes(x, scale, zero_point, a)
        inside = (q >= qmin) & (q <= qmax)
        dq = q.clamp_(qmin, qmax).sub_(z).mul_(s).to(x.dtype)
    if not (torch.is_grad_enabled() and x.requires_grad):
        return dq
    return _StraightThrough.apply(x, dq, inside)


class WeightFakeQuant(nn.Module):
    """Parametrization: weight -> fake-quantized weight, with its range calibrated from the weight itself.

    Register with `parametrize.register_parametrization(layer, "weight", WeightFakeQuant(4))`; the float
    weight stays at `layer.parametrizations.weight.original` (QAT updates it through the STE)."""

    def __init__(self, bits: int = 8, symmetric: bool = True, granularity: str = "per_channel",
                 calibrator: str = "minmax", axis: int = 0, percentile: float = 99.99):
        super().__init__()
        self.bits = _check_bits(bits, symmetric)
        self.symmetric = bool(symmetric)
        self.granularity = check_choice(granularity, GRANULARITIES, "granularity")
        self.calibrator = check_choice(calibrator, CALIBRATORS, "calibrator")
        self.axis = check_int(axis, "axis")
        self.percentile = check_number(percentile, "percentile", 50, 100, lo_open=True)

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
        self.calibrator = check_choice(calibrator, CALIBRATORS, "calibrator")
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
            raise RuntimeError("ActFakeQuant is not calibrated: run slimlab.quantize.calibrate_(model, images) first")
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


def bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv, batch norm) name pairs of a course ResNet, by data flow: the stem's conv1 → bn1, and in
    every BasicBlock conv1 → bn1 and conv2 → bn2. ValueError if `model` holds a BatchNorm2d that is in
    no such pair (a network this function does not know: fold it yourself, or `QuantConfig(fold_bn=False)`)."""
    check_model(model)
    pairs = []
    for name, mod in model.named_modules():
        pre = f"{name}." if name else ""
        if isinstance(mod, CifarResNet):
            pairs.append((f"{pre}conv1", f"{pre}bn1"))
        elif isinstance(mod, BasicBlock):
            pairs += [(f"{pre}conv1", f"{pre}bn1"), (f"{pre}conv2", f"{pre}bn2")]
    paired = {b for _, b in pairs}
    stray = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and n not in paired]
    if stray:
        raise ValueError(f"fold_bn knows the data flow of slimlab's CIFAR ResNets only; these batch norms "
                         f"follow no known conv: {stray[:5]}")
    return pairs


def _is_mask(p: nn.Module, w: torch.Tensor) -> bool:
    """A parametrization that multiplies the weight elementwise by a fixed `mask` (like prune.Mask)."""
    mask = getattr(p, "mask", None)
    return isinstance(mask, torch.Tensor) and tuple(mask.shape) == tuple(w.shape)


@torch.no_grad()
def fold_bn(model: nn.Module) -> nn.Module:
    """A copy of `model` (eval mode) with each BatchNorm2d of `bn_pairs(model)` folded into its conv
    (weight scaled per output channel by gamma / sqrt(var + eps), bias beta + (b - mean) * that scale)
    and replaced by Identity. Outputs equal the original's in eval mode up to float rounding.

    A pruned conv keeps its masks: the scale goes into `parametrizations.weight.original`, which
    commutes with an elementwise mask. Any other parametrization (a fake-quantizer) raises ValueError."""
    check_model(model)
    m = copy.deepcopy(model).eval()
    for cname, bname in bn_pairs(m):
        conv, bn = m.get_submodule(cname), m.get_submodule(bname)
        if isinstance(bn, nn.Identity):                                  # folded already
            continue
        if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d) or \
                bn.running_var is None or bn.num_features != conv.out_channels:
            raise ValueError(f"{cname} -> {bname} is not a Conv2d followed by a BatchNorm2d with "
                             f"running statistics and matching channels")
        target = conv.weight
        if parametrize.is_parametrized(conv, "weight"):
            chain = conv.parametrizations.weight
            if not all(_is_mask(p, chain.original) for p in chain):
                raise ValueError(f"fold BN before quantizing: {cname} carries a parametrization other "
                                 f"than a pruning mask")
            target = chain.original
        g = bn.weight if bn.affine else torch.ones_like(bn.running_var)
        b = bn.bias if bn.affine else torch.zeros_like(bn.running_var)
        k = g / torch.sqrt(bn.running_var + bn.eps)                      # (C_out,)
        target.mul_(k.view(-1, *([1] * (target.dim() - 1))).to(target.dtype))
        bias0 = conv.bias if conv.bias is not None else torch.zeros_like(k)
        conv.bias = nn.Parameter(b + (bias0 - bn.running_mean) * k)
        parent, _, child = bname.rpartition(".")
        setattr(m.get_submodule(parent) if parent else m, child, nn.Identity())
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
        check_choice(self.granularity, GRANULARITIES, "granularity")
        check_choice(self.weight_calibrator, CALIBRATORS, "weight_calibrator")
        check_choice(self.act_calibrator, CALIBRATORS, "act_calibrator")
        check_number(self.percentile, "percentile", 50, 100, lo_open=True)
        if self.layers is not None and (isinstance(self.layers, str) or
                                        not all(isinstance(n, str) for n in self.layers)):
            raise TypeError("layers must be a tuple of layer names or None")


def quantize_model(model: nn.Module, config: QuantConfig | None = None, calib_x: torch.Tensor | None = None,
                   *, batch_size: int = 256, progress: bool = False) -> nn.Module:
    """A fake-quantized copy of `model` (the original is untouched): BN folded (if asked), a
    `WeightFakeQuant` parametrization on each chosen layer's weight (after its pruning mask, if any) and,
    if `config.act_bits`, an `ActFakeQuant` on its input calibrated on uint8 images `calib_x` (training
    images)."""
    check_model(model)
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
        calibrate_(m, calib_x, batch_size=batch_size, progress=progress)
    return m


def _wrap(m: nn.Module, cfg: QuantConfig, weights: bool = True) -> nn.Module:
    names = list(weight_layers(m))
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
def calibrate_(model: nn.Module, x: torch.Tensor, *, batch_size: int = 256, progress: bool = False) -> nn.Module:
    """Run uint8 images `x` through `model` with every `ActFakeQuant` observing, then freeze them (in
    place); returns model."""
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


def _weight_quantizer(mod: nn.Module) -> tuple[WeightFakeQuant, torch.Tensor] | None:
    """(the WeightFakeQuant on `mod.weight`, the weight it receives: `original` through the
    parametrizations before it, e.g. a pruning mask), or None if the weight is not fake-quantized."""
    if not parametrize.is_parametrized(mod, "weight"):
        return None
    chain = mod.parametrizations.weight
    w = chain.original
    for p in chain:
        if isinstance(p, WeightFakeQuant):
            return p, w
        w = p(w)
    return None


def weight_bits(model: nn.Module) -> dict[str, int]:
    """{layer name: weight bits} of the fake-quantized layers of `model`."""
    out = {}
    for name, mod in model.named_modules():
        fq = _weight_quantizer(mod)
        if fq is not None:
            out[name.removesuffix(".layer")] = fq[0].bits
    return out


# --------------------------------------------------------------------------- the quantized file


def save_quantized(model: nn.Module, path: str | os.PathLike) -> int:
    """Write a fake-quantized model (from `quantize_model`) as a real file; returns bytes on disk.

    The file is the course's one packed format (`packing.pack_state`): each quantized weight as its
    integer codes packed at `bits` per weight (`packing.AffineGrid`) plus its float32 scales and
    (asymmetric only) zero-points, per tensor or per output channel; every other tensor (biases,
    activation ranges, buffers) exactly. A pruned weight (zeros entering its quantizer) is quantized as
    the mask leaves it (its zeros are the zero-point's code, so they stay exactly 0) and stores the
    positions of its nonzero codes — the cheaper of a 1-bit mask and the gap stream — and codes for those
    only, where that is smaller than every code. A model without quantizers gives the plain fp32
    baseline in the same format. The model must be a slimlab ResNet (its `.arch` is recorded).
    Written atomically."""
    from .models import baked_state_dict
    from .packing import AffineGrid, pack_state
    check_model(model)
    cfg = getattr(model, "quant_config", None)
    arch = getattr(model, "arch", None)
    if not isinstance(arch, dict) or "name" not in arch:
        raise ValueError("save_quantized needs a slimlab ResNet (with .arch), so that load_quantized can rebuild it")
    state = baked_state_dict(model)
    grids, sparse = {}, {}
    for name, mod in weight_layers(model).items():
        fq = _weight_quantizer(mod)
        if fq is None:
            continue
        p, w = fq
        w = w.detach().cpu().float().contiguous()
        scale, zp, axis = p.qparams(w)
        q = quantize_affine(w, scale, zp, p.bits, p.symmetric, axis)
        grids[name] = AffineGrid(q, p.bits, qrange(p.bits, p.symmetric)[0], scale.float(),
                                 None if p.symmetric else zp, axis)
        state[f"{name}.weight"] = dequantize_affine(q, scale, zp, axis)     # what the file reads back
        if not bool((w != 0).all()):
            sparse[name] = "auto"
    folded = not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    meta = {"kind": "quantized", "bn_folded": folded, "config": asdict(cfg) if cfg is not None else None}
    return pack_state(path, arch, state, layers=list(weight_layers(model)), sparse=sparse, grids=grids,
                      meta=meta).bytes


def load_quantized(path: str | os.PathLike) -> nn.Module:
    """Rebuild a working model (eval mode, CPU) from a `save_quantized` file: the architecture is
    rebuilt with `models.from_arch`, weights are dequantized from their packed codes (plain tensors,
    no parametrizations), activation quantizers carry their saved ranges. A missing file raises
    FileNotFoundError; any other file, or a damaged one, `files.CheckpointError` (a ValueError) naming it."""
    from .packing import model_from, read_packed
    what = "slimlab quantized file"
    u = read_packed(path, what)
    model = model_from(u, what)
    c = u.meta.get("config")
    try:
        cfg = QuantConfig(**{**c, "layers": tuple(c["layers"]) if c["layers"] is not None else None}) if c else None
        model = fold_bn(model) if u.meta.get("bn_folded") else model.eval()
        if cfg is not None:
            cfg.validate()
            model = _wrap(model, cfg, weights=False)
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path} is a damaged {what}: its quantization record is unusable ({e})") from None
    load_state(model, u.state, path, what)
    for a in model.modules():
        if isinstance(a, ActFakeQuant) and not bool(a.calibrated):
            raise CheckpointError(f"{path}: an activation quantizer has no saved range")
    return model.eval()


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
        check_choice(self.rounding, ROUNDINGS, "rounding")
        self._gen = torch.Generator().manual_seed(self.seed)
        self.counts = torch.zeros(len(self.bin_edges) - 1, dtype=torch.int64)
        self._prev: dict[int, torch.Tensor] = {}
        self._scale: dict[int, torch.Tensor] = {}

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
            q = torch.round(w * (1.0 / s))
        else:
            u = torch.rand(w.shape, generator=self._gen).to(w.device)
            q = torch.floor(w * (1.0 / s) + u)
        return torch.clamp(q, -qmax, qmax) * s, s

    @torch.no_grad()
    def attach(self, model: nn.Module) -> "LowPrecisionStorage":
        """Put the initial weights on the grid; call once before `fit`."""
        for m in weight_layers(model).values():
            w, s = self._round(m.weight)
            m.weight.copy_(w)
            self._prev[id(m)] = m.weight.detach().clone()
            self._scale[id(m)] = s
        return self

    @torch.no_grad()
    def __call__(self, step: int, total: int, model: nn.Module) -> None:
        for m in weight_layers(model).values():
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
