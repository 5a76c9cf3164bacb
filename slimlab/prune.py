"""Pruning (notebook 03): weight statistics, magnitude masks, activation statistics, channel removal,
and a sparse file format — a library to reuse on any model with Conv2d / Linear layers (channel removal
needs a slimlab ResNet).

* Weight statistics: per-layer normal and Gaussian-mixture fits (scipy / scikit-learn) with the
  Kolmogorov–Smirnov distance as the goodness-of-fit number, and peakedness beyond the fitted normal (C6).
* Unstructured pruning: exact-count magnitude masks, layer-wise or global (the same masks as
  `torch.nn.utils.prune.l1_unstructured` / `global_unstructured` where no two |w| tie; ties go by
  position), one-shot or gradual (Zhu & Gupta's cubic schedule through `fit`'s `on_step` hook), a random
  baseline with the same per-layer counts, and `recalibrate_bn_` for one-shot models (on the images as
  training saw them, `training_view`). A mask is a
  `torch.nn.utils.parametrize` parametrization on `weight`, so the original stays reachable, training
  through `fit` keeps pruned weights at zero, and `remove_masks_` removes masks only (C7).
* Activation statistics: APoZ (average percentage of zeros after a ReLU, Hu et al. 2016,
  arXiv 1607.03250) per channel, gathered with forward hooks that a context manager removes (C8).
* Structured pruning that physically removes channels. Our ResNets use option-A (parameter-free)
  shortcuts, so the residual stream's channels are shared by every block of a stage; the simple
  consistent scheme removes the *inner* channels of each BasicBlock (conv1's outputs, bn1, conv2's
  inputs) and leaves the residual stream untouched (as Li et al. 2017 do for CIFAR ResNets).
  `torch_pruning_channels` makes the same cut with Torch-Pruning's dependency graph, for comparison.
* Storage: a sparse file (per layer the cheaper of a bitmask and gap-coded positions, plus the nonzero
  values, fp32 or int8) and dense files that rebuild slimmed models on their own, both in the course's
  one packed format (`slimlab.packing`): written atomically; a foreign or damaged file gives one
  `files.CheckpointError` naming it.
"""
from __future__ import annotations

import copy
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.utils.parametrize as parametrize

from .checks import check_choice, check_fraction, check_int, check_model, check_number, check_tensor
from .files import CheckpointError, atomic_torch_save, load_state as _load_state_into
from .models import BasicBlock, baked_copy, baked_state_dict, from_arch, resize_block, weight_layers
from .train import TrainConfig, evaluate, fit

SCOPES = ("layer", "global")
CHANNEL_METHODS = ("apoz", "l1", "random")
VALUE_FORMATS = ("fp32", "int8")
GAP_BITS = (2, 3, 4, 5, 6, 8)      # widths of the gap tokens save_sparse tries (the bitmask is the other choice)


# ---------------------------------------------------------------------------------------------
# argument checks (the shared validators, with this module's wording)

def _check_sparsity(sparsity, what: str = "sparsity") -> float:
    return check_fraction(sparsity, what)


def prunable_layers(model: nn.Module, layers: list[str] | tuple[str, ...] | None = None) -> dict[str, nn.Module]:
    """`models.weight_layers(model)` (Conv2d and Linear by name, model order); `layers` picks some by name."""
    found = weight_layers(model)
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
    share_small: float            # share of weights with |w| < 0.1 * max |w|, in [0, 1] (~0.3 for any normal)
    near_zero_ratio: float        # share with |w| < near * std, over what the fitted normal puts there (1 = normal)
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
                layer: str = "", near: float = 0.25) -> WeightFit:
    """Fit a normal (scipy) and a `components`-Gaussian mixture (scikit-learn EM) to the values of `w`;
    `near_zero_ratio` compares the share of weights within `near` stds of zero with the fitted normal's."""
    from scipy import stats
    from sklearn.mixture import GaussianMixture
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"w must be a torch tensor, got {type(w).__name__}")
    if w.numel() < 10:
        raise ValueError(f"need at least 10 weights to fit a distribution, got {w.numel()}")
    if not isinstance(components, int) or components < 1:
        raise ValueError(f"components must be an int >= 1, got {components!r}")
    check_tensor(w, "w", finite=True)
    near = check_number(near, "near", 0.0, lo_open=True)
    v = w.detach().double().flatten().cpu().numpy()
    rng = np.random.default_rng(seed)
    sample = rng.choice(v, max_samples, replace=False) if v.size > max_samples else v
    mu, sd = stats.norm.fit(sample)
    normal_ks = stats.kstest(sample, "norm", args=(mu, sd)).statistic
    gm = GaussianMixture(components, random_state=seed, n_init=1).fit(sample[:, None])
    pi, m, s = gm.weights_, gm.means_[:, 0], np.sqrt(gm.covariances_.reshape(components))
    mixture_ks = stats.kstest(sample, lambda t: mixture_cdf(t, pi, m, s)).statistic
    big = np.abs(v).max()
    sd_all = float(v.std())
    band = near * sd_all
    expected = stats.norm.cdf(band, v.mean(), sd_all) - stats.norm.cdf(-band, v.mean(), sd_all) if sd_all > 0 else 1.0
    near_ratio = float((np.abs(v) < band).mean() / expected) if expected > 0 else float("nan")
    return WeightFit(layer, int(v.size), float(v.mean()), sd_all, float(stats.kurtosis(v)),
                     float((np.abs(v) < 0.1 * big).mean()) if big > 0 else 1.0, near_ratio,
                     float(normal_ks), float(mixture_ks), tuple(map(float, pi)), tuple(map(float, m)),
                     tuple(map(float, s)))


