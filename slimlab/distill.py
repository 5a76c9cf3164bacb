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
  with `store=` (a `slimlab.parts.PartStore`, the full profile) each finished run is a stored part
  (its row under results/, its model under the ignored data/work/), so a long sweep resumes.
  `over_seeds(fn, seeds)` runs a configuration over several seeds: mean and spread.
* Baselines for C12 — the teacher compressed to the student's size (nonzero parameters, or bytes
  of a real file on disk) by slimlab's own methods: magnitude pruning and its sparse file
  (`slimlab.prune`), low rank and k-means sharing and their files (`slimlab.share`), post-training
  quantization and its packed file (`slimlab.quantize`).
* `rule_c11`, `rule_c12` turn the measured metrics into the C11 and C12 verdicts.
"""
from __future__ import annotations

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

from .data import subset
from .measure import count_params
from .models import build
from .parts import PartStore, load_state, model_sha, part_key, save_state
from .train import TrainConfig, evaluate, fit, seed_everything

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


def student_part(arch: str, kd: KDConfig | None, train: TrainConfig, train_images: int, eval_images: int,
                 data_fingerprint: str, teacher_sha: str | None) -> tuple[str, dict]:
    """(kind, config) naming one student run as a stored part (`slimlab.parts`): the config holds
    everything the run depends on, so its key changes when any input changes."""
    config = {"arch": arch, "kd": asdict(kd) if kd else None, "train": asdict(train), "n": train_images,
              "eval": eval_images, "data": data_fingerprint, "teacher": teacher_sha if kd else None}
    kind = "scratch" if kd is None else kd.name.split()[0].replace("+", "")
    return f"{arch}-{kind}-s{train.seed}", config


def run_key(arch: str, kd: KDConfig | None, train: TrainConfig, train_images: int, eval_images: int,
            data_fingerprint: str, teacher_sha: str | None) -> str:
    """A file-name-safe identity of one student run (changes when any input changes)."""
    return part_key(*student_part(arch, kd, train, train_images, eval_images, data_fingerprint, teacher_sha))


def train_student(data, teacher: nn.Module | None, kd: KDConfig | None, train: TrainConfig, *,
                  arch: str = "resnet8", train_images: int = 0, eval_images: int = 0,
                  splits: Sequence[str] = ("val", "test"), store: PartStore | None = None,
                  need_model: bool = True, progress: bool = True) -> tuple[dict, nn.Module | None]:
    """Train a fresh `arch` on `train_images` training images (0 = all) with `train`, distilled from
    `teacher` under `kd` (None = from scratch, same schedule); evaluate it on `splits` (a seeded
    stratified subset of `eval_images` images of each, 0 = all). Returns (row, model): row holds
    '<split>_acc' in %, params, seconds and the history.

    With an enabled `store` (a `slimlab.parts.PartStore`, the full profile) the run is one stored part:
    its row is read back instead of retrained, the model comes from the store's work folder (retrained
    if it is missing there), and an interrupted run resumes from its per-epoch checkpoint. With
    `need_model=False` a stored row is enough and the model returned is None."""
    if kd is not None and not isinstance(teacher, nn.Module):
        raise TypeError("a distilled run (kd set) needs the teacher as an nn.Module")
    if not isinstance(train, TrainConfig):
        raise TypeError(f"train must be a TrainConfig, got {type(train).__name__}")
    if store is not None and not isinstance(store, PartStore):
        raise TypeError(f"store must be a slimlab.parts.PartStore or None, got {type(store).__name__}")
    bad = [s for s in splits if s not in ("train", "val", "test")]
    if bad:
        raise ValueError(f"splits must be among ('train', 'val', 'test'), got {bad}")
    for what, n in (("train_images", train_images), ("eval_images", eval_images)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{what} must be an int >= 0 (0 = all), got {n!r}")
    kind, config = student_part(arch, kd, train, train_images, eval_images, data.fingerprint,
                                model_sha(teacher) if kd is not None else None)
    key = part_key(kind, config)

    def run(path: Path | None) -> tuple[dict, nn.Module]:
        x, y = subset(data.train_x, data.train_y, train_images, seed=0)
        seed_everything(train.seed)
        model = build(arch)
        resume = path.with_name(path.stem + "-resume.pt") if path is not None and store.enabled else None
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
        if path is not None:
            save_state(model, path)
            if resume is not None:
                resume.unlink(missing_ok=True)
        return json.loads(json.dumps(row)), model   # the same plain types whether trained now or read back

    if store is None:
        return run(None)
    return store.run_model(kind, config, run, lambda p: load_state(build(arch), p), need_model=need_model)


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
# baselines for C12: the teacher compressed to the student's size by slimlab's own methods
# (slimlab.prune, slimlab.share, slimlab.quantize), each written to its own file, whose size on
# disk is what is compared.

# (name, method, size matched): parameters (nonzero) or bytes of the file on disk
C12_PLAN = (("pruned @ params", "prune", "params"), ("low-rank @ params", "low-rank", "params"),
            ("pruned @ bytes", "prune", "bytes"), ("low-rank @ bytes", "low-rank", "bytes"),
            ("k-means @ bytes", "kmeans", "bytes"), ("quantized @ bytes", "quantize", "bytes"))
C12_METHODS = ("prune", "low-rank", "kmeans", "quantize")
FILE_SUFFIX = {"prune": ".sparse.pt", "low-rank": ".shr", "kmeans": ".shr", "quantize": ".slq"}


def student_file_bytes(model: nn.Module, path: str | os.PathLike) -> int:
    """The student's size on disk: its fp32 weights in slimlab's compact container
    (`share.export_shared` of an unshared model, the container of the low-rank and k-means files)."""
    from .share import export_shared
    return export_shared(model, path)


def write_compressed(model: nn.Module, method: str, path: str | os.PathLike) -> int:
    """Write a compressed teacher with its method's own file format; returns the bytes on disk:
    'prune' -> `prune.save_sparse` (bit mask + fp32 nonzero values), 'low-rank' and 'kmeans' ->
    `share.export_shared` (factors; codebooks + packed indices), 'quantize' -> `quantize.save_quantized`
    (packed integer codes + scales)."""
    from . import prune, quantize, share
    _check_method(method)
    if method == "prune":
        return prune.save_sparse(model, path, values="fp32")
    if method == "quantize":
        return quantize.save_quantized(model, path)
    return share.export_shared(model, path)


def read_compressed(method: str, path: str | os.PathLike) -> nn.Module:
    """The model in a file written by `write_compressed` (eval mode, CPU), rebuilt from the file alone."""
    from . import prune, quantize, share
    _check_method(method)
    loader = {"prune": prune.load_sparse, "quantize": quantize.load_quantized}.get(method, share.load_shared)
    return loader(path)


def _check_method(method) -> str:
    if method not in C12_METHODS:
        raise ValueError(f"method must be one of {C12_METHODS}, got {method!r}")
    return method


def nonzero_params(model: nn.Module) -> int:
    """Nonzero parameter values of `model`, pruning masks applied (the effective weights)."""
    from .prune import unmasked_copy
    return count_params(unmasked_copy(model)).nonzero


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
    if not isinstance(teacher, nn.Module):
        raise TypeError(f"teacher must be an nn.Module, got {type(teacher).__name__}")
    _check_method(method)
    if matched not in ("params", "bytes"):
        raise ValueError(f"matched must be 'params' or 'bytes', got {matched!r}")
    for what, v in (("params", params), ("nbytes", nbytes)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{what} must be a positive int, got {v!r}")
    if matched == "params" and method in ("kmeans", "quantize"):
        raise ValueError(f"{method} keeps every parameter, so it can only be matched by bytes")
    path = Path(scratch)
    file_size = lambda m: write_compressed(m, method, path)
    if method == "prune":
        make = lambda keep: prune.prune_magnitude(teacher, 1.0 - keep, "global")
        return match_size(make, nonzero_params if matched == "params" else file_size,
                          params if matched == "params" else nbytes, iters)
    if method == "low-rank":
        make = lambda energy: share.low_rank(teacher, energy=energy)[0]
        return match_size(make, (lambda m: count_params(m).total) if matched == "params" else file_size,
                          params if matched == "params" else nbytes, iters)
    top = 8   # the usual widest integer format; more bits buy nothing measurable at these sizes
    for bits in range(top, 0 if method == "kmeans" else 1, -1):
        m = (share.kmeans_share(teacher, share.KMeansConfig(bits=bits, grad="mean")) if method == "kmeans" else
             quantize.quantize_model(teacher, quantize.QuantConfig(bits=bits, act_bits=None)))
        if file_size(m) <= nbytes:
            return float(bits), m
    raise ValueError(f"cannot reach {nbytes} bytes with {method}: even the fewest bits are too big")


def finetune_config(steps: int, seed: int = 0, batch_size: int = 128) -> TrainConfig:
    """A short, gentle fine-tune for a compressed teacher: cosine from lr 0.01, no warm-up."""
    return TrainConfig(steps=steps, batch_size=batch_size, lr=0.01, schedule="cosine", warmup=0.0,
                       label_smoothing=0.1, seed=seed)


def finetune(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, *, seed: int = 0,
             batch_size: int = 128, progress: bool = True, desc: str = "fine-tune") -> nn.Module:
    """Fine-tune a compressed teacher in place for `steps` steps with `train.fit`; returns it (CPU, eval).
    Its compression survives: pruning masks and k-means codebooks are parametrizations that `fit`
    trains through (pruned weights stay zero, shared weights stay shared), low-rank factors stay factors."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    fit(model, x, y, finetune_config(steps, seed, batch_size), progress=progress, desc=desc)
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
    path = Path(path)
    t0 = time.perf_counter()
    knob, model = compress_to_size(teacher, method, matched, params, nbytes, path, iters=iters)
    if finetune_steps and method != "quantize":
        if train is None:
            raise ValueError("fine-tuning a baseline needs train=(images, labels)")
        model = finetune(model, train[0], train[1], finetune_steps, progress=progress, desc=f"fine-tune {name}")
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
        path = Path(workdir) / f"c12-{method}-{matched}{FILE_SUFFIX[method]}"
        out.append(c12_baseline(teacher, name, method, matched, params, nbytes, path, **kw))
    return out
