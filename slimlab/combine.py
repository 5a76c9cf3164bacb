"""Putting it together (notebook 06): every method on the same axes, and methods combined.

* **Pareto frontier** — `dominates`, `pareto_front` (minimise a cost such as bytes or latency, maximise
  accuracy) and `draw_front` (the frontier as a staircase on a matplotlib axis); `choose` picks a model
  on validation (the smallest file within a loss budget).
* **Steps** — each a fine-tune of a given number of steps: `prune_step` (gradual magnitude pruning),
  `share_step` (k-means of the nonzero weights only, `share_sparse`, so pruned zeros stay zero; the
  codebooks fine-tuned), `qat_step` (quantization-aware fine-tuning on a uniform per-layer grid, the
  grid the file stores), `distill_step` (a student fine-tuned under a teacher, `distill.distillation`).
* **Pipelines** — `run_chain` applies a list of steps (`STEPS`) to a model and writes the model to the
  packed file (`slimlab.packing.save_packed`) after each, measuring the model read back. A single method
  is a chain of one step. **Every chain gets the same fine-tune budget** (`StepConfig.steps`), split
  evenly over its trained steps (`budget_split`), so a pipeline and a single method are compared at
  equal training cost. With a `parts.PartStore` every finished stage is kept (its record and its file)
  so a long run resumes.
* **Stored points** — `stored_points` reads what notebooks 02–05 recorded in results/<profile>/.

The file format lives in `slimlab.packing`, activation memory in `slimlab.measure`, the verdict rules in
`slimlab.claims`. Units: bytes, milliseconds, accuracies in %, losses in percentage points (pt).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from .checks import check_fraction, check_int, check_model, check_number
from .data import ROOT
from .measure import count_params
from .models import baked_copy, from_arch, weight_layers
from .packing import load_packed, save_packed
from .parts import load_state, save_state
from .share import LLOYD_ITERS, Codebook

STEPS = ("distill", "prune", "share", "qat", "quantize", "entropy")
TRAINED = ("distill", "prune", "share", "qat")   # the steps that spend fine-tune budget
METHODS = ("reference", "quantize", "prune", "share", "distill", "combined")


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


def choose(points: Sequence[dict], ref_val_acc: float, max_loss_pt: float = 1.0) -> dict:
    """The model one would pick without the test set: the smallest file (`bytes`) whose `val_acc` is
    within `max_loss_pt` of the reference's validation accuracy; the most accurate on validation when
    none is."""
    pts = list(points)
    if not pts:
        raise ValueError("choose needs at least one point")
    check_number(ref_val_acc, "ref_val_acc")
    check_number(max_loss_pt, "max_loss_pt", 0.0)
    ok = [p for p in pts if _num(p, "val_acc") >= ref_val_acc - max_loss_pt]
    return min(ok, key=lambda p: _num(p, "bytes")) if ok else max(pts, key=lambda p: _num(p, "val_acc"))


# =============================================================================================
# sparse k-means sharing: a codebook for the nonzero weights only, zeros stay zero

def share_sparse(model: nn.Module, bits: int, init: str = "linear", iters: int = LLOYD_ITERS) -> nn.Module:
    """A copy of `model` whose every Conv2d/Linear weight is a `share.Codebook` with a mask: k-means
    (`share.kmeans_1d`) of the nonzero weights only into 2^bits values; zero weights stay zero. A
    centroid's gradient is the mean of its weights' (grad='mean': it moves like one ordinary weight)."""
    from .share import kmeans_1d
    check_model(model)
    check_int(bits, "bits", 1, 16)
    new = baked_copy(model).cpu().eval()
    for i, (name, layer) in enumerate(weight_layers(new).items()):
        w = layer.weight.detach()
        mask = w != 0
        if not mask.any():
            raise ValueError(f"{name} has no nonzero weight to share")
        cb, idx_nz = kmeans_1d(w[mask], bits, init, iters, seed=i)
        _set_codebook(layer, cb, idx_nz.reshape(-1), mask, bits)
    return new


def _set_codebook(layer: nn.Module, cb: torch.Tensor, idx_kept: torch.Tensor, mask: torch.Tensor, bits: int) -> None:
    index = torch.zeros(mask.shape, dtype=torch.long)
    index[mask] = idx_kept
    parametrize.register_parametrization(layer, "weight", Codebook(
        cb, index, bits, grad="mean", mask=None if bool(mask.all()) else mask))


def _reshare(model: nn.Module) -> nn.Module:
    """The model with each layer's distinct nonzero values as a masked `share.Codebook` again (after a
    file round trip, so that later steps keep the codebooks)."""
    new = baked_copy(model).cpu().eval()
    for name, layer in weight_layers(new).items():
        w = layer.weight.detach()
        mask = w != 0
        vals, inv = torch.unique(w[mask], return_inverse=True)
        bits = max(1, math.ceil(math.log2(max(2, len(vals)))))
        _set_codebook(layer, vals, inv, mask, bits)
    return new


# =============================================================================================
# the steps of a pipeline

@dataclass(frozen=True)
class StepConfig:
    """Knobs of a pipeline: the fine-tune budget `steps` of the whole chain (split evenly over its
    trained steps), `batch_size` and peak `lr` (cosine); pruning `sparsity`; k-means `share_bits`;
    uniform grid `quant_bits` (QAT, and the 'quantize' storage step); KD `temperature` and `alpha`;
    `seed` of the fine-tunes."""
    steps: int = 100
    batch_size: int = 128
    lr: float = 0.01
    sparsity: float = 0.8
    share_bits: int = 4
    quant_bits: int = 8
    temperature: float = 4.0
    alpha: float = 0.9
    seed: int = 0

    def validate(self) -> None:
        check_int(self.steps, "steps", 1)
        check_int(self.batch_size, "batch_size", 1)
        check_int(self.share_bits, "share_bits", 1, 16)
        check_int(self.quant_bits, "quant_bits", 1, 16)
        check_int(self.seed, "seed", 0)
        check_fraction(self.sparsity, "sparsity")
        check_number(self.lr, "lr", 0.0, lo_open=True)
        check_number(self.temperature, "temperature", 0.0, lo_open=True)
        check_fraction(self.alpha, "alpha", allow_one=True)


def budget_split(steps: Sequence[str], budget: int) -> dict[str, int]:
    """{trained step: fine-tune steps}: `budget` split evenly over the trained steps of a chain (the
    first ones get the remainder), so every chain spends the same budget however many steps it has."""
    check_int(budget, "budget", 1)
    trained = [s for s in steps if s in TRAINED]
    if len(trained) > budget:
        raise ValueError(f"a budget of {budget} steps cannot be split over {len(trained)} trained steps")
    q, r = divmod(budget, max(1, len(trained)))
    return {s: q + (i < r) for i, s in enumerate(trained)}


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


def prune_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: StepConfig, steps: int | None = None, *,
               teacher: nn.Module | None = None, progress: bool = True) -> nn.Module:
    """A copy of `model` pruned to `cfg.sparsity` (layer-wise magnitude) gradually during a fine-tune of
    `steps` (default `cfg.steps`; Zhu & Gupta's cubic schedule, slimlab.prune), under `teacher` if
    given; zeros baked in."""
    from .prune import gradual_pruning, remove_masks_
    cfg.validate()
    m = baked_copy(model).cpu()
    hook = gradual_pruning(m, cfg.sparsity)
    m = _fit(m, x, y, steps or cfg.steps, cfg, teacher, hook, f"prune to {cfg.sparsity:.0%}", progress)
    return remove_masks_(m).eval()


def share_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: StepConfig, steps: int | None = None, *,
               teacher: nn.Module | None = None, progress: bool = True) -> nn.Module:
    """`share_sparse(model, cfg.share_bits)` with its codebooks (and batch norm) fine-tuned for `steps`
    (default `cfg.steps`), under `teacher` if given."""
    cfg.validate()
    m = share_sparse(model, cfg.share_bits)
    return _fit(m, x, y, steps or cfg.steps, cfg, teacher, None, f"k-means {cfg.share_bits}-bit codebooks", progress)


def qat_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: StepConfig, steps: int | None = None, *,
             teacher: nn.Module | None = None, progress: bool = True) -> nn.Module:
    """Quantization-aware fine-tuning: every Conv2d/Linear weight fake-quantized (`quantize.WeightFakeQuant`,
    straight-through gradients) on a per-layer min-max grid of 2^cfg.quant_bits levels — the grid the
    packed file stores — for `steps` (default `cfg.steps`); returns the model baked onto its grid."""
    from .quantize import WeightFakeQuant
    cfg.validate()
    m = baked_copy(model).cpu()
    for layer in weight_layers(m).values():
        parametrize.register_parametrization(layer, "weight", WeightFakeQuant(
            cfg.quant_bits, symmetric=False, granularity="per_tensor"))
    m = _fit(m, x, y, steps or cfg.steps, cfg, teacher, None, f"{cfg.quant_bits}-bit QAT", progress)
    return baked_copy(m).eval()


def distill_step(student: nn.Module, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: StepConfig,
                 steps: int | None = None, *, progress: bool = True) -> nn.Module:
    """A copy of `student` fine-tuned for `steps` (default `cfg.steps`) under `teacher` (Hinton KD, T and
    alpha from cfg)."""
    check_model(teacher, "teacher")
    cfg.validate()
    return _fit(baked_copy(student).cpu(), x, y, steps or cfg.steps, cfg, teacher, None,
                f"distil (T={cfg.temperature:g}, α={cfg.alpha:g})", progress)


def run_chain(name: str, steps: Sequence[str], base: nn.Module, data, cfg: StepConfig, *,
              evaluate_fn: Callable[[nn.Module], dict], store, teacher: nn.Module | None = None,
              base_key: dict | None = None, progress: bool = True) -> list[dict]:
    """Apply `steps` (from STEPS, in order) to a copy of `base`, the fine-tune budget `cfg.steps` split
    evenly over the trained ones (`budget_split`); after each step write the model with `save_packed`
    (options accumulate: prune → sparse positions, qat → its `cfg.quant_bits` grid, quantize → float16
    leftovers and, without a codebook, a `cfg.quant_bits` grid, entropy → Huffman), read it back and
    measure it with `evaluate_fn(model) -> {'val_acc', 'test_acc', ...}`. Returns one row per step
    (bytes on disk, accuracy, nonzero parameters, fine-tune steps spent so far, the file's name in
    `store.work`, where the bytes went). `data`: an object with train_x, train_y.
    `store` (a `parts.PartStore`) keeps each finished stage's row and its file; a stage whose row and
    file exist is read back instead of recomputed (the key holds `base_key`, the steps so far and cfg).
    `teacher`: the 'distill' step's teacher, and the teacher of every later trained step."""
    from .parts import PartStore
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"name must be a non-empty string without '/', got {name!r}")
    if not isinstance(store, PartStore):
        raise TypeError(f"store must be a slimlab.parts.PartStore, got {type(store).__name__}")
    steps = list(steps)
    bad = [s for s in steps if s not in STEPS]
    if not steps or bad:
        raise ValueError(f"steps must be a non-empty list from {STEPS}, got {steps!r}")
    if len(set(steps)) != len(steps):
        raise ValueError(f"each step may appear once, got {steps!r}")
    if "distill" in steps and teacher is None:
        raise ValueError("the 'distill' step needs a teacher")
    if "qat" in steps and ("prune" in steps or "share" in steps):
        raise ValueError("'qat' is a single method here: fine-tuning on a grid would move pruned zeros "
                         "and shared values; use 'quantize' (storage) after 'prune'/'share'")
    if "share" in steps and "quantize" in steps and steps.index("quantize") < steps.index("share"):
        raise ValueError("'quantize' after 'share' only: quantizing first leaves nothing for k-means to share")
    cfg.validate()
    split = budget_split(steps, cfg.steps)
    opts = {"sparse": False, "value_bits": None, "entropy": False, "half": False}
    model, rows, shared, spent = baked_copy(base).cpu().eval(), [], False, 0
    measured: tuple[nn.Module, dict] | None = None      # the last model read back, and its metrics
    for i, step in enumerate(steps):
        if step == "prune":
            opts["sparse"] = True
        elif step == "qat":
            opts["value_bits"] = cfg.quant_bits
        elif step == "quantize":
            opts["half"] = True
            opts["value_bits"] = None if shared else cfg.quant_bits
        elif step == "entropy":
            opts["entropy"] = True
        shared = shared or step == "share"
        spent += split.get(step, 0)
        config = {"base": base_key or {}, "steps": steps[:i + 1], "cfg": asdict(cfg)}

        def compute(path: Path, step=step, model=model, stage_opts=dict(opts), spent=spent, prev=measured):
            n = split.get(step, 0)
            if step == "distill":
                model = distill_step(model, teacher, data.train_x, data.train_y, cfg, n, progress=progress)
            elif step == "prune":
                model = prune_step(model, data.train_x, data.train_y, cfg, n, teacher=teacher, progress=progress)
            elif step == "share":
                model = share_step(model, data.train_x, data.train_y, cfg, n, teacher=teacher, progress=progress)
            elif step == "qat":
                model = qat_step(model, data.train_x, data.train_y, cfg, n, teacher=teacher, progress=progress)
            packed = path.with_suffix(".slpk")
            rep = save_packed(model, packed, **stage_opts)
            back = load_packed(packed)
            carry = _carry(model, back)
            save_state(carry, path)
            pc = count_params(back)
            if step == "entropy" and prev is not None and _same_weights(back, prev[0]):
                metrics = dict(prev[1])     # entropy coding is lossless: the same model, the same numbers
            else:
                metrics = evaluate_fn(back)
            row = {"chain": name, "step": step, "stage": " → ".join(steps[:i + 1]), "index": i,
                   "bytes": rep.bytes, "parts": rep.parts, "positions": rep.positions, "params": pc.total,
                   "nonzero": pc.nonzero, "file": packed.name, "arch": back.arch["name"], "options": stage_opts,
                   "finetune_steps": spent, "seed": cfg.seed, **metrics}
            return row, (carry, back)

        def load(path: Path):
            back = load_packed(path.with_suffix(".slpk"))
            return load_state(from_arch(back.arch), path), back

        row, (carry, back) = store.run_model(f"{name}-{i}-{step}", config, compute, load)
        rows.append(row)
        model = _reshare(carry) if shared else carry          # later steps need the codebooks
        measured = (back, {k: row[k] for k in row if k not in _ROW_KEYS})
    return rows


