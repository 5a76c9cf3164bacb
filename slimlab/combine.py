"""Putting it together (notebook 06): every method on the same axes, combined pipelines, the edge budget.

* **Pareto frontier** — `dominates`, `pareto_front` (minimise a cost such as bytes or latency, maximise
  accuracy) and `draw_front` (the frontier as a staircase on a matplotlib axis).
* **One file format for every slimmed model** — `save_packed` / `load_packed` write a real file:
  each Conv2d/Linear weight as the *positions* of its nonzero weights (a gap stream, as Deep
  Compression's relative indices) and their *values* (raw floats, or a per-layer codebook plus an
  index per weight: a k-means codebook, or a uniform grid for plain quantization); batch norm folded
  to a per-channel scale and shift; optional float16 for everything left in float; optional canonical
  Huffman coding of the gap and index streams (`huffman_code`, written here, code lengths stored in
  the file). The file's size is what the results say; accuracy is measured on the model read back.
* **Steps** — `prune_step` (gradual magnitude pruning during a fine-tune), `share_step` (k-means of the
  nonzero weights only, so pruned zeros stay zero, codebooks fine-tuned), `distill_step` (a student
  fine-tuned under a teacher with `distill.distillation`); `run_chain` applies a list of steps
  ('distill', 'prune', 'share', 'quantize', 'entropy'), writes a file after each and measures it.
  With `parts=` every finished stage is kept (row JSON + its file) so a long run resumes.
* **Edge memory** — `activation_memory`: the live activation set of every layer at batch 1, measured
  with forward hooks (the layer's input + output, plus the inputs that residual blocks hold for their
  shortcut), in bytes at 1 (int8) or 4 (fp32) bytes per value.
* **Stored points** — `stored_points` reads what notebooks 02–05 recorded in results/<profile>/.
* **Rules** — C13 (does a combination dominate every single method?), C14 (capstone: flash, SRAM,
  latency on this CPU), and the capstone views of C3 and C12, registered under the name 'capstone'.

Units: bytes, milliseconds, accuracies in %, losses in percentage points (pt).
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from .data import ROOT
from .files import atomic_json, read_container, write_container
from .measure import count_params
from .packing import gaps_from_mask, huffman_code, huffman_decode, mask_from_gaps

FLASH_BYTES = 1024 * 1024        # STM32F746 (MCUNet's device): 1 MB of flash
SRAM_BYTES = 320 * 1024          # ... and 320 KB of SRAM
STEPS = ("distill", "prune", "share", "quantize", "entropy")
MAGIC = b"SLIMPK1\n"
METHODS = ("reference", "quantize", "prune", "share", "distill", "combined")


# =============================================================================================
# checks

def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")


def _check_int(v, what: str, lo: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{what} must be an int >= {lo}, got {v!r}")
    return v


def _check_fraction(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
        raise ValueError(f"{what} must be a number in [0, 1), got {v!r}")
    return float(v)


# =============================================================================================
# Pareto frontier

def _num(p, key: str) -> float:
    if not isinstance(p, dict):
        raise TypeError(f"points must be dicts, got {type(p).__name__}")
    if key not in p:
        raise ValueError(f"point {p.get('name', p)!r} has no {key!r}")
    v = p[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        raise ValueError(f"point {p.get('name', '?')!r}: {key} must be a number, got {v!r}")
    return float(v)


def dominates(a: dict, b: dict, cost: str = "bytes", gain: str = "acc") -> bool:
    """True if `a` is no worse than `b` on both axes (cost no higher, gain no lower) and better on one."""
    ca, cb, ga, gb = _num(a, cost), _num(b, cost), _num(a, gain), _num(b, gain)
    return ca <= cb and ga >= gb and (ca < cb or ga > gb)


def pareto_front(points: Sequence[dict], cost: str = "bytes", gain: str = "acc") -> list[dict]:
    """The points no other point dominates (low `cost`, high `gain`), sorted by cost. Exact duplicates
    are kept once (the first). Raises ValueError on an empty list or a point without a numeric axis."""
    pts = list(points)
    if not pts:
        raise ValueError("pareto_front needs at least one point")
    for p in pts:
        _num(p, cost), _num(p, gain)
    order = sorted(range(len(pts)), key=lambda i: (_num(pts[i], cost), -_num(pts[i], gain), i))
    front, best = [], -math.inf
    for i in order:
        g = _num(pts[i], gain)
        if g > best:
            front.append(pts[i])
            best = g
    return front


def draw_front(ax, points: Sequence[dict], cost: str = "bytes", gain: str = "acc", **kw):
    """Draw the Pareto frontier of `points` on a matplotlib axis as a staircase (the region it
    dominates lies below and to the right); returns the frontier."""
    front = pareto_front(points, cost, gain)
    xs = [_num(p, cost) for p in front]
    ys = [_num(p, gain) for p in front]
    ax.step(xs, ys, where="post", **{"color": "k", "lw": 1, "ls": "--", "label": "Pareto frontier", **kw})
    return front


# =============================================================================================
# sparse k-means sharing: a codebook for the nonzero weights only, zeros stay zero

class MaskedCodebook(nn.Module):
    """Parametrization weight = mask * codebook[index]: 2^bits trainable values shared by the kept
    weights of a layer; pruned weights (mask False) stay exactly zero. Gradients of a centroid are
    the mean of its weights' gradients (a centroid moves like one ordinary weight)."""

    def __init__(self, codebook: torch.Tensor, index: torch.Tensor, mask: torch.Tensor, bits: int):
        super().__init__()
        self.bits = _check_int(bits, "bits", 1)
        self.codebook = nn.Parameter(codebook.detach().clone().float())
        self.register_buffer("index", index.detach().clone().long())
        self.register_buffer("mask", mask.detach().clone().bool())
        counts = torch.bincount(self.index[self.mask].reshape(-1), minlength=len(self.codebook)).clamp(min=1)
        self.register_buffer("inv_count", 1.0 / counts.float(), persistent=False)

    def forward(self, original: torch.Tensor) -> torch.Tensor:   # original: ignored, kept reachable
        cb = self.codebook
        cb = (cb - cb.detach()) * self.inv_count + cb.detach()
        return (cb[self.index] * self.mask).to(original.dtype)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, kept={int(self.mask.sum())}/{self.mask.numel()}"


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every Conv2d and Linear of `model`, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def share_sparse(model: nn.Module, bits: int, init: str = "linear", iters: int = 30) -> nn.Module:
    """A copy of `model` whose every Conv2d/Linear weight is a `MaskedCodebook`: k-means (slimlab.share)
    of the nonzero weights only into 2^bits values; zero weights stay zero."""
    from .share import kmeans_1d
    _check_model(model)
    _check_int(bits, "bits", 1)
    new = plain_copy(model)
    for i, (name, layer) in enumerate(weight_layers(new)):
        w = layer.weight.detach()
        mask = w != 0
        if not mask.any():
            raise ValueError(f"{name} has no nonzero weight to share")
        cb, idx_nz = kmeans_1d(w[mask], bits, init, iters, seed=i)
        index = torch.zeros(w.shape, dtype=torch.long)
        index[mask] = idx_nz.reshape(-1)
        parametrize.register_parametrization(layer, "weight", MaskedCodebook(cb, index, mask, bits))
    return new.eval()


