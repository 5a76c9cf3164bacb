"""Pruning (notebook 03): weight statistics, magnitude masks, activation statistics, channel removal,
and a sparse file format.

* Weight statistics: per-layer normal and Gaussian-mixture fits (scipy / scikit-learn) with the
  Kolmogorov–Smirnov distance as the goodness-of-fit number (C6).
* Unstructured pruning: exact-count magnitude masks, layer-wise or global, one-shot or gradual
  (Zhu & Gupta's cubic schedule through `fit`'s `on_step` hook), a random baseline with the same
  per-layer counts. A mask is a `torch.nn.utils.parametrize` parametrization on `weight`, so the
  original stays reachable and training through `fit` keeps pruned weights at zero (C7).
* Activation statistics: APoZ (average percentage of zeros after a ReLU, Hu et al. 2016,
  arXiv 1607.03250) per channel, gathered with forward hooks that a context manager removes (C8).
* Structured pruning that physically removes channels. Our ResNets use option-A (parameter-free)
  shortcuts, so the residual stream's channels are shared by every block of a stage; the simple
  consistent scheme removes the *inner* channels of each BasicBlock (conv1's outputs, bn1, conv2's
  inputs) and leaves the residual stream untouched (as Li et al. 2017 do for CIFAR ResNets).
* Storage: a sparse file (bitmask + nonzero values, fp32 or int8) and dense files that rebuild
  slimmed models on their own. Every file is written atomically.
"""
from __future__ import annotations

import copy
import math
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.utils.parametrize as parametrize

from .files import atomic_torch_save
from .models import BasicBlock, build
from .train import TrainConfig, evaluate, fit

SCOPES = ("layer", "global")
CHANNEL_METHODS = ("apoz", "l1", "random")
VALUE_FORMATS = ("fp32", "int8")
SPARSE_FORMAT = "slimlab-sparse/1"
DENSE_FORMAT = "slimlab-dense/1"


# ---------------------------------------------------------------------------------------------
# argument checks

def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")


def _check_sparsity(sparsity, what: str = "sparsity") -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
        raise TypeError(f"{what} must be a number in [0, 1), got {type(sparsity).__name__}")
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"{what} must be in [0, 1) (the fraction of weights set to zero), got {sparsity}")
    return float(sparsity)


def _check_fraction(fraction) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise TypeError(f"fraction must be a number in [0, 1), got {type(fraction).__name__}")
    if not 0.0 <= float(fraction) < 1.0:
        raise ValueError(f"fraction must be in [0, 1) (the share of channels removed per block), got {fraction}")
    return float(fraction)


