"""Knowledge distillation: a trained teacher supervises a small student (notebook 05, C11).

* `soften(logits, T)` is the teacher's "dark knowledge": softmax at temperature T.
* `kd_loss(student, teacher, targets, T, alpha)` is Hinton et al.'s (2015) loss:
  (1 - alpha) * CE(student, targets) + alpha * T² * KL(softmax(teacher/T) || softmax(student/T)).
* `attention_map` / `at_loss` are attention transfer (Zagoruyko & Komodakis, 2017), the
  feature-based variant: the student matches where the teacher's stages "look".
* `capture(model, names)` holds the outputs of named submodules (forward hooks, removed on exit).
* `distillation(teacher, student, KDConfig(...))` is a context manager that yields the
  `extra_loss` hook for the course's one training loop, `train.fit`: fit adds the hard-label
  cross-entropy itself, so the hook adds alpha * (T² * KL - CE) (+ the attention term) and the
  total is exactly `kd_loss` (+ beta/2 * AT). The teacher runs once per batch, in eval mode,
  without gradients; forward hooks (attention transfer only) are removed on exit.
* `student_config` is the one recipe of scratch and distilled students; `train_student(...)` trains
  one student (from scratch when `kd` is None) and evaluates it; with `store=` (a
  `slimlab.parts.PartStore`, the full profile) each finished run is a stored part, so a long sweep
  resumes.
* Seed statistics: `over_seeds(fn, seeds)` / `seed_stats` (mean and spread), `welch_test` (is one
  set of seeds better than another?), `gap_closed` (the fraction of the teacher–student gap).

The C12 baselines (the teacher compressed to the student's size by the other methods) live with the
other cross-method comparisons in `slimlab.combine`; the verdict rules in `slimlab.claims`.
"""
from __future__ import annotations

import json
import math
import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import check_choice, check_int, check_model, check_number, check_tensor
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
# checks (slimlab.checks, with the names the losses use)

def _check_temperature(temperature) -> float:
    return check_number(temperature, "temperature", 0.0, math.inf, lo_open=True)


def _check_logits(*pairs: tuple[str, object]) -> None:
    for name, t in pairs:
        check_tensor(t, name, nonempty=False)
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
    a = check_number(alpha, "alpha", 0.0, 1.0)
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
    check_int(p, "p", 1)
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


def wrong_class_agreement(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """How much of the teacher's ranking of the *wrong* classes belongs to the true class rather than to
    the image: for each image, the Spearman rank correlation between its wrong-class probabilities and the
    mean of those of the other images of its class (leave-one-out). `probs` (N, K), `labels` (N,) int64;
    returns (N,) values in [-1, 1] (NaN for an image alone in its class). Near 1: a cat's closest wrong
    classes are the same from cat to cat (dark knowledge worth imitating); near 0: image-specific noise."""
    check_tensor(probs, "probs", floating=True, dims=2)
    check_tensor(labels, "labels", dims=1)
    if labels.dtype != torch.int64 or len(labels) != len(probs):
        raise ValueError(f"labels must be int64 class indices, one per row of probs, got {labels.dtype} "
                         f"{tuple(labels.shape)} for probs {tuple(probs.shape)}")
    n, k = probs.shape
    p = probs.double()
    one_hot = F.one_hot(labels, k).double()
    counts = one_hot.sum(0)                                          # (K,) images per class
    sums = one_hot.T @ p                                             # (K, K) per-class sums
    others = (sums[labels] - p) / (counts[labels] - 1).clamp(min=1)[:, None]   # (N, K) leave-one-out mean
    wrong = ~one_hot.bool()
    a, b = p[wrong].view(n, k - 1), others[wrong].view(n, k - 1)
    ra, rb = (x.argsort(1).argsort(1).double() for x in (a, b))      # ranks (no ties in practice)
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    rho = (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1))
    return torch.where(counts[labels] > 1, rho, torch.full_like(rho, float("nan"))).float()


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
        check_number(self.alpha, "alpha", 0.0, 1.0)
        check_number(self.beta, "beta", 0.0, math.inf)
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
    check_model(teacher, "teacher")
    check_model(student, "student")
    if not isinstance(kd, KDConfig):
        raise TypeError(f"kd must be a KDConfig, got {type(kd).__name__}")
    kd.validate()
    check_number(label_smoothing, "label_smoothing", 0.0, 1.0, hi_open=True)
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
    """The one recipe of every ResNet-8 student, scratch and distilled alike: the reference student's
    (`zoo.RECIPES['resnet8']`, today v2: SGD lr 0.1 with Nesterov, cosine with a warm-up over the
    same *fraction* of the run, weight decay 5e-4, no label smoothing, crop + flip + cutout 16,
    precision 'auto') with `epochs`, `seed` and `batch_size` replaced. Only the loss then differs
    between a scratch and a distilled run (`distillation` uses the recipe's label smoothing too)."""
    from dataclasses import replace
    from .zoo import RECIPES
    cfg = replace(RECIPES["resnet8"].config, epochs=epochs, steps=None, seed=seed, batch_size=batch_size)
    cfg.validate()
    return cfg


