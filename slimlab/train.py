"""One training loop and one evaluation function for the whole course.

`fit` trains any classifier on in-memory uint8 images: SGD with Nesterov momentum, a
one-cycle (or cosine) learning-rate schedule, label smoothing, weight decay, batch-level
augmentation, channels_last on CPU, and the fastest device present (CUDA, then Apple
MPS, then CPU). Two hooks let later notebooks reuse it unchanged:

* `extra_loss(model, x, y, logits) -> tensor` is added to the loss (distillation, hints);
* `on_step(step, total_steps, model)` runs after every optimiser step (pruning schedules,
  re-applying masks, quantization-aware training).

With `checkpoint=path` the state is saved atomically after every epoch, and a later call
with the same path resumes where it stopped.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import batches, to_float
from .files import CheckpointError, atomic_torch_save, load_state, load_torch

SCHEDULES = ("onecycle", "cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch; the same seed gives the same numbers on CPU."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def default_device() -> torch.device:
    """CUDA if present, then Apple MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class TrainConfig:
    """How to train. `steps`, when set, overrides `epochs`."""
    epochs: float = 10
    steps: int | None = None
    batch_size: int = 128
    lr: float = 0.1           # peak learning rate
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    schedule: str = "onecycle"
    warmup: float = 0.15      # fraction of steps spent rising (one-cycle) or warming up (cosine)
    augment: bool = True
    cutout: int = 0           # side (px) of a square blanked at a random place in every training image; 0 = off
    precision: str = "auto"   # "auto": bf16 autocast where the device computes bf16 natively, else fp32
    seed: int = 0

    def validate(self) -> None:
        if self.steps is None and not (self.epochs > 0):
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps <= 0):
            raise ValueError(f"steps must be a positive int or None, got {self.steps!r}")
        if not isinstance(self.batch_size, int) or self.batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup must be in [0, 1), got {self.warmup}")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ValueError("weight_decay must be >= 0 and momentum in [0, 1)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if isinstance(self.cutout, bool) or not isinstance(self.cutout, int) or not 0 <= self.cutout <= 32:
            raise ValueError(f"cutout must be an int in [0, 32] (pixels), got {self.cutout!r}")


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """The precision `fit` really uses: 'fp32' or 'bf16' (autocast; master weights stay fp32).

    'auto' picks bf16 on a CPU that computes it natively (AVX512-BF16 or AMX, asked of torch) and
    on a CUDA GPU that supports it, fp32 elsewhere (AVX2-only CPUs emulate bf16 and get slower;
    Apple MPS). 'bf16' is honoured where it is native and refused elsewhere.
    """
    from .machine import cpu_bf16_native
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    dev = torch.device(device)
    native = (cpu_bf16_native() if dev.type == "cpu"
              else dev.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if precision == "fp32":
        return "fp32"
    if precision == "bf16" and not native:
        raise ValueError(f"precision 'bf16' needs native bf16 on {dev.type} (AVX512-BF16/AMX or a bf16 GPU); "
                         "use 'auto' or 'fp32' here")
    return "bf16" if native else "fp32"


@dataclass
class History:
    """What `fit` saw: one row per epoch (or per evaluation)."""
    epoch: list[float] = field(default_factory=list)
    step: list[int] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)   # % on the augmented batches seen
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)     # % (nan when no validation set)
    seconds: list[float] = field(default_factory=list)     # wall time since the start
    precision: str = ""                                     # the precision really used ('fp32' / 'bf16')
    machines: list[str] = field(default_factory=list)       # machine.describe() of every machine it ran on

    def as_dict(self) -> dict:
        return asdict(self)


