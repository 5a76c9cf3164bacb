"""Knowledge distillation: a trained teacher supervises a small student (notebook 05, C11–C12).

* `soften(logits, T)` is the teacher's "dark knowledge": softmax at temperature T.
* `kd_loss(student, teacher, targets, T, alpha)` is Hinton et al.'s (2015) loss:
  (1 - alpha) * CE(student, targets) + alpha * T² * KL(softmax(teacher/T) || softmax(student/T)).
* `attention_map` / `at_loss` are attention transfer (Zagoruyko & Komodakis, 2017), the
  feature-based variant: the student matches where the teacher's stages "look".
* `distillation(teacher, student, KDConfig(...))` is a context manager that yields the
  `extra_loss` hook for the course's one training loop, `train.fit`: fit adds the hard-label
  cross-entropy itself, so the hook adds alpha * (T² * KL - CE) (+ the attention term) and the
  total is exactly `kd_loss` (+ beta/2 * AT). The teacher runs once per batch, in eval mode,
  without gradients; forward hooks (attention transfer only) are removed on exit.
* `train_student(...)` trains one student (from scratch when `kd` is None) and evaluates it;
  with `store=` each finished run is kept on disk so a long sweep resumes where it stopped.
  `over_seeds(fn, seeds)` runs a configuration over several seeds: mean and spread.
* Baselines for C12 — the teacher compressed to the student's size by the simplest version of
  each other method, built from torch's own tools (notebooks 02–04 own the real ones).
* `rule_c11`, `rule_c12` turn the measured metrics into the C11 and C12 verdicts.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .files import atomic_json, atomic_torch_save
from .data import ROOT, subset
from .ledger import rule
from .measure import count_params, serialized_bytes
from .models import build
from .train import TrainConfig, evaluate, fit, seed_everything

STORE = ROOT / "data" / "cache" / "distill"   # finished runs of the full profile (ignored by git)
STAGES = ("layer1", "layer2", "layer3")        # the CIFAR ResNets' three stages

# Published KD results on CIFAR-10 to draw beside ours: gain of the distilled student over the
# same student trained from scratch, in percentage points (COURSE.md; our data is a JPEG copy).
PUBLISHED_GAINS = {
    "resnet110 → resnet20, plain KD (T=4, α=0.9)": 0.45,
    "Distiller: ResNet-44 → preact-ResNet-20 (92.13 → 93.21)": round(93.21 - 92.13, 2),
}
# Hinton et al. (2015), MNIST: test errors of the small net from scratch, distilled, and the big net.
HINTON_MNIST_ERRORS = {"student scratch": 146, "student distilled": 74, "teacher": 67}


# ---------------------------------------------------------------------------------------------
# checks

def _check_temperature(temperature) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a number, got {type(temperature).__name__}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return float(temperature)


def _check_alpha(alpha, what: str = "alpha") -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"{what} must be a number, got {type(alpha).__name__}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"{what} must be in [0, 1], got {alpha}")
    return float(alpha)


def _check_logits(*pairs: tuple[str, object]) -> None:
    for name, t in pairs:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 2 or not t.is_floating_point():
            raise ValueError(f"{name} must be float logits of shape (batch, classes), got {t.dtype} {tuple(t.shape)}")


# ---------------------------------------------------------------------------------------------
# the losses

def soften(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Class probabilities softmax(logits / T) of (batch, classes) logits; higher T = softer."""
    _check_logits(("logits", logits))
    return F.softmax(logits / _check_temperature(temperature), dim=-1)