def student_part(arch: str, kd: KDConfig | None, train: TrainConfig, train_images: int, eval_images: int,
                 data_fingerprint: str, teacher_sha: str | None) -> tuple[str, dict]:
    """(kind, config) naming one student run as a stored part (`slimlab.parts`): the config holds
    everything the run depends on, so its key changes when any input changes."""
    config = {"arch": arch, "kd": asdict(kd) if kd else None, "train": asdict(train), "n": train_images,
              "eval": eval_images, "data": data_fingerprint, "teacher": teacher_sha if kd else None}
    return _kind_of(config), config


def _kind_of(config: dict) -> str:
    """The readable kind of a student part's config, e.g. 'resnet8-KDAT-s2'."""
    kd = config["kd"]
    kind = "scratch" if kd is None else ("AT" if kd["alpha"] == 0 else "KDAT" if kd["beta"] > 0 else "KD")
    return f"{config['arch']}-{kind}-s{config['train']['seed']}"


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
    for s in splits:
        check_choice(s, ("train", "val", "test"), "each of splits")
    check_int(train_images, "train_images (0 = all)", 0)
    check_int(eval_images, "eval_images (0 = all)", 0)
    kind, config = student_part(arch, kd, train, train_images, eval_images, data.fingerprint,
                                model_sha(teacher) if kd is not None else None)
    key = part_key(kind, config)

    def run(path: Path | None) -> tuple[dict, nn.Module]:
        x, y = subset(data.train_x, data.train_y, train_images, seed=0)
        seed_everything(train.seed)
        model = build(arch)
        resume = store.resume_path(kind, config) if path is not None else None   # deleted by store.put
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
               "seconds_per_step": hist.seconds[-1] / hist.step[-1] if hist.step and hist.step[-1] else None,
               "precision": hist.precision,
               "history": {"epoch": hist.epoch, "train_loss": hist.train_loss}}
        for s in splits:   # a seeded stratified subset (the stored test split is ordered by class)
            sx, sy = subset(getattr(data, f"{s}_x"), getattr(data, f"{s}_y"), eval_images, seed=0)
            row[f"{s}_acc"] = evaluate(model, sx, sy)["acc"]
        if path is not None:
            save_state(model, path)
        return json.loads(json.dumps(row)), model   # the same plain types whether trained now or read back

    if store is None:
        return run(None)
    return store.run_model(kind, config, run, lambda p: load_state(build(arch), p), need_model=need_model)


def student_run_part(config: dict, *, data, teacher: tuple[dict, dict] | None,
                     splits: Sequence[str] = ("val", "test")) -> dict:
    """One student run from its part config (`student_part`), for `PartStore.compute`: it pickles, so an
    executor can run it elsewhere. `data` is the data or a `slimlab.cluster.WorkerData`; `teacher` is
    (its .arch, its state dict), rebuilt here and checked against the config's teacher sha256.
    Returns the run's row (no model)."""
    from .cluster import resolve
    from .models import from_arch
    kd = None if config["kd"] is None else KDConfig(**{**config["kd"], "layers": tuple(config["kd"]["layers"])})
    t = None
    if kd is not None:
        if teacher is None:
            raise ValueError("a distilled part needs the teacher (arch, state dict)")
        t = from_arch(teacher[0])
        t.load_state_dict(teacher[1])
        if model_sha(t) != config["teacher"]:
            raise ValueError("the teacher handed to this part is not the one its config names (sha256 differs)")
    row, _ = train_student(resolve(data), t, kd, TrainConfig(**config["train"]), arch=config["arch"],
                           train_images=config["n"], eval_images=config["eval"], splits=splits,
                           need_model=False, progress=False)
    return row