def _same_config(stored: dict, cfg: TrainConfig) -> bool:
    """A stored config matches `cfg` when every stored field is equal and every field added to
    TrainConfig since it was written still has its default (so resuming survives new options)."""
    now, defaults = asdict(cfg), asdict(TrainConfig())
    if any(k not in now or now[k] != v for k, v in stored.items()):
        return False
    return all(now[k] == defaults[k] for k in now.keys() - stored.keys())


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Learning rate at `step` of `total` under `cfg.schedule`."""
    t = step / max(1, total)
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "onecycle":  # linear up from lr/10 to lr, then linear down to 0
        if t < cfg.warmup:
            return cfg.lr * (0.1 + 0.9 * t / cfg.warmup)
        return cfg.lr * max(0.0, (1 - t) / (1 - cfg.warmup))
    # cosine with linear warm-up
    if t < cfg.warmup:
        return cfg.lr * t / cfg.warmup
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * (t - cfg.warmup) / (1 - cfg.warmup)))


def _check_images(x, what: str = "images") -> None:
    """TypeError/ValueError unless `x` is a batch (N, 3, H, W) of uint8, or of floats in [0, 1]
    (one min/max pass; float images in 0..255 would silently score near chance)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        hint = " (it looks channels-last: use x.permute(0, 3, 1, 2))" if x.dim() == 4 and x.shape[-1] == 3 else ""
        raise ValueError(f"{what} must be (N, C, H, W) with C = 3, got shape {tuple(x.shape)}{hint}")
    if len(x) == 0:
        raise ValueError(f"{what} must be non-empty")
    if x.dtype == torch.uint8:
        return
    if not x.is_floating_point():
        raise ValueError(f"{what} must be uint8 (0..255) or float in [0, 1], got {x.dtype}")
    lo, hi = (v.item() for v in torch.aminmax(x.detach()))
    if math.isnan(lo) or math.isnan(hi):
        raise ValueError(f"{what} contain NaN")
    if lo < 0 or hi > 1:
        raise ValueError(f"float {what} must be in [0, 1], got values in [{lo:g}, {hi:g}]"
                         + (" (0..255: divide by 255, or pass the uint8 tensor)" if hi > 1.5 else ""))


def _num_classes(model: nn.Module) -> int | None:
    """The model's class count: its .arch['num_classes'], else the last Linear's out_features."""
    arch = getattr(model, "arch", None)
    if isinstance(arch, dict) and isinstance(arch.get("num_classes"), int):
        return arch["num_classes"]
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return last[-1].out_features if last else None


def _check_xy(x, y, what: str = "x, y", num_classes: int | None = None) -> None:
    """`_check_images(x)` plus `_check_labels(y)`."""
    _check_images(x, f"{what} images")
    _check_labels(y, x, what, num_classes)


