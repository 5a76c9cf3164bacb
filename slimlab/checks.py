"""The one set of argument validators for slimlab's public functions.

Each check returns the value it accepted (normalised: an int, a float, a tensor) or raises a
`TypeError` (wrong kind of thing) or `ValueError` (right kind, value not allowed) whose message
names the argument and says what is allowed. Bools are never accepted as numbers.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import torch
import torch.nn as nn


def check_model(model, what: str = "model") -> nn.Module:
    """`model` if it is an nn.Module."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{what} must be an nn.Module, got {type(model).__name__}")
    return model


def check_int(v, what: str, lo: int | None = None, hi: int | None = None) -> int:
    """`v` as an int in [lo, hi] (either bound may be None)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{what} must be an int, got {type(v).__name__}")
    v = int(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        span = f"in {lo}..{hi}" if lo is not None and hi is not None else f">= {lo}" if lo is not None else f"<= {hi}"
        raise ValueError(f"{what} must be {span}, got {v}")
    return v


def check_number(v, what: str, lo: float | None = None, hi: float | None = None, *,
                 lo_open: bool = False, hi_open: bool = False) -> float:
    """`v` as a finite float in the interval given by lo/hi (closed unless lo_open/hi_open)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{what} must be a number, got {type(v).__name__}")
    v = float(v)
    bad = v != v or v in (float("inf"), float("-inf"))
    if lo is not None:
        bad |= v <= lo if lo_open else v < lo
    if hi is not None:
        bad |= v >= hi if hi_open else v > hi
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        span = f"in {left}{'-inf' if lo is None else format(lo, 'g')}, {'inf' if hi is None else format(hi, 'g')}{right}"
        raise ValueError(f"{what} must be a finite number {span}, got {v}")
    return v


def check_fraction(v, what: str, *, allow_one: bool = False) -> float:
    """`v` as a float in [0, 1) — or [0, 1] with allow_one."""
    return check_number(v, what, 0.0, 1.0, hi_open=not allow_one)


def check_choice(value, allowed: Sequence, what: str):
    """`value` if it is one of `allowed`."""
    if value not in allowed:
        raise ValueError(f"{what} must be one of {tuple(allowed)}, got {value!r}")
    return value


def check_tensor(x, what: str = "x", *, floating: bool = False, finite: bool = False,
                 dims: int | None = None, nonempty: bool = True) -> torch.Tensor:
    """`x` if it is a tensor (floating point, with `dims` dims, without NaN/inf where asked)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor, got dtype {x.dtype}")
    if dims is not None and x.dim() != dims:
        raise ValueError(f"{what} must have {dims} dims, got shape {tuple(x.shape)}")
    if nonempty and x.numel() == 0:
        raise ValueError(f"{what} is empty")
    if finite and x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{what} holds {bad} NaN or infinite value(s); only finite values are allowed")
    return x