def soft_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(softmax(teacher/T) || softmax(student/T)), averaged over the batch (a scalar, nats)."""
    _check_logits(("student_logits", student_logits), ("teacher_logits", teacher_logits))
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher logits must have the same shape, got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    t = _check_temperature(temperature)
    log_p_s = F.log_softmax(student_logits / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.detach() / t, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * t * t


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
            temperature: float = 4.0, alpha: float = 0.9, label_smoothing: float = 0.0) -> torch.Tensor:
    """(1 - alpha) · CE(student, targets) + alpha · T² · KL(teacher_T || student_T): a scalar.

    Logits are (batch, classes) floats, `targets` (batch,) class indices. The T² keeps the soft
    part's gradient the same size as T changes (Hinton et al., 2015); the teacher gets no gradient.
    """
    a = _check_alpha(alpha)
    soft = soft_loss(student_logits, teacher_logits, temperature)
    if not isinstance(targets, torch.Tensor) or targets.shape != student_logits.shape[:1] \
            or targets.dtype != torch.int64:
        raise ValueError(f"targets must be int64 class indices of shape ({student_logits.shape[0]},), got "
                         f"{getattr(targets, 'dtype', type(targets).__name__)} {tuple(getattr(targets, 'shape', ()))}")
    hard = F.cross_entropy(student_logits, targets, label_smoothing=label_smoothing)
    return (1 - a) * hard + a * soft


def attention_map(features: torch.Tensor, p: int = 2) -> torch.Tensor:
    """Spatial attention of (B, C, H, W) features: mean over channels of |A|^p, flattened and
    L2-normalised per image -> (B, H·W). Channel counts may differ between teacher and student."""
    if not isinstance(features, torch.Tensor) or features.dim() != 4:
        raise ValueError(f"features must be a (B, C, H, W) tensor, got {tuple(getattr(features, 'shape', ()))}")
    if isinstance(p, bool) or not isinstance(p, int) or p < 1:
        raise ValueError(f"p must be an int >= 1, got {p!r}")
    return F.normalize(features.abs().pow(p).mean(1).flatten(1), dim=1)


def at_loss(student_features: Sequence[torch.Tensor], teacher_features: Sequence[torch.Tensor]) -> torch.Tensor:
    """Attention-transfer loss: sum over stages of the mean squared difference of attention maps."""
    if len(student_features) != len(teacher_features) or not student_features:
        raise ValueError(f"need the same, non-zero number of student and teacher feature maps, got "
                         f"{len(student_features)} and {len(teacher_features)}")
    total = 0.0
    for i, (s, t) in enumerate(zip(student_features, teacher_features)):
        if s.shape[0] != t.shape[0] or s.shape[2:] != t.shape[2:]:
            raise ValueError(f"stage {i}: student {tuple(s.shape)} and teacher {tuple(t.shape)} features "
                             "must agree in batch and spatial size")
        total = total + (attention_map(s) - attention_map(t.detach())).pow(2).mean()
    return total


# ---------------------------------------------------------------------------------------------
# plugging the losses into train.fit

@contextmanager
def capture(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hooks on the submodules `names` of `model`; yields a dict holding each one's last
    output (refreshed by every forward). The hooks are removed on exit."""
    mods = dict(model.named_modules())
    missing = [n for n in names if n not in mods]
    if missing:
        raise ValueError(f"model has no submodule(s) {missing}; e.g. {list(STAGES)}")
    out: dict[str, torch.Tensor] = {}

    def hook_for(name):
        def hook(_mod, _inp, output):
            out[name] = output
        return hook
    handles = [mods[n].register_forward_hook(hook_for(n)) for n in names]
    try:
        yield out
    finally:
        for h in handles:
            h.remove()


@dataclass(frozen=True)
class KDConfig:
    """How the teacher supervises: temperature T, weight alpha of the soft loss, and weight beta of
    attention transfer on `layers` (beta = 0: plain KD; alpha = 0 and beta > 0: attention transfer only)."""
    temperature: float = 4.0
    alpha: float = 0.9
    beta: float = 0.0            # Zagoruyko & Komodakis use 1000 (the loss is beta/2 · AT)
    layers: tuple[str, ...] = STAGES

    def validate(self) -> None:
        _check_temperature(self.temperature)
        _check_alpha(self.alpha)
        if isinstance(self.beta, bool) or not isinstance(self.beta, (int, float)) or self.beta < 0:
            raise ValueError(f"beta must be a number >= 0, got {self.beta!r}")
        if self.alpha == 0 and self.beta == 0:
            raise ValueError("alpha = 0 and beta = 0 leave nothing to distil; train from scratch instead (kd=None)")
        if not self.layers or not all(isinstance(n, str) for n in self.layers):
            raise ValueError(f"layers must be a non-empty tuple of submodule names, got {self.layers!r}")

    @property
    def name(self) -> str:
        """Short label, e.g. 'KD T=4 α=0.9' or 'KD+AT T=4 α=0.9 β=1000'."""
        kind = "AT" if self.alpha == 0 else "KD+AT" if self.beta > 0 else "KD"
        bits = [] if self.alpha == 0 else [f"T={self.temperature:g}", f"α={self.alpha:g}"]
        return " ".join([kind, *bits, *([f"β={self.beta:g}"] if self.beta > 0 else [])])