_ROW_KEYS = {"chain", "step", "stage", "index", "bytes", "parts", "positions", "params", "nonzero", "file", "arch",
             "options", "finetune_steps", "seed"}


def _carry(trained: nn.Module, back: nn.Module) -> nn.Module:
    """What a later step continues from: the trained model (its batch norm as trained, not folded as in the
    file) with the weights and biases the file holds (a grid, float16 codebooks)."""
    m = baked_copy(trained).cpu().float().eval()
    held = weight_layers(back)
    with torch.no_grad():
        for name, layer in weight_layers(m).items():
            layer.weight.copy_(held[name].weight)
            if layer.bias is not None:
                layer.bias.copy_(held[name].bias)
    return m


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


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


# ==== the C12 baselines: the teacher compressed to the student's size (moved from distill)
# Notebook 05 compares the distilled student with the teacher compressed by each other method, as
# slimlab implements it (slimlab.prune, slimlab.share, slimlab.quantize), to no more than the student's
# size: nonzero parameters, or bytes of the method's own file on disk. Each compressed teacher is
# written to its file, and its accuracy is that of the model read back from the file.

import os  # noqa: E402  (this section's own imports: it was moved here whole and stands alone)
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from .measure import count_params  # noqa: E402

# (name, method, size matched): parameters (nonzero) or bytes of the file on disk
C12_PLAN = (("pruned @ params", "prune", "params"), ("low-rank @ params", "low-rank", "params"),
            ("pruned @ bytes", "prune", "bytes"), ("low-rank @ bytes", "low-rank", "bytes"),
            ("k-means @ bytes", "kmeans", "bytes"), ("quantized @ bytes", "quantize", "bytes"))
