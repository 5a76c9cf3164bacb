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
    steps: int                     # SGD steps of every sweep cell, whatever its data size (C2: matched steps)
    seeds: tuple[int, ...]
    capacity_sizes: tuple[int, ...]
    capacity_widths: tuple[float, ...]
    capacity_steps: int            # SGD steps of every capacity-probe point, whatever its size
    batch_size: int = 128          # sweep training batch
    eval_images: int = 0           # val/test/train images for each cell's final numbers (0 = all)
    latency_repeats: int = 20      # timed forward passes per model in the cost table
    threads: int = 0               # torch CPU threads for the notebook (0 = torch's default)


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
    qat_bits: tuple[int, ...] = (4, 2)      # weight bits recovered by QAT
    qat_batch: int = 128
    qat_lr: float = 0.005                   # peak lr of the cosine QAT fine-tune (BN folded: keep it low)
    calib_act_bits: int = 4                 # activation bits at which the calibrators are compared
    lowprec_arch: str = "resnet8"           # C5: network trained with low-precision weight storage
    lowprec_batch: int = 128
    latency_batches: tuple[int, ...] = (64, 1)
    qat_weight_calibrators: tuple[str, ...] = ("minmax",)  # weight-grid ranges piloted on validation before QAT
    qat_pilot_steps: int = 0                # steps of each calibrator's pilot (scored on validation)


@dataclass(frozen=True)
class PruneSection:
    """Notebook 03: magnitude, random and structured pruning."""
    eval_images: int
    sparsities: tuple[float, ...]
    finetune_steps: int
    apoz_images: int
    channel_fractions: tuple[float, ...]
    latency_repeats: int
    finetune_sparsities: tuple[float, ...] = (0.8,)      # sparsities fine-tuned (magnitude, random, gradual)
    finetune_batch: int = 128
    finetune_lr: float = 0.01                             # peak lr of the cosine fine-tune
    sensitivity_sparsities: tuple[float, ...] = (0.9,)   # per-layer scan
    sensitivity_images: int = 0                           # validation images per scan point (0 = all)
    judge_fraction: float = 0.25                          # channel fraction fine-tuned and judged for C8
    trim_rounds: int = 1                                  # Network Trimming prune/fine-tune rounds
    latency_batch: int = 32
    stats_samples: int = 20000                            # weights per layer used by the distribution fits
    seeds: tuple[int, ...] = (0,)                         # seeds of the knife-edge comparisons (C8's rankings)
    latency_rounds: int = 3                               # interleaved rounds of measure.compare_latency
    goal_sparsities: tuple[float, ...] = ()               # gradual pruning given goal_steps: the sparsity goals
    goal_steps: int = 0                                   # fine-tune steps of those runs (0 = none)


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
    latency_batch: int = 1                                         # images per timed forward pass
    dkm_bits: int = 2                                              # Deep k-Means: bits of the sharing after
    dkm_strength: float = 10.0                                     # Deep k-Means: penalty strength
    dkm_steps: int = 0                                             # Deep k-Means: retrain steps (0 = finetune_steps)
    seeds: tuple[int, ...] = (0,)                                  # seeds of the knife-edge points below (0 = the sweep's)
    seeded_bits: tuple[int, ...] = ()                              # k-means widths fine-tuned once per seed (+ the chosen one)
    seeded_compressions: tuple[float, ...] = ()                    # hashing factors trained once per seed


@dataclass(frozen=True)
class DistillSection:
    """Notebook 05: teacher -> student."""
    train_images: int                      # headline runs: training images (0 = all 45k)
    epochs: float                          # headline runs: epochs over train_images
    seeds: tuple[int, ...]                 # headline runs: seeds of scratch and distilled students
    temperatures: tuple[float, ...]        # T sweep (chosen on validation)
    alphas: tuple[float, ...]              # alpha sweep (chosen on validation)
    eval_images: int                       # test images for final numbers (0 = all)
    sweep_train_images: int = 10000        # T x alpha sweep: training images
    sweep_epochs: float = 10               # T x alpha sweep: epochs
    val_images: int = 0                    # validation images scoring the sweep (0 = all 5k)
    at_beta: float = 1000.0                # attention-transfer weight (beta/2 * AT loss)
    feature_seeds: tuple[int, ...] = (0,)  # seeds of the attention-transfer variant
    dark_images: int = 4                   # test images in the dark-knowledge figure
    finetune_steps: int = 0                # fine-tune steps of each pruned / low-rank / k-means teacher (C12)
    latency_repeats: int = 5
    batch_size: int = 128                  # student training batch