@contextmanager
def distillation(teacher: nn.Module, student: nn.Module, kd: KDConfig,
                 label_smoothing: float = 0.0) -> Iterator[Callable]:
    """Yield `extra_loss(model, x, y, logits)` for `train.fit` so that fit's loss becomes
    (1 - α)·CE + α·T²·KL + β/2·AT. `label_smoothing` must equal the TrainConfig's (fit's CE)."""
    for what, m in (("teacher", teacher), ("student", student)):
        if not isinstance(m, nn.Module):
            raise TypeError(f"{what} must be an nn.Module, got {type(m).__name__}")
    if not isinstance(kd, KDConfig):
        raise TypeError(f"kd must be a KDConfig, got {type(kd).__name__}")
    kd.validate()
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    layers = kd.layers if kd.beta > 0 else ()
    was_training = teacher.training
    teacher.eval()
    try:
        with capture(teacher, layers) as t_feats, capture(student, layers) as s_feats:
            def extra_loss(model, x, y, logits):
                p = next(teacher.parameters())
                if p.device != x.device:
                    teacher.to(x.device)
                    if x.device.type == "cpu":
                        teacher.to(memory_format=torch.channels_last)
                with torch.no_grad():                 # the teacher: once per batch, no gradients
                    t_logits = teacher(x).float()
                loss = logits.new_zeros(())
                if kd.alpha > 0:
                    ce = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
                    loss = loss + kd.alpha * (soft_loss(logits, t_logits, kd.temperature) - ce)
                if kd.beta > 0:
                    loss = loss + kd.beta / 2 * at_loss([s_feats[n] for n in layers], [t_feats[n] for n in layers])
                return loss
            yield extra_loss
    finally:
        teacher.train(was_training)


# ---------------------------------------------------------------------------------------------
# training students, over seeds

def student_config(epochs: float, seed: int = 0, batch_size: int = 128) -> TrainConfig:
    """The reference student's recipe (`zoo.RECIPES['resnet8']`: one-cycle SGD, lr 0.1, label
    smoothing 0.1) with `epochs` and `seed` replaced: scratch and distilled students share it."""
    from dataclasses import replace
    from .zoo import RECIPES
    cfg = replace(RECIPES["resnet8"].config, epochs=epochs, seed=seed, batch_size=batch_size)
    cfg.validate()
    return cfg