C12_METHODS = ("prune", "low-rank", "kmeans", "quantize")
C12_FILE_SUFFIX = {"prune": ".sparse.pt", "low-rank": ".shr", "kmeans": ".shr", "quantize": ".slq"}


def _c12_method(method) -> str:
    if method not in C12_METHODS:
        raise ValueError(f"method must be one of {C12_METHODS}, got {method!r}")
    return method


def c12_student_bytes(model: nn.Module, path: str | os.PathLike) -> int:
    """The student's size on disk (bytes): its fp32 weights in the compact container of the low-rank and
    k-means files (`share.export_shared` of an unshared model) — the byte budget of the baselines."""
    from .share import export_shared
    return export_shared(model, path)


def write_compressed(model: nn.Module, method: str, path: str | os.PathLike) -> int:
    """Write a compressed teacher with its method's save function, all in the course's one packed format
    (`slimlab.packing`); returns the bytes on disk: 'prune' -> `prune.save_sparse` (positions + fp32
    nonzero values), 'low-rank' and 'kmeans' -> `share.export_shared` (factors; codebooks + packed
    indices), 'quantize' -> `quantize.save_quantized` (packed integer codes + scales)."""
    from . import prune, quantize, share
    _c12_method(method)
    if method == "prune":
        return prune.save_sparse(model, path, values="fp32")
    if method == "quantize":
        return quantize.save_quantized(model, path)
    return share.export_shared(model, path)