def _check_choice(value, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {allowed}, got {value!r}")
    return value


def prunable_layers(model: nn.Module, layers: list[str] | tuple[str, ...] | None = None) -> dict[str, nn.Module]:
    """The Conv2d and Linear modules of `model` by name (model order); `layers` picks some by name."""
    _check_model(model)
    found = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    if not found:
        raise ValueError(f"{type(model).__name__} has no prunable layer (no nn.Conv2d or nn.Linear)")
    if layers is None:
        return found
    if isinstance(layers, str) or not isinstance(layers, (list, tuple)):
        raise TypeError(f"layers must be a list of layer names or None, got {type(layers).__name__}")
    unknown = [n for n in layers if n not in found]
    if unknown:
        raise ValueError(f"unknown layer(s) {unknown}; prunable layers are: {', '.join(found)}")
    if not layers:
        raise ValueError("layers is empty; give at least one prunable layer name or None for all")
    return {n: found[n] for n in layers}


# ---------------------------------------------------------------------------------------------
# C6: weight statistics

@dataclass(frozen=True)
class WeightFit:
    """One layer's weight distribution: moments, a normal fit, a mixture fit, their KS distances."""
    layer: str
    n: int                        # number of weights
    mean: float
    std: float
    excess_kurtosis: float        # 0 for a normal; > 0 means more mass near zero and in the tails
    share_small: float            # share of weights with |w| < 0.1 * max |w|, in [0, 1]
    normal_ks: float              # Kolmogorov–Smirnov distance to the fitted normal, in [0, 1]
    mixture_ks: float             # KS distance to the fitted Gaussian mixture, in [0, 1]
    mixture_weights: tuple[float, ...]
    mixture_means: tuple[float, ...]
    mixture_stds: tuple[float, ...]

    def as_dict(self) -> dict:
        return asdict(self)


def mixture_cdf(x: np.ndarray, weights, means, stds) -> np.ndarray:
    """CDF of a 1-D Gaussian mixture at the points `x`."""
    from scipy.stats import norm
    x = np.asarray(x, dtype=np.float64)[..., None]
    return (np.asarray(weights) * norm.cdf(x, np.asarray(means), np.asarray(stds))).sum(-1)


def mixture_pdf(x: np.ndarray, weights, means, stds) -> np.ndarray:
    """Density of a 1-D Gaussian mixture at the points `x`."""
    from scipy.stats import norm
    x = np.asarray(x, dtype=np.float64)[..., None]
    return (np.asarray(weights) * norm.pdf(x, np.asarray(means), np.asarray(stds))).sum(-1)


def fit_weights(w: torch.Tensor, *, components: int = 2, max_samples: int = 20000, seed: int = 0,
                layer: str = "") -> WeightFit:
    """Fit a normal (scipy) and a `components`-Gaussian mixture (scikit-learn EM) to the values of `w`."""
    from scipy import stats
    from sklearn.mixture import GaussianMixture
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"w must be a torch tensor, got {type(w).__name__}")
    if w.numel() < 10:
        raise ValueError(f"need at least 10 weights to fit a distribution, got {w.numel()}")
    if not isinstance(components, int) or components < 1:
        raise ValueError(f"components must be an int >= 1, got {components!r}")
    v = w.detach().double().flatten().cpu().numpy()
    rng = np.random.default_rng(seed)
    sample = rng.choice(v, max_samples, replace=False) if v.size > max_samples else v
    mu, sd = stats.norm.fit(sample)
    normal_ks = stats.kstest(sample, "norm", args=(mu, sd)).statistic
    gm = GaussianMixture(components, random_state=seed, n_init=1).fit(sample[:, None])
    pi, m, s = gm.weights_, gm.means_[:, 0], np.sqrt(gm.covariances_.reshape(components))
    mixture_ks = stats.kstest(sample, lambda t: mixture_cdf(t, pi, m, s)).statistic
    big = np.abs(v).max()
    return WeightFit(layer, int(v.size), float(v.mean()), float(v.std()), float(stats.kurtosis(v)),
                     float((np.abs(v) < 0.1 * big).mean()) if big > 0 else 1.0,
                     float(normal_ks), float(mixture_ks), tuple(map(float, pi)), tuple(map(float, m)),
                     tuple(map(float, s)))


def weight_stats(model: nn.Module, layers: list[str] | None = None, *, components: int = 2,
                 max_samples: int = 20000, seed: int = 0) -> list[WeightFit]:
    """`fit_weights` for every prunable layer of `model` (the effective weights if masked)."""
    return [fit_weights(m.weight, components=components, max_samples=max_samples, seed=seed, layer=n)
            for n, m in prunable_layers(model, layers).items()]


# ---------------------------------------------------------------------------------------------
# C7: unstructured masks as parametrizations

class Mask(nn.Module):
    """Parametrization `weight = original * mask`; the bool mask (True = kept) is a buffer."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.detach().bool().clone())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


def _keep_mask(scores: torch.Tensor, n_prune: int) -> torch.Tensor:
    """Bool mask of the shape of `scores` with exactly `n_prune` smallest entries False (ties by index)."""
    flat = scores.detach().flatten()
    keep = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
    if n_prune > 0:
        keep[torch.argsort(flat, stable=True)[:n_prune]] = False
    return keep.view_as(scores)


def magnitude_masks(model: nn.Module, sparsity: float, scope: str = "layer",
                    layers: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Masks (True = kept) that zero exactly round(sparsity * n) smallest-|w| weights.

    scope='layer': every layer gets `sparsity`; scope='global': one threshold over all `layers`,
    so the overall sparsity is exact and layers differ. Scores are the effective (masked) weights.
    """
    s = _check_sparsity(sparsity)
    _check_choice(scope, SCOPES, "scope")
    mods = prunable_layers(model, layers)
    weights = {n: m.weight.detach().abs() for n, m in mods.items()}
    if scope == "layer":
        return {n: _keep_mask(w, round(s * w.numel())) for n, w in weights.items()}
    flat = torch.cat([w.flatten().cpu() for w in weights.values()])
    keep = _keep_mask(flat, round(s * flat.numel()))
    out, i = {}, 0
    for n, w in weights.items():
        out[n] = keep[i:i + w.numel()].view_as(w).to(w.device)
        i += w.numel()
    return out