def _state_sha(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def run_key(arch: str, kd: KDConfig | None, train: TrainConfig, train_images: int, eval_images: int,
            data_fingerprint: str, teacher_sha: str | None) -> str:
    """A file-name-safe identity of one student run (changes when any input changes)."""
    ident = json.dumps({"arch": arch, "kd": asdict(kd) if kd else None, "train": asdict(train),
                        "n": train_images, "eval": eval_images, "data": data_fingerprint,
                        "teacher": teacher_sha if kd else None}, sort_keys=True)
    kind = "scratch" if kd is None else kd.name.split()[0].replace("+", "")
    return f"{arch}-{kind}-s{train.seed}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"


def train_student(data, teacher: nn.Module | None, kd: KDConfig | None, train: TrainConfig, *,
                  arch: str = "resnet8", train_images: int = 0, eval_images: int = 0,
                  splits: Sequence[str] = ("val", "test"), store: str | os.PathLike | None = None,
                  progress: bool = True) -> tuple[dict, nn.Module]:
    """Train a fresh `arch` on `train_images` training images (0 = all) with `train`, distilled from
    `teacher` under `kd` (None = from scratch, same schedule); evaluate it on `splits` (a seeded
    stratified subset of `eval_images` images of each, 0 = all). Returns (row, model): row holds '<split>_acc' in %, params,
    seconds and the history. With `store`, a finished run is read back instead of retrained."""
    if kd is not None and not isinstance(teacher, nn.Module):
        raise TypeError("a distilled run (kd set) needs the teacher as an nn.Module")
    if not isinstance(train, TrainConfig):
        raise TypeError(f"train must be a TrainConfig, got {type(train).__name__}")
    bad = [s for s in splits if s not in ("train", "val", "test")]
    if bad:
        raise ValueError(f"splits must be among ('train', 'val', 'test'), got {bad}")
    for what, n in (("train_images", train_images), ("eval_images", eval_images)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{what} must be an int >= 0 (0 = all), got {n!r}")
    key = run_key(arch, kd, train, train_images, eval_images, data.fingerprint,
                  _state_sha(teacher) if kd is not None else None)
    path = Path(store) / f"{key}.json" if store is not None else None
    if path is not None and path.is_file() and path.with_suffix(".pt").is_file():
        row = json.loads(path.read_text())
        model = build(arch)
        model.load_state_dict(torch.load(path.with_suffix(".pt"), map_location="cpu", weights_only=True))
        return row, model.eval()
    x, y = subset(data.train_x, data.train_y, train_images, seed=0)
    seed_everything(train.seed)
    model = build(arch)
    resume = path.with_name(key + "-resume.pt") if path is not None else None
    t0 = time.perf_counter()
    desc = f"{arch} {'scratch' if kd is None else kd.name} seed {train.seed}"
    if kd is None:
        hist = fit(model, x, y, train, checkpoint=resume, progress=progress, desc=desc)
    else:
        with distillation(teacher, model, kd, label_smoothing=train.label_smoothing) as extra:
            hist = fit(model, x, y, train, extra_loss=extra, checkpoint=resume, progress=progress, desc=desc)
    model = model.cpu().to(memory_format=torch.contiguous_format).eval()
    if teacher is not None:   # fit's hook moved it next to the student; give it back as it came
        teacher.cpu().to(memory_format=torch.contiguous_format)
    row = {"key": key, "arch": arch, "kd": asdict(kd) if kd else None, "label": kd.name if kd else "scratch",
           "seed": train.seed, "train_images": len(y), "steps": hist.step[-1] if hist.step else 0,
           "params": count_params(model).total, "seconds": round(time.perf_counter() - t0, 1),
           "history": {"epoch": hist.epoch, "train_loss": hist.train_loss}}
    for s in splits:   # a seeded stratified subset (the stored test split is ordered by class)
        sx, sy = subset(getattr(data, f"{s}_x"), getattr(data, f"{s}_y"), eval_images, seed=0)
        row[f"{s}_acc"] = evaluate(model, sx, sy)["acc"]
    row = json.loads(json.dumps(row))   # the same plain types whether trained now or read back
    if path is not None:
        atomic_torch_save({k: v.contiguous() for k, v in model.state_dict().items()}, path.with_suffix(".pt"))
        atomic_json(row, path)
        if resume is not None:
            resume.unlink(missing_ok=True)
    return row, model


@dataclass(frozen=True)
class SeedStats:
    """One metric over seeds: the values, their mean, sample standard deviation (0 for one seed) and range."""
    values: tuple[float, ...]
    mean: float
    std: float
    lo: float
    hi: float

    def __str__(self) -> str:
        return f"{self.mean:.2f} ± {self.std:.2f} (n={len(self.values)}, range {self.lo:.2f}–{self.hi:.2f})"


def seed_stats(values: Sequence[float]) -> SeedStats:
    """Mean, sample std (ddof 1; 0 for a single value), min and max of `values`."""
    vals = tuple(float(v) for v in values)
    if not vals:
        raise ValueError("seed_stats needs at least one value")
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return SeedStats(vals, statistics.fmean(vals), std, min(vals), max(vals))


def over_seeds(run: Callable[[int], dict], seeds: Sequence[int], metric: str = "test_acc"
               ) -> tuple[SeedStats, list[dict]]:
    """Call `run(seed)` (returning a row dict) for each seed; return (stats of row[metric], rows)."""
    if not callable(run):
        raise TypeError("run must be callable: seed -> row dict")
    seeds = list(seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"seeds must be a non-empty sequence of ints, got {seeds!r}")
    rows = [run(s) for s in seeds]
    if not all(isinstance(r, dict) and metric in r for r in rows):
        raise ValueError(f"run(seed) must return a dict holding {metric!r}")
    return seed_stats([r[metric] for r in rows]), rows


# ---------------------------------------------------------------------------------------------
# baselines for C12: the teacher compressed by the simplest version of each other method, from
# torch's own tools. Notebooks 02–04 (slimlab.quantize / prune / share) own the full versions.

def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every Conv2d and Linear, in order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _check_fraction(f, what: str) -> float:
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
        raise ValueError(f"{what} must be in (0, 1], got {f!r}")
    return float(f)


def magnitude_prune(model: nn.Module, keep: float) -> nn.Module:
    """A copy of `model` with the smallest-|w| conv/linear weights zeroed globally, keeping the
    fraction `keep` (torch.nn.utils.prune.global_unstructured). The masks stay attached (so a
    fine-tune keeps them); `torch.nn.utils.prune.remove` makes them permanent."""
    from torch.nn.utils import prune
    keep = _check_fraction(keep, "keep")
    m = copy.deepcopy(model)
    params = [(mod, "weight") for _, mod in weight_layers(m)]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=1.0 - keep)
    return m


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold torch.nn.utils.prune masks into the weights, in place; returns `model`."""
    from torch.nn.utils import prune
    for _, mod in weight_layers(model):
        if prune.is_pruned(mod) and hasattr(mod, "weight_orig"):
            prune.remove(mod, "weight")
    return model


def sparse_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A compact state for a pruned model: each conv/linear weight as its nonzero values (fp32)
    plus a bit-packed mask (1 bit per weight); other tensors as they are. For bytes on disk."""
    state = {}
    layer_weights = {f"{n}.weight" for n, _ in weight_layers(model)}
    for k, v in model.state_dict().items():
        if k in layer_weights:
            mask = (v != 0).flatten()
            pad = (-mask.numel()) % 8
            bits = torch.cat([mask, mask.new_zeros(pad)]).view(-1, 8).to(torch.uint8)
            state[k + ".values"] = v.flatten()[mask].clone()
            state[k + ".mask"] = (bits << torch.arange(8, dtype=torch.uint8)).sum(1).to(torch.uint8)
        else:
            state[k] = v
    return state


def fake_quantize(model: nn.Module, bits: int = 8) -> nn.Module:
    """A copy of `model` whose conv/linear weights are rounded to `bits`-bit symmetric integers,
    one scale per output channel (max |w| / (2^(bits-1) - 1)), then stored back as floats."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
        raise ValueError(f"bits must be an int in [2, 16], got {bits!r}")
    m = copy.deepcopy(model)
    qmax = 2 ** (bits - 1) - 1
    with torch.no_grad():
        for _, mod in weight_layers(m):
            w = mod.weight
            scale = w.abs().flatten(1).amax(1).clamp_min(1e-12) / qmax
            shape = (-1,) + (1,) * (w.dim() - 1)
            w.copy_(torch.clamp(torch.round(w / scale.view(shape)), -qmax, qmax) * scale.view(shape))
    return m


def int8_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A compact state for an 8-bit model: conv/linear weights as int8 plus one fp32 scale per
    output channel; other tensors as they are. For bytes on disk."""
    state = {}
    layer_weights = {f"{n}.weight" for n, _ in weight_layers(model)}
    for k, v in model.state_dict().items():
        if k in layer_weights:
            scale = v.abs().flatten(1).amax(1).clamp_min(1e-12) / 127
            q = torch.clamp(torch.round(v / scale.view((-1,) + (1,) * (v.dim() - 1))), -127, 127)
            state[k + ".int8"], state[k + ".scale"] = q.to(torch.int8), scale.float()
        else:
            state[k] = v
    return state


def _factor(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncated SVD of weight reshaped to (out, rest): (out, r) and (r, rest) with W ≈ A @ B."""
    u, s, vh = torch.linalg.svd(weight.flatten(1), full_matrices=False)
    root = s[:rank].sqrt()
    return u[:, :rank] * root, root[:, None] * vh[:rank]


def low_rank(model: nn.Module, rank_fraction: float) -> nn.Module:
    """A copy of `model` where each conv (k×k, cin -> cout) becomes a k×k conv to r channels then
    a 1×1 conv to cout, and each linear two linears, r = ceil(rank_fraction · full rank), from a
    truncated SVD. A layer is factored only where that saves parameters."""
    import math
    f = _check_fraction(rank_fraction, "rank_fraction")
    m = copy.deepcopy(model)
    for name, mod in weight_layers(m):
        w = mod.weight.detach()
        out_c, rest = w.shape[0], w[0].numel()
        r = max(1, math.ceil(f * min(out_c, rest)))
        if r * (out_c + rest) >= out_c * rest:
            continue
        a, b = _factor(w, r)
        if isinstance(mod, nn.Conv2d):
            first = nn.Conv2d(mod.in_channels, r, mod.kernel_size, mod.stride, mod.padding, bias=False)
            second = nn.Conv2d(r, out_c, 1, bias=mod.bias is not None)
            first.weight.data.copy_(b.view(r, *w.shape[1:]))
            second.weight.data.copy_(a.view(out_c, r, 1, 1))
        else:
            first, second = nn.Linear(rest, r, bias=False), nn.Linear(r, out_c, bias=mod.bias is not None)
            first.weight.data.copy_(b)
            second.weight.data.copy_(a)
        if mod.bias is not None:
            second.bias.data.copy_(mod.bias.detach())
        parent_name, _, child = name.rpartition(".")
        setattr(m.get_submodule(parent_name) if parent_name else m, child, nn.Sequential(first, second))
    return m


def match_size(make: Callable[[float], nn.Module], size: Callable[[nn.Module], int], target: int,
               iters: int = 10) -> tuple[float, nn.Module]:
    """The largest knob in (0, 1] (bisection) whose model `make(knob)` has `size(model) <= target`;
    size must grow with the knob. Returns (knob, model). Raises ValueError if even a tiny knob is too big."""
    if not callable(make) or not callable(size):
        raise TypeError("make and size must be callables")
    if isinstance(target, bool) or not isinstance(target, int) or target <= 0:
        raise ValueError(f"target must be a positive int, got {target!r}")
    top = make(1.0)
    if size(top) <= target:
        return 1.0, top
    lo, hi, best = 1e-3, 1.0, None
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


STORAGES = ("fp32", "sparse", "int8")


def stored_bytes(model: nn.Module, storage: str = "fp32") -> int:
    """Bytes `torch.save` writes for `model` stored as 'fp32' (its state_dict), 'sparse'
    (`sparse_state`: nonzero values + bit mask) or 'int8' (`int8_state`)."""
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    state = {"fp32": model.state_dict, "sparse": lambda: sparse_state(model),
             "int8": lambda: int8_state(model)}[storage]()
    return serialized_bytes(state)


@dataclass
class Baseline:
    """The teacher compressed by one method to one size budget (C12)."""
    name: str          # e.g. 'pruned @ params'
    method: str        # 'prune' | 'low-rank' | 'quantize'
    matched: str       # 'params' | 'bytes': which size was matched to the student's
    knob: float        # keep fraction, rank fraction, or bits
    storage: str       # how its bytes are counted (see `stored_bytes`)
    model: nn.Module


def c12_baselines(teacher: nn.Module, params: int, nbytes: int, iters: int = 8) -> list[Baseline]:
    """The teacher compressed to at most `params` parameters (nonzero, for pruning) and, separately,
    at most `nbytes` bytes on disk, by magnitude pruning and by low rank; plus the 8-bit teacher
    (quantization keeps every parameter, so it enters the bytes comparison only). `iters`: bisection
    steps of each size match (knob precision 2^-iters)."""
    if not isinstance(teacher, nn.Module):
        raise TypeError(f"teacher must be an nn.Module, got {type(teacher).__name__}")
    for what, v in (("params", params), ("nbytes", nbytes)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{what} must be a positive int, got {v!r}")
    pruned = lambda k: make_permanent(magnitude_prune(teacher, k))
    factored = lambda f: low_rank(teacher, f)
    out = []
    for matched, target in (("params", params), ("bytes", nbytes)):
        psize = (lambda m: count_params(m).nonzero) if matched == "params" else (lambda m: stored_bytes(m, "sparse"))
        k, m = match_size(pruned, psize, target, iters)
        out.append(Baseline(f"pruned @ {matched}", "prune", matched, k, "sparse", m))
        lsize = (lambda m: count_params(m).total) if matched == "params" else (lambda m: stored_bytes(m, "fp32"))
        k, m = match_size(factored, lsize, target, iters)
        out.append(Baseline(f"low-rank @ {matched}", "low-rank", matched, k, "fp32", m))
    out.append(Baseline("8-bit @ bytes", "quantize", "bytes", 8, "int8", fake_quantize(teacher, 8)))
    return out


def finetune_config(steps: int, seed: int = 0, batch_size: int = 128) -> TrainConfig:
    """A short, gentle fine-tune for a compressed teacher: cosine from lr 0.01, no warm-up."""
    return TrainConfig(steps=steps, batch_size=batch_size, lr=0.01, schedule="cosine", warmup=0.0,
                       label_smoothing=0.1, seed=seed)


def finetune(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, *, seed: int = 0,
             progress: bool = True, desc: str = "fine-tune") -> nn.Module:
    """Fine-tune `model` in place for `steps` steps with `train.fit`, keeping its zero weights at
    zero (torch.nn.utils.prune masks from the current zeros, folded in afterwards); returns it."""
    from torch.nn.utils import prune
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    for _, mod in weight_layers(model):
        zeros = mod.weight.detach() == 0
        if zeros.any():
            prune.custom_from_mask(mod, "weight", ~zeros)
    fit(model, x, y, finetune_config(steps, seed), progress=progress, desc=desc)
    model = make_permanent(model).cpu().to(memory_format=torch.contiguous_format).eval()
    return model


# ---------------------------------------------------------------------------------------------
# the rules for C11 and C12

MARGIN_PT = 0.5   # accuracy difference (percentage points) that counts as a real gain

C11_TEXT = (f"gain = distilled student's mean test accuracy - scratch student's (same architecture and "
            f"schedule), noise = the larger of their seed standard deviations: supported if gain >= "
            f"{MARGIN_PT} pt and gain > 2 x noise; qualified if gain > 0 but smaller; refuted if gain <= 0")


@rule("C11", C11_TEXT)
def rule_c11(m: dict) -> str:
    """metrics: kd_mean, scratch_mean (%), kd_std, scratch_std (pt)."""
    gain = m["kd_mean"] - m["scratch_mean"]
    noise = max(m.get("kd_std", 0.0), m.get("scratch_std", 0.0))
    if gain >= MARGIN_PT and gain > 2 * noise:
        return "supported"
    return "qualified" if gain > 0 else "refuted"


C12_TEXT = (f"compare the distilled student's test accuracy with the teacher compressed to no more than the "
            f"student's size (parameter count, and separately bytes on disk) by each other method: supported "
            f"if it beats every compressed teacher by >= {MARGIN_PT} pt; refuted if it beats none of them by "
            f"{MARGIN_PT} pt; qualified otherwise (better than some methods, not all)")


@rule("C12", C12_TEXT)
def rule_c12(m: dict) -> str:
    """metrics: distilled_acc (%), baseline_acc {name: % of the compressed teacher}."""
    base = m["baseline_acc"]
    if not base:
        raise ValueError("C12 needs at least one compressed-teacher baseline")
    wins = sum(m["distilled_acc"] >= acc + MARGIN_PT for acc in base.values())
    if wins == len(base):
        return "supported"
    return "refuted" if wins == 0 else "qualified"