def read_compressed(method: str, path: str | os.PathLike) -> nn.Module:
    """The model in a file written by `write_compressed` (eval mode, CPU), rebuilt from the file alone."""
    from . import prune, quantize, share
    _c12_method(method)
    loader = {"prune": prune.load_sparse, "quantize": quantize.load_quantized}.get(method, share.load_shared)
    return loader(path)


def match_size(make: Callable[[float], nn.Module], size: Callable[[nn.Module], int], target: int,
               iters: int = 10) -> tuple[float, nn.Module]:
    """The largest knob in (0, 1] (bisection) whose model `make(knob)` has `size(model) <= target`;
    size must grow with the knob. Returns (knob, model). Raises ValueError if even a tiny knob is too big."""
    from .checks import check_int
    if not callable(make) or not callable(size):
        raise TypeError("make and size must be callables")
    check_int(target, "target", 1)
    top = make(1.0)
    if size(top) <= target:
        return 1.0, top
    lo, hi = 1e-3, 1.0
    m = make(lo)
    if size(m) > target:
        raise ValueError(f"cannot reach size {target}: even knob {lo} gives {size(m)}")
    best = (lo, m)
    for _ in range(iters):
        mid = (lo + hi) / 2
        m = make(mid)
        if size(m) <= target:
            lo, best = mid, (mid, m)
        else:
            hi = mid
    return best


