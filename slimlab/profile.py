"""Run profiles: every size the notebooks use (subsets, epochs, grids), one section per topic.

`SLIMLAB_PROFILE=quick|full` picks the profile; quick is the default everywhere.
Notebooks read sizes from `get_profile()` and carry no literals of their own.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

PROFILES = ("quick", "full")


@dataclass(frozen=True)
class SetupSection:
    """Lesson zero: how much of the test set to evaluate the reference on."""
    eval_images: int  # test images used to evaluate the reference model (0 = all)


@dataclass(frozen=True)
class ScalingSection:
    """Notebook 01: the model-size x data-size sweep."""
    widths: tuple[float, ...]
    depths: tuple[str, ...]
    data_sizes: tuple[int, ...]
    epochs: int
    seeds: tuple[int, ...]
    capacity_sizes: tuple[int, ...]
    capacity_widths: tuple[float, ...]
    capacity_epochs: int


@dataclass(frozen=True)
class QuantizeSection:
    """Notebook 02: post-training quantization and QAT."""
    calib_images: int
    eval_images: int
    bits: tuple[int, ...]
    qat_steps: int
    lowprec_epochs: int
    lowprec_train_images: int
    latency_repeats: int


@dataclass(frozen=True)
class PruneSection:
    """Notebook 03: magnitude, random and structured pruning."""
    eval_images: int
    sparsities: tuple[float, ...]
    finetune_steps: int
    apoz_images: int
    channel_fractions: tuple[float, ...]
    latency_repeats: int


@dataclass(frozen=True)
class ShareSection:
    """Notebook 04: low-rank, k-means and hashing."""
    eval_images: int
    energies: tuple[float, ...]
    kmeans_bits: tuple[int, ...]
    finetune_steps: int
    hashed_compressions: tuple[float, ...]
    hashed_train_images: int
    hashed_epochs: int
    hashed_arch: str = "resnet20"                                  # base net of the hashing comparison
    kmeans_finetune_inits: tuple[str, ...] = ("linear",)           # inits whose codebooks are fine-tuned
    latency_repeats: int = 5


@dataclass(frozen=True)
class DistillSection:
    """Notebook 05: teacher -> student."""
    train_images: int
    epochs: int
    seeds: tuple[int, ...]
    temperatures: tuple[float, ...]
    alphas: tuple[float, ...]
    eval_images: int


@dataclass(frozen=True)
class Profile:
    """Every size of one profile, one section per topic."""
    name: str
    setup: SetupSection
    scaling: ScalingSection
    quantize: QuantizeSection
    prune: PruneSection
    share: ShareSection
    distill: DistillSection
    batch_size: int = 128
    eval_batch_size: int = 500
    extra: dict = field(default_factory=dict)


QUICK = Profile(
    name="quick",
    setup=SetupSection(eval_images=2000),
    scaling=ScalingSection(
        widths=(0.25, 0.5, 1.0), depths=("resnet8",), data_sizes=(1000, 4000),
        epochs=2, seeds=(0,), capacity_sizes=(64, 128, 256), capacity_widths=(0.25, 0.5),
        capacity_epochs=15,
    ),
    quantize=QuantizeSection(
        calib_images=256, eval_images=1000, bits=(8, 6, 4, 3, 2), qat_steps=60,
        lowprec_epochs=1, lowprec_train_images=2000, latency_repeats=5,
    ),
    prune=PruneSection(
        eval_images=1000, sparsities=(0.5, 0.7, 0.8, 0.9), finetune_steps=60,
        apoz_images=512, channel_fractions=(0.25, 0.5), latency_repeats=5,
    ),
    share=ShareSection(
        eval_images=500, energies=(0.8, 0.95), kmeans_bits=(2, 4, 8),
        finetune_steps=8, hashed_compressions=(2.0, 8.0), hashed_train_images=2000,
        hashed_epochs=1, hashed_arch="resnet8", kmeans_finetune_inits=("linear",),
        latency_repeats=5,
    ),
    distill=DistillSection(
        train_images=4000, epochs=1, seeds=(0,), temperatures=(4.0,), alphas=(0.9,),
        eval_images=1000,
    ),
)

FULL = Profile(
    name="full",
    setup=SetupSection(eval_images=0),
    scaling=ScalingSection(
        widths=(0.25, 0.5, 1.0, 2.0), depths=("resnet8", "resnet20"),
        data_sizes=(2500, 5000, 10000, 20000), epochs=15, seeds=(0, 1),
        capacity_sizes=(256, 512, 1024, 2048, 4096), capacity_widths=(0.125, 0.25, 0.5, 1.0),
        capacity_epochs=60,
    ),
    quantize=QuantizeSection(
        calib_images=2048, eval_images=0, bits=(8, 6, 5, 4, 3, 2), qat_steps=2000,
        lowprec_epochs=10, lowprec_train_images=20000, latency_repeats=30,
    ),
    prune=PruneSection(
        eval_images=0, sparsities=(0.3, 0.5, 0.7, 0.8, 0.9, 0.95), finetune_steps=1500,
        apoz_images=5000, channel_fractions=(0.1, 0.25, 0.4, 0.5), latency_repeats=30,
    ),
    share=ShareSection(
        eval_images=0, energies=(0.5, 0.7, 0.8, 0.9, 0.95, 0.99), kmeans_bits=(1, 2, 3, 4, 5, 6, 8),
        finetune_steps=600, hashed_compressions=(2.0, 4.0, 8.0, 16.0),
        hashed_train_images=10000, hashed_epochs=10, hashed_arch="resnet20",
        kmeans_finetune_inits=("linear", "density"), latency_repeats=30,
    ),
    distill=DistillSection(
        train_images=45000, epochs=15, seeds=(0, 1, 2), temperatures=(2.0, 4.0, 8.0),
        alphas=(0.5, 0.9), eval_images=0,
    ),
)

_BY_NAME = {"quick": QUICK, "full": FULL}


def get_profile(name: str | None = None) -> Profile:
    """The profile named `name`, else `$SLIMLAB_PROFILE`, else quick."""
    if name is None:
        name = os.environ.get("SLIMLAB_PROFILE", "quick") or "quick"
    if not isinstance(name, str):
        raise TypeError(f"profile name must be a str, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in _BY_NAME:
        raise ValueError(f"unknown profile {name!r}; allowed: {', '.join(PROFILES)}")
    return _BY_NAME[key]