def random_masks(model: nn.Module, sparsity: float, layers: list[str] | None = None,
                 seed: int = 0) -> dict[str, torch.Tensor]:
    """Layer-wise random masks with exactly round(sparsity * n) weights pruned per layer (seeded)."""
    s = _check_sparsity(sparsity)
    g = torch.Generator().manual_seed(seed)
    out = {}
    for n, m in prunable_layers(model, layers).items():
        w = m.weight
        out[n] = _keep_mask(torch.rand(w.shape, generator=g), round(s * w.numel())).to(w.device)
    return out


def shuffle_masks(masks: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random masks with the same number of kept weights per layer as `masks` (the fair baseline)."""
    if not isinstance(masks, dict) or not masks:
        raise ValueError("masks must be a non-empty dict {layer name: bool mask}")
    g = torch.Generator().manual_seed(seed)
    out = {}
    for n, m in masks.items():
        perm = torch.randperm(m.numel(), generator=g).to(m.device)
        out[n] = m.flatten()[perm].view_as(m).clone()
    return out


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Put each mask on its layer's `weight` as a `Mask` parametrization (or update the one there); returns model."""
    mods = prunable_layers(model, list(masks))
    for n, mask in masks.items():
        mod = mods[n]
        if tuple(mask.shape) != tuple(mod.weight.shape):
            raise ValueError(f"mask for {n} has shape {tuple(mask.shape)}, the weight {tuple(mod.weight.shape)}")
        if parametrize.is_parametrized(mod, "weight") and isinstance(mod.parametrizations.weight[0], Mask):
            buf = mod.parametrizations.weight[0].mask
            buf.copy_(mask.to(buf.device))
        else:
            parametrize.register_parametrization(mod, "weight", Mask(mask.to(mod.weight.device)))
    return model


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The current `Mask` of every masked layer of `model`."""
    _check_model(model)
    return {n: m.parametrizations.weight[0].mask.clone() for n, m in model.named_modules()
            if parametrize.is_parametrized(m, "weight") and isinstance(m.parametrizations.weight[0], Mask)}


def remove_masks(model: nn.Module) -> nn.Module:
    """Make the masks permanent: plain weights with the zeros baked in; returns model.

    Use it on a model that was masked itself, not on a `copy.deepcopy` of a masked model (the copy
    shares torch's parametrized classes with the original); `unmasked_copy` gives a safe copy."""
    _check_model(model)
    for m in model.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return model


def layer_sparsity(model: nn.Module, layers: list[str] | None = None) -> dict[str, float]:
    """Fraction of exactly-zero effective weights per prunable layer, and '(all)' over them."""
    out, zeros, total = {}, 0, 0
    for n, m in prunable_layers(model, layers).items():
        w = m.weight.detach()
        z = int((w == 0).sum())
        out[n] = z / w.numel()
        zeros, total = zeros + z, total + w.numel()
    out["(all)"] = zeros / total
    return out


def prune_magnitude(model: nn.Module, sparsity: float, scope: str = "layer",
                    layers: list[str] | None = None) -> nn.Module:
    """One-shot magnitude pruning of a copy of `model`; the copy carries `Mask` parametrizations."""
    out = unmasked_copy(model)
    return apply_masks(out, magnitude_masks(out, sparsity, scope, layers))


def prune_random(model: nn.Module, sparsity: float, layers: list[str] | None = None, seed: int = 0,
                 like: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Random pruning of a copy of `model` (layer-wise, or with the per-layer counts of `like`)."""
    out = unmasked_copy(model)
    masks = shuffle_masks(like, seed) if like is not None else random_masks(out, sparsity, layers, seed)
    return apply_masks(out, masks)


def cubic_sparsity(step: int, total: int, final: float, initial: float = 0.0,
                   begin: float = 0.0, end: float = 0.75) -> float:
    """Zhu & Gupta (2017): s = final + (initial - final) * (1 - p)^3, p = progress from `begin` to `end` (fractions of `total`)."""
    _check_sparsity(final, "final")
    _check_sparsity(initial, "initial")
    if not 0.0 <= begin < end <= 1.0:
        raise ValueError(f"need 0 <= begin < end <= 1, got begin={begin}, end={end}")
    if not isinstance(total, int) or total < 1:
        raise ValueError(f"total must be an int >= 1, got {total!r}")
    p = min(1.0, max(0.0, (step / total - begin) / (end - begin)))
    return final + (initial - final) * (1.0 - p) ** 3


def gradual_pruning(model: nn.Module, final: float, scope: str = "layer", layers: list[str] | None = None, *,
                    initial: float = 0.0, begin: float = 0.0, end: float = 0.75,
                    every: int = 1) -> Callable[[int, int, nn.Module], None]:
    """Install all-ones masks on `model` now and return an `on_step` hook for `fit` that re-prunes by
    magnitude to `cubic_sparsity(step, total, ...)` every `every` steps (and at the last step)."""
    _check_sparsity(final, "final")
    _check_choice(scope, SCOPES, "scope")
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be an int >= 1, got {every!r}")
    apply_masks(model, magnitude_masks(model, initial, scope, layers))

    def on_step(step: int, total: int, net: nn.Module) -> None:
        if step % every == 0 or step == total:
            s = cubic_sparsity(step, total, final, initial, begin, end)
            with torch.no_grad():
                apply_masks(net, magnitude_masks(net, s, scope, layers))
    return on_step


def finetune_config(steps: int, batch_size: int, lr: float, seed: int = 0) -> TrainConfig:
    """The fine-tuning recipe used after pruning: cosine decay from `lr`, no warm-up, augmentation on."""
    return TrainConfig(steps=steps, batch_size=batch_size, lr=lr, schedule="cosine", warmup=0.0, seed=seed)


FINETUNE_VARIANTS = ("magnitude", "random", "gradual")


def pruned_copy(model: nn.Module, sparsity: float, variant: str, scope: str = "global", seed: int = 0) -> nn.Module:
    """The starting point of one fine-tune variant at `sparsity`: one-shot magnitude masks ('magnitude'),
    random masks with the same per-layer counts as those ('random'), or the unmasked model ('gradual',
    which `gradual_pruning` prunes during the fine-tune)."""
    _check_choice(variant, FINETUNE_VARIANTS, "variant")
    if variant == "gradual":
        return unmasked_copy(model)
    mag = prune_magnitude(model, sparsity, scope)
    return mag if variant == "magnitude" else prune_random(model, sparsity, like=get_masks(mag), seed=seed)


def finetune_pruned(model: nn.Module, sparsity: float, variant: str, train: tuple[torch.Tensor, torch.Tensor],
                    config: TrainConfig, *, scope: str = "global", seed: int = 0, progress: bool = True) -> nn.Module:
    """A copy of `model` pruned to `sparsity` by `variant` (see `pruned_copy`) and fine-tuned with `fit`
    (the gradual variant reaches the sparsity along the cubic schedule during it). Masks stay attached;
    the result is checked to hold at least `sparsity` zeros."""
    s = _check_sparsity(sparsity)
    net = pruned_copy(model, s, variant, scope, seed)
    hook = gradual_pruning(net, s, scope) if variant == "gradual" else None
    fit(net, train[0], train[1], config, on_step=hook, progress=progress, desc=f"{variant} {s:.0%}")
    net = net.cpu().eval()
    got = layer_sparsity(net)["(all)"]
    if got < s - 1e-4:
        raise RuntimeError(f"{variant} fine-tune lost sparsity: {got:.5f} < {s}")
    return net


@torch.no_grad()
def sensitivity(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sparsities: tuple[float, ...],
                layers: list[str] | None = None, *, progress: bool = True) -> dict[str, list[float]]:
    """Accuracy (%) when only one layer is magnitude-pruned to each sparsity, per layer; model restored after."""
    from tqdm.auto import tqdm
    sps = [_check_sparsity(s) for s in sparsities]
    if not sps:
        raise ValueError("sparsities must hold at least one value in [0, 1)")
    mods = prunable_layers(model, layers)
    if any(parametrize.is_parametrized(m, "weight") for m in mods.values()):
        raise ValueError("sensitivity needs an unmasked model; call remove_masks on a copy first")
    out = {}
    for n, m in tqdm(mods.items(), desc="sensitivity", disable=not progress):
        saved = m.weight.detach().clone()
        out[n] = []
        for s in sps:
            m.weight.mul_(_keep_mask(saved.abs(), round(s * saved.numel())))
            out[n].append(evaluate(model, x, y)["acc"])
            m.weight.copy_(saved)
    return out


# ---------------------------------------------------------------------------------------------
# C8: activation statistics and channel pruning

def blocks(model: nn.Module) -> dict[str, BasicBlock]:
    """The BasicBlocks of a CIFAR ResNet by name; their inner channels are what channel pruning removes."""
    _check_model(model)
    found = {n: m for n, m in model.named_modules() if isinstance(m, BasicBlock)}
    if not found:
        raise ValueError(f"{type(model).__name__} has no BasicBlock; channel pruning needs a slimlab ResNet")
    return found


@contextmanager
def zero_counter(modules: dict[str, nn.Module]) -> Iterator[dict[str, list]]:
    """Count, per output channel, how often `relu(module output)` is zero; hooks are removed on exit.

    Yields {name: [zeros per channel (float64 tensor), positions per channel (int)]}, filled as the
    model runs.
    """
    if not isinstance(modules, dict) or not modules or not all(isinstance(m, nn.Module) for m in modules.values()):
        raise ValueError("modules must be a non-empty dict {name: nn.Module}")
    counts: dict[str, list] = {n: [None, 0] for n in modules}

    def hook_for(name):
        def hook(mod, inp, out):
            z = (out.detach() <= 0).double()                 # relu(out) == 0
            dims = [d for d in range(z.dim()) if d != 1]     # (B, C, H, W) -> per channel C
            c = counts[name]
            c[0] = z.sum(dims).cpu() if c[0] is None else c[0] + z.sum(dims).cpu()
            c[1] += z.numel() // z.shape[1]
        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in modules.items()]
    try:
        yield counts
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def apoz(model: nn.Module, x: torch.Tensor, layers: list[str] | None = None,
         batch_size: int = 500) -> dict[str, torch.Tensor]:
    """Average Percentage of Zeros per channel: share in [0, 1] of (image, position) where the
    ReLU after each named module outputs zero, over images `x`. Default: every block's bn1."""
    from .train import predict
    _check_model(model)
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or len(x) == 0:
        raise ValueError("x must be a non-empty image batch (N, C, H, W)")
    named = dict(model.named_modules())
    if layers is None:
        mods = {f"{n}.bn1": b.bn1 for n, b in blocks(model).items()}
    else:
        unknown = [n for n in layers if n not in named]
        if unknown:
            raise ValueError(f"unknown module(s) {unknown}; see model.named_modules() for names")
        mods = {n: named[n] for n in layers}
    with zero_counter(mods) as counts:
        predict(model, x, batch_size)
    return {n: (c[0] / c[1]).float() for n, c in counts.items()}


def channel_scores(model: nn.Module, method: str, x: torch.Tensor | None = None,
                   seed: int = 0) -> dict[str, torch.Tensor]:
    """Importance of each inner channel per block (higher = keep): 1 - APoZ on images `x`,
    the L1 norm of conv1's filter (Li et al.), or random."""
    _check_choice(method, CHANNEL_METHODS, "method")
    bl = blocks(model)
    if method == "apoz":
        if x is None:
            raise ValueError("method='apoz' needs images x (training images) to measure activations")
        a = apoz(model, x)
        return {n: 1.0 - a[f"{n}.bn1"] for n in bl}
    if method == "l1":
        return {n: b.conv1.weight.detach().abs().sum((1, 2, 3)).cpu() for n, b in bl.items()}
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(b.conv1.out_channels, generator=g) for n, b in bl.items()}


def select_channels(scores: dict[str, torch.Tensor], fraction: float) -> dict[str, torch.Tensor]:
    """Sorted indices of the channels kept per block: the round(fraction * C) lowest scores go (at least one stays)."""
    f = _check_fraction(fraction)
    if not isinstance(scores, dict) or not scores:
        raise ValueError("scores must be a non-empty dict {block name: per-channel scores}")
    out = {}
    for n, s in scores.items():
        c = s.numel()
        k = c - min(c - 1, round(f * c))
        out[n] = torch.sort(torch.argsort(s, descending=True, stable=True)[:k]).values
    return out


def _resize_block(block: BasicBlock, k: int) -> None:
    """Give `block` k inner channels (fresh modules of the right shapes, same device/dtype)."""
    c1, c2 = block.conv1, block.conv2
    kw = {"device": c1.weight.device, "dtype": c1.weight.dtype}
    block.conv1 = nn.Conv2d(c1.in_channels, k, c1.kernel_size, c1.stride, c1.padding, bias=False, **kw)
    block.bn1 = nn.BatchNorm2d(k, eps=block.bn1.eps, momentum=block.bn1.momentum, **kw)
    block.conv2 = nn.Conv2d(k, c2.out_channels, c2.kernel_size, c2.stride, c2.padding, bias=False, **kw)


@torch.no_grad()
def slim_channels(model: nn.Module, keep: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of `model` whose blocks keep only the inner channels listed in `keep`: conv1 output
    filters, bn1 entries and conv2 input slices are physically removed; the residual stream stays."""
    bl = blocks(model)
    unknown = [n for n in keep if n not in bl]
    if unknown:
        raise ValueError(f"unknown block(s) {unknown}; blocks are: {', '.join(bl)}")
    if any(parametrize.is_parametrized(m, "weight") for m in model.modules()):
        raise ValueError("slim_channels needs an unmasked model; call remove_masks on a copy first")
    out = copy.deepcopy(model).cpu().to(memory_format=torch.contiguous_format)
    new_blocks = blocks(out)
    inner = dict(getattr(out, "arch", {}).get("inner_channels", {}))
    for n, idx in keep.items():
        b = new_blocks[n]
        idx = torch.as_tensor(idx, dtype=torch.long).cpu()
        c = b.conv1.out_channels
        if idx.numel() == 0 or idx.unique().numel() != idx.numel() or idx.min() < 0 or idx.max() >= c:
            raise ValueError(f"keep[{n!r}] must be distinct channel indices in [0, {c}), at least one")
        old1, oldbn, old2 = b.conv1, b.bn1, b.conv2
        _resize_block(b, idx.numel())
        b.conv1.weight.copy_(old1.weight[idx])
        b.conv2.weight.copy_(old2.weight[:, idx])
        for name in ("weight", "bias"):
            getattr(b.bn1, name).copy_(getattr(oldbn, name)[idx])
        for name in ("running_mean", "running_var"):
            getattr(b.bn1, name).copy_(getattr(oldbn, name)[idx])
        b.bn1.num_batches_tracked.copy_(oldbn.num_batches_tracked)
        inner[n] = int(idx.numel())
    if hasattr(out, "arch"):
        out.arch = {**out.arch, "inner_channels": inner}
    return out.eval()


def prune_channels(model: nn.Module, fraction: float, method: str = "apoz", x: torch.Tensor | None = None,
                   seed: int = 0) -> nn.Module:
    """Remove round(fraction * C) inner channels from every block, ranked by `method`; a new, smaller model."""
    return slim_channels(model, select_channels(channel_scores(model, method, x, seed), fraction))


def trim_round(net: nn.Module, fraction: float, method: str, stats_x: torch.Tensor,
               train: tuple[torch.Tensor, torch.Tensor], config: TrainConfig, *, index: int, rounds: int,
               base_channels: dict[str, int], seed: int = 0, progress: bool = True) -> nn.Module:
    """Round `index` (0-based) of `rounds` of Network Trimming: rank `net`'s inner channels by `method`,
    remove this round's share, fine-tune with `fit`; returns the new, smaller model. The rounds remove
    1 - (1 - fraction)^(1/rounds) each, and the last lands exactly on C - round(fraction * C) of each
    block's original C inner channels (`base_channels`, {block: C}). Each round is a separate call so
    that a long run can store every finished round."""
    _check_fraction(fraction)
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < rounds:
        raise ValueError(f"index must be an int in [0, {rounds}) (the round, 0-based), got {index!r}")
    bl = blocks(net)
    if not isinstance(base_channels, dict) or set(base_channels) != set(bl):
        raise ValueError(f"base_channels must give the original inner channel count of every block: {list(bl)}")
    net = net.cpu().to(memory_format=torch.contiguous_format).eval()
    if index == rounds - 1:  # the last round lands exactly on the target count
        scores = channel_scores(net, method, stats_x, seed + index)
        keep = {}
        for n, s in scores.items():
            k = max(1, base_channels[n] - round(fraction * base_channels[n]))
            keep[n] = torch.sort(torch.argsort(s, descending=True, stable=True)[:k]).values
        net = slim_channels(net, keep)
    else:
        net = prune_channels(net, 1.0 - (1.0 - fraction) ** (1.0 / rounds), method, stats_x, seed + index)
    fit(net, train[0], train[1], config, progress=progress, desc=f"trim {method} {index + 1}/{rounds}")
    return net.cpu().to(memory_format=torch.contiguous_format).eval()


def network_trimming(model: nn.Module, fraction: float, method: str, stats_x: torch.Tensor,
                     train: tuple[torch.Tensor, torch.Tensor], config: TrainConfig, rounds: int = 1,
                     *, seed: int = 0, progress: bool = True) -> nn.Module:
    """Prune channels by `method`, fine-tune with `fit`, repeat `rounds` times (`trim_round`), ending with
    C - round(fraction * C) of each block's C inner channels (a new, smaller model). `stats_x`: training
    images for APoZ."""
    _check_fraction(fraction)
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")
    base = {n: b.conv1.out_channels for n, b in blocks(model).items()}
    net = model
    for r in range(rounds):
        net = trim_round(net, fraction, method, stats_x, train, config, index=r, rounds=rounds,
                         base_channels=base, seed=seed, progress=progress)
    return net


# ---------------------------------------------------------------------------------------------
# storage: dense files that rebuild slimmed models, and the sparse format

def _atomic_save(obj, path: str | os.PathLike) -> Path:
    return atomic_torch_save(obj, path)


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with masks folded in (keys as in an unmasked model), contiguous, on the CPU."""
    _check_model(model)
    out = {k: v for k, v in model.state_dict().items() if not _is_parametrization_key(k)}
    for n, m in model.named_modules():
        if parametrize.is_parametrized(m):
            for t in m.parametrizations.keys():
                out[f"{n}.{t}" if n else t] = getattr(m, t)
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}


def _is_parametrization_key(key: str) -> bool:
    return key.startswith("parametrizations.") or ".parametrizations." in key


def unmasked_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` without parametrizations, masks baked into plain weights."""
    _check_model(model)
    if not any(parametrize.is_parametrized(m) for m in model.modules()):
        return copy.deepcopy(model)
    arch = getattr(model, "arch", None)
    if not isinstance(arch, dict) or "name" not in arch:
        raise ValueError("copying a masked model needs a slimlab ResNet (with .arch); call remove_masks on it instead")
    p = next(model.parameters())
    out = build_from_arch(arch).to(device=p.device, dtype=p.dtype)
    out.load_state_dict(plain_state_dict(model))
    return out.train(model.training)


def build_from_arch(arch: dict) -> nn.Module:
    """An untrained model of the architecture `arch` (a model's .arch, inner_channels included)."""
    if not isinstance(arch, dict) or "name" not in arch:
        raise ValueError("arch must be a slimlab model's .arch dict (with 'name', 'width', 'num_classes')")
    model = build(arch["name"], width=arch.get("width", 1.0), num_classes=arch.get("num_classes", 10))
    bl = blocks(model)
    for n, k in arch.get("inner_channels", {}).items():
        _resize_block(bl[n], int(k))
    model.arch = dict(arch)
    return model


def _check_arch_model(model) -> dict:
    _check_model(model)
    arch = getattr(model, "arch", None)
    if not isinstance(arch, dict) or "name" not in arch:
        raise ValueError("model must be a slimlab ResNet (with .arch) to be saved with its architecture")
    return dict(arch)


def save_dense(model: nn.Module, path: str | os.PathLike) -> int:
    """Save `model` (masks folded in, slimmed shapes recorded) as a dense fp32 file; returns its bytes."""
    arch = _check_arch_model(model)
    p = _atomic_save({"format": DENSE_FORMAT, "arch": arch, "state_dict": plain_state_dict(model)}, path)
    return p.stat().st_size


def load_dense(path: str | os.PathLike) -> nn.Module:
    """The model saved by `save_dense`, in eval mode on the CPU; it needs nothing but this file."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != DENSE_FORMAT:
        raise ValueError(f"{path}: not a {DENSE_FORMAT} file")
    model = build_from_arch(blob["arch"])
    model.load_state_dict(blob["state_dict"])
    return model.eval()


def save_torch_prune(model: nn.Module, masks: dict[str, torch.Tensor], path: str | os.PathLike) -> int:
    """What `torch.nn.utils.prune` saves for the same masks (weight_orig + weight_mask per layer); returns bytes."""
    import torch.nn.utils.prune as tprune
    m = unmasked_copy(model).cpu()
    mods = prunable_layers(m, list(masks))
    for n, mask in masks.items():
        tprune.custom_from_mask(mods[n], "weight", mask.cpu())
    return _atomic_save({k: v.contiguous() for k, v in m.state_dict().items()}, path).stat().st_size


def quantize_int8(v: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Symmetric per-tensor int8 codes of `v` and the scale: v ≈ codes * scale."""
    big = float(v.abs().max()) if v.numel() else 0.0
    scale = big / 127.0 if big > 0 else 1.0
    return torch.clamp(torch.round(v / scale), -127, 127).to(torch.int8), scale


def save_sparse(model: nn.Module, path: str | os.PathLike, values: str = "fp32",
                layers: list[str] | None = None) -> int:
    """Save `model` with each prunable weight as a bitmask (1 bit per weight, packed) plus its nonzero
    values (fp32, or int8 with one fp32 scale per layer); everything else dense. Returns file bytes.

    All bitmasks go into one uint8 tensor and all values into one tensor (the other float tensors into
    one flat fp32 tensor), so the container adds a few hundred bytes, not a few hundred per tensor."""
    arch = _check_arch_model(model)
    _check_choice(values, VALUE_FORMATS, "values")
    names = set(prunable_layers(model, layers))
    state = plain_state_dict(model)
    keys, shapes, bits, vals, counts, scales = [], [], [], [], [], []
    dense_keys, dense_shapes, dense, other = [], [], [], {}
    for k, v in state.items():
        if k.endswith(".weight") and k[:-len(".weight")] in names:
            nz = v != 0
            keys.append(k)
            shapes.append(list(v.shape))
            bits.append(torch.from_numpy(np.packbits(nz.flatten().numpy())))   # ceil(n / 8) bytes
            nzv = v[nz].float()
            if values == "int8":
                codes, scale = quantize_int8(nzv)
                vals.append(codes)
                scales.append(scale)
            else:
                vals.append(nzv)
            counts.append(int(nz.sum()))
        elif v.dtype == torch.float32:
            dense_keys.append(k)
            dense_shapes.append(list(v.shape))
            dense.append(v.flatten())
        else:
            other[k] = v
    blob = {"format": SPARSE_FORMAT, "arch": arch, "value_format": values,
            "keys": keys, "shapes": shapes, "counts": counts, "scales": scales,
            "bits": torch.cat(bits), "values": torch.cat(vals),
            "dense_keys": dense_keys, "dense_shapes": dense_shapes,
            "dense": torch.cat(dense) if dense else torch.zeros(0), "other": other}
    return _atomic_save(blob, path).stat().st_size


def load_sparse(path: str | os.PathLike) -> nn.Module:
    """The model saved by `save_sparse` as a plain dense model (eval mode, CPU)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != SPARSE_FORMAT:
        raise ValueError(f"{path}: not a {SPARSE_FORMAT} file")
    state = dict(blob["other"])
    i = 0
    for k, shape in zip(blob["dense_keys"], blob["dense_shapes"]):
        n = math.prod(shape)
        state[k] = blob["dense"][i:i + n].view(shape).clone()
        i += n
    bits, vals = blob["bits"].numpy(), blob["values"]
    b = v = 0
    for j, (k, shape, c) in enumerate(zip(blob["keys"], blob["shapes"], blob["counts"])):
        n = math.prod(shape)
        nb = (n + 7) // 8
        nz = torch.from_numpy(np.unpackbits(bits[b:b + nb], count=n).astype(bool))
        w = torch.zeros(n, dtype=torch.float32)
        part = vals[v:v + c]
        w[nz] = part.float() * blob["scales"][j] if blob["value_format"] == "int8" else part
        state[k] = w.view(shape)
        b, v = b + nb, v + c
    model = build_from_arch(blob["arch"])
    model.load_state_dict(state)
    return model.eval()