def weight_stats(model: nn.Module, layers: list[str] | None = None, *, components: int = 2,
                 max_samples: int = 20000, seed: int = 0, near: float = 0.25) -> list[WeightFit]:
    """`fit_weights` for every prunable layer of `model` (the effective weights if masked)."""
    return [fit_weights(m.weight, components=components, max_samples=max_samples, seed=seed, layer=n, near=near)
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
    """Masks (True = kept) that prune exactly round(sparsity * n) weights of smallest |w|.

    scope='layer': every layer gets `sparsity` (as `torch.nn.utils.prune.l1_unstructured`);
    scope='global': one ranking over all `layers` (as `torch.nn.utils.prune.global_unstructured`), so
    the overall count is exact and layers differ. Scores are the effective (masked) weights, so weights
    already zero go first; among equal |w| the earlier index (flattened, model order) is pruned first.
    NaN weights raise ValueError (they have no magnitude to rank)."""
    s = _check_sparsity(sparsity)
    check_choice(scope, SCOPES, "scope")
    mods = prunable_layers(model, layers)
    weights = {}
    for n, m in mods.items():
        w = m.weight.detach()
        if w.is_floating_point() and bool(torch.isnan(w).any()):
            raise ValueError(f"the weight of {n} holds {int(torch.isnan(w).sum())} NaN value(s); "
                             "magnitude pruning needs finite (or infinite) numbers to rank")
        weights[n] = w.abs()
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


def _mask_of(mod: nn.Module) -> Mask | None:
    """The `Mask` in `mod.weight`'s parametrization chain, or None."""
    if not parametrize.is_parametrized(mod, "weight"):
        return None
    return next((p for p in mod.parametrizations.weight if isinstance(p, Mask)), None)


def apply_masks_(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Put each mask on its layer's `weight` as a `Mask` parametrization (or update the one there), in
    place; returns model."""
    mods = prunable_layers(model, list(masks))
    for n, mask in masks.items():
        mod = mods[n]
        if tuple(mask.shape) != tuple(mod.weight.shape):
            raise ValueError(f"mask for {n} has shape {tuple(mask.shape)}, the weight {tuple(mod.weight.shape)}")
        existing = _mask_of(mod)
        if existing is not None:
            existing.mask.copy_(mask.to(existing.mask.device))
        else:
            parametrize.register_parametrization(mod, "weight", Mask(mask.to(mod.weight.device)))
    return model


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The current `Mask` of every masked layer of `model`."""
    check_model(model)
    return {n: mk.mask.clone() for n, m in model.named_modules() if (mk := _mask_of(m)) is not None}


@torch.no_grad()
def remove_masks_(model: nn.Module) -> nn.Module:
    """Make the masks permanent, in place: the zeros go into the weights and the `Mask`
    parametrizations go; any other parametrization on the same weight (a fake-quantizer, a codebook)
    stays, computing on the masked weight as before. Returns model.

    A mask must come first in its weight's chain (prune, then quantize or share); a mask registered
    after another parametrization raises ValueError, since its zeros cannot be moved into the original.
    Use it on a model that was masked itself, not on a `copy.deepcopy` of one (the copy shares torch's
    parametrized classes with the original); `models.baked_copy` gives a safe plain copy."""
    check_model(model)
    for name, m in model.named_modules():
        if not parametrize.is_parametrized(m, "weight"):
            continue
        chain = m.parametrizations.weight
        where = [i for i, p in enumerate(chain) if isinstance(p, Mask)]
        if not where:
            continue
        if where != list(range(len(where))):
            raise ValueError(f"{name or 'model'}.weight has a Mask after another parametrization "
                             f"({type(chain[0]).__name__}); remove that one first, or mask before it")
        if len(where) == len(chain):      # masks only: torch bakes them and restores a plain Parameter
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
            continue
        for i in reversed(where):         # masks first, others after: fold the zeros into `original`
            chain.original.mul_(chain[i].mask.to(chain.original.dtype))
            del chain[i]
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
    out = baked_copy(model)
    return apply_masks_(out, magnitude_masks(out, sparsity, scope, layers))


def prune_random(model: nn.Module, sparsity: float, layers: list[str] | None = None, seed: int = 0,
                 like: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Random pruning of a copy of `model` (layer-wise, or with the per-layer counts of `like`)."""
    out = baked_copy(model)
    masks = shuffle_masks(like, seed) if like is not None else random_masks(out, sparsity, layers, seed)
    return apply_masks_(out, masks)


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
    check_choice(scope, SCOPES, "scope")
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be an int >= 1, got {every!r}")
    apply_masks_(model, magnitude_masks(model, initial, scope, layers))

    def on_step(step: int, total: int, net: nn.Module) -> None:
        if step % every == 0 or step == total:
            s = cubic_sparsity(step, total, final, initial, begin, end)
            with torch.no_grad():
                apply_masks_(net, magnitude_masks(net, s, scope, layers))
    return on_step


def finetune_config(steps: int, batch_size: int, lr: float, seed: int = 0) -> TrainConfig:
    """The fine-tuning recipe used after pruning: cosine decay from `lr`, no warm-up, augmentation on."""
    return TrainConfig(steps=steps, batch_size=batch_size, lr=lr, schedule="cosine", warmup=0.0, seed=seed)


FINETUNE_VARIANTS = ("magnitude", "random", "gradual")


def pruned_copy(model: nn.Module, sparsity: float, variant: str, scope: str = "global", seed: int = 0,
                bn_x: torch.Tensor | None = None) -> nn.Module:
    """The starting point of one fine-tune variant at `sparsity`: one-shot magnitude masks ('magnitude'),
    random masks with the same per-layer counts as those ('random'), or the unmasked model ('gradual',
    which `gradual_pruning` prunes during the fine-tune). With training images `bn_x`, the one-shot
    models get their batch-norm statistics recalibrated on them (`recalibrate_bn_`)."""
    check_choice(variant, FINETUNE_VARIANTS, "variant")
    if variant == "gradual":
        return baked_copy(model)
    mag = prune_magnitude(model, sparsity, scope)
    out = mag if variant == "magnitude" else prune_random(model, sparsity, like=get_masks(mag), seed=seed)
    return recalibrate_bn_(out, bn_x) if bn_x is not None else out


def finetune_pruned(model: nn.Module, sparsity: float, variant: str, train: tuple[torch.Tensor, torch.Tensor],
                    config: TrainConfig, *, scope: str = "global", seed: int = 0, bn_x: torch.Tensor | None = None,
                    progress: bool = True, checkpoint: str | os.PathLike | None = None) -> nn.Module:
    """A copy of `model` pruned to `sparsity` by `variant` (see `pruned_copy`; `bn_x`: training images to
    recalibrate batch norm on before the fine-tune) and fine-tuned with `fit` (the gradual variant reaches
    the sparsity along the cubic schedule during it). Masks stay attached; the result is checked to hold
    at least `sparsity` zeros. `checkpoint`: `fit`'s resume checkpoint (saved every epoch; a later call
    with the same path and arguments resumes from it)."""
    s = _check_sparsity(sparsity)
    net = pruned_copy(model, s, variant, scope, seed, bn_x)
    hook = gradual_pruning(net, s, scope) if variant == "gradual" else None
    fit(net, train[0], train[1], config, on_step=hook, progress=progress, desc=f"{variant} {s:.0%}",
        checkpoint=checkpoint)
    net = net.cpu().eval()
    got = layer_sparsity(net)["(all)"]
    if got < s - 1e-4:
        raise RuntimeError(f"{variant} fine-tune lost sparsity: {got:.5f} < {s}")
    return net


@torch.no_grad()
def recalibrate_bn_(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> nn.Module:
    """Re-estimate every BatchNorm's running mean and variance on images `x` (training images), in
    place: statistics reset, then one pass over `x` in train mode with a cumulative average
    (momentum None), no gradients, no weight changes. Returns model, in the mode it came in.

    After one-shot pruning the stored statistics describe the unpruned network's activations; without
    this a heavily pruned model (random masks above all) can fall to chance for that reason alone.

    Hand it the images as training showed them (`training_view`): a network trained with augmentation
    learned its running statistics on augmented images, and its later layers expect activations
    normalised by those; statistics re-estimated on clean images shift every layer's input (notebook 03
    measures what that costs the unpruned reference)."""
    from .data import to_float
    check_model(model)
    check_tensor(x, "x", dims=4)
    check_int(batch_size, "batch_size", 1)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model
    was_training = model.training
    dev = next(model.parameters()).device
    saved = [bn.momentum for bn in bns]
    try:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        model.train()
        for i in range(0, len(x), batch_size):
            model(to_float(x[i:i + batch_size]).to(dev))
    finally:
        for bn, mom in zip(bns, saved):
            bn.momentum = mom
        model.train(was_training)
    return model


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
        raise ValueError("sensitivity needs an unmasked model; call remove_masks_ on a copy first")
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
    check_model(model)
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
    from .data import to_float
    check_model(model)
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
    dev, was_training = next(model.parameters()).device, model.training
    model.eval()
    try:
        with zero_counter(mods) as counts:
            for i in range(0, len(x), batch_size):        # uint8 images, or any float input the model takes
                model(to_float(x[i:i + batch_size]).to(dev))
    finally:
        model.train(was_training)
    return {n: (c[0] / c[1]).float() for n, c in counts.items()}


def channel_scores(model: nn.Module, method: str, x: torch.Tensor | None = None,
                   seed: int = 0) -> dict[str, torch.Tensor]:
    """Importance of each inner channel per block (higher = keep): 1 - APoZ on images `x`,
    the L1 norm of conv1's filter (Li et al.), or random."""
    check_choice(method, CHANNEL_METHODS, "method")
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
    f = check_fraction(fraction, "fraction")
    if not isinstance(scores, dict) or not scores:
        raise ValueError("scores must be a non-empty dict {block name: per-channel scores}")
    out = {}
    for n, s in scores.items():
        c = s.numel()
        k = c - min(c - 1, round(f * c))
        out[n] = torch.sort(torch.argsort(s, descending=True, stable=True)[:k]).values
    return out


@torch.no_grad()
def slim_channels(model: nn.Module, keep: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of `model` whose blocks keep only the inner channels listed in `keep`: conv1 output
    filters, bn1 entries and conv2 input slices are physically removed; the residual stream stays."""
    bl = blocks(model)
    unknown = [n for n in keep if n not in bl]
    if unknown:
        raise ValueError(f"unknown block(s) {unknown}; blocks are: {', '.join(bl)}")
    if any(parametrize.is_parametrized(m, "weight") for m in model.modules()):
        raise ValueError("slim_channels needs an unmasked model; call remove_masks_ on a copy first")
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
        resize_block(b, idx.numel())
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
    check_fraction(fraction, "fraction")
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
    check_fraction(fraction, "fraction")
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")
    base = {n: b.conv1.out_channels for n, b in blocks(model).items()}
    net = model
    for r in range(rounds):
        net = trim_round(net, fraction, method, stats_x, train, config, index=r, rounds=rounds,
                         base_channels=base, seed=seed, progress=progress)
    return net


# ---------------------------------------------------------------------------------------------
# beside the established tool: Torch-Pruning's dependency graph (DepGraph) with L1 importance

def torch_pruning_channels(model: nn.Module, fraction: float, *, inner_only: bool = True) -> nn.Module:
    """A copy of `model` whose channels Torch-Pruning removes (`tp.pruner.MetaPruner`, its dependency
    graph, `tp.importance.MagnitudeImportance(p=1)`: the L1 norm of every weight slice in a channel's
    group, averaged over the group), the fc layer's outputs kept.

    inner_only=True: only the blocks' inner channels are roots, and each block keeps C - round(fraction * C)
    of them, as `prune_channels` does: the same shapes, so the same MACs, ranked by the tool. The result
    carries `.arch` (inner_channels) and can be saved with `save_dense`.
    inner_only=False: every conv is a root, as the tool is usually run; what its graph makes of our
    option-A (subsample + zero-pad) shortcuts is for the caller to test: the result has no `.arch`."""
    import torch_pruning as tp
    f = check_fraction(fraction, "fraction")
    bl = blocks(model)
    if any(parametrize.is_parametrized(m) for m in model.modules()):
        raise ValueError("torch_pruning_channels needs an unmasked model; bake the masks first (models.baked_copy)")
    out = copy.deepcopy(model).cpu().to(memory_format=torch.contiguous_format).eval()
    new_blocks = blocks(out)
    roots = {n: b.conv1 for n, b in new_blocks.items()}
    if inner_only:
        root_ids = {id(c) for c in roots.values()}
        ignored = [m for m in weight_layers(out).values() if id(m) not in root_ids]
        # the tool keeps int(C * (1 - r)) channels: this r keeps exactly C - round(f * C), as select_channels
        ratios = {c: 1.0 - (c.out_channels - min(c.out_channels - 1, round(f * c.out_channels)) + 0.5) / c.out_channels
                  for c in roots.values()}
        pruner = tp.pruner.MetaPruner(out, torch.rand(1, 3, 32, 32), importance=tp.importance.MagnitudeImportance(p=1),
                                      pruning_ratio_dict=ratios, ignored_layers=ignored)
    else:
        pruner = tp.pruner.MetaPruner(out, torch.rand(1, 3, 32, 32), importance=tp.importance.MagnitudeImportance(p=1),
                                      pruning_ratio=f, ignored_layers=[m for m in weight_layers(out).values()
                                                                       if isinstance(m, nn.Linear)])
    pruner.step()
    if inner_only:
        arch = dict(getattr(out, "arch", {}))
        out.arch = {**arch, "inner_channels": {n: b.conv1.out_channels for n, b in new_blocks.items()}}
    elif hasattr(out, "arch"):
        del out.arch                      # the shapes no longer follow any slimlab architecture
    if len(bl) != len(new_blocks):
        raise RuntimeError("Torch-Pruning changed the block structure")
    return out.eval()


# ---------------------------------------------------------------------------------------------
# notebook 03's independent steps, as picklable parts for `PartStore.compute` / `compute_models` /
# `compute_chains`: each takes its config (a plain dict) and finds the rest itself, the reference
# model through `slimlab.zoo` (or an (arch, state dict) pair) and the data through `slimlab.cluster`

STATS_SEED = 2          # seed of the training-image subset that APoZ and BN recalibration use (03's `ax_imgs`)
ONESHOT_CURVES = ("magnitude, layer-wise", "magnitude, global", "random (same per-layer counts)",
                  "random, stale BN statistics")   # the record of `oneshot_part`, one accuracy (%) each
_REFERENCES: dict[str, nn.Module] = {}             # this process's zoo models, by name


def part_reference(reference, sha: str) -> nn.Module:
    """A fresh copy of the model a part starts from: `reference` is a `slimlab.zoo` name (loaded once per
    process from this machine's checkout) or an (arch, state dict) pair; its sha256 must be `sha`."""
    from .parts import model_sha
    if isinstance(reference, str):
        if reference not in _REFERENCES:
            from .zoo import load
            _REFERENCES[reference] = load(reference, progress=False)
        model = _REFERENCES[reference]
    elif isinstance(reference, tuple) and len(reference) == 2 and isinstance(reference[1], dict):
        model = from_arch(reference[0])
        model.load_state_dict(reference[1])
    else:
        raise TypeError("reference must be a slimlab.zoo name or an (arch, state dict) pair, "
                        f"got {type(reference).__name__}")
    if model_sha(model) != sha:
        raise ValueError(f"the reference model here ({reference if isinstance(reference, str) else 'given'}) is not "
                         "the one the part's config names (sha256 differs): use the notebook's checkout")
    return copy.deepcopy(model).cpu().eval()


def training_view(x: torch.Tensor, augment: bool = True, cutout: int = 0, seed: int = STATS_SEED) -> torch.Tensor:
    """uint8 images (B, 3, H, W) as a training step of a recipe with `augment` and `cutout` (`TrainConfig`'s
    fields) shows them: with `augment`, one seeded draw of `data.augment` (random crop with 4-pixel zero
    padding, horizontal flip, then a cutout x cutout square at the mean colour when cutout > 0), the same for
    the same seed; without it the images as they are (`fit` applies cutout only when it augments). For
    `recalibrate_bn_`."""
    from .data import augment as _augment
    check_tensor(x, "x", dims=4)
    if x.dtype != torch.uint8:
        raise TypeError(f"x must be uint8 images (the stored form that training augments), got {x.dtype}")
    if not isinstance(augment, bool):
        raise TypeError(f"augment must be a bool, got {type(augment).__name__}")
    check_int(cutout, "cutout", 0, 32)
    check_int(seed, "seed", 0)
    return _augment(x, torch.Generator().manual_seed(seed), cutout=cutout) if augment else x


def part_data(config: dict, data):
    """(data, (val x, y), (test x, y), stats images) of a part: `data` resolved (`slimlab.cluster.resolve`)
    and checked against config['data']; the splits as notebook 03 draws them (val_images / test_images,
    seed 0; bn_images or apoz_images training images, seed `STATS_SEED`; 0 = all). With config['bn_view']
    ({'augment': bool, 'cutout': int}: the reference's recipe) the stats images are their `training_view`."""
    from .cluster import resolve
    from .data import subset
    d = resolve(data)
    got = getattr(d, "fingerprint", None)
    if got is not None and config.get("data") not in (None, got):
        raise ValueError("the data here is not the data the part's config names (fingerprint differs)")
    val = subset(d.val_x, d.val_y, config["val_images"])
    test = subset(d.test_x, d.test_y, config["test_images"])
    n = config.get("bn_images", config.get("apoz_images"))
    stats_x = subset(d.train_x, d.train_y, n, seed=STATS_SEED)[0] if n is not None else None
    view = config.get("bn_view")            # BN statistics: the images as the reference's recipe trained on them
    if view is not None and stats_x is not None:
        stats_x = training_view(stats_x, augment=view["augment"], cutout=view["cutout"])
    return d, val, test, stats_x


def model_blob(model: nn.Module) -> dict:
    """A slimlab ResNet (slimmed or not) as a dict that travels and rebuilds it alone: {'arch', 'state_dict'}
    (masks baked in); `model_from_blob` inverts it."""
    check_model(model)
    arch = getattr(model, "arch", None)
    if not isinstance(arch, dict) or "name" not in arch:
        raise ValueError("model must be a slimlab ResNet (with .arch) to travel as a blob")
    return {"arch": dict(arch), "state_dict": baked_state_dict(model)}


def model_from_blob(blob: dict) -> nn.Module:
    """The model of a `model_blob`, in eval mode on the CPU; a dict that is not one raises `CheckpointError`."""
    from .files import load_state
    if not isinstance(blob, dict) or not isinstance(blob.get("arch"), dict) or not isinstance(blob.get("state_dict"), dict):
        raise CheckpointError("not a model blob: a dict with 'arch' and 'state_dict' is needed")
    try:
        model = from_arch(blob["arch"])
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"a model blob with an unusable architecture ({e})") from None
    return load_state(model, blob["state_dict"], "(model blob)", "model blob").eval()


def oneshot_part(config: dict, *, reference, data) -> dict:
    """One point of the one-shot sweep: the reference pruned to config['sparsity'] by layer-wise and
    global magnitude and at random (layer-wise magnitude's per-layer counts, config['seed']), validation
    accuracy with BN recalibrated on config['bn_images'] training images (their `training_view` when the
    config has 'bn_view'), and the random arm's before."""
    base = part_reference(reference, config["base"])
    _, val, _, stats_x = part_data(config, data)
    s = config["sparsity"]
    m_layer = prune_magnitude(base, s, "layer")
    m_glob = prune_magnitude(base, s, "global")
    m_rand = prune_random(base, s, like=get_masks(m_layer), seed=config["seed"])
    stale = evaluate(m_rand, *val)["acc"]
    for m in (m_layer, m_glob, m_rand):          # both arms: BN statistics re-estimated on training images
        recalibrate_bn_(m, stats_x)
    return dict(zip(ONESHOT_CURVES, [evaluate(m, *val)["acc"] for m in (m_layer, m_glob, m_rand)] + [stale]))


def finetune_part(config: dict, resume: str | os.PathLike | None = None, *, reference, data) -> tuple[dict, dict | None]:
    """One fine-tune (`finetune_pruned`) of config['variant'] at config['sparsity'] (scope, seed, train:
    TrainConfig fields): (record, state dict of the model for 'magnitude', else None). The record holds
    the reached sparsity, the test accuracy before (one-shot, BN recalibrated; None for 'gradual'),
    validation and test accuracy after (%) and the fine-tune's seconds. `resume`: the fine-tune's
    resume checkpoint (`PartStore.resume_path`, handed in as the part's input), or None."""
    import time
    base = part_reference(reference, config["base"])
    d, val, test, stats_x = part_data(config, data)
    s, variant, scope, seed = config["sparsity"], config["variant"], config["scope"], config["seed"]
    before = (evaluate(pruned_copy(base, s, variant, scope, seed, bn_x=stats_x), *test)["acc"]
              if variant != "gradual" else None)
    t0 = time.perf_counter()
    net = finetune_pruned(base, s, variant, (d.train_x, d.train_y), TrainConfig(**config["train"]), scope=scope,
                          seed=seed, bn_x=stats_x, progress=False, checkpoint=resume)
    rec = {"sparsity": layer_sparsity(net)["(all)"], "before_acc": before, "val_acc": evaluate(net, *val)["acc"],
           "test_acc": evaluate(net, *test)["acc"], "seconds": time.perf_counter() - t0}
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()} if variant == "magnitude" else None
    return rec, state


def channels_part(config: dict, *, reference, data) -> dict:
    """One point of the channel-pruning sweep, no fine-tune: {method: validation accuracy (%)} with
    config['fraction'] of every block's inner channels removed by each of `CHANNEL_METHODS` (APoZ on
    config['apoz_images'] training images; 'random' seeded by config['seed'])."""
    base = part_reference(reference, config["base"])
    _, val, _, stats_x = part_data(config, data)
    scores = {m: channel_scores(base, m, x=stats_x, seed=config["seed"]) for m in CHANNEL_METHODS}
    return {m: evaluate(slim_channels(base, select_channels(scores[m], config["fraction"])), *val)["acc"]
            for m in CHANNEL_METHODS}


def trim_part(config: dict, previous: dict | None = None, *, reference, data) -> tuple[dict, dict]:
    """Round config['round'] (1-based) of config['rounds'] of Network Trimming (`trim_round`) by
    config['method'] with config['seed'] to config['fraction']: round 1 starts from the reference, a
    later round from `previous`, the previous round's `model_blob`. Returns (record, `model_blob` of the
    trimmed model); the record holds the round, inner channels per block, validation and test accuracy."""
    base = part_reference(reference, config["base"])
    d, val, test, stats_x = part_data(config, data)
    r, seed = config["round"] - 1, config["seed"]
    if (r == 0) != (previous is None):
        raise ValueError(f"round {r + 1} of a trim {'starts from the reference' if r == 0 else 'needs the previous round'}")
    start = base if r == 0 else model_from_blob(previous)
    net = trim_round(start, config["fraction"], config["method"], stats_x, (d.train_x, d.train_y),
                     TrainConfig(**{**config["train"], "seed": seed}), index=r, rounds=config["rounds"],
                     base_channels={n: b.conv1.out_channels for n, b in blocks(base).items()}, seed=seed,
                     progress=False)
    rec = {"round": r + 1, "inner_channels": {n: b.conv1.out_channels for n, b in blocks(net).items()},
           "val_acc": evaluate(net, *val)["acc"], "test_acc": evaluate(net, *test)["acc"]}
    return rec, model_blob(net)


def torch_pruning_part(config: dict, *, reference, data) -> tuple[dict, dict]:
    """Torch-Pruning's cut of config['fraction'] of the inner channels (`torch_pruning_channels`, L1),
    fine-tuned with config['train'] and config['seed']: (record, `model_blob` of the model)."""
    base = part_reference(reference, config["base"])
    d, val, test, _ = part_data(config, data)
    net = torch_pruning_channels(base, config["fraction"])
    fit(net, d.train_x, d.train_y, TrainConfig(**{**config["train"], "seed": config["seed"]}), progress=False)
    net = net.cpu().eval()
    rec = {"inner_channels": {n: b.conv1.out_channels for n, b in blocks(net).items()},
           "val_acc": evaluate(net, *val)["acc"], "test_acc": evaluate(net, *test)["acc"]}
    return rec, model_blob(net)


# ---------------------------------------------------------------------------------------------
# storage: dense files that rebuild slimmed models, and sparse files (both the course's packed format)

def _check_arch_model(model) -> dict:
    check_model(model)
    arch = getattr(model, "arch", None)
    if not isinstance(arch, dict) or "name" not in arch:
        raise ValueError("model must be a slimlab ResNet (with .arch) to be saved with its architecture")
    return dict(arch)


def _load_model(path: str | os.PathLike, what: str) -> nn.Module:
    """The plain model in a packed file of this module, rebuilt from its architecture (slimmed shapes
    included); one `CheckpointError` naming the file for anything that is not such a file."""
    from .packing import model_from, read_packed
    u = read_packed(path, what)
    return _load_state_into(model_from(u, what), u.state, path, what).eval()


def save_dense(model: nn.Module, path: str | os.PathLike) -> int:
    """Save `model` (masks folded in, slimmed shapes recorded) as a dense fp32 file; returns its bytes.
    The course's packed format (`packing.pack_state`): every tensor stored exactly, no positions."""
    from .packing import pack_state
    arch = _check_arch_model(model)
    return pack_state(path, arch, baked_state_dict(model), layers=list(weight_layers(model)),
                      meta={"kind": "dense"}).bytes


def load_dense(path: str | os.PathLike) -> nn.Module:
    """The model saved by `save_dense`, in eval mode on the CPU; it needs nothing but this file.
    A missing file raises FileNotFoundError; any other file, or a damaged one, `files.CheckpointError`
    (a ValueError) naming it."""
    return _load_model(path, "slimlab dense file")


def save_torch_prune(model: nn.Module, masks: dict[str, torch.Tensor], path: str | os.PathLike) -> int:
    """What `torch.nn.utils.prune` saves for the same masks (weight_orig + weight_mask per layer) with
    `torch.save`, for comparison (no slimlab loader reads it); returns bytes."""
    import torch.nn.utils.prune as tprune
    m = baked_copy(model).cpu()
    mods = prunable_layers(m, list(masks))
    for n, mask in masks.items():
        tprune.custom_from_mask(mods[n], "weight", mask.cpu())
    return atomic_torch_save({k: v.contiguous() for k, v in m.state_dict().items()}, path).stat().st_size


def quantize_int8(v: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Symmetric per-tensor int8 codes of `v` and the scale (a float32 value): v ≈ codes * scale."""
    big = float(v.abs().max()) if v.numel() else 0.0
    scale = float(np.float32(big / 127.0)) if big > 0 else 1.0
    return torch.clamp(torch.round(v / scale), -127, 127).to(torch.int8), scale


def save_sparse(model: nn.Module, path: str | os.PathLike, values: str = "fp32",
                layers: list[str] | None = None) -> int:
    """Save `model` with each prunable weight as the positions of its nonzero weights plus their
    values (fp32, or int8 with one fp32 scale per layer, `quantize_int8`); everything else dense.
    Returns file bytes.

    The course's packed format (`packing.pack_state`): positions per layer as the cheaper of a 1-bit
    mask and a gap stream of 2-, 3-, 4-, 5-, 6- or 8-bit tokens (`packing.position_code` over
    `GAP_BITS`), values packed back to back; the header (zlib-compressed JSON) adds a few hundred bytes."""
    from .packing import AffineGrid, pack_state
    arch = _check_arch_model(model)
    check_choice(values, VALUE_FORMATS, "values")
    names = list(prunable_layers(model, layers))
    state = baked_state_dict(model)
    grids = {}
    if values == "int8":
        for n in names:
            w = state[f"{n}.weight"].float()
            codes, scale = quantize_int8(w[w != 0])
            full = torch.zeros(w.shape, dtype=torch.int64)
            full[w != 0] = codes.long()
            grids[n] = AffineGrid(full, 8, -127, torch.tensor(scale, dtype=torch.float32))
            state[f"{n}.weight"] = full.float() * grids[n].scale          # what the file reads back
    return pack_state(path, arch, state, layers=names, sparse=dict.fromkeys(names, True), grids=grids,
                      meta={"kind": "sparse", "values": values},
                      max_gap=tuple(2 ** b - 1 for b in GAP_BITS)).bytes


def sparse_layout(path: str | os.PathLike) -> dict[str, str]:
    """{weight key: 'bitmask', 'b-bit gaps' or 'Huffman gaps'}: how `save_sparse` coded each layer's positions."""
    from .packing import read_packed
    u = read_packed(path, "slimlab sparse file")
    return {f"{n}.weight": "bitmask" if c == "mask" else f"{u.gap_bits[n]}-bit gaps" if u.gap_bits[n] else "Huffman gaps"
            for n, c in u.positions.items() if c != "dense"}


def load_sparse(path: str | os.PathLike) -> nn.Module:
    """The model saved by `save_sparse` as a plain dense model (eval mode, CPU). A missing file
    raises FileNotFoundError; any other file, or a damaged one, `files.CheckpointError` (a ValueError)
    naming it."""
    return _load_model(path, "slimlab sparse file")