@dataclass(frozen=True)
class CombineSection:
    """Notebook 06: every method on the same axes, combined pipelines, the edge budget."""
    eval_images: int                        # val/test images for every point (0 = all)
    quant_bits: tuple[int, ...]             # single method: uniform weight grids (QAT, the same fine-tune budget)
    prune_sparsities: tuple[float, ...]     # single method: gradual magnitude pruning during a fine-tune
    share_bits: tuple[int, ...]             # single method: k-means codebooks, fine-tuned
    finetune_steps: int                     # the fine-tune budget of every model, single or chain (split over its trained steps)
    chain_sparsities: tuple[float, ...]     # pruning step of the pipelines (one pipeline per value)
    chain_share_bits: int = 4               # k-means step of the Deep Compression chain
    chain_quant_bits: int = 8               # uniform grid of distil → prune → quantize
    batch_size: int = 128                   # fine-tune batch
    lr: float = 0.01                        # peak lr of the cosine fine-tunes
    temperature: float = 4.0                # KD (notebook 05's usual choice)
    alpha: float = 0.9
    calib_images: int = 256                 # training images calibrating int8 activations
    latency_repeats: int = 20               # timed batch-1 forward passes per model
    resumable: bool = False                 # per-part JSON under results/<profile>/06_putting_it_together/parts/
    seeds: tuple[int, ...] = (0, 1)         # seeds of the best pipeline vs the best single method (C13)


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
    combine: CombineSection
    batch_size: int = 128
    eval_batch_size: int = 500
    extra: dict = field(default_factory=dict)


QUICK = Profile(
    name="quick",
    setup=SetupSection(eval_images=2000),
    scaling=ScalingSection(
        widths=(0.125, 0.25, 0.5), depths=("resnet8",), data_sizes=(500, 1500),
        steps=40, seeds=(0,), capacity_sizes=(32, 128), capacity_widths=(0.125, 0.25),
        capacity_steps=30, batch_size=64, eval_images=500, latency_repeats=5, threads=1,
    ),
    quantize=QuantizeSection(
        calib_images=128, eval_images=500, bits=(8, 4, 2), qat_steps=4,
        lowprec_epochs=1, lowprec_train_images=512, latency_repeats=3,
        qat_bits=(4, 2), qat_batch=32, qat_lr=0.001, calib_act_bits=4, lowprec_arch="resnet8",
        lowprec_batch=32, latency_batches=(64, 1), qat_weight_calibrators=("minmax", "mse"), qat_pilot_steps=2,
    ),
    prune=PruneSection(
        eval_images=200, sparsities=(0.5, 0.7, 0.9), finetune_steps=4,
        apoz_images=256, channel_fractions=(0.25, 0.5), latency_repeats=5,
        finetune_sparsities=(0.5,), finetune_batch=32, finetune_lr=0.01,
        sensitivity_sparsities=(0.9,), sensitivity_images=50, judge_fraction=0.25,
        trim_rounds=1, latency_batch=16, stats_samples=4000, goal_sparsities=(0.8,), goal_steps=4,
    ),
    share=ShareSection(
        eval_images=500, energies=(0.8, 0.95), kmeans_bits=(2, 4, 8),
        finetune_steps=8, hashed_compressions=(2.0, 8.0), hashed_train_images=2000,
        hashed_epochs=1, hashed_arch="resnet8", kmeans_finetune_inits=("linear",),
        latency_repeats=5, dkm_steps=30, seeds=(0, 1), seeded_bits=(4,), seeded_compressions=(2.0,),
    ),
    distill=DistillSection(
        train_images=1280, epochs=1, seeds=(0,), temperatures=(4.0,), alphas=(0.9,),
        eval_images=500, sweep_train_images=1280, sweep_epochs=1, val_images=500,
        at_beta=1000.0, feature_seeds=(0,), dark_images=4, finetune_steps=0, latency_repeats=5,
        batch_size=64,
    ),
    combine=CombineSection(
        eval_images=500, quant_bits=(8, 4), prune_sparsities=(0.5, 0.8), share_bits=(2, 4),
        finetune_steps=6, chain_sparsities=(0.5,), chain_share_bits=4, chain_quant_bits=8,
        batch_size=32, lr=0.005, calib_images=128, latency_repeats=10, resumable=False,
    ),
)

