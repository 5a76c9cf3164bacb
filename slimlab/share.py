"""Parameter sharing: find a cheaper function that gives nearly the same outputs.

Three routes, one section each:

* **Low-rank** (PCA for weights): a layer's weight matrix W (out, in·k·k) is replaced by its
  truncated SVD, W ≈ U_r S_r V_rᵀ. A Linear becomes Linear(in→r) then Linear(r→out); a
  Conv2d becomes a k×k conv to r channels then a 1×1 conv (the "two-layer" scheme of Jaderberg
  et al. / Zhang et al.). The rank comes from a count or from the retained energy Σ_{i<r} s_i² / Σ s_i².
* **k-means sharing** (Han et al., Deep Compression; Deep k-Means): each layer's weights are
  clustered into 2^b values; the layer keeps a float codebook and a b-bit index per weight.
  The codebook is a `torch.nn.utils.parametrize` parametrization (weight = codebook[index]), so
  fine-tuning with the common `fit` gathers the gradients of all weights of a cluster into
  their centroid; an optional mask keeps pruned weights at exactly zero (weight = mask · codebook[index]),
  so the same parametrization serves pruned-then-shared models (notebook 06). `export_shared` writes
  packed indices plus codebooks to a real file (the course's one packed format, `slimlab.packing`);
  `huffman_size` measures the index streams coded with its canonical Huffman coder against the
  entropy bound.
  `KMeansPenalty` is the Deep k-Means regulariser: an `extra_loss` for `fit` that pulls every
  weight toward its cluster's mean *before* the clustering.
* **Hashing** (Chen et al., HashedNets): `HashedLinear` / `HashedConv2d` draw every virtual
  weight from a small real parameter vector through a deterministic hash, times a ±1 sign hash.

The verdict rules for C9 and C10 live in `slimlab.claims`; this module has no verdict logic.
"""
from __future__ import annotations

import copy
import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from .checks import check_choice, check_int, check_model, check_number, check_tensor
from .files import CheckpointError, load_state
from .models import build, from_arch, weight_layers
from .packing import huffman_code, pack_bits
from .train import TrainConfig

INITS = ("linear", "density", "random")


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------

def _check_weight(weight) -> torch.Tensor:
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.dim() < 2:
        raise ValueError(f"weight must have >= 2 dims (out, in, ...), got shape {tuple(weight.shape)}")
    return weight


def _check_bits(bits) -> int:
    return check_int(bits, "bits", 1, 16)


def _check_energy(energy) -> float:
    return check_number(energy, "energy (fraction of Σ s² kept)", 0.0, 1.0, lo_open=True)


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def finetune_config(steps: int, batch_size: int = 128, seed: int = 0) -> TrainConfig:
    """The short fine-tune used after factorizing or clustering: cosine from lr 0.01, `steps` steps."""
    return TrainConfig(steps=steps, batch_size=batch_size, lr=0.01, weight_decay=5e-4,
                       label_smoothing=0.1, schedule="cosine", warmup=0.1, seed=seed)


# ----------------------------------------------------------------------------------------------
# 1. low-rank factorization
# ----------------------------------------------------------------------------------------------

def singular_values(weight: torch.Tensor) -> torch.Tensor:
    """Singular values (descending, float64) of `weight` viewed as a matrix (out, in·k·k)."""
    w = _check_weight(weight).detach().reshape(weight.shape[0], -1).double().cpu()
    return torch.linalg.svdvals(w)


def rank_for_energy(s: torch.Tensor, energy: float) -> int:
    """Smallest rank r whose singular values s[:r] keep at least `energy` (0–1] of Σ s²."""
    if not isinstance(s, torch.Tensor) or s.dim() != 1 or len(s) == 0:
        raise TypeError("s must be a non-empty 1-D tensor of singular values")
    _check_energy(energy)
    e = (s.double() ** 2).cumsum(0)
    e = e / e[-1]
    r = int(torch.searchsorted(e, torch.tensor([energy - 1e-12], dtype=e.dtype)).item()) + 1
    return min(r, len(s))


def _check_rank(rank, full: int) -> int:
    return check_int(rank, "rank", 1, full)