def compress_to_size(teacher: nn.Module, method: str, matched: str, params: int, nbytes: int,
                     scratch: str | os.PathLike, *, iters: int = 8) -> tuple[float, nn.Module]:
    """The teacher compressed by `method` to at most the student's size: `params` nonzero parameters
    (matched='params') or `nbytes` bytes of the method's file (matched='bytes', measured by writing
    the file to `scratch`). Returns (knob, compressed model, still trainable):

    * 'prune': global magnitude pruning (`prune.prune_magnitude`), knob = fraction of weights kept;
    * 'low-rank': truncated SVD per layer (`share.low_rank`), knob = retained energy;
    * 'kmeans': k-means sharing (`share.kmeans_share`, grad='mean'), knob = bits, the most that fit;
    * 'quantize': weight-only post-training quantization, per channel (`quantize.quantize_model`),
      knob = bits, the most that fit (quantization keeps every parameter: bytes only).
    The size grows with each knob, so bisection (prune, low-rank, `iters` steps) or a scan from the
    most bits down finds the largest that fits."""
    from . import prune, quantize, share
    from .checks import check_choice, check_int, check_model
    check_model(teacher, "teacher")
    _c12_method(method)
    check_choice(matched, ("params", "bytes"), "matched")
    check_int(params, "params", 1)
    check_int(nbytes, "nbytes", 1)
    if matched == "params" and method in ("kmeans", "quantize"):
        raise ValueError(f"{method} keeps every parameter, so it can only be matched by bytes")
    path = Path(scratch)
    file_size = lambda m: write_compressed(m, method, path)
    target = params if matched == "params" else nbytes
    if method == "prune":
        make = lambda keep: prune.prune_magnitude(teacher, 1.0 - keep, "global")
        return match_size(make, (lambda m: count_params(m).nonzero) if matched == "params" else file_size,
                          target, iters)
    if method == "low-rank":
        make = lambda energy: share.low_rank(teacher, energy=energy)[0]
        return match_size(make, (lambda m: count_params(m).total) if matched == "params" else file_size,
                          target, iters)
    top = 8   # the usual widest integer format; more bits buy nothing measurable at these sizes
    for bits in range(top, 0 if method == "kmeans" else 1, -1):
        m = (share.kmeans_share(teacher, share.KMeansConfig(bits=bits, grad="mean")) if method == "kmeans" else
             quantize.quantize_model(teacher, quantize.QuantConfig(bits=bits, act_bits=None)))
        if file_size(m) <= nbytes:
            return float(bits), m
    raise ValueError(f"cannot reach {nbytes} bytes with {method}: even the fewest bits are too big")