def train_seeds(data, teacher: nn.Module | None, kd: KDConfig | None, trains: Sequence[TrainConfig], *,
                store: PartStore, executor=None, keep_first: bool = False, arch: str = "resnet8",
                train_images: int = 0, eval_images: int = 0, splits: Sequence[str] = ("val", "test"),
                metric: str = "test_acc", progress: bool = True) -> tuple["SeedStats", list[dict], nn.Module | None]:
    """One configuration over several seeds (one TrainConfig each), every run a part of `store`:
    (stats of row[metric], rows in order, the first run's model or None).

    With `keep_first` the first run trains here through `train_student` (its model is kept for a later
    cell); the others go through `store.compute`: stored ones are read back, missing ones computed
    serially here (`executor=None`) or handed to `executor` (e.g. `slimlab.cluster.executor_from_env()`).
    Every part has the same key either way."""
    import functools
    from .cluster import data_for
    if not isinstance(store, PartStore):
        raise TypeError(f"store must be a slimlab.parts.PartStore, got {type(store).__name__}")
    trains = list(trains)
    if not trains or not all(isinstance(t, TrainConfig) for t in trains):
        raise ValueError("trains must be a non-empty sequence of TrainConfig (one per seed)")
    if kd is not None:
        check_model(teacher, "teacher")
    rows: list[dict] = []
    model = None
    if keep_first:
        row, model = train_student(data, teacher, kd, trains[0], arch=arch, train_images=train_images,
                                   eval_images=eval_images, splits=splits, store=store, progress=progress)
        rows.append(row)
    rest = trains[1:] if keep_first else trains
    if rest:
        sha = model_sha(teacher) if kd is not None else None
        configs = [student_part(arch, kd, t, train_images, eval_images, data.fingerprint, sha)[1] for t in rest]
        payload = (teacher.arch, {k: v.detach().cpu() for k, v in teacher.state_dict().items()}) if kd is not None else None
        fn = functools.partial(student_run_part, data=data_for(data, executor), teacher=payload, splits=tuple(splits))
        rows += store.compute(_kind_of, configs, fn, executor, progress=progress, desc=f"{arch} seeds")
    return seed_stats([r[metric] for r in rows]), rows, model


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


@dataclass(frozen=True)
class Welch:
    """Welch's t-test of "mean(a) > mean(b)": the difference of means, t, its degrees of freedom
    (Welch–Satterthwaite) and the one-sided p-value."""
    diff: float   # mean(a) - mean(b), in the values' unit (pt for accuracies)
    t: float      # Welch's t statistic
    df: float     # Welch–Satterthwaite degrees of freedom
    p: float      # one-sided p-value of "mean(a) > mean(b)"

    def __str__(self) -> str:
        return f"{self.diff:+.2f} pt, Welch t = {self.t:.2f} (df {self.df:.1f}), one-sided p = {self.p:.3g}"


def welch_test(a: Sequence[float], b: Sequence[float]) -> Welch:
    """One-sided Welch t-test that the mean of `a` exceeds the mean of `b` (unequal variances;
    `scipy.stats.ttest_ind(a, b, equal_var=False, alternative='greater')`). Each needs >= 2 values.
    When both have zero spread the test is degenerate: p = 0 if mean(a) > mean(b), 1 if it is lower,
    0.5 on a tie (t = ±inf or 0, df = n_a + n_b - 2)."""
    from scipy import stats
    xa, xb = [float(v) for v in a], [float(v) for v in b]
    if len(xa) < 2 or len(xb) < 2:
        raise ValueError(f"welch_test needs at least 2 values on each side, got {len(xa)} and {len(xb)}")
    diff = statistics.fmean(xa) - statistics.fmean(xb)
    va, vb = statistics.variance(xa), statistics.variance(xb)
    if va == 0 and vb == 0:
        t = math.copysign(math.inf, diff) if diff else 0.0
        return Welch(diff, t, float(len(xa) + len(xb) - 2), 0.0 if diff > 0 else 1.0 if diff < 0 else 0.5)
    se2a, se2b = va / len(xa), vb / len(xb)
    df = (se2a + se2b) ** 2 / (se2a ** 2 / (len(xa) - 1) + se2b ** 2 / (len(xb) - 1))
    res = stats.ttest_ind(xa, xb, equal_var=False, alternative="greater")
    return Welch(diff, float(res.statistic), float(df), float(res.pvalue))


def gap_closed(kd: float, scratch: float, teacher: float) -> float | None:
    """The fraction of the teacher–student gap that distillation closed, (kd - scratch) / (teacher -
    scratch), accuracies in %: 0 = no better than scratch, 1 = as good as the teacher. None when the
    teacher is not above the scratch student (no gap to close)."""
    kd, scratch, teacher = (check_number(v, what) for v, what in ((kd, "kd"), (scratch, "scratch"),
                                                                  (teacher, "teacher")))
    return (kd - scratch) / (teacher - scratch) if teacher > scratch else None