def svd_factors(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) with A (out, r) and B (r, in·k·k), A @ B the best rank-r approximation of `weight`.

    Each factor takes √s so both have comparable scale.
    """
    w = _check_weight(weight).detach().reshape(weight.shape[0], -1).double().cpu()
    _check_rank(rank, min(w.shape))
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    root = s[:rank].sqrt()
    return (u[:, :rank] * root).to(weight.dtype), (root[:, None] * vh[:rank]).to(weight.dtype)


def reconstruct(weight: torch.Tensor, rank: int) -> torch.Tensor:
    """The best rank-`rank` approximation of `weight`, same shape (Eckart–Young)."""
    a, b = svd_factors(weight, rank)
    return (a.double() @ b.double()).to(weight.dtype).reshape(weight.shape)


def reconstruction_error(weight: torch.Tensor, rank: int) -> float:
    """Relative Frobenius error ‖W − W_r‖ / ‖W‖ of the rank-`rank` approximation (0–1)."""
    w = _check_weight(weight).detach().double()
    return ((w - reconstruct(w, rank)).norm() / w.norm()).item()


def factorize_linear(layer: nn.Linear, rank: int) -> nn.Sequential:
    """Linear(in→out) as Linear(in→r, no bias) then Linear(r→out, the original bias)."""
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"layer must be an nn.Linear, got {type(layer).__name__}")
    a, b = svd_factors(layer.weight, rank)
    kw = {"device": layer.weight.device, "dtype": layer.weight.dtype}
    first = nn.Linear(layer.in_features, rank, bias=False, **kw)
    second = nn.Linear(rank, layer.out_features, bias=layer.bias is not None, **kw)
    with torch.no_grad():
        first.weight.copy_(b)
        second.weight.copy_(a)
        if layer.bias is not None:
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second)


def factorize_conv(conv: nn.Conv2d, rank: int) -> nn.Sequential:
    """Conv2d(cin→cout, k×k) as a k×k conv cin→r (same stride/padding) then a 1×1 conv r→cout."""
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
    if conv.groups != 1 or conv.padding_mode != "zeros":
        raise ValueError("only convolutions with groups=1 and zero padding can be factorized")
    a, b = svd_factors(conv.weight, rank)
    kw = {"device": conv.weight.device, "dtype": conv.weight.dtype}
    first = nn.Conv2d(conv.in_channels, rank, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, bias=False, **kw)
    second = nn.Conv2d(rank, conv.out_channels, 1, bias=conv.bias is not None, **kw)
    with torch.no_grad():
        first.weight.copy_(b.reshape(rank, *conv.weight.shape[1:]))
        second.weight.copy_(a.reshape(conv.out_channels, rank, 1, 1))
        if conv.bias is not None:
            second.bias.copy_(conv.bias)
    return nn.Sequential(first, second)


@dataclass(frozen=True)
class LayerRank:
    """What `low_rank` did to one layer."""
    name: str
    shape: tuple[int, ...]
    full_rank: int
    rank: int              # rank asked for (energy or count)
    energy: float          # fraction of Σ s² kept at that rank
    params_before: int
    params_after: int      # equal to params_before when the layer was left dense
    factorized: bool


def low_rank(model: nn.Module, *, energy: float | None = None, rank: int | None = None
             ) -> tuple[nn.Module, list[LayerRank]]:
    """A copy of `model` with every Conv2d/Linear factorized at the rank given by `energy` or `rank`.

    Exactly one of `energy` (fraction of Σ s² kept per layer, in (0, 1]) or `rank` (the same
    count for every layer, >= 1) must be given. A layer is factorized only where the two
    factors hold fewer parameters than the original (r·(out + in·k·k) < out·in·k·k) and the
    rank is below full; otherwise it stays dense. Returns (new model in eval mode, per-layer report).
    The new model's `.arch` records the ranks ('low_rank'), so `export_shared` writes a file of it
    that `load_shared` rebuilds on its own.
    """
    check_model(model)
    if (energy is None) == (rank is None):
        raise ValueError("give exactly one of energy= (fraction kept, in (0, 1]) or rank= (int >= 1)")
    if rank is not None:
        check_int(rank, "rank", 1)
    if energy is not None:
        _check_energy(energy)
    new = copy.deepcopy(model).cpu().to(memory_format=torch.contiguous_format)
    report = []
    for name, layer in weight_layers(new).items():
        w = layer.weight
        s = singular_values(w)
        full = len(s)
        r = rank_for_energy(s, energy) if energy is not None else min(rank, full)
        kept = float((s[:r] ** 2).sum() / (s ** 2).sum())
        m, n = w.shape[0], w[0].numel()
        before = m * n
        after = r * (m + n)
        do = r < full and after < before
        if do:
            _set_module(new, name, factorize_conv(layer, r) if isinstance(layer, nn.Conv2d)
                        else factorize_linear(layer, r))
        report.append(LayerRank(name, tuple(w.shape), full, r, kept, before, after if do else before, do))
    if isinstance(getattr(new, "arch", None), dict):   # so that a file of it (export_shared) rebuilds it
        new.arch = {**new.arch, "low_rank": {r.name: r.rank for r in report if r.factorized}}
    return new.eval(), report


def layer_spectra(model: nn.Module) -> dict[str, torch.Tensor]:
    """Singular values of every Conv2d/Linear weight of `model`, by layer name."""
    check_model(model)
    return {n: singular_values(m.weight) for n, m in weight_layers(model).items()}


# ----------------------------------------------------------------------------------------------
# 2. k-means weight sharing
# ----------------------------------------------------------------------------------------------

def _nearest(values: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook entry for every value (1-D, exact; ties go to the lower value)."""
    cb = codebook.detach().cpu().numpy()
    order = np.argsort(cb, kind="stable")
    c = cb[order]
    pos = np.searchsorted((c[1:] + c[:-1]) / 2, values.detach().cpu().numpy(), side="left")
    return torch.from_numpy(order[pos].astype(np.int64))


