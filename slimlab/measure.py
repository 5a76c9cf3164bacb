"""One way to count parameters, MACs, bytes and latency — every notebook uses these.

Units are in the names: `*_bytes` are bytes, `*_ms` milliseconds.
"""
from __future__ import annotations

import io
import lzma
import os
import statistics
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

# The course's one edge budget (COURSE.md, C14): a microcontroller-class device as in MCUNet
# (Lin et al., 2020), the STM32F746 — 1 MB of flash for the model file, 320 KB of SRAM for activations.
FLASH_BYTES = 1_048_576
SRAM_BYTES = 327_680

def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")


@dataclass(frozen=True)
class ParamCount:
    total: int     # every parameter element
    nonzero: int   # elements that are not exactly zero (after masks, if parametrized)

    @property
    def sparsity(self) -> float:
        """Fraction of parameters that are exactly zero, in [0, 1]."""
        return 1.0 - self.nonzero / self.total if self.total else 0.0


def count_params(model: nn.Module) -> ParamCount:
    """Total and nonzero parameter counts; a parametrized weight counts as the tensor it produces."""
    _check_model(model)
    total = nonzero = 0
    seen = set()
    for mod in model.modules():
        pz = getattr(mod, "parametrizations", None)
        for name, p in list(mod.named_parameters(recurse=False)):
            if id(p) in seen:
                continue
            seen.add(id(p))
            total += p.numel()
            nonzero += int(torch.count_nonzero(p.detach()))
        if pz is not None:  # weights behind torch.nn.utils.parametrize: count the effective tensor
            for name in pz.keys():
                orig = pz[name].original
                if id(orig) in seen:
                    continue
                seen.add(id(orig))
                eff = getattr(mod, name).detach()
                total += eff.numel()
                nonzero += int(torch.count_nonzero(eff))
    return ParamCount(total, nonzero)


def count_macs(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 32, 32)) -> int:
    """Multiply-accumulates of one forward pass on a zero input of `input_size` (torch's FLOP counter / 2)."""
    _check_model(model)
    if not (isinstance(input_size, tuple) and len(input_size) >= 2 and all(isinstance(s, int) and s > 0 for s in input_size)):
        raise ValueError(f"input_size must be a tuple of positive ints like (1, 3, 32, 32), got {input_size!r}")
    from torch.utils.flop_counter import FlopCounterMode
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    was = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(input_size, device=dev))
    model.train(was)
    return counter.get_total_flops() // 2


@dataclass(frozen=True)
class SizeReport:
    raw_bytes: int    # what torch.save writes (or the file's size)
    zlib_bytes: int   # zlib level 9 of the same bytes
    lzma_bytes: int   # xz/lzma preset 9 of the same bytes

    def as_dict(self) -> dict:
        return asdict(self)


def _compressed(raw: bytes) -> SizeReport:
    return SizeReport(len(raw), len(zlib.compress(raw, 9)), len(lzma.compress(raw, preset=9)))


def serialized_bytes(obj, compressed: bool = False) -> int | SizeReport:
    """Bytes `torch.save` writes for a model (its state_dict) or any state; with `compressed`, a SizeReport."""
    state = obj.state_dict() if isinstance(obj, nn.Module) else obj
    buf = io.BytesIO()
    torch.save(state, buf)
    raw = buf.getvalue()
    return _compressed(raw) if compressed else len(raw)


def file_bytes(path: str | os.PathLike, compressed: bool = False) -> int | SizeReport:
    """Size of a file on disk in bytes; with `compressed`, a SizeReport of its contents."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no file at {p}")
    return _compressed(p.read_bytes()) if compressed else p.stat().st_size


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int
    batch_size: int
    threads: int
    device: str

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"{self.median_ms:.2f} ms (p10 {self.p10_ms:.2f}, p90 {self.p90_ms:.2f}; batch {self.batch_size}, "
                f"{self.threads} threads, {self.repeats} repeats, {self.device})")


def time_fn(fn, *, repeats: int = 20, warmup: int = 3, batch_size: int = 1, device: str = "cpu") -> Latency:
    """Median and spread of wall time of `fn()` over `repeats` runs after `warmup` runs."""
    if not callable(fn):
        raise TypeError("fn must be callable")
    if not isinstance(repeats, int) or repeats < 1 or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"repeats must be an int >= 1 and warmup an int >= 0, got {repeats!r}, {warmup!r}")
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    q = lambda f: times[min(len(times) - 1, int(f * (len(times) - 1) + 0.5))]
    return Latency(statistics.median(times), q(0.1), q(0.9), repeats, batch_size, torch.get_num_threads(), device)


def latency(model: nn.Module, batch_size: int = 1, *, repeats: int = 20, warmup: int = 3,
            input_size: tuple[int, int, int] = (3, 32, 32), channels_last: bool = True,
            device: str | torch.device | None = None) -> Latency:
    """Forward-pass latency of `model` in eval mode on a random batch (ms; median, p10, p90)."""
    _check_model(model)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    x = torch.rand((batch_size, *input_size), generator=torch.Generator().manual_seed(0)).to(dev)
    if channels_last and dev.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
        model = model.to(memory_format=torch.channels_last)
    was = model.training
    model.eval()
    with torch.inference_mode():
        out = time_fn(lambda: model(x), repeats=repeats, warmup=warmup, batch_size=batch_size, device=str(dev))
    model.train(was)
    return out
