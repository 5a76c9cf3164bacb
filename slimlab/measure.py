"""One way to count parameters, MACs, bytes and latency — every notebook uses these.

Units are in the names: `*_bytes` are bytes, `*_ms` milliseconds.
"""
from __future__ import annotations

import copy
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


def _random_batch(batch_size: int, input_size: tuple[int, ...], dev: torch.device) -> torch.Tensor:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    return torch.rand((batch_size, *input_size), generator=torch.Generator().manual_seed(0)).to(dev)


def _runner(model, x: torch.Tensor, channels_last: bool):
    """A no-argument callable that runs one forward pass of `model` on `x`, without changing the
    caller's model: a module is timed as an eval-mode copy (channels_last on the CPU when asked)."""
    if not isinstance(model, nn.Module):
        return lambda: model(x)
    try:
        m = copy.deepcopy(model).eval()
    except Exception as e:  # a module holding something that cannot be copied (a session, a lock)
        raise TypeError(f"cannot time a copy of this {type(model).__name__} ({e}); pass a callable "
                        "instead, e.g. lambda x: model(x)") from None
    if channels_last and x.device.type == "cpu" and x.dim() == 4:
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return lambda: m(x)


def _device_of(model) -> torch.device:
    p = next(model.parameters(), None) if isinstance(model, nn.Module) else None
    return p.device if p is not None else torch.device("cpu")


def latency(model: nn.Module, batch_size: int = 1, *, repeats: int = 20, warmup: int = 3,
            input_size: tuple[int, int, int] = (3, 32, 32), channels_last: bool = True,
            device: str | torch.device | None = None) -> Latency:
    """Forward-pass latency of `model` in eval mode on a random batch (ms; median, p10, p90).

    The caller's model is left as it was (mode, memory format): an eval-mode copy is timed. To compare
    several models fairly, use `compare_latency` (interleaved rounds, fixed threads)."""
    _check_model(model)
    dev = torch.device(device) if device is not None else _device_of(model)
    x = _random_batch(batch_size, input_size, dev)
    run = _runner(model, x, channels_last)
    with torch.inference_mode():
        return time_fn(run, repeats=repeats, warmup=warmup, batch_size=batch_size, device=str(dev))


@dataclass(frozen=True)
class LatencyStats:
    """One candidate of `compare_latency`: statistics over rounds of the per-round median (ms)."""
    median_ms: float   # median over rounds
    q1_ms: float       # 25th percentile over rounds
    q3_ms: float       # 75th percentile over rounds
    min_ms: float
    max_ms: float
    rounds: int
    repeats: int       # timed calls per round
    batch_size: int
    threads: int
    rounds_ms: tuple[float, ...]   # every round's median, in the order measured

    @property
    def iqr_ms(self) -> float:
        """Interquartile range over rounds (ms): the spread to show beside the median."""
        return self.q3_ms - self.q1_ms

    def as_dict(self) -> dict:
        return {**asdict(self), "rounds_ms": list(self.rounds_ms), "iqr_ms": self.iqr_ms}

    def __str__(self) -> str:
        return (f"{self.median_ms:.2f} ms (IQR {self.q1_ms:.2f}–{self.q3_ms:.2f}, min {self.min_ms:.2f}, "
                f"max {self.max_ms:.2f}; {self.rounds} rounds × {self.repeats}, batch {self.batch_size}, "
                f"{self.threads} threads)")