def _lloyd_update(xs: np.ndarray, cs: np.ndarray, cs2: np.ndarray, c: np.ndarray) -> np.ndarray:
    """One Lloyd iteration on sorted values `xs` (float64) with their cumulative sums `cs`, `cs2` (of x and
    x², a leading 0) and the sorted codebook `c`: the new sorted codebook. Each cluster is a run of the
    sorted values between two midpoints (a value on a midpoint goes to the lower centroid), so its sum and
    count come from the cumulative sums (O(k log n), not O(n·k))."""
    ends = np.searchsorted(xs, (c[1:] + c[:-1]) / 2, side="right")     # values <= mid go low
    ends = np.concatenate([[0], ends, [len(xs)]])
    counts = ends[1:] - ends[:-1]
    sums = cs[ends[1:]] - cs[ends[:-1]]
    new = np.where(counts > 0, sums / np.maximum(counts, 1), c)
    empty = np.flatnonzero(counts == 0)
    if len(empty):                       # split the clusters with the largest sum of squares
        sse = cs2[ends[1:]] - cs2[ends[:-1]] - sums * new
        donors = [d for d in np.argsort(-sse, kind="stable") if counts[d] >= 2 and xs[ends[d]] < xs[ends[d + 1] - 1]]
        for e, d in zip(empty, donors):
            lo, hi = xs[ends[d]], xs[ends[d + 1] - 1]
            new[e] = lo if new[d] - lo > hi - new[d] else hi
        new = np.sort(new)
    return new