FULL = Profile(
    name="full",
    setup=SetupSection(eval_images=0),
    scaling=ScalingSection(
        widths=(0.25, 0.5, 1.0), depths=("resnet8", "resnet20"),
        data_sizes=(1250, 2500, 5000, 10000), steps=1200, seeds=(0, 1),
        capacity_sizes=(256, 512, 1024, 2048, 4096), capacity_widths=(0.125, 0.25, 0.5, 1.0),
        capacity_steps=2000, batch_size=128, eval_images=0, latency_repeats=30,
    ),
    quantize=QuantizeSection(
        calib_images=2048, eval_images=0, bits=(8, 6, 5, 4, 3, 2), qat_steps=6000,
        lowprec_epochs=10, lowprec_train_images=20000, latency_repeats=30,
        qat_bits=(4, 2), qat_batch=128, qat_lr=0.005, calib_act_bits=4, lowprec_arch="resnet8",
        lowprec_batch=128, latency_batches=(64, 1), qat_weight_calibrators=("minmax", "mse"), qat_pilot_steps=600,
    ),
    prune=PruneSection(
        eval_images=0, sparsities=(0.3, 0.5, 0.7, 0.8, 0.9, 0.95), finetune_steps=1000,
        apoz_images=5000, channel_fractions=(0.1, 0.25, 0.4, 0.5), latency_repeats=30,
        finetune_sparsities=(0.5, 0.8, 0.9), finetune_batch=128, finetune_lr=0.01,
        sensitivity_sparsities=(0.5, 0.7, 0.9, 0.95), sensitivity_images=2000, judge_fraction=0.25,
        trim_rounds=2, latency_batch=32, stats_samples=20000, seeds=(0, 1, 2),
        latency_rounds=9, goal_sparsities=(0.7, 0.8, 0.9), goal_steps=6000,
    ),
    share=ShareSection(
        eval_images=0, energies=(0.5, 0.7, 0.8, 0.9, 0.95, 0.99), kmeans_bits=(1, 2, 3, 4, 5, 6, 8),
        finetune_steps=600, hashed_compressions=(2.0, 4.0, 8.0, 16.0),
        hashed_train_images=10000, hashed_epochs=10, hashed_arch="resnet20",
        kmeans_finetune_inits=("linear", "density"), latency_repeats=30,
        seeds=(0, 1, 2), seeded_bits=(3, 4), seeded_compressions=(2.0,),
    ),
    distill=DistillSection(
        train_images=0, epochs=15, seeds=(0, 1, 2), temperatures=(2.0, 4.0, 8.0),
        alphas=(0.5, 0.9), eval_images=0, sweep_train_images=10000, sweep_epochs=10, val_images=0,
        at_beta=1000.0, feature_seeds=(0,), dark_images=4, finetune_steps=700, latency_repeats=30,
        batch_size=128,
    ),
    combine=CombineSection(
        eval_images=0, quant_bits=(8, 6, 5, 4), prune_sparsities=(0.3, 0.5, 0.7, 0.8, 0.9),
        share_bits=(2, 3, 4, 5), finetune_steps=1600, chain_sparsities=(0.3, 0.5, 0.7, 0.8, 0.9),
        chain_share_bits=4, chain_quant_bits=6, batch_size=128, lr=0.01, calib_images=1024,
        latency_repeats=50, resumable=True, seeds=(0, 1, 2),
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
