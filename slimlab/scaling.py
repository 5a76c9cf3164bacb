"""Marginal returns of scale: a resumable model-size x data-size sweep, a power-law fit of
error against parameters, and a memorisation-capacity probe in bits per parameter.

* `grid_cells(...)` plans the sweep; `run_sweep(cells, data, store=..., executor=...)` trains
  every cell through the course's one loop (`train.fit`) for the same number of SGD steps whatever
  its data size, measures it with `train.evaluate` and `measure`, and returns a tidy table: a list
  of plain dicts, one row per cell. Each cell is one part of a `slimlab.parts.PartStore` (stored as
  it finishes, so an interrupted sweep resumes), computed through any `concurrent.futures.Executor`
  (a process pool, or Dask through `slimlab.cluster`); by default in this process.
* `fit_power_law(n, err)` fits `err(N) = a * N**(-alpha) + c` with scipy, with the fit's
  covariance and an optional residual bootstrap; `gain_per_doubling` and `params_to_reach`
  turn curves into "what does one more doubling buy" and "how many parameters give X% of the best".
* `capacity_probe(accuracy_fn, sizes, seeds)` finds the largest number of randomly labelled
  examples a model can fit; `bits_per_parameter` turns it into information per parameter.
  `perceptron_accuracy` is the case with a known answer (Cover 1965: 2 bits per weight);
  `probe_capacity(Probe(...), data, sizes, ...)` is the CIFAR-10 case, one stored part per
  (size, seed), every size trained for the same number of SGD steps.

The C1–C3 verdict rules live in `slimlab.claims`.
"""
from __future__ import annotations

import functools
import math
from concurrent.futures import Executor
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from .cluster import data_for, resolve
from .data import CIFAR10, CLASSES, subset
from .parts import PartStore
from .measure import count_macs, count_params, serialized_bytes
from .models import DEPTHS, build
from .train import TrainConfig, evaluate, fit, seed_everything

FIT_THRESHOLD = 99.0     # % training accuracy that counts as "fitted" in the capacity probe
DATA_SEED = 0            # every cell draws its training subset with this seed (nested subsets)
CURVE_POINTS = 8         # validation evaluations along each cell's training (evenly spaced in steps)

# He et al. (2015), CIFAR-10, Table 6: (name, parameters, test accuracy %).
HE_2015 = (("resnet20", 0.27e6, 91.25), ("resnet32", 0.46e6, 92.49), ("resnet44", 0.66e6, 92.83),
           ("resnet56", 0.85e6, 93.03), ("resnet110", 1.7e6, 93.57))


# ---------------------------------------------------------------------------------------------
# the sweep

@dataclass(frozen=True)
class Cell:
    """One sweep cell: train `model` at `width` on `data_size` training images with `seed` for
    `steps` SGD steps (the same for every data size: small sets get more epochs, not fewer steps)."""
    model: str
    width: float
    data_size: int
    seed: int
    steps: int
    batch_size: int = 128
    lr: float = 0.1
    eval_images: int = 0   # images of each split used for the final numbers (0 = all)

    @property
    def key(self) -> str:
        """A file-name-safe identity, e.g. 'resnet8-w0.5-n4000-s0-t1200'."""
        return f"{self.model}-w{self.width:g}-n{self.data_size}-s{self.seed}-t{self.steps}"

    def config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr, seed=self.seed)

    def part_config(self) -> dict:
        """The part's config: the cell and the whole recipe `fit` runs (a new default is a new part)."""
        return {**asdict(self), "train": asdict(self.config())}