def _check_labels(y, x: torch.Tensor, what: str = "x, y", num_classes: int | None = None) -> None:
    """Labels: an integer tensor (N,), N = len(x), with values in 0..num_classes-1."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{what} labels must be a torch tensor, got {type(y).__name__}")
    if y.dim() != 1 or len(y) != len(x):
        raise ValueError(f"{what}: images and labels must be non-empty and of equal length, labels of shape (N,); "
                         f"got {tuple(x.shape)} images and labels of shape {tuple(y.shape)}")
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise ValueError(f"{what} labels must be integer class indices, got {y.dtype}")
    lo, hi = int(y.min()), int(y.max())
    top = f"{num_classes - 1}" if num_classes is not None else "num_classes - 1"
    if lo < 0 or (num_classes is not None and hi >= num_classes):
        raise ValueError(f"{what} labels must be in 0..{top}, got values in [{lo}, {hi}]")


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500,
            device: torch.device | str | None = None) -> torch.Tensor:
    """Logits (N, classes) for uint8 images or float images in [0, 1] (N, 3, H, W), in eval mode, on the CPU."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    _check_images(x)
    return _predict(model, x, batch_size, device)


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = to_float(x[i:i + batch_size]).to(dev)
        if dev.type == "cpu":
            xb = xb.contiguous(memory_format=torch.channels_last)
        out.append(model(xb).float().cpu())
    model.train(was_training)
    return torch.cat(out)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500,
             device: torch.device | str | None = None) -> dict[str, float]:
    """{'acc': accuracy in %, 'loss': mean cross-entropy} of `model` on images `x` (uint8, or float
    in [0, 1]; (N, 3, H, W)) and integer labels `y` (N,)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    _check_xy(x, y, num_classes=_num_classes(model))
    logits = _predict(model, x, batch_size, device)
    _check_labels(y, x, num_classes=logits.shape[1])
    y = y.long()
    return {"acc": 100.0 * (logits.argmax(1) == y).float().mean().item(),
            "loss": F.cross_entropy(logits, y).item()}


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig | None = None, *,
        val: tuple[torch.Tensor, torch.Tensor] | None = None,
        extra_loss: Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        on_step: Callable[[int, int, nn.Module], None] | None = None,
        checkpoint: str | os.PathLike | None = None, device: torch.device | str | None = None,
        progress: bool = True, desc: str = "training") -> History:
    """Train `model` in place on uint8 images `x` (N, 3, 32, 32) and labels `y`; return its History."""
    from tqdm.auto import tqdm

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    cfg = config if config is not None else TrainConfig()
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(cfg).__name__}")
    cfg.validate()
    _check_xy(x, y, num_classes=_num_classes(model))
    if val is not None:
        if not (isinstance(val, (tuple, list)) and len(val) == 2):
            raise TypeError("val must be a pair (images, labels)")
        _check_xy(*val, what="val", num_classes=_num_classes(model))
    dev = torch.device(device) if device is not None else default_device()
    model.to(dev)
    if dev.type == "cpu":
        model.to(memory_format=torch.channels_last)

    precision = resolve_precision(cfg.precision, dev)
    autocast = (torch.autocast(dev.type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())
    steps_per_epoch = max(1, len(y) // cfg.batch_size)
    total = cfg.steps if cfg.steps is not None else max(1, round(cfg.epochs * steps_per_epoch))
    n_epochs = math.ceil(total / steps_per_epoch)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          nesterov=cfg.nesterov and cfg.momentum > 0, weight_decay=cfg.weight_decay)
    hist, step, start_epoch, elapsed = History(), 0, 0, 0.0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and ckpt.is_file():
        what = "fit resume checkpoint"
        state = load_torch(ckpt, what=what, map_location=dev,
                           required=("model", "optimizer", "history", "step", "epoch", "seconds", "config"))
        if not isinstance(state["config"], dict) or not _same_config(state["config"], cfg):
            raise ValueError(f"checkpoint {ckpt} was written with another TrainConfig; "
                             "delete it or use the same config to resume")
        load_state(model, state["model"], ckpt, what)
        try:
            opt.load_state_dict(state["optimizer"])
            hist = History(**state["history"])
        except (ValueError, TypeError, KeyError) as e:
            raise CheckpointError(f"{ckpt} is not a {what} for this model: its optimizer state or history "
                                  f"does not fit ({e})") from None
        if hist.precision and hist.precision != precision:
            raise ValueError(f"checkpoint {ckpt} was trained in {hist.precision}, this machine resolves "
                             f"precision {cfg.precision!r} to {precision}; resume where the precision matches")
        step, start_epoch, elapsed = state["step"], state["epoch"], state["seconds"]

    from .machine import describe
    hist.precision = precision
    if not hist.machines or hist.machines[-1] != describe():
        hist.machines.append(describe())
    t0 = time.perf_counter() - elapsed
    bar = tqdm(total=total, initial=step, desc=desc, disable=not progress, unit="step", mininterval=1.0)
    model.train()
    for epoch in range(start_epoch, n_epochs):
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct = torch.zeros((), dtype=torch.int64)
        seen = 0
        for xb, yb in batches(x, y, cfg.batch_size, shuffle=True, augment_data=cfg.augment,
                              cutout=cfg.cutout, generator=g, drop_last=len(y) >= cfg.batch_size):
            if step >= total:
                break
            lr = lr_at(step, total, cfg)
            for group in opt.param_groups:
                group["lr"] = lr
            xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            if dev.type == "cpu":
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast:
                logits = model(xb)
                loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
                if extra_loss is not None:
                    loss = loss + extra_loss(model, xb, yb, logits.float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if on_step is not None:
                on_step(step, total, model)
            loss_sum += loss.detach().double().cpu() * len(yb)
            correct += (logits.detach().argmax(1) == yb).sum().cpu()
            seen += len(yb)
            bar.update(1)
        if seen:
            hist.epoch.append(round(step / steps_per_epoch, 4))
            hist.step.append(step)
            hist.lr.append(lr)
            hist.train_loss.append(loss_sum.item() / seen)
            hist.train_acc.append(100.0 * correct.item() / seen)
            if val is not None:
                m = evaluate(model, val[0], val[1], device=dev)
                model.train()
                hist.val_acc.append(m["acc"])
                hist.val_loss.append(m["loss"])
                bar.set_postfix(val_acc=f"{m['acc']:.2f}%", refresh=False)
            else:
                hist.val_acc.append(float("nan"))
                hist.val_loss.append(float("nan"))
            hist.seconds.append(time.perf_counter() - t0)
        if ckpt is not None:
            atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                                "history": hist.as_dict(), "step": step, "epoch": epoch + 1,
                                "seconds": time.perf_counter() - t0, "config": asdict(cfg)}, ckpt)
        if step >= total:
            break
    bar.close()
    model.eval()
    return hist