def c12_finetune_config(steps: int, seed: int = 0, batch_size: int = 128):
    """The fine-tune of a compressed teacher (a `train.TrainConfig`): `steps` steps of cosine from lr
    0.01 without warm-up, with the teacher's own recipe otherwise (`zoo.RECIPES['resnet20']`: its label
    smoothing, augmentation, cutout, weight decay, precision)."""
    from dataclasses import replace
    from .checks import check_int
    from .zoo import RECIPES
    cfg = replace(RECIPES["resnet20"].config, epochs=1, steps=check_int(steps, "steps", 1), seed=seed,
                  batch_size=batch_size, lr=0.01, schedule="cosine", warmup=0.0)
    cfg.validate()
    return cfg


def c12_finetune_(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, *, seed: int = 0,
                 batch_size: int = 128, progress: bool = True, desc: str = "fine-tune") -> nn.Module:
    """Fine-tune a compressed teacher in place for `steps` steps with `train.fit`; returns it (CPU, eval).
    Its compression survives: pruning masks and k-means codebooks are parametrizations that `fit`
    trains through (pruned weights stay zero, shared weights stay shared), low-rank factors stay factors."""
    from .train import fit
    fit(model, x, y, c12_finetune_config(steps, seed, batch_size), progress=progress, desc=desc)
    return model.cpu().to(memory_format=torch.contiguous_format).eval()


def c12_baseline(teacher: nn.Module, name: str, method: str, matched: str, params: int, nbytes: int,
                 path: str | os.PathLike, *, train: tuple[torch.Tensor, torch.Tensor] | None = None,
                 finetune_steps: int = 0, test: tuple[torch.Tensor, torch.Tensor] | None = None,
                 iters: int = 8, progress: bool = True) -> tuple[dict, nn.Module]:
    """One C12 baseline: the teacher compressed by `method` to the student's size (`compress_to_size`),
    fine-tuned for `finetune_steps` on `train` (not the post-training quantized one), written to `path`
    in its method's format. Returns (record, model read back from the file): the record holds the
    knob, the file's bytes on disk, parameters, nonzero parameters and, with `test`, the test accuracy
    (%) of the model read back from the file — what a user of the file would get."""
    import time
    from .train import evaluate
    path = Path(path)
    t0 = time.perf_counter()
    knob, model = compress_to_size(teacher, method, matched, params, nbytes, path, iters=iters)
    if finetune_steps and method != "quantize":
        if train is None:
            raise ValueError("fine-tuning a baseline needs train=(images, labels)")
        model = c12_finetune_(model, train[0], train[1], finetune_steps, progress=progress, desc=f"fine-tune {name}")
    file_bytes = write_compressed(model, method, path)
    back = read_compressed(method, path)
    pc = count_params(back)
    rec = {"name": name, "method": method, "matched": matched, "knob": knob, "file_bytes": file_bytes,
           "params": pc.total, "nonzero": pc.nonzero, "finetune_steps": finetune_steps if method != "quantize" else 0,
           "seconds": round(time.perf_counter() - t0, 1)}
    budget = params if matched == "params" else nbytes
    size = pc.nonzero if matched == "params" else file_bytes
    if size > budget:
        raise RuntimeError(f"{name}: size {size} exceeds the student's {budget} {matched} after fine-tuning")
    if test is not None:
        rec["test_acc"] = evaluate(back, test[0], test[1])["acc"]
    return rec, back


def c12_baselines(teacher: nn.Module, params: int, nbytes: int, workdir: str | os.PathLike, **kw
                  ) -> list[tuple[dict, nn.Module]]:
    """Every baseline of `C12_PLAN` (`c12_baseline`), files written under `workdir`."""
    out = []
    for name, method, matched in C12_PLAN:
        path = Path(workdir) / f"c12-{method}-{matched}{C12_FILE_SUFFIX[method]}"
        out.append(c12_baseline(teacher, name, method, matched, params, nbytes, path, **kw))
    return out