def lloyd_step(values: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """One iteration of `kmeans_1d`'s Lloyd loop from any `codebook`: assign every value to its nearest
    centroid (a value halfway between two goes to the lower), move each centroid to the mean of its
    values, and move each centroid left without values to the point farthest from its new centroid in
    the cluster with the largest sum of squares (the next largest for a second empty one, …; a centroid
    whose donor cannot be split keeps its place). Returns the new codebook, sorted ascending, float32."""
    if not isinstance(values, torch.Tensor) or values.numel() == 0:
        raise TypeError("values must be a non-empty torch.Tensor")
    if not isinstance(codebook, torch.Tensor) or codebook.dim() != 1 or codebook.numel() == 0:
        raise TypeError("codebook must be a non-empty 1-D torch.Tensor")
    xs = np.sort(values.detach().reshape(-1).cpu().double().numpy())
    cs = np.concatenate([[0.0], np.cumsum(xs)])
    cs2 = np.concatenate([[0.0], np.cumsum(xs * xs)])
    c = np.sort(codebook.detach().cpu().double().numpy())
    return torch.from_numpy(_lloyd_update(xs, cs, cs2, c)).float()


LLOYD_ITERS = 1000   # at most this many Lloyd iterations; they stop as soon as the codebook stops changing


def kmeans_1d(values: torch.Tensor, bits: int, init: str = "linear", iters: int = LLOYD_ITERS,
              seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster a tensor of weights into 2^bits shared values (Lloyd's algorithm in 1-D).

    init: 'linear' (evenly spaced between min and max), 'density' (evenly spaced in the
    weights' CDF, i.e. quantiles) or 'random' (2^bits weights drawn at random, seeded), as
    compared by Han et al. Lloyd's iterations run until the codebook stops changing, at most `iters`
    (30 iterations, the old default, left the 4- and 5-bit codebooks of ResNet-20 up to 40% and 107%
    above the converged within-cluster sum of squares; 1000 converge every layer of it at 1–8 bits).
    Returns (codebook (2^bits,) float32, index int64 of values' shape); every value is assigned to
    its nearest centroid. A cluster left empty is moved, as scikit-learn's KMeans does, to the point
    farthest from its centroid in the cluster with the largest sum of squares (so that no entry of
    the codebook is wasted while some cluster could still be split); where no cluster can be split
    (fewer distinct values than entries), it keeps its centroid.
    """
    if not isinstance(values, torch.Tensor) or values.numel() == 0:
        raise TypeError("values must be a non-empty torch.Tensor")
    _check_bits(bits)
    check_choice(init, INITS, "init")
    check_int(iters, "iters", 0)
    x = values.detach().reshape(-1).cpu().double()
    k = 2 ** bits
    if init == "linear":
        c = torch.from_numpy(np.linspace(x.numpy().min(), x.numpy().max(), k))
    elif init == "density":
        c = torch.quantile(x.float(), (torch.arange(k, dtype=torch.float32) + 0.5) / k).double()
    else:
        g = torch.Generator().manual_seed(seed)
        c = x[torch.randint(len(x), (k,), generator=g)]
    # Lloyd on sorted values: each cluster is a run of the sorted weights between two midpoints,
    # so its sum and count come from a cumulative sum (O(k log n) per iteration, not O(n·k)).
    # (NumPy here: torch.searchsorted is slow for this many small calls on CPU.)
    c, xs = np.sort(c.numpy()), np.sort(x.numpy())
    cs = np.concatenate([[0.0], np.cumsum(xs)])
    cs2 = np.concatenate([[0.0], np.cumsum(xs * xs)])
    for _ in range(iters):
        new = _lloyd_update(xs, cs, cs2, c)
        if np.array_equal(new, c):
            break
        c = new
    c = torch.from_numpy(c).float()
    idx = _nearest(values.detach().reshape(-1).float().cpu(), c)
    return c, idx.reshape(values.shape)


GRADS = ("sum", "mean")


class Codebook(nn.Module):
    """Parametrization weight = codebook[index], or mask · codebook[index] when a mask is given.

    `Codebook(codebook, index, bits, grad="sum", mask=None)`:
      * codebook — (K,) float values, K <= 2^bits, trained (an nn.Parameter);
      * index — int tensor of the weight's shape, each entry in 0..K-1 (fixed buffer);
      * bits — the width of one stored index (1..16);
      * grad — 'sum': a centroid's gradient is the sum of the gradients of the weights that share it
        (Han et al.; big clusters take big steps, so it needs a small learning rate); 'mean': that sum
        divided by the cluster's size, so a centroid moves like one ordinary weight;
      * mask — optional bool tensor of the weight's shape: False positions (pruned weights) are exactly
        0.0, whatever the codebook becomes, and neither count in a cluster's size nor send gradient
        to a centroid (their index entries are ignored).
    The original weight stays reachable (`parametrizations.weight.original`) but is not used.
    """

    def __init__(self, codebook: torch.Tensor, index: torch.Tensor, bits: int, grad: str = "sum",
                 mask: torch.Tensor | None = None):
        super().__init__()
        self.bits = _check_bits(bits)
        self.grad = check_choice(grad, GRADS, "grad")
        check_tensor(codebook, "codebook", floating=True, dims=1, finite=True)
        check_tensor(index, "index")
        if index.is_floating_point() or index.dtype == torch.bool:
            raise TypeError(f"index must be an integer tensor, got dtype {index.dtype}")
        if len(codebook) > 2 ** bits:
            raise ValueError(f"codebook has {len(codebook)} entries; at most 2^bits = {2 ** bits} fit {bits}-bit indices")
        keep = None
        if mask is not None:
            check_tensor(mask, "mask")
            if mask.dtype != torch.bool or mask.shape != index.shape:
                raise ValueError(f"mask must be a bool tensor of the index's shape {tuple(index.shape)}, "
                                 f"got {mask.dtype} {tuple(mask.shape)}")
            keep = mask.detach().clone()
        used = index[keep] if keep is not None else index
        if used.numel() and (int(used.min()) < 0 or int(used.max()) >= len(codebook)):
            raise ValueError(f"index entries must lie in 0..{len(codebook) - 1} (the codebook's entries)")
        self.codebook = nn.Parameter(codebook.detach().clone().float())
        idx = index.detach().clone().long()
        if keep is not None:
            idx[~keep] = 0                                 # ignored entries: any valid index
        self.register_buffer("index", idx)
        self.register_buffer("mask", keep)                 # None when every weight is kept
        counts = torch.bincount(used.reshape(-1).long(), minlength=len(self.codebook)).clamp(min=1)
        self.register_buffer("inv_count", 1.0 / counts.float(), persistent=False)

    def forward(self, original: torch.Tensor) -> torch.Tensor:  # original is ignored (kept reachable)
        cb = self.codebook
        if self.grad == "mean":  # same values, gradient scaled by 1 / cluster size
            cb = (cb - cb.detach()) * self.inv_count + cb.detach()
        w = cb[self.index]
        if self.mask is not None:
            w = w.masked_fill(~self.mask, 0.0)             # exactly +0.0, no gradient to any centroid
        return w.to(original.dtype)

    def extra_repr(self) -> str:
        kept = f", kept={int(self.mask.sum())}" if self.mask is not None else ""
        return (f"bits={self.bits}, entries={len(self.codebook)}, weights={self.index.numel()}{kept}, "
                f"grad={self.grad}")


@dataclass(frozen=True)
class KMeansConfig:
    """How to share weights: `bits` per index (2^bits entries per layer), the init, Lloyd iterations,
    and how fine-tuning gathers gradients per centroid ('sum' as Han et al., or 'mean')."""
    bits: int = 4
    init: str = "linear"
    iters: int = LLOYD_ITERS
    seed: int = 0
    grad: str = "sum"

    def validate(self) -> None:
        _check_bits(self.bits)
        check_choice(self.init, INITS, "init")
        check_int(self.iters, "iters", 0)
        check_int(self.seed, "seed")
        check_choice(self.grad, GRADS, "grad")


def kmeans_share(model: nn.Module, config: KMeansConfig | None = None) -> nn.Module:
    """A copy of `model` whose every Conv2d/Linear weight is k-means shared (a `Codebook` parametrization)."""
    check_model(model)
    cfg = config if config is not None else KMeansConfig()
    if not isinstance(cfg, KMeansConfig):
        raise TypeError(f"config must be a KMeansConfig, got {type(cfg).__name__}")
    cfg.validate()
    new = copy.deepcopy(model).cpu().to(memory_format=torch.contiguous_format)
    for i, (_, layer) in enumerate(weight_layers(new).items()):
        if parametrize.is_parametrized(layer, "weight"):
            raise ValueError("model already has parametrized weights; share an unparametrized model")
        cb, idx = kmeans_1d(layer.weight, cfg.bits, cfg.init, cfg.iters, seed=cfg.seed + i)
        parametrize.register_parametrization(layer, "weight", Codebook(cb, idx, cfg.bits, cfg.grad))
    return new.eval()


def shared_layers(model: nn.Module) -> dict[str, Codebook]:
    """The `Codebook` parametrization of every k-means-shared layer of `model`, by layer name."""
    check_model(model)
    out = {}
    for name, mod in model.named_modules():
        if parametrize.is_parametrized(mod, "weight"):
            p = mod.parametrizations.weight[0]
            if isinstance(p, Codebook):
                out[name] = p
    return out


def unshare_(model: nn.Module) -> nn.Module:
    """Make the sharing permanent in place: plain weights equal to codebook[index]; returns `model`."""
    for name in shared_layers(model):
        parametrize.remove_parametrizations(model.get_submodule(name), "weight", leave_parametrized=True)
    return model


def kmeans_error(model: nn.Module, bits: int, init: str = "linear", iters: int = LLOYD_ITERS) -> float:
    """Relative clustering error of `model` at `bits`: Σ‖W − C[idx]‖² / Σ‖W‖² over every Conv2d/Linear
    weight, with each layer clustered by `kmeans_1d`. 0 means sharing changes nothing."""
    check_model(model)
    _check_bits(bits)
    err = tot = 0.0
    for _, layer in weight_layers(model).items():
        w = layer.weight.detach().float().cpu()
        cb, idx = kmeans_1d(w, bits, init, iters)
        err += float(((w - cb[idx]) ** 2).sum())
        tot += float((w ** 2).sum())
    if tot == 0.0:
        raise ValueError("model has no Conv2d/Linear weights (or all are zero)")
    return err / tot


class KMeansPenalty:
    """A Deep k-Means-style regulariser, as an `extra_loss` for `train.fit`.

    Adds strength · Σ_layers Σ_i (w_i − μ_{a(i)})² to the loss, where a(i) is weight i's cluster
    in a per-layer 1-D k-means at `bits` and μ_k is the *current* mean of cluster k's weights. The
    gradient on each weight is 2·strength·(w_i − μ_{a(i)}): every weight is pulled toward its centroid
    during retraining, so the clustering that follows changes the function less. The assignments
    are recomputed (Lloyd, `init`) every `refresh` steps. Wu et al. (Deep k-Means, 2018) use a spectrally
    relaxed form of this k-means objective and cluster weight vectors; here it is the hard-assignment
    form on scalars, matching `kmeans_share`.
    """

    def __init__(self, bits: int = 2, strength: float = 1.0, refresh: int = 50, init: str = "linear"):
        self.bits = _check_bits(bits)
        if isinstance(strength, bool) or not isinstance(strength, (int, float)):
            raise TypeError(f"strength must be a number, got {type(strength).__name__}")
        if not (math.isfinite(strength) and strength >= 0):
            raise ValueError(f"strength must be a finite number >= 0, got {strength}")
        if isinstance(refresh, bool) or not isinstance(refresh, int) or refresh < 1:
            raise ValueError(f"refresh must be an int >= 1 (steps between re-assignments), got {refresh!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.strength, self.refresh, self.init = float(strength), refresh, init
        self.steps = 0
        self.assign: dict[str, torch.Tensor] = {}

    def reassign(self, model: nn.Module) -> None:
        """Cluster every layer's current weights again (the k-means assignment step)."""
        check_model(model)
        self.assign = {}
        for name, layer in weight_layers(model).items():
            _, idx = kmeans_1d(layer.weight, self.bits, self.init)
            self.assign[name] = idx.reshape(-1).to(layer.weight.device)
        if not self.assign:
            raise ValueError("model has no Conv2d/Linear layers to regularise")

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """Σ_layers Σ_i (w_i − μ_{a(i)})² under the stored assignments (differentiable; no strength)."""
        check_model(model)
        if not self.assign:
            self.reassign(model)
        k = 2 ** self.bits
        total = None
        for name, layer in weight_layers(model).items():
            if name not in self.assign:
                raise ValueError(f"layer {name!r} has no assignment; call reassign(model) for this model")
            w, idx = layer.weight.reshape(-1), self.assign[name]
            if idx.numel() != w.numel():
                raise ValueError(f"layer {name!r} changed size since the last reassign")
            counts = torch.bincount(idx, minlength=k).clamp(min=1).to(w.dtype)
            means = torch.zeros(k, dtype=w.dtype, device=w.device).index_add(0, idx, w) / counts
            term = ((w - means[idx]) ** 2).sum()
            total = term if total is None else total + term
        return total

    def __call__(self, model, x=None, y=None, logits=None) -> torch.Tensor:
        if self.steps % self.refresh == 0 or not self.assign:
            self.reassign(model)
        self.steps += 1
        return self.strength * self.penalty(model)

    def __repr__(self) -> str:
        return (f"KMeansPenalty(bits={self.bits}, strength={self.strength:g}, refresh={self.refresh}, "
                f"init={self.init!r})")


def export_shared(model: nn.Module, path: str | os.PathLike) -> int:
    """Write `model` to `path`: shared layers as float32 codebook + packed indices, the rest exactly.

    The file is the course's one packed format (`packing.pack_state`; no pickle). A shared layer is its
    float32 codebook and its indices packed at b bits (`packing.CodebookGrid`); a masked codebook also
    stores the positions of its nonzero weights — the cheaper of a 1-bit mask and the gap stream — and
    indices for those only. Every other weight is raw float32 (with positions only where it has zeros
    and they make it smaller), every other tensor exact. An unshared model exports as plain float32 in
    the same format, the fair baseline. Written atomically; returns the file size in bytes.
    """
    from .models import baked_state_dict
    from .packing import CodebookGrid, pack_state
    check_model(model)
    arch = getattr(model, "arch", None)
    if not isinstance(arch, dict) or "name" not in arch:
        raise TypeError("model must be a slimlab CIFAR ResNet (with an .arch dict from models.build)")
    layers = list(weight_layers(model))
    shared = shared_layers(model)
    grids = {n: CodebookGrid(p.codebook.detach().cpu().float(), p.index.detach().cpu(), p.bits) for n, p in shared.items()}
    sparse = {n: True if n in shared and shared[n].mask is not None else "auto" for n in layers}
    return pack_state(path, arch, baked_state_dict(model), layers=layers, sparse=sparse, grids=grids,
                      meta={"kind": "shared"}).bytes


def load_shared(path: str | os.PathLike) -> nn.Module:
    """Read a file from `export_shared` back into a plain model (weights = codebook[index]), eval mode;
    a low-rank model (from `low_rank`) comes back with the same factored layers. A missing file raises
    FileNotFoundError; any other file, or a damaged one, `files.CheckpointError` (a ValueError) naming it."""
    from .packing import model_from, read_packed
    what = "slimlab shared-weights file"
    u = read_packed(path, what)
    model = model_from(u, what)
    try:
        for name, r in u.arch.get("low_rank", {}).items():   # a low-rank model: factor the same layers, same ranks
            layer = model.get_submodule(name)
            _set_module(model, name, factorize_conv(layer, r) if isinstance(layer, nn.Conv2d) else factorize_linear(layer, r))
    except (AttributeError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path} is a damaged {what}: its low-rank record is unusable ({e})") from None
    model.arch = dict(u.arch)
    load_state(model, u.state, path, what)
    return model.eval()


@dataclass(frozen=True)
class HuffmanSize:
    """Sizes of the index streams of a shared model, in bytes (entropy bound in bits and bytes)."""
    n_weights: int
    fixed_bytes: int        # indices packed at `bits` bits each
    huffman_bytes: int      # canonical Huffman streams (slimlab.packing), one code per layer, byte-padded
    table_bytes: int        # one code-length byte per codebook entry per layer (the canonical code table)
    entropy_bits: float     # Σ_layers N·H(index distribution): the bound for any per-symbol code

    @property
    def entropy_bytes(self) -> float:
        return self.entropy_bits / 8

    def as_dict(self) -> dict:
        return {**asdict(self), "entropy_bytes": self.entropy_bytes}


def entropy_bits(index: torch.Tensor) -> float:
    """N·H of the empirical distribution of the ints in `index` (bits): the Huffman lower bound."""
    if not isinstance(index, torch.Tensor) or index.is_floating_point():
        raise TypeError("index must be an integer torch.Tensor")
    counts = torch.unique(index.reshape(-1), return_counts=True)[1].double()
    p = counts / counts.sum()
    return float(-(counts * p.log2()).sum())


def huffman_size(model: nn.Module) -> HuffmanSize:
    """Huffman-coded size of every shared layer's index stream vs fixed-width packing and entropy.

    The coder is `slimlab.packing.huffman_code` (canonical: only the code lengths are stored). A
    Huffman code spends at least 1 bit per symbol and never more than the fixed b bits, so it gains
    nothing at 1 bit and little at 2; it stays within 1 bit per symbol of the entropy bound. Pruned
    weights of a masked codebook are not coded (their positions are the mask's business)."""
    shared = shared_layers(model)
    if not shared:
        raise ValueError("model has no k-means-shared layers (use kmeans_share first)")
    n = fixed = huff = table = 0
    ent = 0.0
    for p in shared.values():
        idx = p.index[p.mask] if p.mask is not None else p.index.reshape(-1)
        lengths, data, _ = huffman_code(idx.numpy(), 2 ** p.bits)
        n += idx.numel()
        fixed += pack_bits(idx, p.bits).numel()
        huff += len(data)
        table += len(lengths)
        ent += entropy_bits(idx)
    return HuffmanSize(n, fixed, huff, table, ent)


# ----------------------------------------------------------------------------------------------
# 3. HashedNets
# ----------------------------------------------------------------------------------------------

_M64 = (1 << 64) - 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on uint64 arrays (wrap-around arithmetic): a good cheap hash."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def hash_indices(n_virtual: int, n_real: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(bucket index in 0..n_real-1, sign ±1) for virtual positions 0..n_virtual-1, from `seed`."""
    salt = int(_splitmix64(np.array([seed & _M64], dtype=np.uint64))[0])
    pos = np.arange(n_virtual, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = _splitmix64(pos ^ np.uint64(salt))
        g = _splitmix64(pos ^ np.uint64(salt ^ 0x5851F42D4C957F2D))
    idx = torch.from_numpy((h % np.uint64(n_real)).astype(np.int64))
    sign = torch.from_numpy(np.where((g >> np.uint64(63)) == 1, -1.0, 1.0).astype(np.float32))
    return idx, sign


def _check_compression(compression) -> float:
    if isinstance(compression, bool) or not isinstance(compression, (int, float)):
        raise TypeError(f"compression must be a number, got {type(compression).__name__}")
    if not compression > 1:
        raise ValueError(f"compression factor must be > 1 (virtual/real weights), got {compression}")
    return float(compression)


class _Hashed(nn.Module):
    """Shared machinery: a real vector `weight_real` and fixed hash buffers giving the virtual weight."""

    def _setup(self, shape: tuple[int, ...], compression: float, seed: int, std: float) -> None:
        self.compression = _check_compression(compression)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self.seed, self.virtual_shape = seed, tuple(shape)
        n_virtual = math.prod(shape)
        n_real = max(1, math.ceil(n_virtual / self.compression))
        g = torch.Generator().manual_seed(seed)
        self.weight_real = nn.Parameter(torch.randn(n_real, generator=g) * std)
        idx, sign = hash_indices(n_virtual, n_real, seed)
        # recomputable from the seed, so not saved: the file holds only the real weights
        self.register_buffer("index", idx.reshape(shape), persistent=False)
        self.register_buffer("sign", sign.reshape(shape), persistent=False)

    def virtual_weight(self) -> torch.Tensor:
        """The full-size weight: weight_real[h(i)] · ξ(i)."""
        return self.weight_real[self.index] * self.sign


class HashedLinear(_Hashed):
    """Linear layer whose in·out virtual weights share ceil(in·out / compression) real ones."""

    def __init__(self, in_features: int, out_features: int, compression: float, bias: bool = True,
                 seed: int = 0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._setup((out_features, in_features), compression, seed, std=math.sqrt(2.0 / in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x):  # (B, in) -> (B, out)
        return F.linear(x, self.virtual_weight(), self.bias)

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, compression={self.compression:g}, "
                f"real={self.weight_real.numel()}, seed={self.seed}")


class HashedConv2d(_Hashed):
    """Conv2d whose cout·cin·k·k virtual weights share ceil(that / compression) real ones."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, compression: float,
                 stride: int = 1, padding: int = 0, bias: bool = False, seed: int = 0):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.padding = stride, padding
        fan_out = out_channels * kernel_size * kernel_size
        self._setup((out_channels, in_channels, kernel_size, kernel_size), compression, seed,
                    std=math.sqrt(2.0 / fan_out))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x):  # (B, cin, H, W) -> (B, cout, H', W')
        return F.conv2d(x, self.virtual_weight(), self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, stride={self.stride}, "
                f"compression={self.compression:g}, real={self.weight_real.numel()}, seed={self.seed}")


def hashed_resnet(name: str, compression: float, width: float = 1.0, seed: int = 0) -> nn.Module:
    """`models.build(name, width)` with every Conv2d and Linear replaced by its hashed version.

    Each layer gets its own hash seed (seed·1000 + layer number); BN and biases stay real.
    """
    _check_compression(compression)
    model = build(name, width=width)
    for i, (lname, layer) in enumerate(weight_layers(model).items()):
        s = seed * 1000 + i
        if isinstance(layer, nn.Conv2d):
            if layer.groups != 1 or layer.kernel_size[0] != layer.kernel_size[1]:
                raise ValueError(f"{lname}: only square, ungrouped convolutions can be hashed")
            new = HashedConv2d(layer.in_channels, layer.out_channels, layer.kernel_size[0], compression,
                               layer.stride[0], layer.padding[0], bias=layer.bias is not None, seed=s)
        else:
            new = HashedLinear(layer.in_features, layer.out_features, compression,
                               bias=layer.bias is not None, seed=s)
        _set_module(model, lname, new)
    model.arch["hashed_compression"] = float(compression)
    return model


def real_params(model: nn.Module) -> int:
    """Number of real (stored, trained) parameter elements of `model`."""
    check_model(model)
    return sum(p.numel() for p in model.parameters())


def width_for_params(name: str, target: int) -> float:
    """The width w (a multiple of 1/64) for which `build(name, w)` has closest to `target` parameters."""
    if isinstance(target, bool) or not isinstance(target, int) or target < 1:
        raise ValueError(f"target must be a positive int (parameters), got {target!r}")
    best, best_gap = 1 / 64, math.inf
    for k in range(1, 129):
        w = k / 64
        gap = abs(math.log(real_params(build(name, width=w)) / target))
        if gap < best_gap:
            best, best_gap = w, gap
    return best


# ----------------------------------------------------------------------------------------------
# 4. notebook 04's independent parts, as picklable functions for `PartStore.compute`
# ----------------------------------------------------------------------------------------------

def _eval_splits(config: dict, data) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    from .data import subset
    n, seed = config["eval_images"], config["split_seed"]
    return subset(data.val_x, data.val_y, n, seed=seed), subset(data.test_x, data.test_y, n, seed=seed)


def scratch_part(config: dict, *, data) -> dict:
    """One network of the HashedNets comparison, trained from scratch (a part for `PartStore.compute`).

    config: arch, kind ('uncompressed' | 'hashed' | 'plain'), compression (hashed) or width (plain),
    seed (of the weights, the hash and the data order), train (TrainConfig fields), train_images,
    eval_images, split_seed. `data`: CIFAR-10 or a `slimlab.cluster.WorkerData`.
    Returns params (real), val_acc, test_acc (%) and seconds of training."""
    import time
    from .cluster import resolve
    from .data import subset
    from .train import evaluate, fit, seed_everything
    d = resolve(data)
    arch, kind, seed = config["arch"], config["kind"], config["seed"]
    cfg = TrainConfig(**{**config["train"], "seed": seed})
    train_x, train_y = subset(d.train_x, d.train_y, config["train_images"], seed=config["split_seed"])
    val, test = _eval_splits(config, d)
    seed_everything(seed)
    make = {"uncompressed": lambda: build(arch), "plain": lambda: build(arch, width=config["width"]),
            "hashed": lambda: hashed_resnet(arch, config["compression"], seed=seed)}
    model = make[check_choice(kind, tuple(make), "kind")]()
    seed_everything(seed)
    t0 = time.perf_counter()
    fit(model, train_x, train_y, cfg, progress=False)
    model = model.cpu().eval()
    return {"params": real_params(model), "val_acc": evaluate(model, *val)["acc"],
            "test_acc": evaluate(model, *test)["acc"], "seconds": time.perf_counter() - t0}


def codebook_part(config: dict, *, state: dict, data) -> dict:
    """One codebook fine-tune of the reference (a part for `PartStore.compute`): share the model of
    `config['arch']` with weights `state` at config bits / init / grad / iters, fine-tune it with the
    TrainConfig fields config['train'] (its seed is the part's), measure. Returns val_acc_ft, test_acc (%)."""
    import time
    from .cluster import resolve
    from .train import evaluate, fit
    d = resolve(data)
    ref = from_arch(config["arch"])
    ref.load_state_dict(state)
    model = kmeans_share(ref, KMeansConfig(bits=config["bits"], init=config["init"], iters=config["iters"],
                                           grad=config["grad"]))
    val, test = _eval_splits(config, d)
    t0 = time.perf_counter()
    fit(model, d.train_x, d.train_y, TrainConfig(**config["train"]), progress=False)
    model = model.cpu().eval()
    return {"bits": config["bits"], "init": config["init"], "seed": config["train"]["seed"],
            "val_acc_ft": evaluate(model, *val)["acc"], "test_acc": evaluate(model, *test)["acc"],
            "seconds": time.perf_counter() - t0}