def _quantile(sorted_vals: list[float], f: float) -> float:
    """Linear-interpolation quantile of an ascending list (numpy's default method)."""
    pos = f * (len(sorted_vals) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def compare_latency(models: dict, batch_size: int = 1, *, rounds: int = 7, repeats: int = 10,
                    warmup: int = 3, threads: int = 1, input_size: tuple[int, ...] = (3, 32, 32),
                    channels_last: bool = True) -> dict[str, LatencyStats]:
    """Latency of several candidates measured fairly: {name: LatencyStats} (ms).

    `models` maps a name to an nn.Module (timed as an eval-mode copy, on its own device, channels_last
    on the CPU) or to a callable taking the float batch (B, *input_size). The torch thread count is set
    to `threads` for the measurement and restored after (default 1: a single core is what an edge device
    has, and it is the most stable number on a shared machine). Every candidate is warmed up, then the
    candidates are interleaved: in each of `rounds` rounds each one runs `repeats` timed calls (the
    starting candidate rotates from round to round), and the round's median is kept. Drift of the
    machine (another process, frequency changes) thus hits every candidate alike; the spread over
    rounds (IQR, min, max) shows how far to trust a difference.
    """
    if not isinstance(models, dict) or not models:
        raise TypeError("models must be a non-empty dict {name: nn.Module or callable}")
    for name, m in models.items():
        if not isinstance(name, str) or not (isinstance(m, nn.Module) or callable(m)):
            raise TypeError(f"models must map str names to nn.Module or callables; {name!r} maps to "
                            f"{type(m).__name__}")
    for label, v, lo in (("rounds", rounds, 1), ("repeats", repeats, 1), ("warmup", warmup, 0), ("threads", threads, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{label} must be an int >= {lo}, got {v!r}")
    runners = {name: _runner(m, _random_batch(batch_size, input_size, _device_of(m)), channels_last)
               for name, m in models.items()}
    syncs = {name: (torch.cuda.synchronize if _device_of(m).type == "cuda" else (lambda: None))
             for name, m in models.items()}
    names = list(runners)
    per_round: dict[str, list[float]] = {n: [] for n in names}
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for n in names:
                for _ in range(warmup):
                    runners[n]()
                syncs[n]()
            for r in range(rounds):
                for n in names[r % len(names):] + names[:r % len(names)]:
                    times = []
                    for _ in range(repeats):
                        t = time.perf_counter()
                        runners[n]()
                        syncs[n]()
                        times.append((time.perf_counter() - t) * 1e3)
                    per_round[n].append(statistics.median(times))
    finally:
        torch.set_num_threads(old_threads)
    out = {}
    for n in names:
        v = sorted(per_round[n])
        out[n] = LatencyStats(statistics.median(v), _quantile(v, 0.25), _quantile(v, 0.75), v[0], v[-1],
                              rounds, repeats, batch_size, threads, tuple(per_round[n]))
    return out


# =============================================================================================
# activation memory at batch 1 (for the SRAM budget; moved from slimlab.combine)

@dataclass(frozen=True)
class ActivationMemory:
    """Live activation bytes per layer call at batch 1 and the peak."""
    per_layer: list[tuple[str, int]]   # (layer name, live bytes while it runs)
    peak_bytes: int
    peak_layer: str
    bytes_per_value: int

    def as_dict(self) -> dict:
        return asdict(self)


def _tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


@torch.no_grad()
def activation_memory(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 32, 32), bytes_per_value: int = 4,
                      held: tuple[type, ...] | None = None) -> ActivationMemory:
    """Run one zero input of `input_size` through `model` (eval mode) with forward hooks on every leaf
    module and count, for each leaf call, the values that must be live at once: its inputs + its output
    (a tensor shared by both, e.g. an in-place op, counts once) + the inputs of every enclosing module of
    a `held` type (default: slimlab's residual BasicBlock, whose input waits for the shortcut add).
    Values × `bytes_per_value` (1 for int8, 4 for float32). Parameter-free functional ops (F.relu, the add)
    are not modules; an edge runtime fuses them into the neighbouring layer. Compare with `SRAM_BYTES`."""
    from .checks import check_int
    from .models import BasicBlock
    _check_model(model)
    check_int(bytes_per_value, "bytes_per_value", 1)
    if not (isinstance(input_size, tuple) and all(isinstance(s, int) and s > 0 for s in input_size)):
        raise ValueError(f"input_size must be a tuple of positive ints like (1, 3, 32, 32), got {input_size!r}")
    held = (BasicBlock,) if held is None else tuple(held)
    stack: list[torch.Tensor] = []      # inputs of the enclosing `held` modules, innermost last
    sizes: list[int] = []               # how many tensors each of them pushed
    rows: list[tuple[str, int]] = []
    handles = []

    def live(ts) -> int:
        seen, n = set(), 0
        for t in ts:
            k = (t.data_ptr(), t.numel())
            if k not in seen:
                seen.add(k)
                n += t.numel()
        return n

    def pre(mod, args):
        ts = _tensors(args)
        stack.extend(ts)
        sizes.append(len(ts))

    def post_held(mod, args, out):
        del stack[len(stack) - sizes.pop():]

    def leaf(name):
        def hook(mod, args, out):
            rows.append((name, live(stack + _tensors(args) + _tensors(out)) * bytes_per_value))
        return hook

    was = model.training
    model.eval()
    try:
        for name, mod in model.named_modules():
            if held and isinstance(mod, held):
                handles.append(mod.register_forward_pre_hook(pre))
                handles.append(mod.register_forward_hook(post_held))
            elif not list(mod.children()):
                handles.append(mod.register_forward_hook(leaf(name)))
        model(torch.zeros(input_size, device=_device_of(model)))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    if not rows:
        raise ValueError("model has no leaf module to measure")
    name, peak = max(rows, key=lambda r: r[1])
    return ActivationMemory(rows, peak, name, bytes_per_value)