def _positive_int(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {type(v).__name__}")
    if v <= 0:
        raise ValueError(f"{what} must be a positive int, got {v}")
    return int(v)


def grid_cells(depths: Sequence[str], widths: Sequence[float], data_sizes: Sequence[int], steps: int, *,
               seeds: Sequence[int] = (0,), batch_size: int = 128, lr: float = 0.1,
               eval_images: int = 0) -> list[Cell]:
    """Plan a sweep: every (depth, width) on every data size with `seeds[0]`, and the extra seeds
    on the main curve only (every model at the largest data size). Returns the cells in order."""
    for name, seq in (("depths", depths), ("widths", widths), ("data_sizes", data_sizes), ("seeds", seeds)):
        if isinstance(seq, (str, bytes)) or not isinstance(seq, Sequence):
            raise TypeError(f"{name} must be a sequence (tuple or list), got {type(seq).__name__}")
        if len(seq) == 0:
            raise ValueError(f"{name} is empty: the sweep grid needs at least one value")
    for d in depths:
        if not isinstance(d, str) or d.strip().lower() not in DEPTHS:
            raise ValueError(f"unknown model {d!r}; allowed: {', '.join(DEPTHS)}")
    for w in widths:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w <= 16:
            raise ValueError(f"widths must be numbers in (0, 16], got {w!r}")
    sizes = [_positive_int(n, "data size") for n in data_sizes]
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int):
            raise TypeError(f"seeds must be ints, got {s!r}")
    steps = _positive_int(steps, "steps")
    _positive_int(batch_size, "batch_size")
    if isinstance(eval_images, bool) or not isinstance(eval_images, int) or eval_images < 0:
        raise ValueError(f"eval_images must be an int >= 0 (0 = all), got {eval_images!r}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    kw = dict(steps=steps, batch_size=batch_size, lr=lr, eval_images=eval_images)
    models = [(d.strip().lower(), float(w)) for d in depths for w in widths]
    cells = [Cell(m, w, n, seeds[0], **kw) for m, w in models for n in sizes]
    cells += [Cell(m, w, max(sizes), s, **kw) for s in seeds[1:] for m, w in models]
    return list(dict.fromkeys(cells))  # drop duplicates, keep order


def _first(x: torch.Tensor, y: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return (x, y) if n == 0 or n >= len(y) else subset(x, y, n, seed=DATA_SEED)


def cell_data(cell: Cell, data) -> CIFAR10:
    """The slices of `data` (anything with train_x … test_y, e.g. `load_cifar10()`) that `cell` uses:
    a stratified `data_size`-image training subset and `eval_images` of validation and test, as a small
    `CIFAR10` (same fingerprint and source) that can be shipped to a worker."""
    for attr in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        if not hasattr(data, attr):
            raise TypeError(f"data must have train_x/train_y/val_x/val_y/test_x/test_y (like load_cifar10()); "
                            f"missing {attr}")
    if cell.data_size > len(data.train_y):
        raise ValueError(f"cell {cell.key} asks for {cell.data_size} training images; only "
                         f"{len(data.train_y)} are available")
    tx, ty = _first(data.train_x, data.train_y, cell.data_size)
    vx, vy = _first(data.val_x, data.val_y, cell.eval_images)
    sx, sy = _first(data.test_x, data.test_y, cell.eval_images)
    return CIFAR10(tx, ty, vx, vy, sx, sy, tuple(getattr(data, "classes", CLASSES)),
                   getattr(data, "fingerprint", ""), getattr(data, "source", ""))


def run_cell(cell: Cell, data: CIFAR10, threads: int | None = None) -> dict:
    """Train and measure one cell; returns its row (accuracies in %, losses in nats, seconds, bytes).

    Validation accuracy is measured at `CURVE_POINTS` evenly spaced steps (`history`), not after
    every epoch: a small training set runs many short epochs."""
    if threads is not None:
        torch.set_num_threads(threads)
    seed_everything(cell.seed)
    model = build(cell.model, cell.width)
    params = count_params(model).total
    macs = count_macs(model)
    at = {max(1, round(cell.steps * (i + 1) / CURVE_POINTS)) for i in range(CURVE_POINTS)}
    curve: dict[str, list] = {"step": [], "val_acc": [], "val_loss": []}

    def on_step(step: int, total: int, net) -> None:
        if step in at:
            m = evaluate(net, data.val_x, data.val_y)
            net.train()
            curve["step"].append(step)
            curve["val_acc"].append(m["acc"])
            curve["val_loss"].append(m["loss"])

    hist = fit(model, data.train_x, data.train_y, cell.config(), on_step=on_step, progress=False)
    n_eval = cell.eval_images or len(data.train_y)
    tr = evaluate(model, data.train_x[:n_eval], data.train_y[:n_eval])
    va = evaluate(model, data.val_x, data.val_y)
    te = evaluate(model, data.test_x, data.test_y)
    return {
        "key": cell.key, **asdict(cell), "params": params, "macs": macs,
        "state_bytes": serialized_bytes(model.cpu()), "precision": hist.precision,
        "train_acc": tr["acc"], "train_loss": tr["loss"], "val_acc": va["acc"], "val_loss": va["loss"],
        "test_acc": te["acc"], "test_loss": te["loss"], "gap": tr["acc"] - te["acc"],
        "epochs": hist.epoch[-1] if hist.epoch else 0.0,
        "seconds": hist.seconds[-1] if hist.seconds else 0.0,
        "history": {"epoch": hist.epoch, "epoch_step": hist.step, "train_loss": hist.train_loss,
                    "train_acc": hist.train_acc, **curve},
    }


def _cell_of(config: dict) -> Cell:
    return Cell(**{k: v for k, v in config.items() if k != "train"})


def sweep_part(config: dict, *, data, threads: int | None = None) -> dict:
    """The part function of one sweep cell (`Cell.part_config()` in, its row out), for `PartStore.compute`.
    `data`: the dataset, or a `slimlab.cluster.WorkerData` a worker resolves to its own copy."""
    cell = _cell_of(config)
    if config.get("train") != asdict(cell.config()):
        raise ValueError(f"part config of {cell.key} holds another training recipe than this slimlab's: {config.get('train')}")
    return run_cell(cell, cell_data(cell, resolve(data)), threads)


def run_sweep(cells: Sequence[Cell], data, *, store: PartStore | None = None,
              executor: Executor | None = None, threads: int | None = None, progress: bool = True) -> list[dict]:
    """Every cell's row, in cell order: read from `store` where stored, trained otherwise (and stored).

    `data` is the full dataset (e.g. `load_cifar10()`); through an executor, workers load their own
    copy of CIFAR-10 (`slimlab.cluster.WorkerData`) rather than receive it. `executor` is any
    `concurrent.futures.Executor` (ProcessPoolExecutor, `slimlab.cluster.DaskExecutor`, …); None
    trains the cells one after another here. `threads`: torch threads inside each cell."""
    if isinstance(cells, Cell) or not isinstance(cells, Sequence) or not all(isinstance(c, Cell) for c in cells):
        raise TypeError("cells must be a list of Cell (see grid_cells)")
    if len(cells) == 0:
        raise ValueError("cells is empty: nothing to run")
    if store is not None and not isinstance(store, PartStore):
        raise TypeError(f"store must be a slimlab.parts.PartStore or None, got {type(store).__name__}")
    if executor is not None and not isinstance(executor, Executor):
        raise TypeError(f"executor must be a concurrent.futures.Executor, got {type(executor).__name__}")
    if threads is not None:
        _positive_int(threads, "threads")
    cell_data(max(cells, key=lambda c: c.data_size), data)        # fail here, not in a worker
    cells = list(dict.fromkeys(cells))
    store = store if store is not None else PartStore(".", enabled=False)
    fn = functools.partial(sweep_part, data=data_for(data, executor), threads=threads)
    before = torch.get_num_threads()
    try:
        rows = store.compute(lambda c: _cell_of(c).key, [c.part_config() for c in cells], fn, executor, progress=progress, desc="sweep cells")
    finally:
        torch.set_num_threads(before)
    return rows


# ---------------------------------------------------------------------------------------------
# tidy-table helpers (plain dicts; no pandas needed)

def select(rows: Iterable[dict], **equal) -> list[dict]:
    """The rows whose fields equal every `field=value` given."""
    return [r for r in rows if all(r.get(k) == v for k, v in equal.items())]


def summarize(rows: Iterable[dict], value: str, by: Sequence[str] = ("model", "width", "data_size")) -> list[dict]:
    """Mean, standard deviation (ddof=1; 0 for one seed) and count of `value` over rows sharing `by`,
    plus the mean parameter count; sorted by parameters then the `by` fields."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in by), []).append(r)
    out = []
    for key, rs in groups.items():
        v = np.array([r[value] for r in rs], dtype=float)
        out.append({**dict(zip(by, key)), "params": rs[0].get("params"), "mean": float(v.mean()),
                    "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v)})
    return sorted(out, key=lambda d: (d["params"] or 0, *[d[k] for k in by]))


def pivot(rows: Iterable[dict], value: str, row_key: str = "params", col_key: str = "data_size"
          ) -> tuple[list, list, np.ndarray]:
    """(row labels, column labels, matrix of the mean `value`) — e.g. test accuracy by model and data size."""
    rows = list(rows)
    rk = sorted({r[row_key] for r in rows})
    ck = sorted({r[col_key] for r in rows})
    m = np.full((len(rk), len(ck)), np.nan)
    for i, a in enumerate(rk):
        for j, b in enumerate(ck):
            vals = [r[value] for r in rows if r[row_key] == a and r[col_key] == b]
            if vals:
                m[i, j] = float(np.mean(vals))
    return rk, ck, m


# ---------------------------------------------------------------------------------------------
# the power law

@dataclass(frozen=True)
class PowerLaw:
    """err(N) = a * N**(-alpha) + c, in the units of the errors fitted (e.g. % test error)."""
    a: float
    alpha: float
    c: float
    alpha_std: float            # from the fit's covariance (nan when there are no spare points)
    c_std: float
    alpha_ci: tuple[float, float] | None   # 95% residual-bootstrap interval, when asked for
    n_points: int

    def __call__(self, n) -> np.ndarray:
        return self.a * np.asarray(n, dtype=float) ** (-self.alpha) + self.c

    def gain_per_doubling(self, n) -> np.ndarray:
        """Error removed (= accuracy gained, same units) by going from N to 2N parameters."""
        return self(n) - self(2 * np.asarray(n, dtype=float))

    def params_for_error(self, err: float) -> float:
        """Parameters at which the fitted error reaches `err` (inf if `err` <= the floor c)."""
        if err <= self.c:
            return math.inf
        return float(((err - self.c) / self.a) ** (-1.0 / self.alpha)) if self.alpha > 0 else math.inf


def _check_curve(n, y, what: str) -> tuple[np.ndarray, np.ndarray]:
    n = np.asarray(n, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if len(n) != len(y):
        raise ValueError(f"parameter counts and {what} differ in length: {len(n)} vs {len(y)}")
    if len(n) == 0:
        raise ValueError(f"parameter counts and {what} are empty")
    if not np.all(np.isfinite(n)) or np.any(n <= 0):
        raise ValueError("parameter counts must be finite and > 0")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{what} must be finite numbers")
    return n, y


def _fit_once(n: np.ndarray, err: np.ndarray, n0: float):
    from scipy.optimize import curve_fit

    def f(x, A, alpha, c):
        return A * (x / n0) ** (-alpha) + c

    lo = float(err.min())
    c0 = 0.5 * lo
    # starting slope from a straight line in log-log after removing c0
    slope = np.polyfit(np.log(n / n0), np.log(np.maximum(err - c0, 1e-9)), 1)[0]
    p0 = [max(float(np.exp(np.mean(np.log(np.maximum(err - c0, 1e-9))))), 1e-6),
          float(np.clip(-slope, 0.01, 3.0)), c0]
    popt, pcov = curve_fit(f, n, err, p0=p0, bounds=([0.0, 0.0, 0.0], [np.inf, 5.0, max(lo, 1e-12)]),
                           maxfev=20000)
    return popt, pcov


def fit_power_law(n, err, *, bootstrap: int = 0, seed: int = 0) -> PowerLaw:
    """Least-squares fit of err(N) = a * N**(-alpha) + c (a, c >= 0; 0 <= alpha <= 5; c <= min err).

    `n`: parameter counts (repeats allowed, e.g. several seeds); `err`: errors (any unit, e.g. %).
    Uncertainty: the covariance's standard errors (needs more points than 3 distinct sizes) and,
    with `bootstrap` > 0, a 95% interval for alpha from that many residual-bootstrap refits."""
    n, err = _check_curve(n, err, "errors")
    if len(np.unique(n)) < 3:
        raise ValueError(f"a 3-parameter power law needs at least 3 distinct parameter counts, got {len(np.unique(n))}")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise ValueError(f"bootstrap must be an int >= 0, got {bootstrap!r}")
    n0 = float(np.exp(np.mean(np.log(n))))
    try:
        (A, alpha, c), pcov = _fit_once(n, err, n0)
    except RuntimeError as e:
        raise ValueError(f"the power-law fit did not converge: {e}") from None
    dof = len(n) - 3
    std = np.sqrt(np.diag(pcov)) if dof > 0 and np.all(np.isfinite(pcov)) else np.full(3, np.nan)
    ci = None
    if bootstrap:
        rng = np.random.default_rng(seed)
        fitted = A * (n / n0) ** (-alpha) + c
        resid = err - fitted
        alphas = []
        for _ in range(bootstrap):
            yb = fitted + rng.choice(resid, size=len(resid), replace=True)
            try:
                alphas.append(_fit_once(n, yb, n0)[0][1])
            except (RuntimeError, ValueError):
                continue
        if alphas:
            lo_, hi_ = np.percentile(alphas, [2.5, 97.5])
            ci = (float(lo_), float(hi_))
    return PowerLaw(a=float(A * n0 ** alpha), alpha=float(alpha), c=float(c), alpha_std=float(std[1]),
                    c_std=float(std[2]), alpha_ci=ci, n_points=len(n))


def gain_per_doubling(n, acc) -> list[tuple[float, float]]:
    """Measured accuracy gained per doubling of parameters between consecutive sizes:
    [(geometric-mean size, gain in accuracy units per doubling), …], sizes ascending."""
    n, acc = _check_curve(n, acc, "accuracies")
    order = np.argsort(n)
    n, acc = n[order], acc[order]
    out = []
    for i in range(len(n) - 1):
        if n[i + 1] == n[i]:
            raise ValueError("parameter counts must be distinct (average seeds first, e.g. with summarize)")
        out.append((float(np.sqrt(n[i] * n[i + 1])), float((acc[i + 1] - acc[i]) / np.log2(n[i + 1] / n[i]))))
    return out


def reach_bracket(n, acc, fraction: float) -> tuple[float, float]:
    """The two neighbouring measured sizes between which accuracy first reaches `fraction` of the
    best measured accuracy: (last size below it, first size at or above it); (n, n) at the smallest."""
    n, acc = _check_curve(n, acc, "accuracies")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1] (e.g. 0.95 for 95% of the best), got {fraction!r}")
    order = np.argsort(n)
    n, acc = n[order], acc[order]
    i = int(np.argmax(acc >= fraction * acc.max()))
    return (float(n[max(i - 1, 0)]), float(n[i]))


def params_to_reach(n, acc, fraction: float) -> float:
    """Fewest parameters at which accuracy reaches `fraction` of the best measured accuracy,
    interpolating linearly in log N between the measured sizes of `reach_bracket` (sizes distinct)."""
    lo, hi = reach_bracket(n, acc, fraction)
    if lo == hi:
        return lo
    n, acc = _check_curve(n, acc, "accuracies")
    a_lo, a_hi = float(acc[n == lo][0]), float(acc[n == hi][0])
    t = (fraction * acc.max() - a_lo) / (a_hi - a_lo)
    return float(np.exp(np.log(lo) + t * (np.log(hi) - np.log(lo))))


# ---------------------------------------------------------------------------------------------
# memorisation capacity

@dataclass(frozen=True)
class Capacity:
    """The largest number of randomly labelled examples a model fits, and what that is in bits."""
    sizes: tuple[int, ...]
    fit_fraction: tuple[float, ...]   # share of seeds whose training accuracy reached the threshold
    mean_acc: tuple[float, ...]       # mean training accuracy (%) at each size
    n_max: float                      # where fit_fraction crosses 1/2 (interpolated in log n)
    censored: str                     # '' | 'above' (fits every size: n_max is a lower bound) | 'below'


def capacity_probe(accuracy_fn: Callable[[int, int], float], sizes: Sequence[int], seeds: Sequence[int] = (0,),
                   *, threshold: float = FIT_THRESHOLD) -> Capacity:
    """Call `accuracy_fn(n, seed)` (training accuracy in % on n randomly labelled examples) for every
    size and seed; n_max is where the share of seeds that fit (accuracy >= `threshold`) crosses 1/2 for the
    last time (a failure below a success is an optimisation failure, not the capacity)."""
    if not callable(accuracy_fn):
        raise TypeError("accuracy_fn must be callable as accuracy_fn(n, seed) -> training accuracy in %")
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or len(sizes) == 0:
        raise ValueError("sizes must be a non-empty sequence of positive ints")
    sizes = sorted(_positive_int(s, "size") for s in sizes)
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"sizes must be distinct, got {sizes}")
    if not isinstance(seeds, Sequence) or len(seeds) == 0:
        raise ValueError("seeds must be a non-empty sequence of ints")
    if not (isinstance(threshold, (int, float)) and 0 < threshold <= 100):
        raise ValueError(f"threshold must be a training accuracy in (0, 100] %, got {threshold!r}")
    frac, mean = [], []
    for s in sizes:
        accs = [float(accuracy_fn(s, seed)) for seed in seeds]
        frac.append(float(np.mean([a >= threshold for a in accs])))
        mean.append(float(np.mean(accs)))
    f = np.array(frac)
    # A model that memorises n labels could memorise any fewer, so a *failure at a smaller size than a success*
    # is an optimisation failure (too few steps at small n), not the capacity: the capacity is bracketed by
    # the largest size that fits and the next one up (the last crossing of 1/2, not the first).
    fits = np.flatnonzero(f >= 0.5)
    if len(fits) == 0:
        n_max, cens = float(sizes[0]), "below"
    elif fits[-1] == len(f) - 1:
        n_max, cens = float(sizes[-1]), "above"
    else:
        j = int(fits[-1]) + 1           # the size above the largest that fits
        t = (f[j - 1] - 0.5) / (f[j - 1] - f[j])
        n_max, cens = float(np.exp(np.log(sizes[j - 1]) + t * (np.log(sizes[j]) - np.log(sizes[j - 1])))), ""
    return Capacity(tuple(sizes), tuple(frac), tuple(mean), n_max, cens)


def bits_per_parameter(n_max: float, params: int, num_classes: int) -> float:
    """Bits stored per parameter when `n_max` labels, each uniform over `num_classes`, are memorised:
    n_max * log2(num_classes) / params."""
    if not (isinstance(n_max, (int, float)) and n_max > 0):
        raise ValueError(f"n_max must be > 0, got {n_max!r}")
    _positive_int(params, "params")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    return float(n_max * math.log2(num_classes) / params)


def perceptron_accuracy(dim: int, n: int, seed: int = 0, steps: int = 300) -> float:
    """Training accuracy (%) of a linear classifier without bias (dim weights) fitted to n random
    Gaussian points in `dim` dimensions with random ±1 labels (logistic loss, L-BFGS).

    The case with a known answer: Cover (1965) shows such points are separable with probability
    1/2 at n = 2 * dim, i.e. a perceptron stores 2 bits per weight."""
    dim, n, steps = _positive_int(dim, "dim"), _positive_int(n, "n"), _positive_int(steps, "steps")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (n,), generator=g).double() * 2 - 1
    z = x * y[:, None]                         # separable iff some w has z @ w > 0 for every row
    w = torch.zeros(dim, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=steps, tolerance_grad=1e-12, tolerance_change=1e-15,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.softplus(-(z @ w)).mean()
        loss.backward()
        return loss
    opt.step(closure)
    return float(100.0 * ((z @ w.detach()) > 0).double().mean())


def random_label_accuracy(model: str, width: float, images: torch.Tensor, n: int, seed: int = 0, *,
                          steps: int = 2000, lr: float = 0.05, num_classes: int = 10,
                          batch_size: int = 128) -> float:
    """Training accuracy (%) after fitting `model` at `width` to n of `images` with labels drawn
    uniformly at random (seeded), for `steps` SGD steps whatever n (batches of min(batch_size, n)
    images: a small n is not under-optimised). No augmentation, label smoothing or weight decay."""
    n = _positive_int(n, "n")
    if n > len(images):
        raise ValueError(f"n={n} exceeds the {len(images)} images given")
    g = torch.Generator().manual_seed(10_007 * seed + n)
    idx = torch.randperm(len(images), generator=g)[:n]
    x = images[idx]
    y = torch.randint(0, num_classes, (n,), generator=g)
    seed_everything(seed)
    net = build(model, width, num_classes)
    cfg = TrainConfig(steps=_positive_int(steps, "steps"), batch_size=min(_positive_int(batch_size, "batch_size"), n),
                      lr=lr, weight_decay=0.0, label_smoothing=0.0, augment=False, seed=seed)
    fit(net, x, y, cfg, progress=False)
    return evaluate(net, x, y)["acc"]


@dataclass(frozen=True)
class Probe:
    """The recipe of a random-label capacity probe: `model` at `width`, `steps` SGD steps at every size."""
    model: str
    width: float
    steps: int
    lr: float = 0.05
    batch_size: int = 128
    num_classes: int = 10


def capacity_part(config: dict, *, data) -> dict:
    """The part function of one probe point (`Probe` fields + n + seed in, {'train_acc'} out).
    `data`: the dataset, or a `slimlab.cluster.WorkerData` a worker resolves to its own copy."""
    probe = Probe(**{k: v for k, v in config.items() if k not in ("n", "seed")})
    acc = random_label_accuracy(probe.model, probe.width, resolve(data).train_x, config["n"], config["seed"],
                                steps=probe.steps, lr=probe.lr, num_classes=probe.num_classes,
                                batch_size=probe.batch_size)
    return {"train_acc": acc}


def probe_capacity(probe: Probe, data, sizes: Sequence[int], seeds: Sequence[int] = (0,), *,
                   store: PartStore | None = None, executor: Executor | None = None,
                   threshold: float = FIT_THRESHOLD, progress: bool = False) -> Capacity:
    """`capacity_probe` of `probe` on `data`'s training images: one part per (size, seed), stored in
    `store` and computed through `executor` like the sweep's cells."""
    if not isinstance(probe, Probe):
        raise TypeError(f"probe must be a scaling.Probe, got {type(probe).__name__}")
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or not isinstance(seeds, Sequence):
        raise ValueError("sizes and seeds must be sequences of ints")
    sizes = [_positive_int(n, "size") for n in sizes]
    store = store if store is not None else PartStore(".", enabled=False)
    configs = [{**asdict(probe), "n": n, "seed": s} for n in sizes for s in seeds]
    recs = store.compute(lambda c: f"capacity-{c['model']}-w{c['width']:g}-n{c['n']}-s{c['seed']}", configs,
                         functools.partial(capacity_part, data=data_for(data, executor)), executor,
                         progress=progress, desc=f"capacity {probe.model} w{probe.width:g}")
    acc = {(c["n"], c["seed"]): r["train_acc"] for c, r in zip(configs, recs)}
    return capacity_probe(lambda n, seed: acc[(n, seed)], sizes, seeds, threshold=threshold)