def codebooks(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor, int]]:
    """{layer: (codebook, index, bits)} for every layer shared by `share_sparse` or `share.kmeans_share`."""
    from .share import Codebook
    out = {}
    for name, mod in weight_layers(model):
        if parametrize.is_parametrized(mod, "weight"):
            p = mod.parametrizations.weight[0]
            if isinstance(p, (MaskedCodebook, Codebook)):
                out[name] = (p.codebook.detach().cpu(), p.index.cpu(), p.bits)
    return out


def plain_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` with every parametrization baked into plain weights (masks, codebooks)."""
    _check_model(model)
    from .prune import build_from_arch, plain_state_dict
    if not any(parametrize.is_parametrized(m) for m in model.modules()):
        return copy.deepcopy(model).cpu().to(memory_format=torch.contiguous_format)
    out = build_from_arch(model.arch)
    out.load_state_dict(plain_state_dict(model))
    return out.eval()


# =============================================================================================
# the file format

@dataclass
class PackReport:
    """What `save_packed` wrote: total bytes and where they went."""
    path: str
    bytes: int
    parts: dict[str, int] = field(default_factory=dict)   # header, positions, indices, values, codebooks, tables, floats

    def as_dict(self) -> dict:
        return asdict(self)


def _floats(t: torch.Tensor, half: bool) -> tuple[bytes, str]:
    t = t.detach().cpu().float().contiguous()
    return (t.half().numpy().tobytes(), "f2") if half else (t.numpy().tobytes(), "f4")


def _pack_fixed(v: np.ndarray, bits: int) -> bytes:
    from .quantize import pack_bits
    return pack_bits(torch.from_numpy(np.ascontiguousarray(v, dtype=np.int64)), bits).numpy().tobytes()


def _unpack_fixed(data: bytes, bits: int, n: int) -> np.ndarray:
    from .quantize import unpack_bits
    return unpack_bits(torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy()), bits, n).numpy()


def save_packed(model: nn.Module, path: str | os.PathLike, *, sparse: bool = True, value_bits: int | None = None,
                entropy: bool = False, half: bool = False, max_gap: int = 32) -> PackReport:
    """Write `model` (a slimlab ResNet, possibly masked, shared or slimmed) as one real file; return a PackReport.

    Every Conv2d/Linear weight is stored as
      * positions (`sparse=True`): the gap stream of its nonzero weights (`gaps_from_mask`), else none (all kept);
      * values: if the layer carries a codebook (`share_sparse`, `share.kmeans_share`): the codebook and one
        index per kept weight; else if `value_bits`: a uniform grid of 2^value_bits levels between the
        layer's smallest and largest kept weight (plain quantization) and one index per kept weight;
        else the raw kept values (float32, or float16 with `half`);
      * `entropy=True`: gap and index streams Huffman-coded (code lengths stored), else packed at fixed width.
    Batch norm is stored folded to a per-channel scale and shift; biases, codebooks, scales and shifts in
    float16 with `half`, else float32. Written atomically (magic, header length, zlib-compressed JSON header, one blob).
    """
    from .share import kmeans_1d
    _check_model(model)
    arch = getattr(model, "arch", None)
    if not isinstance(arch, dict) or "name" not in arch:
        raise TypeError("model must be a slimlab CIFAR ResNet (with an .arch dict from models.build)")
    if value_bits is not None:
        _check_int(value_bits, "value_bits", 1)
        if value_bits > 16:
            raise ValueError(f"value_bits must be in 1..16, got {value_bits}")
    _check_int(max_gap, "max_gap", 1)
    gap_bits = max(1, math.ceil(math.log2(max_gap + 1)))
    shared = codebooks(model)
    plain = plain_copy(model)
    entries, chunks, parts, offset = [], [], {}, 0

    def add(kind: str, data: bytes) -> dict:
        nonlocal offset
        ref = [offset, len(data)]
        chunks.append(data)
        parts[kind] = parts.get(kind, 0) + len(data)
        offset += len(data)
        return ref

    def stream(v: np.ndarray, alphabet: int, bits: int, kind: str) -> dict:
        if entropy:
            lengths, data, _ = huffman_code(v, alphabet)
            return {"huff": add("tables", lengths.tobytes()), "data": add(kind, data), "n": len(v)}
        return {"bits": bits, "data": add(kind, _pack_fixed(v, bits)), "n": len(v)}

    mods = dict(plain.named_modules())
    for name, layer in weight_layers(plain):
        w = layer.weight.detach().cpu().float()
        flat = w.reshape(-1)
        keep = (flat != 0).numpy() if sparse else np.ones(flat.numel(), dtype=bool)
        e = {"name": name, "shape": list(w.shape), "kept": int(keep.sum())}
        if sparse:
            e["pos"] = stream(gaps_from_mask(keep, max_gap), max_gap + 1, gap_bits, "positions")
            e["max_gap"] = max_gap
        kept = flat[torch.from_numpy(keep)]
        if name in shared:
            cb, idx, bits = shared[name]
            if not sparse and not bool((flat != 0).all()):
                raise ValueError(f"{name} is shared and has zero (pruned) weights: save it with sparse=True")
            idx = idx.reshape(-1)[torch.from_numpy(keep)].numpy()
        elif value_bits is not None and len(kept):
            cb, idx = kmeans_1d(kept, value_bits, "linear", iters=0)   # a uniform grid, nearest level
            bits, idx = value_bits, idx.numpy()
        else:
            cb = None
        if cb is not None:
            data, dt = _floats(cb, half)
            e["codebook"] = {"ref": add("codebooks", data), "dtype": dt, "bits": bits}
            e["idx"] = stream(idx.reshape(-1), 2 ** bits, bits, "indices")
        else:
            data, dt = _floats(kept, half)
            e["values"] = {"ref": add("values", data), "dtype": dt}
        if layer.bias is not None:
            data, dt = _floats(layer.bias, half)
            e["bias"] = {"ref": add("floats", data), "dtype": dt}
        entries.append(e)
    others = []
    for name, mod in mods.items():
        if isinstance(mod, nn.BatchNorm2d):
            scale = mod.weight.detach() / torch.sqrt(mod.running_var + mod.eps)
            shift = mod.bias.detach() - mod.running_mean * scale
            data, dt = _floats(torch.cat([scale, shift]), half)
            others.append({"name": name, "kind": "bn", "ref": add("floats", data), "dtype": dt,
                           "n": mod.num_features})
        elif not isinstance(mod, (nn.Conv2d, nn.Linear)):
            for k, t in list(mod.named_parameters(recurse=False)) + list(mod.named_buffers(recurse=False)):
                data, dt = _floats(t, False)
                others.append({"name": f"{name}.{k}" if name else k, "kind": "raw", "ref": add("floats", data),
                               "dtype": dt, "shape": list(t.shape)})
    header = zlib.compress(json.dumps({"arch": arch, "w": entries, "o": others}, separators=(",", ":")).encode(), 9)
    p = write_container(path, MAGIC, header, chunks)
    parts["header"] = len(MAGIC) + 4 + len(header)
    size = p.stat().st_size
    if size != sum(parts.values()):
        raise RuntimeError(f"{p}: {size} bytes on disk but {sum(parts.values())} accounted for")
    return PackReport(str(p), size, parts)


def load_packed(path: str | os.PathLike) -> nn.Module:
    """The model saved by `save_packed`, as a plain float32 model (eval mode, CPU); needs nothing but the file."""
    from .prune import build_from_arch
    header, blob = read_container(path, MAGIC, "slimlab packed model")
    head = json.loads(zlib.decompress(header))
    get = lambda ref: bytes(blob[ref[0]:ref[0] + ref[1]])
    fl = lambda d: torch.from_numpy(np.frombuffer(get(d["ref"]), dtype=np.dtype(d["dtype"])).astype(np.float32))

    def read_stream(s: dict) -> np.ndarray:
        if "huff" in s:
            return huffman_decode(np.frombuffer(get(s["huff"]), dtype=np.uint8), get(s["data"]), s["n"])
        return _unpack_fixed(get(s["data"]), s["bits"], s["n"])

    model = build_from_arch(head["arch"])
    mods = dict(model.named_modules())
    with torch.no_grad():
        for e in head["w"]:
            n = math.prod(e["shape"])
            keep = mask_from_gaps(read_stream(e["pos"]), e["max_gap"], n) if "pos" in e else np.ones(n, bool)
            vals = fl(e["codebook"])[torch.from_numpy(read_stream(e["idx"]))] if "codebook" in e else fl(e["values"])
            w = torch.zeros(n)
            w[torch.from_numpy(keep)] = vals
            layer = mods[e["name"]]
            layer.weight.copy_(w.view(e["shape"]))
            if "bias" in e:
                layer.bias.copy_(fl(e["bias"]))
        for o in head["o"]:
            if o["kind"] == "bn":
                bn, v = mods[o["name"]], fl(o)
                bn.weight.copy_(v[:o["n"]])
                bn.bias.copy_(v[o["n"]:])
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)       # (x - 0) / sqrt(1 - eps + eps) = x
            else:
                mod_name, _, k = o["name"].rpartition(".")
                getattr(mods[mod_name], k).copy_(fl(o).view(o["shape"]))
    return model.eval()


# =============================================================================================
# the steps of a pipeline

@dataclass(frozen=True)
class StepConfig:
    """Knobs of the pipeline steps: fine-tune `steps`, `batch_size` and peak `lr` (cosine); pruning
    `sparsity`; k-means `share_bits`; plain quantization `quant_bits`; KD `temperature` and `alpha`."""
    steps: int = 100
    batch_size: int = 128
    lr: float = 0.01
    sparsity: float = 0.8
    share_bits: int = 4
    quant_bits: int = 8
    distill_steps: int = 100
    temperature: float = 4.0
    alpha: float = 0.9
    seed: int = 0

    def validate(self) -> None:
        _check_int(self.steps, "steps", 1)
        _check_int(self.distill_steps, "distill_steps", 1)
        _check_int(self.batch_size, "batch_size", 1)
        _check_int(self.share_bits, "share_bits", 1)
        _check_int(self.quant_bits, "quant_bits", 1)
        _check_fraction(self.sparsity, "sparsity")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


def _train_config(steps: int, cfg: StepConfig):
    from .train import TrainConfig
    return TrainConfig(steps=steps, batch_size=cfg.batch_size, lr=cfg.lr, schedule="cosine", warmup=0.0,
                       label_smoothing=0.1, seed=cfg.seed)


def _fit(model, x, y, steps, cfg, teacher=None, on_step=None, desc="fine-tune", progress=True):
    from .distill import KDConfig, distillation
    from .train import fit, seed_everything
    seed_everything(cfg.seed)
    tc = _train_config(steps, cfg)
    if teacher is None:
        fit(model, x, y, tc, on_step=on_step, progress=progress, desc=desc)
    else:
        kd = KDConfig(temperature=cfg.temperature, alpha=cfg.alpha)
        with distillation(teacher, model, kd, label_smoothing=tc.label_smoothing) as extra:
            fit(model, x, y, tc, extra_loss=extra, on_step=on_step, progress=progress, desc=desc)
        teacher.cpu().to(memory_format=torch.contiguous_format)
    return model.cpu().to(memory_format=torch.contiguous_format).eval()


def prune_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: StepConfig, *,
               teacher: nn.Module | None = None, progress: bool = True) -> nn.Module:
    """A copy of `model` pruned to `cfg.sparsity` (layer-wise magnitude) gradually during a `cfg.steps`
    fine-tune (Zhu & Gupta's cubic schedule, slimlab.prune), under `teacher` if given; zeros baked in."""
    from .prune import gradual_pruning, remove_masks
    cfg.validate()
    m = plain_copy(model)
    hook = gradual_pruning(m, cfg.sparsity)
    m = _fit(m, x, y, cfg.steps, cfg, teacher, hook, f"prune to {cfg.sparsity:.0%}", progress)
    return remove_masks(m).eval()


def share_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: StepConfig, *,
               teacher: nn.Module | None = None, progress: bool = True) -> nn.Module:
    """`share_sparse(model, cfg.share_bits)` with its codebooks (and batch norm) fine-tuned for `cfg.steps`."""
    cfg.validate()
    m = share_sparse(model, cfg.share_bits)
    return _fit(m, x, y, cfg.steps, cfg, teacher, None, f"k-means {cfg.share_bits}-bit codebooks", progress)


def distill_step(student: nn.Module, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: StepConfig, *,
                 progress: bool = True) -> nn.Module:
    """A copy of `student` fine-tuned for `cfg.distill_steps` under `teacher` (Hinton KD, T and alpha from cfg)."""
    _check_model(teacher)
    cfg.validate()
    return _fit(plain_copy(student), x, y, cfg.distill_steps, cfg, teacher, None,
                f"distil (T={cfg.temperature:g}, α={cfg.alpha:g})", progress)


def cached(parts: str | os.PathLike | None, kind: str, config: dict, fn: Callable[[], dict]) -> dict:
    """`fn()`'s row, kept as `<parts>/<kind>-<hash of config>.json` and read back on a later run;
    with `parts=None` (the quick profile) it is always computed and nothing is stored."""
    if parts is None:
        return fn()
    path = Path(parts) / f"{kind}-{_config_key(config)}.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e}); delete it to recompute") from None
    row = fn()
    atomic_json(row, path)
    return row


def _config_key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_chain(name: str, steps: Sequence[str], base: nn.Module, data, cfg: StepConfig, *,
              evaluate_fn: Callable[[nn.Module], dict], workdir: str | os.PathLike,
              teacher: nn.Module | None = None, parts: str | os.PathLike | None = None,
              base_key: str = "", progress: bool = True) -> list[dict]:
    """Apply `steps` (from STEPS, in order) to a copy of `base`; after each, write the model with
    `save_packed` (options accumulate: prune → sparse positions, quantize → float16 leftovers and,
    without a codebook, a `cfg.quant_bits` grid, entropy → Huffman), read it back and measure it with
    `evaluate_fn(model) -> {'val_acc', 'test_acc', ...}`. Returns one row per step (bytes, accuracy,
    nonzero parameters, file, where the bytes went). `data`: an object with train_x, train_y.
    With `parts`, each finished stage's row (JSON) is kept there and its file in `workdir`; a stage whose
    row and file exist is read back instead of recomputed (keys include `base_key` and the config)."""
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"name must be a non-empty string without '/', got {name!r}")
    steps = list(steps)
    bad = [s for s in steps if s not in STEPS]
    if not steps or bad:
        raise ValueError(f"steps must be a non-empty list from {STEPS}, got {steps!r}")
    if len(set(steps)) != len(steps):
        raise ValueError(f"each step may appear once, got {steps!r}")
    if "distill" in steps and teacher is None:
        raise ValueError("the 'distill' step needs a teacher")
    cfg.validate()
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    opts = {"sparse": False, "value_bits": None, "entropy": False, "half": False}
    model, rows, shared = plain_copy(base), [], False
    if "share" in steps and "quantize" in steps and steps.index("quantize") < steps.index("share"):
        raise ValueError("'quantize' after 'share' only: quantizing first leaves nothing for k-means to share")
    for i, step in enumerate(steps):
        key = f"{name}-{i}-{step}-" + _config_key(base_key, steps[:i + 1], asdict(cfg))
        file = work / f"{key}.slpk"
        row_path = Path(parts) / f"{key}.json" if parts is not None else None
        trained = step in ("distill", "prune", "share")
        if step == "prune":
            opts["sparse"] = True
        elif step == "quantize":
            opts["half"] = True
            opts["value_bits"] = None if shared else cfg.quant_bits
        elif step == "entropy":
            opts["entropy"] = True
        shared = shared or step == "share"
        if row_path is not None and row_path.is_file() and file.is_file():
            rows.append(json.loads(row_path.read_text()))       # finished earlier: read it back
            back = load_packed(file)
            model = _reshare(back) if shared else back          # later steps need the codebooks
            continue
        if step == "distill":
            model = distill_step(model, teacher, data.train_x, data.train_y, cfg, progress=progress)
        elif step == "prune":
            model = prune_step(model, data.train_x, data.train_y, cfg, teacher=teacher, progress=progress)
        elif step == "share":
            model = share_step(model, data.train_x, data.train_y, cfg, teacher=teacher, progress=progress)
        rep = save_packed(model, file, **opts)
        back = load_packed(file)
        pc = count_params(back)
        row = {"chain": name, "step": step, "stage": " → ".join(steps[:i + 1]), "index": i,
               "bytes": rep.bytes, "parts": rep.parts, "params": pc.total, "nonzero": pc.nonzero,
               "file": file.name, "arch": back.arch["name"], "options": dict(opts), "trained": trained,
               **evaluate_fn(back)}
        if row_path is not None:
            atomic_json(row, row_path)
        rows.append(row)
        if step in ("quantize", "entropy"):   # storage-only steps: continue from what the file holds
            model = _reshare(back) if shared else back
    return rows


def _reshare(model: nn.Module) -> nn.Module:
    """A model whose layers' distinct nonzero values become a MaskedCodebook again (after a file round trip)."""
    new = plain_copy(model)
    for name, layer in weight_layers(new):
        w = layer.weight.detach()
        mask = w != 0
        vals, inv = torch.unique(w[mask], return_inverse=True)
        bits = max(1, math.ceil(math.log2(max(2, len(vals)))))
        cb = torch.zeros(2 ** bits)
        cb[:len(vals)] = vals
        index = torch.zeros(w.shape, dtype=torch.long)
        index[mask] = inv
        parametrize.register_parametrization(layer, "weight", MaskedCodebook(cb, index, mask, bits))
    return new.eval()


# =============================================================================================
# activation memory at batch 1 (for the SRAM budget)

@dataclass(frozen=True)
class ActivationMemory:
    """Live activation bytes per layer call at batch 1 and the peak."""
    per_layer: list[tuple[str, int]]   # (layer name, live bytes while it runs)
    peak_bytes: int
    peak_layer: str
    bytes_per_value: int

    def as_dict(self) -> dict:
        return asdict(self)


def _tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


@torch.no_grad()
def activation_memory(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 32, 32), bytes_per_value: int = 4,
                      held: tuple[type, ...] | None = None) -> ActivationMemory:
    """Run one zero input of `input_size` through `model` (eval mode) with forward hooks on every leaf
    module and count, for each leaf call, the values that must be live at once: its inputs + its output
    (a tensor shared by both, e.g. an in-place op, counts once) + the inputs of every enclosing module of
    a `held` type (default: slimlab's residual BasicBlock, whose input waits for the shortcut add).
    Values × `bytes_per_value` (1 for int8, 4 for float32). Parameter-free functional ops (F.relu, the add)
    are not modules; an edge runtime fuses them into the neighbouring layer."""
    from .models import BasicBlock
    _check_model(model)
    _check_int(bytes_per_value, "bytes_per_value", 1)
    if not (isinstance(input_size, tuple) and all(isinstance(s, int) and s > 0 for s in input_size)):
        raise ValueError(f"input_size must be a tuple of positive ints like (1, 3, 32, 32), got {input_size!r}")
    held = (BasicBlock,) if held is None else tuple(held)
    stack: list[torch.Tensor] = []      # inputs of the enclosing `held` modules, innermost last
    sizes: list[int] = []               # how many tensors each of them pushed
    rows: list[tuple[str, int]] = []
    handles = []

    def live(ts) -> int:
        seen, n = set(), 0
        for t in ts:
            k = (t.data_ptr(), t.numel())
            if k not in seen:
                seen.add(k)
                n += t.numel()
        return n

    def pre(mod, args):
        ts = _tensors(args)
        stack.extend(ts)
        sizes.append(len(ts))

    def post_held(mod, args, out):
        del stack[len(stack) - sizes.pop():]

    def leaf(name):
        def hook(mod, args, out):
            rows.append((name, live(stack + _tensors(args) + _tensors(out)) * bytes_per_value))
        return hook

    was = model.training
    model.eval()
    try:
        for name, mod in model.named_modules():
            if held and isinstance(mod, held):
                handles.append(mod.register_forward_pre_hook(pre))
                handles.append(mod.register_forward_hook(post_held))
            elif not list(mod.children()):
                handles.append(mod.register_forward_hook(leaf(name)))
        dev = next((p.device for p in model.parameters()), torch.device("cpu"))
        model(torch.zeros(input_size, device=dev))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    if not rows:
        raise ValueError("model has no leaf module to measure")
    name, peak = max(rows, key=lambda r: r[1])
    return ActivationMemory(rows, peak, name, bytes_per_value)


# =============================================================================================
# points stored by notebooks 02–05

def stored_points(profile: str, results_dir: str | os.PathLike | None = None) -> tuple[list[dict], list[str]]:
    """(points, notes): the (bytes, accuracy, latency) points notebooks 02–05 recorded in
    results/<profile>/0N_*.json, each with 'name', 'method', 'bytes', 'acc', 'latency_ms' (None when not
    recorded) and 'source'; `notes` says which files were missing or unreadable. Their accuracies are on
    each notebook's own evaluation subset and their bytes in each notebook's own file format."""
    if profile not in ("quick", "full"):
        raise ValueError(f"profile must be 'quick' or 'full', got {profile!r}")
    from .ledger import read_results
    root = Path(results_dir) if results_dir is not None else ROOT / "results" / profile
    pts, notes = [], []

    def point(name, method, nbytes, acc, src, lat=None):
        if isinstance(nbytes, (int, float)) and isinstance(acc, (int, float)):
            pts.append({"name": name, "method": method, "bytes": int(nbytes), "acc": float(acc),
                        "latency_ms": lat, "source": src})

    readers = {
        "02_quantization": _points_02, "03_pruning": _points_03,
        "04_parameter_sharing": _points_04, "05_distillation": _points_05,
    }
    for nb, read in readers.items():
        path = root / f"{nb}.json"
        if not path.is_file():
            notes.append(f"{path.name}: missing")
            continue
        try:
            doc = read_results(path)
            recs = {(r["claim"], i): r["metrics"] for i, r in enumerate(doc["records"])}
            read(doc, recs, lambda *a, **k: point(*a, src=f"notebook {nb[:2]}", **k))
        except (ValueError, KeyError, TypeError) as e:
            notes.append(f"{path.name}: not read ({type(e).__name__}: {e})")
    return pts, notes


def _first(recs: dict, claim: str, has: str) -> dict:
    for (c, _), m in recs.items():
        if c == claim and has in m:
            return m
    raise KeyError(f"no {claim} record with {has!r}")


def _points_02(doc, recs, point):
    ex = doc["extra"]
    files, accs = ex["files_bytes"], ex["ptq_test_acc"]
    for b in (8, 6, 5, 4, 3, 2):
        if f"{b}-bit" in files and f"per_channel/{b}" in accs:
            point(f"{b}-bit PTQ (02)", "quantize", files[f"{b}-bit"], accs[f"per_channel/{b}"])
    m = _first(recs, "C14", "ort_int8_acc")
    point("int8 ONNX (02)", "quantize", m["onnx_int8_bytes"], m["ort_int8_acc"], lat=m.get("ORT_int8_ms_b1"))


def _points_03(doc, recs, point):
    m = _first(recs, "C14", "sparse_fp32_bytes")
    point(f"{m['sparsity']:.0%} sparse fp32 (03)", "prune", m["sparse_fp32_bytes"], m["sparse_acc"])
    point(f"{m['sparsity']:.0%} sparse int8 (03)", "prune", m["sparse_int8_bytes"], m["sparse_int8_acc"])
    base = doc["extra"]["base_test_acc"]
    point("channel-slimmed (03)", "prune", m["slim_bytes"], base - m["slim_acc_loss_pt"])


def _points_04(doc, recs, point):
    m = _first(recs, "C10", "bytes_ratio")
    point(f"k-means {m['bits']}-bit (04)", "share", m["file_bytes"], m["acc"])
    m = _first(recs, "C9", "energy")
    point(f"low-rank e={m['energy']} (04)", "share", m["file_bytes"], m["acc"], lat=m.get("latency_ms"))


def _points_05(doc, recs, point):
    for r in doc["extra"]["table"]:
        if r["name"].startswith("student"):
            point(f"{r['name']} (05)", "distill", r["bytes"], r["acc"], lat=r.get("latency_ms"))


# =============================================================================================
# verdict rules (written and unit-tested on made-up metrics before the runs they judge)
