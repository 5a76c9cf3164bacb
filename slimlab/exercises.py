"""Self-grading exercises for notebooks 01–06: one checker per exercise.

In each notebook an exercise is three cells (tagged ``exercise:<id>`` in their metadata): a markdown task,
a code cell where the student writes the heart of a method (the instructor version holds the solution
between ``### BEGIN SOLUTION`` / ``### END SOLUTION``), and a cell that calls

    check("02-quantize-affine", quantize_affine_student)

`check` runs the student's function and slimlab's own implementation (the reference) on the same inputs —
edge cases that catch the typical mistakes first, then seeded random cases — and prints a short verdict:
which case failed, expected against got, and a hint. It never prints a solution. It returns a
`CheckResult` (truthy when every case passed) for tests and scripts.

A function that calls slimlab's own version of what it should compute (`return S.svd_factors(w, r)`) does
not pass: while the student's function runs, `check` watches for calls of the functions an exercise lists
in `forbid` (through `sys.setprofile`, so an import under another name is caught too) and fails the case.
Where two forms are equally right (the KL and the soft-target cross-entropy forms of the distillation
loss, which differ by the teacher's entropy, a constant), the checker compares what both share (the
gradient) or accepts either value.

`EXERCISES` lists every exercise: its notebook, the student's function name, and `hides`, the slimlab
functions whose displayed source would give the answer away (`python -m slimlab.student` drops them from
the student notebooks' `show_source(...)` cells).
"""
from __future__ import annotations

import copy
import importlib
import inspect
import math
import sys
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

__all__ = ["Case", "Exercise", "CheckResult", "EXERCISES", "check", "exercises_for", "get_exercise"]


# ---------------------------------------------------------------------------------------------
# the framework

@dataclass(frozen=True)
class Case:
    """One input to run the student's function and the reference on."""
    name: str                       # what the case tests, shown when it fails
    args: tuple
    hint: str | dict[str, str]      # the typical mistake this case catches (per output name, or one for all)
    kwargs: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)   # data for the exercise's runner (e.g. an upstream gradient)


@dataclass(frozen=True)
class Exercise:
    """An exercise: the student writes `function`; `reference` is slimlab's implementation."""
    id: str
    notebook: str
    title: str
    function: str                                 # the student's function name in the notebook
    reference: Callable
    cases: Callable[[], list[Case]]               # edge cases first, then seeded random ones
    hides: tuple[str, ...] = ()                   # slimlab functions whose source gives the answer away
    run: Callable[[Callable, Case], dict] | None = None          # default: {"output": fn(*args, **kwargs)}
    compare: Callable[[dict, dict, Case], str | None] | None = None   # default: _compare_outputs
    atol: float = 1e-5
    rtol: float = 1e-5
    forbid: tuple[str, ...] = ()                  # 'module.name' in slimlab the student may not call
    seconds: float = 0.5                          # what one whole check may take (tests/test_exercises.py)


@dataclass
class CheckResult:
    """Outcome of `check`: truthy when every case passed."""
    exercise: str
    status: str                     # "passed" | "failed" | "not implemented"
    cases_total: int
    cases_passed: int
    case: str | None = None         # the name of the failing case
    message: str = ""               # the verdict as printed

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        where = f", failed case: {self.case!r}" if self.case else ""
        return f"CheckResult({self.exercise!r}: {self.status}, {self.cases_passed}/{self.cases_total} cases{where})"

    def _ipython_display_(self) -> None:       # the verdict is printed already; show nothing more
        pass


class _Failure(Exception):
    """A mismatch found while running a case (its text goes into the verdict)."""


def _clone(v):
    if isinstance(v, torch.Tensor):
        return v.detach().clone()
    if isinstance(v, np.ndarray):
        return v.copy()
    if isinstance(v, (list, tuple, dict)):
        return copy.deepcopy(v)
    return v


def _same_input(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and bool(np.array_equal(a, b))
    return True


def _call(fn: Callable, case: Case) -> dict:
    """Default runner: the function's return value, after checking it left its inputs alone."""
    args = tuple(_clone(a) for a in case.args)
    kwargs = {k: _clone(v) for k, v in case.kwargs.items()}
    out = fn(*args, **kwargs)
    for i, (before, after) in enumerate(zip(case.args, args)):
        if not _same_input(before, after):
            raise _Failure(f"your function changed its input number {i + 1} in place; work on a copy instead")
    return {"output": out}


def _fmt_num(x) -> str:
    x = float(x)
    if math.isnan(x) or math.isinf(x):
        return str(x)
    if x == int(x) and abs(x) < 1e9:
        return str(int(x))
    return f"{x:.6g}"


def _fmt(v, limit: int = 8) -> str:
    """Short text of a value: tensors as shape, dtype and the first values."""
    if isinstance(v, torch.Tensor) and v.dim() == 0:
        return f"tensor({v.item() if v.dtype == torch.bool else _fmt_num(v.item())})"
    if isinstance(v, torch.Tensor):
        flat = v.detach().flatten().double().tolist() if v.dtype != torch.bool else v.flatten().tolist()
        vals = ", ".join(str(x) if isinstance(x, bool) else _fmt_num(x) for x in flat[:limit])
        more = ", …" if len(flat) > limit else ""
        return f"tensor of shape {tuple(v.shape)}, {str(v.dtype).replace('torch.', '')}: [{vals}{more}]"
    if isinstance(v, np.ndarray):
        return _fmt(torch.as_tensor(v), limit)
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, (int, float, np.floating, np.integer)):
        return _fmt_num(v)
    if isinstance(v, (list, tuple)):
        inner = ", ".join(_fmt(x, 4) for x in list(v)[:limit])
        return f"{type(v).__name__} of {len(v)}: ({inner}{', …' if len(v) > limit else ''})"
    return f"{type(v).__name__}"


def _as_tensor(got, expected: torch.Tensor, what: str) -> torch.Tensor:
    if isinstance(got, np.ndarray):
        got = torch.from_numpy(got)
    if not isinstance(got, torch.Tensor):
        raise _Failure(f"{what}: expected a torch.Tensor, got {type(got).__name__}")
    if tuple(got.shape) != tuple(expected.shape):
        raise _Failure(f"{what}: expected shape {tuple(expected.shape)}, got shape {tuple(got.shape)}")
    if expected.dtype == torch.bool and got.dtype != torch.bool:
        raise _Failure(f"{what}: expected a bool tensor (True = kept), got dtype {got.dtype}")
    if not expected.is_floating_point() and expected.dtype != torch.bool and (got.is_floating_point()
                                                                           or got.dtype == torch.bool):
        raise _Failure(f"{what}: expected integer values (an integer dtype), got dtype {got.dtype}")
    return got


def _diff(expected, got, what: str, atol: float, rtol: float) -> str | None:
    """None when `got` matches `expected`, else a one-paragraph description of the difference."""
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            return f"{what}: expected a {type(expected).__name__} of {len(expected)}, got {type(got).__name__}"
        if len(got) != len(expected):
            return f"{what}: expected {len(expected)} items, got {len(got)}"
        for i, (e, g) in enumerate(zip(expected, got)):
            d = _diff(e, g, f"{what}[{i}]", atol, rtol)
            if d:
                return d
        return None
    if isinstance(expected, np.ndarray):
        expected = torch.from_numpy(expected)
    if isinstance(expected, torch.Tensor):
        try:
            g = _as_tensor(got, expected, what)
        except _Failure as e:
            return str(e)
        e64, g64 = expected.detach().double().cpu(), g.detach().double().cpu()
        if expected.is_floating_point():
            bad = ~torch.isclose(g64, e64, rtol=rtol, atol=atol)
        else:
            bad = g64 != e64
        if not bool(bad.any()):
            return None
        idx = tuple(int(i) for i in torch.nonzero(bad)[0].tolist())
        return (f"{what}: {int(bad.sum())} of {bad.numel()} values differ; first at index {idx}: "
                f"expected {_fmt_num(e64[idx])}, got {_fmt_num(g64[idx])}\n"
                f"    expected: {_fmt(expected)}\n    got:      {_fmt(g)}")
    if isinstance(expected, (bool, np.bool_)):
        return None if bool(got) == bool(expected) else f"{what}: expected {expected}, got {got}"
    if isinstance(expected, (int, float, np.floating, np.integer)):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, (int, float, np.floating, np.integer)) or isinstance(got, bool):
            return f"{what}: expected a number, got {_fmt(got)}"
        if not math.isclose(float(got), float(expected), rel_tol=rtol, abs_tol=atol):
            return f"{what}: expected {_fmt_num(expected)}, got {_fmt_num(got)}"
        return None
    return None if got == expected else f"{what}: expected {expected!r}, got {got!r}"


def _compare_outputs(expected: dict, got: dict, case: Case, ex: Exercise) -> tuple[str, str] | None:
    for key, e in expected.items():
        d = _diff(e, got.get(key), key, ex.atol, ex.rtol)
        if d:
            return key, d
    return None


def _hint(case: Case, key: str) -> str:
    if isinstance(case.hint, dict):
        return case.hint.get(key) or case.hint.get("*", "")
    return case.hint


def _describe_inputs(case: Case, names: list[str] | None = None) -> str:
    parts = []
    for i, a in enumerate(case.args):
        name = names[i] if names and i < len(names) else f"arg{i + 1}"
        parts.append(f"{name} = {_fmt(a, 6)}")
    parts += [f"{k} = {_fmt(v, 6)}" for k, v in case.kwargs.items()]
    return "; ".join(parts)


def _arg_names(fn: Callable) -> list[str] | None:
    import inspect
    try:
        return [p.name for p in inspect.signature(fn).parameters.values()]
    except (TypeError, ValueError):
        return None


def _codes_of(path: str) -> dict:
    """{code object: 'module.name'} of the slimlab function (or every method of the class) at `path`."""
    mod, _, name = path.rpartition(".")
    obj = getattr(importlib.import_module(f"{__package__}.{mod}"), name)
    found = {}

    def add(f):
        if isinstance(f, (staticmethod, classmethod)):
            f = f.__func__
        if callable(f):
            f = inspect.unwrap(f)
        code = getattr(f, "__code__", None)
        if code is not None:
            found[code] = path
    if inspect.isclass(obj):
        for v in vars(obj).values():
            add(v)
    else:
        add(obj)
    return found


@contextmanager
def _watch(paths: tuple[str, ...], hits: list[str]):
    """Record in `hits` every call, however deep, of the functions at `paths` while the block runs."""
    codes = {}
    for path in paths:
        codes.update(_codes_of(path))
    if not codes:
        yield hits
        return
    previous = sys.getprofile()

    def profile(frame, event, arg):
        if event == "call" and frame.f_code in codes and codes[frame.f_code] not in hits:
            hits.append(codes[frame.f_code])
        if previous is not None:
            previous(frame, event, arg)
    sys.setprofile(profile)
    try:
        yield hits
    finally:
        sys.setprofile(previous)


def _shortcut(hits: list[str]) -> str:
    names = ", ".join(f"slimlab.{h}" for h in hits)
    return (f"your function calls {names} — slimlab's own version of what this exercise asks you to write, so "
            f"the check cannot tell your code from it. Write the steps yourself (torch, numpy and scipy are fine, "
            f"and so are your own functions from the exercises before).")


def check(exercise: str, fn: Callable, *, verbose: bool = True) -> CheckResult:
    """Run `fn` against slimlab's reference on every case of `exercise`; print a verdict; return it.

    The first failing case stops the run: its name, the inputs, expected against got, and a hint are
    printed. A `NotImplementedError` from `fn` means the exercise is not done yet (no failure)."""
    if not isinstance(exercise, str) or exercise not in EXERCISES:
        raise ValueError(f"unknown exercise {exercise!r}; allowed: {', '.join(EXERCISES)}")
    if not callable(fn):
        raise TypeError(f"fn must be the function you wrote (callable), got {type(fn).__name__}")
    ex = EXERCISES[exercise]
    cases = ex.cases()
    run = ex.run or _call
    names = _arg_names(fn)
    passed = 0
    for i, case in enumerate(cases):
        expected = run(ex.reference, case)
        head = f"✘ {ex.id} — case {i + 1} of {len(cases)} failed: {case.name}"
        hits: list[str] = []
        try:
            with _watch(ex.forbid, hits):
                got = run(fn, case)
            if hits:
                raise _Failure(_shortcut(hits))
            found = ex.compare(expected, got, case) if ex.compare else _compare_outputs(expected, got, case, ex)
            problem, key = (None, None) if found is None else (found[1], found[0])
        except NotImplementedError:
            msg = (f"… {ex.id}: not implemented yet — write your code in place of `raise NotImplementedError`, "
                   f"run that cell, then run this one again.")
            if verbose:
                print(msg)
            return CheckResult(ex.id, "not implemented", len(cases), passed, None, msg)
        except _Failure as e:
            problem, key = str(e), "*"
        except Exception as e:                      # noqa: BLE001 — the student's error is the verdict
            tb = traceback.extract_tb(e.__traceback__)
            line = next((f" (line {f.lineno}: {f.line.strip()})" for f in reversed(tb)
                         if f.filename.startswith("<") and f.line), "")
            problem, key = f"your function raised {type(e).__name__}: {e}{line}", "*"
            if hits:
                problem = _shortcut(hits)
        if problem is None:
            passed += 1
            continue
        hint = "" if hits else (_hint(case, key) if key else "")
        msg = "\n".join([head, f"    inputs:   {_describe_inputs(case, names)}", f"    {problem}"]
                        + ([f"    hint: {hint}"] if hint else [])
                        + ([f"  ({passed} earlier case{'s' if passed != 1 else ''} passed)"] if passed else []))
        if verbose:
            print(msg)
        return CheckResult(ex.id, "failed", len(cases), passed, case.name, msg)
    msg = f"✔ {ex.id}: all {len(cases)} cases pass (edge cases and seeded random inputs). Well done!"
    if verbose:
        print(msg)
    return CheckResult(ex.id, "passed", len(cases), passed, None, msg)


def exercises_for(notebook: str) -> list[Exercise]:
    """The exercises of one notebook (e.g. '02_quantization'), in order."""
    return [e for e in EXERCISES.values() if e.notebook == notebook]


def get_exercise(exercise: str) -> Exercise:
    if exercise not in EXERCISES:
        raise ValueError(f"unknown exercise {exercise!r}; allowed: {', '.join(EXERCISES)}")
    return EXERCISES[exercise]


def _rng(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# 01 · marginal returns

def _ref_power_law(n, err):
    from .scaling import fit_power_law
    f = fit_power_law(n, err)
    return f.a, f.alpha, f.c


def _run_power_law(fn, case: Case) -> dict:
    n, err = case.args
    out = fn(np.array(n, dtype=float), np.array(err, dtype=float))
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        raise _Failure(f"expected a tuple (a, alpha, c), got {_fmt(out)}")
    try:
        a, alpha, c = (float(v) for v in out)
    except (TypeError, ValueError):
        raise _Failure(f"expected three numbers (a, alpha, c), got {_fmt(out)}") from None
    if not all(math.isfinite(v) for v in (a, alpha, c)):
        raise _Failure(f"expected finite numbers, got a={a}, alpha={alpha}, c={c}")
    grid = np.geomspace(min(n), max(n), 9)
    return {"alpha": alpha, "curve": torch.from_numpy(a * grid ** (-alpha) + c)}


def _compare_power_law(expected: dict, got: dict, case: Case) -> tuple[str, str] | None:
    span = float(expected["curve"].max() - expected["curve"].min())
    d = _diff(expected["curve"], got["curve"], "fitted error a·N^(−alpha) + c at 9 sizes across the data",
              atol=0.01 * span, rtol=0.0)
    if d:
        return "curve", d
    if case.extra.get("exact_alpha"):
        d = _diff(expected["alpha"], got["alpha"], "alpha", atol=0.01, rtol=0.0)
        if d:
            return "alpha", d
    return None


def _cases_power_law() -> list[Case]:
    n = np.geomspace(2e4, 2e6, 7)
    law = lambda a, alpha, c, x: a * x ** (-alpha) + c
    cases = [
        Case("a noiseless curve with an error floor c > 0", (n.tolist(), law(300, 0.35, 5, n).tolist()),
             "the model has three parameters, a, alpha and c: a straight line in log–log space ignores the floor c; "
             "and return a = A · n0^alpha, the coefficient for N itself (not for N / n0)",
             extra={"exact_alpha": True}),
        Case("a noiseless curve with no floor (c = 0)", (n.tolist(), law(800, 0.5, 0, n).tolist()),
             "err = a · N^(−alpha) + c falls as N grows: alpha is positive", extra={"exact_alpha": True}),
        Case("sizes given in random order", (n[[3, 0, 6, 2, 5, 1, 4]].tolist(),
                                             law(300, 0.35, 5, n)[[3, 0, 6, 2, 5, 1, 4]].tolist()),
             "keep each error with its own size (do not sort one list without the other)",
             extra={"exact_alpha": True}),
    ]
    g = np.random.default_rng(101)
    for k in range(3):
        m = g.integers(6, 11)
        nn_ = np.sort(np.exp(g.uniform(np.log(5e3), np.log(5e6), m)))
        a, alpha, c = g.uniform(50, 500), g.uniform(0.2, 0.6), g.uniform(2, 10)
        err = law(a, alpha, c, nn_) * (1 + 0.005 * g.standard_normal(m))
        cases.append(Case(f"seeded random curve {k + 1} with 0.5% noise", (nn_.tolist(), err.tolist()),
                          "fit all three parameters by least squares on the errors themselves, with bounds "
                          "a ≥ 0, 0 ≤ alpha ≤ 5, 0 ≤ c ≤ min(err)"))
    return cases


def _ref_gain(n, acc):
    from .scaling import gain_per_doubling
    return gain_per_doubling(n, acc)


def _run_gain(fn, case: Case) -> dict:
    out = fn(*(_clone(a) for a in case.args))
    try:
        arr = np.asarray(out, dtype=float)
    except (TypeError, ValueError):
        raise _Failure(f"expected a list of (size, gain) pairs, got {_fmt(out)}") from None
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise _Failure(f"expected a list of (size, gain) pairs, got an array of shape {arr.shape}")
    return {"sizes": torch.from_numpy(arr[:, 0].copy()), "gains": torch.from_numpy(arr[:, 1].copy())}


def _cases_gain() -> list[Case]:
    cases = [
        Case("sizes that double exactly", ([1000, 2000, 4000], [60.0, 70.0, 75.0]),
             {"gains": "a doubling is a factor 2 in size: divide the accuracy step by log2 of the size ratio",
              "sizes": "each step sits at the geometric mean of its two sizes, √(n_i · n_{i+1})"}),
        Case("sizes that quadruple (width steps)", ([1000, 4000, 16000], [50.0, 60.0, 64.0]),
             {"gains": "×4 in size is two doublings: divide the step by log2(4) = 2, not by the ratio",
              "sizes": "each step sits at the geometric mean of its two sizes, √(n_i · n_{i+1})"}),
        Case("sizes given in random order", ([8000, 1000, 2000, 4000], [80.0, 50.0, 65.0, 74.0]),
             "sort by size first, keeping each accuracy with its size"),
        Case("two sizes only", ([3000, 24000], [40.0, 49.0]), "three doublings from 3,000 to 24,000"),
    ]
    g = np.random.default_rng(102)
    for k in range(3):
        m = g.integers(3, 7)
        n = np.round(np.exp(np.cumsum(g.uniform(0.3, 1.6, m))) * 1000)
        acc = np.sort(g.uniform(40, 90, m))
        perm = g.permutation(m)
        cases.append(Case(f"seeded random curve {k + 1}", (n[perm].tolist(), acc[perm].tolist()),
                          "per consecutive pair of sizes: (√(n_i·n_{i+1}), (acc_{i+1} − acc_i) / log2(n_{i+1}/n_i))"))
    return cases


# ---------------------------------------------------------------------------------------------
# 02 · quantization

def _ref_quantize_affine(x, scale, zero_point, bits, symmetric=True):
    from .quantize import quantize_affine
    return quantize_affine(x, scale, zero_point, bits, symmetric)


def _t(v, dtype=torch.float32):
    return torch.tensor(v, dtype=dtype)


def _cases_quantize_affine() -> list[Case]:
    g = _rng(201)
    x8 = torch.randn(12, generator=g) * 0.5
    s8 = _t(float(x8.abs().max()) / 127)
    cases = [
        Case("symmetric 8-bit, every value inside the range", (x8, s8, _t(0, torch.int32), 8, True),
             "round to the NEAREST code (torch.round): converting to an integer type truncates instead"),
        Case("negative values between two grid points", (_t([-1.35, -0.6, -0.3, 0.2, 0.8]), _t(0.5),
                                                          _t(0, torch.int32), 8, True),
             "round to the nearest code, also below zero: −2.7 becomes −3 (floor and truncation get it wrong)"),
        Case("asymmetric 8-bit with zero-point 37", (_t([-0.7, -0.31, 0.0, 0.42, 1.0, 4.3]), _t(0.02),
                                                      _t(37, torch.int32), 8, False),
             "the zero-point shifts every code: add it after rounding x / scale"),
        Case("symmetric 4-bit, values beyond the range are clamped", (_t([-9.0, -7.4, -3.2, 0.0, 2.6, 6.9, 7.6, 40.0]),
                                                                     _t(1.0), _t(0, torch.int32), 4, True),
             "symmetric b-bit codes run from −(2^(b−1) − 1) to 2^(b−1) − 1 (−7 … 7 for 4 bits): clamp to that range"),
        Case("asymmetric 4-bit, clamped to 0 … 15", (_t([-3.0, -0.2, 0.3, 1.1, 2.9, 3.4, 9.0]), _t(0.25),
                                                      _t(2, torch.int32), 4, False),
             "asymmetric b-bit codes run from 0 to 2^b − 1 (0 … 15 for 4 bits): clamp after adding the zero-point"),
        Case("symmetric 2-bit: three codes, −1, 0 and 1", (_t([-0.9, -0.2, 0.1, 0.4, 0.8]), _t(0.5),
                                                             _t(0, torch.int32), 2, True),
             "with 2 symmetric bits the codes are −1, 0 and 1"),
        Case("a 2-D weight with one scale for the whole tensor", (torch.randn(3, 4, generator=g), _t(0.05),
                                                                   _t(0, torch.int32), 8, True),
             "keep the input's shape: the codes are elementwise"),
    ]
    for k in range(4):
        bits = int(torch.randint(2, 9, (1,), generator=g))
        sym = bool(k % 2 == 0)
        x = torch.randn(20, generator=g) * float(torch.rand(1, generator=g) * 3 + 0.1)
        lo, hi = float(x.min()) * 0.8, float(x.max()) * 0.8            # a range that clips a few values
        if sym:
            scale, zp = max(abs(lo), abs(hi)) / (2 ** (bits - 1) - 1), 0
        else:
            lo, hi = min(lo, 0.0), max(hi, 0.0)
            scale = (hi - lo) / (2 ** bits - 1)
            zp = int(round(-lo / scale))
        cases.append(Case(f"seeded random case {k + 1}: {'symmetric' if sym else 'asymmetric'} {bits}-bit",
                          (x, _t(scale), _t(zp, torch.int32), bits, sym),
                          "codes = clamp(round(x / scale) + zero_point, qmin, qmax)"))
    return cases


def _ref_fake_quantize(x, scale, zero_point, bits, symmetric=True):
    from .quantize import fake_quantize
    return fake_quantize(x, scale, zero_point, bits, symmetric)


def _run_ste(fn, case: Case) -> dict:
    x0, *rest = case.args
    x = x0.detach().clone().requires_grad_(True)
    y = fn(x, *[_clone(r) for r in rest])
    if not isinstance(y, torch.Tensor):
        raise _Failure(f"expected a torch.Tensor, got {type(y).__name__}")
    if tuple(y.shape) != tuple(x0.shape):
        raise _Failure(f"forward: expected shape {tuple(x0.shape)}, got {tuple(y.shape)}")
    out = {"forward": y.detach().float()}
    if not y.requires_grad:
        raise _Failure("gradient: your output has no gradient path back to x (was it computed under no_grad, "
                       "or detached as a whole?)")
    y.backward(case.extra["upstream"])
    out["gradient"] = x.grad if x.grad is not None else torch.zeros_like(x0)
    return out


def _cases_ste() -> list[Case]:
    g = _rng(202)
    hint_fwd = "forward: clamp(round(x / scale) + zero_point, qmin, qmax), then back to floats: (q − zero_point) · scale"
    hint_ste = ("gradient: round() has zero gradient almost everywhere; the straight-through estimator lets the "
                "upstream gradient pass unchanged — add the rounding error as a constant that carries no gradient")
    hint_clip = ("gradient: where the rounded code round(x / s) + z was clamped to qmin or qmax, the output does "
                 "not move when x moves, so the gradient there is 0; everywhere else it is the upstream gradient")
    hint_bound = ("gradient on the bounds: mask on the rounded CODE, as torch.fake_quantize_per_tensor_affine does — "
                  "a value exactly on a bound, or just beyond it that rounds back onto it, keeps gradient 1 "
                  "(clamping x with tensor bounds gives 0.5 at a tie and 0 just beyond)")

    def case(name, x, scale, zp, bits, sym, hint):
        return Case(name, (x, _t(scale), _t(zp, torch.int32), bits, sym), hint,
                    extra={"upstream": torch.randn(x.shape, generator=g)})

    x_in = torch.randn(10, generator=g) * 0.4
    cases = [
        case("symmetric 8-bit, every value inside the range", x_in, float(x_in.abs().max()) / 120, 0, 8, True,
             {"forward": hint_fwd, "gradient": hint_ste}),
        case("backward inside the range: the upstream gradient passes straight through",
             torch.randn(3, 5, generator=g) * 0.3, 0.01, 0, 8, True, {"forward": hint_fwd, "gradient": hint_ste}),
        case("values beyond the range: clipped forward, zero gradient", _t([-5.0, -1.2, -0.3, 0.2, 0.9, 3.3]),
             0.2, 0, 3, True, {"forward": hint_fwd, "gradient": hint_clip}),
        case("asymmetric 4-bit with zero-point 3", _t([-1.1, -0.4, 0.05, 0.6, 1.3, 2.7, 4.0]), 0.2, 3, 4, False,
             {"forward": "forward: subtract the zero-point again when you go back to floats: (q − zero_point) · scale",
              "gradient": hint_clip}),
        # the bounds: ±0.875 = ±7 · 0.125 exactly (min-max calibration puts every channel's extreme there),
        # 0.9 rounds back onto code 7 (inside), 0.95 rounds to 8 (clamped)
        case("symmetric 4-bit, values exactly on the bounds and just beyond", _t([-0.95, -0.9, -0.875, -0.3, 0.1,
                                                                                   0.875, 0.9, 0.95]),
             0.125, 0, 4, True, {"forward": hint_fwd, "gradient": hint_bound}),
        case("asymmetric 4-bit, zero-point 3: both bounds, inside and beyond", _t([-0.9, -0.8, -0.75, 0.0, 1.0, 3.0,
                                                                                    3.1, 3.2]),
             0.25, 3, 4, False, {"forward": hint_fwd, "gradient": hint_bound}),
    ]
    for k in range(3):
        bits = int(torch.randint(2, 9, (1,), generator=g))
        sym = k != 1
        x = torch.randn(4, 6, generator=g)
        if sym:
            scale, zp = 0.8 * float(x.abs().max()) / (2 ** (bits - 1) - 1), 0
        else:
            scale = 0.8 * float(x.max() - x.min()) / (2 ** bits - 1)
            zp = int(round(-0.9 * float(x.min()) / scale))
        cases.append(case(f"seeded random case {k + 1}: {'symmetric' if sym else 'asymmetric'} {bits}-bit",
                          x, scale, zp, bits, sym, {"forward": hint_fwd, "gradient": hint_clip}))
    return cases


# ---------------------------------------------------------------------------------------------
# 03 · pruning

def _ref_magnitude_mask(w, sparsity):
    from .prune import _keep_mask
    return _keep_mask(w.abs(), round(sparsity * w.numel()))


def _compare_mask(expected: dict, got: dict, case: Case) -> tuple[str, str] | None:
    e = expected["output"]
    w = case.args[0]
    try:
        g = _as_tensor(got["output"], e, "mask")
    except _Failure as err:
        return "output", str(err)
    want, have = int((~e).sum()), int((~g).sum())
    if have != want:
        return "count", (f"pruned count: expected exactly round(sparsity · n) = {want} of {e.numel()} weights pruned "
                         f"(False), got {have}\n    expected: {_fmt(e)}\n    got:      {_fmt(g)}")
    if 0 < want < e.numel():
        pruned, kept = w.abs()[~g], w.abs()[g]
        if float(pruned.max()) > float(kept.min()):
            return "order", (f"a pruned weight (|w| = {_fmt_num(pruned.max())}) is larger than a kept one "
                             f"(|w| = {_fmt_num(kept.min())})\n    expected: {_fmt(e)}\n    got:      {_fmt(g)}")
    return None


def _cases_magnitude_mask() -> list[Case]:
    g = _rng(301)
    distinct = torch.randperm(10, generator=g).float() * 0.1 + 0.05
    cases = [
        Case("distinct magnitudes: exactly round(sparsity · n) weights pruned", (distinct, 0.3),
             {"count": "with a threshold, the weight equal to it must be pruned too (≤, not <); or prune the "
                       "k smallest positions directly", "*": "return a bool tensor of w's shape, False where pruned"}),
        Case("negative weights: importance is |w|", (_t([-3.0, 0.1, 2.0, -0.2, 1.0, -0.05]), 0.5),
             {"order": "rank the weights by their magnitude |w|: a large negative weight matters as much as a "
                       "large positive one", "*": "return a bool tensor of w's shape, False where pruned"}),
        Case("the count is round(sparsity · n), not int(sparsity · n)", (torch.randn(10, generator=g), 0.37),
             {"count": "3.7 weights round to 4: use round(sparsity * w.numel())"}),
        Case("sparsity 0 prunes nothing", (torch.randn(7, generator=g), 0.0),
             "with sparsity 0 every weight is kept (k = 0: there is no k-th smallest value)"),
        Case("sparsity 1 prunes everything", (torch.randn(5, generator=g), 1.0),
             "with sparsity 1 every weight is pruned"),
        Case("ties at the threshold: still exactly round(sparsity · n) pruned", (_t([1.0, -1.0, 1.0, 1.0, 2.0, -2.0]), 0.5),
             {"count": "several weights share the threshold value: pruning all weights ≤ it cuts too many. Prune "
                       "exactly k positions (sort |w| and take the first k, e.g. with a stable argsort)"}),
        Case("a 4-D conv weight: the mask keeps its shape", (torch.randn(4, 3, 3, 3, generator=g), 0.7),
             "rank all weights of the tensor together (flatten), then reshape the mask to w's shape"),
    ]
    for k in range(2):
        shape = (int(torch.randint(2, 9, (1,), generator=g)), int(torch.randint(2, 30, (1,), generator=g)))
        s = float(torch.rand(1, generator=g))
        cases.append(Case(f"seeded random case {k + 1}: shape {shape}, sparsity {s:.2f}", (torch.randn(shape, generator=g), s),
                          "prune the round(sparsity · n) weights of smallest |w|"))
    return cases


def _ref_apoz(pre):
    from .prune import zero_counter
    m = nn.Identity()
    with zero_counter({"x": m}) as counts:
        m(pre)
    zeros, n = counts["x"]
    return (zeros / n).float()


def _cases_apoz() -> list[Case]:
    g = _rng(302)
    exact = torch.randint(-2, 3, (2, 3, 2, 2), generator=g).float()         # many exact zeros
    neg = torch.randn(3, 4, 2, 2, generator=g)
    neg[:, 1] = -neg[:, 1].abs()
    cases = [
        Case("exact zeros count: ReLU(0) = 0", (exact,),
             "the ReLU outputs zero wherever its input is ≤ 0 — including exactly 0"),
        Case("per channel, averaged over images and positions", (torch.randn(4, 5, 3, 3, generator=g),),
             "one number per channel (dim 1): average over every other dimension (images, height, width)"),
        Case("a channel that is never active has APoZ 1 (a fraction, not a percentage)", (neg,),
             "APoZ is a fraction in [0, 1]"),
        Case("a fully-connected output (N, C)", (torch.randn(6, 4, generator=g),),
             "for a (N, C) input there are no spatial dimensions: average over dim 0 only — "
             "write it for any number of dimensions (every dim except 1)"),
        Case("a single image", (torch.randn(1, 3, 4, 4, generator=g),), "the batch may hold one image"),
    ]
    for k in range(2):
        c = int(torch.randint(2, 9, (1,), generator=g))
        x = torch.randn(5, c, 4, 4, generator=g) + torch.randn(1, c, 1, 1, generator=g)
        cases.append(Case(f"seeded random case {k + 1}: {c} channels", (torch.relu(x) - 0.3 * (x < 0),),
                          "share of (image, position) pairs where the input is ≤ 0, per channel"))
    return cases


# ---------------------------------------------------------------------------------------------
# 04 · parameter sharing

def _ref_assign(values, codebook):
    from .share import _nearest
    return _nearest(values.reshape(-1), codebook).view(values.shape)


def _cases_assign() -> list[Case]:
    g = _rng(401)
    cases = [
        Case("values near each centroid", (_t([-0.9, 0.2, 0.7, -0.4, 1.6]), _t([-1.0, 0.0, 1.0])),
             "return, for every value, the INDEX of its nearest centroid (an integer tensor), not the centroid itself"),
        Case("distance is |value − centroid|, on both sides", (_t([-2.0, -0.6, 0.45, 3.0]), _t([-1.0, 0.0, 1.0])),
             "nearest means the smallest absolute difference |value − centroid|"),
        Case("an unsorted codebook: indices refer to the codebook as given",
             (_t([0.4, -0.8, 1.9, 0.1, -3.0]), _t([0.5, -1.0, 2.0, 0.0])),
             "index into the codebook in its own order — if you sort it, map the positions back"),
        Case("a tie halfway between two centroids goes to the smaller one", (_t([0.5, -0.5, 1.5]), _t([-1.0, 0.0, 1.0, 2.0])),
             "on an exact tie keep the smaller centroid (the first in a sorted codebook, as argmin does)"),
        Case("a 4-D weight tensor: the index keeps its shape", (torch.randn(4, 2, 3, 3, generator=g), _t([-1.0, -0.3, 0.2, 1.1])),
             "compare every value with every centroid (broadcast a new last dimension), then reshape to the values' shape"),
    ]
    for k in range(2):
        bits = int(torch.randint(1, 5, (1,), generator=g))
        cb = torch.randn(2 ** bits, generator=g)
        cases.append(Case(f"seeded random case {k + 1}: a {2 ** bits}-entry codebook", (torch.randn(50, generator=g), cb),
                          "the index of the centroid with the smallest |value − centroid|"))
    return cases


def _ref_svd(weight, rank):
    from .share import svd_factors
    return svd_factors(weight, rank)


def _run_svd(fn, case: Case) -> dict:
    w, rank = case.args
    out = fn(w.detach().clone(), rank)
    if not isinstance(out, (tuple, list)) or len(out) != 2 or not all(isinstance(t, torch.Tensor) for t in out):
        raise _Failure(f"expected a pair of tensors (A, B), got {_fmt(out)}")
    a, b = out
    rows, cols = w.shape[0], w[0].numel()
    if tuple(a.shape) != (rows, rank) or tuple(b.shape) != (rank, cols):
        raise _Failure(f"shapes: expected A {(rows, rank)} and B {(rank, cols)}, got A {tuple(a.shape)} and "
                       f"B {tuple(b.shape)}")
    return {"product": (a.double() @ b.double()).float()}


def _cases_svd() -> list[Case]:
    g = _rng(402)
    shapes = {"product": "A @ B must be the best rank-r approximation: keep the r LARGEST singular values "
                         "(torch.linalg.svd returns them first) and put them into the factors"}
    cases = [
        Case("a (6, 4) matrix at rank 2", (torch.randn(6, 4, generator=g), 2), shapes),
        Case("full rank reproduces the weight", (torch.randn(5, 3, generator=g), 3),
             {"product": "U_r and V_r alone lose the singular values: multiply them in (e.g. √s into each factor)"}),
        Case("rank 1", (torch.randn(4, 7, generator=g), 1), shapes),
        Case("a conv weight (out, in, k, k) is a matrix (out, in·k·k)", (torch.randn(8, 3, 3, 3, generator=g), 3),
             {"*": "reshape the weight to (out, in·k·k) first: B has in·k·k columns", **shapes}),
        Case("a wide matrix (fewer rows than columns)", (torch.randn(3, 12, generator=g), 2),
             {"*": "use the reduced SVD (full_matrices=False), so U is (out, min) and Vh is (min, in)", **shapes}),
    ]
    for k in range(2):
        shape = (int(torch.randint(2, 10, (1,), generator=g)), int(torch.randint(2, 6, (1,), generator=g)), 3, 3)
        r = int(torch.randint(1, min(shape[0], shape[1] * 9) + 1, (1,), generator=g))
        cases.append(Case(f"seeded random case {k + 1}: conv weight {shape}, rank {r}",
                          (torch.randn(shape, generator=g), r), shapes))
    return cases


# ---------------------------------------------------------------------------------------------
# 05 · distillation

def _ref_soften(logits, temperature):
    from .distill import soften
    return soften(logits, temperature)


def _cases_soften() -> list[Case]:
    g = _rng(501)
    cases = [
        Case("T = 1 is the ordinary softmax over the classes", (torch.randn(3, 10, generator=g) * 3, 1.0),
             "softmax over the class dimension (the last one, dim=-1), not over the batch"),
        Case("T = 4 softens: divide the logits by T", (torch.randn(2, 10, generator=g) * 5, 4.0),
             "divide the logits by T before the softmax (multiplying sharpens instead)"),
        Case("one image, T = 0.5 sharpens", (torch.randn(1, 5, generator=g), 0.5),
             "softmax(logits / T) over the last dimension"),
        Case("large logits stay finite", (_t([[1000.0, 990.0, 0.0], [-800.0, -805.0, -900.0]]), 2.0),
             "exp of large logits overflows: use torch.softmax (it subtracts the maximum first)"),
    ]
    for k in range(2):
        t = float(torch.rand(1, generator=g) * 9 + 0.5)
        cases.append(Case(f"seeded random case {k + 1}: T = {t:.2f}", (torch.randn(4, 10, generator=g) * 4, t),
                          "softmax(logits / T) over the classes"))
    return cases


def _ref_kd_loss(student_logits, teacher_logits, targets, temperature, alpha):
    from .distill import kd_loss
    return kd_loss(student_logits, teacher_logits, targets, temperature, alpha)


def _run_kd(fn, case: Case) -> dict:
    """The gradient of the loss in the student's logits (and, where asked, whether the teacher got one).
    The gradient, not the value, is compared: the soft-target cross-entropy form,
    -sum p_teacher · log p_student, differs from the KL form only by the teacher's entropy, a constant
    that trains the student identically, so both forms pass."""
    s0, t0, y, temperature, alpha = case.args
    s = s0.detach().clone().requires_grad_(True)
    t = t0.detach().clone().requires_grad_(True)
    loss = fn(s, t, y.clone(), temperature, alpha)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise _Failure(f"expected a scalar tensor (the batch's mean loss), got {_fmt(loss)}")
    if not loss.requires_grad:
        raise _Failure("the loss carries no gradient to the student's logits: do not detach the student")
    loss.backward()
    out = {"student_grad": s.grad if s.grad is not None else torch.zeros_like(s)}
    if case.extra.get("grad"):
        out["teacher_grad"] = t.grad is not None and bool((t.grad != 0).any())
    return out


def _cases_kd() -> list[Case]:
    g = _rng(502)

    def batch(b=6, c=10, scale=3.0):
        return (torch.randn(b, c, generator=g) * scale, torch.randn(b, c, generator=g) * scale,
                torch.randint(0, c, (b,), generator=g))

    cases = [
        Case("alpha = 0: only the hard-label cross-entropy", (*batch(), 4.0, 0.0),
             "the hard part is (1 − alpha) · cross-entropy(student logits, targets)"),
        Case("alpha = 1, T = 1: only the soft part, KL(teacher ‖ student)", (*batch(), 1.0, 1.0),
             "the soft part is KL(p_teacher ‖ p_student) averaged over the batch: F.kl_div takes the student's "
             "LOG-probabilities first and reduction='batchmean' (plain 'mean' also divides by the classes). The "
             "soft-target cross-entropy −Σ p_teacher · log p_student, averaged over the batch, is accepted too: it "
             "differs from the KL only by the teacher's entropy, a constant that gives no gradient"),
        Case("alpha = 1, T = 4: the soft part is scaled by T²", (*batch(), 4.0, 1.0),
             "multiply the soft part by T² (Hinton et al.): its gradient shrinks as 1/T² otherwise"),
        Case("T = 4, alpha = 0.9 (the usual setting)", (*batch(), 4.0, 0.9),
             "(1 − alpha) · CE + alpha · T² · KL(softmax(teacher/T) ‖ softmax(student/T))"),
        Case("the teacher gets no gradient", (*batch(), 4.0, 0.9),
             {"teacher_grad": "the teacher is fixed: detach its logits so no gradient flows into it",
              "*": "(1 − alpha) · CE + alpha · T² · KL(softmax(teacher/T) ‖ softmax(student/T))"},
             extra={"grad": True}),
    ]
    for k in range(2):
        t = float(torch.rand(1, generator=g) * 7 + 1)
        a = float(torch.rand(1, generator=g))
        cases.append(Case(f"seeded random case {k + 1}: T = {t:.2f}, alpha = {a:.2f}", (*batch(8, 10, 4.0), t, a),
                          "(1 − alpha) · CE + alpha · T² · KL(softmax(teacher/T) ‖ softmax(student/T))"))
    return cases


# ---------------------------------------------------------------------------------------------
# the multi-step exercises (one per notebook 01–06): the student writes a real piece of the method

# 01 · fit, extrapolate, invert

def _ref_forecast(n, err, n_new, target):
    from .scaling import fit_power_law
    law = fit_power_law(n, err)
    return law(n_new), law.params_for_error(target)


def _run_forecast(fn, case: Case) -> dict:
    n, err, n_new, target = case.args
    out = fn(np.array(n, dtype=float), np.array(err, dtype=float), np.array(n_new, dtype=float), float(target))
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise _Failure(f"expected a pair (predicted errors at n_new, parameters needed for the target), got {_fmt(out)}")
    pred, need = out
    try:
        pred = np.asarray(pred, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise _Failure(f"predicted errors: expected numbers, one per new size, got {_fmt(out[0])}") from None
    if pred.shape != (len(n_new),):
        raise _Failure(f"predicted errors: expected {len(n_new)} values (one per new size), got {pred.size}")
    if isinstance(need, torch.Tensor) and need.numel() == 1:
        need = need.item()
    if isinstance(need, bool) or not isinstance(need, (int, float, np.floating, np.integer)):
        raise _Failure(f"parameters needed: expected one number (math.inf when never reached), got {_fmt(need)}")
    return {"predicted": torch.from_numpy(pred.copy()), "needed": float(need)}


def _compare_forecast(expected: dict, got: dict, case: Case) -> tuple[str, str] | None:
    span = float(np.ptp(case.args[1]))
    d = _diff(expected["predicted"], got["predicted"], "predicted error at the new sizes",
              atol=case.extra.get("pred_tol", 0.02) * span, rtol=0.0)
    if d:
        return "predicted", d
    e, g, target = expected["needed"], got["needed"], case.args[3]
    what = f"parameters needed to reach the target error {_fmt_num(target)}"
    if math.isinf(e) or math.isinf(g) or math.isnan(g) or g <= 0:
        if not (math.isinf(e) and math.isinf(g) and g > 0):
            return "needed", f"{what}: expected {_fmt_num(e)}, got {_fmt_num(g)}"
        return None
    tol = case.extra.get("log_tol", 0.02)
    if abs(math.log(g / e)) > tol:
        return "needed", f"{what}: expected {_fmt_num(e)} (within {tol:.0%}), got {_fmt_num(g)}"
    return None


def _cases_forecast() -> list[Case]:
    n = np.geomspace(2e4, 2e6, 7)
    law = lambda a, alpha, c, x: a * np.asarray(x, dtype=float) ** (-alpha) + c
    hint_pred = ("fit a · N^(−alpha) + c to the measured points (as in 01-power-law-fit), then evaluate the fitted "
                 "law at each new size")
    hint_need = "solve a · N^(−alpha) + c = target for N: N = (a / (target − c))^(1/alpha)"
    both = {"predicted": hint_pred, "needed": hint_need}
    perm = [3, 0, 6, 2, 5, 1, 4]
    err = law(300, 0.35, 5, n)
    cases = [
        Case("a noiseless curve: predict beyond the largest size, and the size for a target", (n.tolist(),
             err.tolist(), [4e6, 1.6e7], 7.0), both),
        Case("a target at or below the floor c is never reached", (n.tolist(), err.tolist(), [1e7], 4.5),
             {"needed": "the fitted error only approaches its floor c: for a target ≤ c return math.inf "
                        "(there is no such size)", "predicted": hint_pred}),
        Case("a target inside the measured range, no floor", (n.tolist(), law(800, 0.5, 0, n).tolist(), [3e6, 5e4],
             1.0), both),
        Case("sizes given in random order", (n[perm].tolist(), err[perm].tolist(), [8e6], 6.0),
             {"*": "keep each error with its own size (do not sort one list without the other)", **both}),
    ]
    g = np.random.default_rng(103)
    for k in range(2):
        m = int(g.integers(7, 11))
        nn_ = np.sort(np.exp(g.uniform(np.log(5e3), np.log(5e6), m)))
        a, alpha, c = g.uniform(50, 500), g.uniform(0.25, 0.6), g.uniform(2, 10)
        e = law(a, alpha, c, nn_) * (1 + 0.003 * g.standard_normal(m))
        target = float(law(a, alpha, c, 2 * nn_.max()))
        cases.append(Case(f"seeded random curve {k + 1} with 0.3% noise", (nn_.tolist(), e.tolist(),
                          [2 * nn_.max(), 5 * nn_.max()], round(target, 3)), both,
                          extra={"log_tol": 0.10, "pred_tol": 0.02}))
    return cases


# 02 · one QAT step on a layer

def _ref_qat_step(layer, x, y, lr, bits):
    import torch.nn.functional as F
    from .quantize import WeightFakeQuant
    w_q = WeightFakeQuant(bits, symmetric=True, granularity="per_channel")(layer.weight)
    loss = F.cross_entropy(F.linear(x, w_q, layer.bias), y)
    layer.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in layer.parameters():
            p -= lr * p.grad
    return loss.detach()


def _as_float(v, what: str) -> float:
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return float(v.detach())
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise _Failure(f"{what}: expected a number (a float or a one-element tensor), got {_fmt(v)}")
    return float(v)


def _run_qat_step(fn, case: Case) -> dict:
    layer0, x, y, lr, bits = case.args
    layer = copy.deepcopy(layer0)
    loss = _as_float(fn(layer, x.clone(), y.clone(), lr, bits), "the returned loss")
    if not isinstance(layer, nn.Linear) or not isinstance(layer.weight, torch.Tensor):
        raise _Failure("the layer must stay an nn.Linear whose .weight holds the float weights")
    return {"loss": loss, "weight": layer.weight.detach().clone(), "bias": layer.bias.detach().clone()}


def _cases_qat_step() -> list[Case]:
    g = _rng(203)
    hint_loss = ("the forward pass uses the fake-quantized weights: per output row i, scale_i = max|W_i| / (2^(b−1) − 1) "
                 "and W_q = scale · clamp(round(W / scale), −(2^(b−1) − 1), 2^(b−1) − 1); loss = cross-entropy of "
                 "x @ W_qᵀ + bias (before the step)")
    hint_ste = ("round() has zero gradient almost everywhere: pass the gradient straight through it to the float "
                "weights (W + (W_q − W).detach()), then take the plain SGD step W ← W − lr · grad on the float "
                "weights W themselves, not on their quantized copy W_q. The largest |w| of each row lies exactly on "
                "the grid's end (code ±(2^(b−1) − 1)) and keeps gradient 1, as in 02-ste: torch.clamp's own "
                "gradient is 0 there, so do not let the gradient flow through the clamp")
    hint_bias = "the bias is not quantized: it takes a plain SGD step, bias ← bias − lr · ∂loss/∂bias"

    def linear(i, o, row_scale=None, zero_row=None):
        lin = nn.Linear(i, o)
        with torch.no_grad():
            w = torch.randn(o, i, generator=g) * 0.5
            if row_scale is not None:
                w *= torch.as_tensor(row_scale, dtype=torch.float32)[:, None]
            if zero_row is not None:
                w[zero_row] = 0.0
            lin.weight.copy_(w)
            lin.bias.copy_(torch.randn(o, generator=g) * 0.1)
        return lin

    def batch(i, o, b=8):
        return torch.randn(b, i, generator=g), torch.randint(0, o, (b,), generator=g)

    cases = [
        Case("4-bit: the loss is computed with the fake-quantized weights", (linear(6, 4), *batch(6, 4), 0.5, 4),
             {"loss": hint_loss, "weight": hint_ste, "bias": hint_bias}),
        Case("8-bit: the float weights get the gradient straight through round()", (linear(5, 3), *batch(5, 3), 0.5, 8),
             {"loss": hint_loss, "weight": hint_ste, "bias": hint_bias}),
        Case("one scale per output channel: rows of very different sizes",
             (linear(6, 4, row_scale=[20.0, 1.0, 0.05, 1.0]), *batch(6, 4), 0.1, 3),
             {"*": "one scale per output row (per channel, dim 0) — max|W_i| over row i, not over the whole matrix",
              "bias": hint_bias}),
        Case("2-bit: the step updates the float weights, not their quantized copy", (linear(6, 4), *batch(6, 4), 0.05, 2),
             {"weight": "QAT keeps the float (latent) weights and updates THEM: W ← W − lr · grad. Writing "
                        "W_q − lr · grad back snaps every weight to the grid, and steps smaller than half a grid "
                        "step are lost at the next rounding", "loss": hint_loss, "bias": hint_bias}),
        Case("a row of zeros (a pruned channel) must not divide by zero", (linear(5, 3, zero_row=1), *batch(5, 3), 0.5, 4),
             {"*": "a row of zeros has max|W_i| = 0: give it scale 1 (its codes are all 0) instead of dividing by 0",
              "bias": hint_bias}),
    ]
    for k in range(2):
        bits = int(torch.randint(2, 9, (1,), generator=g))
        i, o = int(torch.randint(3, 9, (1,), generator=g)), int(torch.randint(2, 6, (1,), generator=g))
        cases.append(Case(f"seeded random case {k + 1}: {bits}-bit, a {o}×{i} layer", (linear(i, o), *batch(i, o), 0.3, bits),
                          {"loss": hint_loss, "weight": hint_ste + " (the scale is computed from W under "
                           "torch.no_grad(): no gradient flows through it)", "bias": hint_bias}))
    return cases


# 03 · trim one block by APoZ, and measure it

def _conv_macs(model: nn.Module, input_size: tuple[int, ...]) -> int:
    """Multiply-accumulates of the convolutions of one forward pass, from their output shapes: what
    `measure.count_macs` counts for a block (its FLOP counter needs torch._dynamo, whose first import takes
    seconds; tests/test_exercises.py checks the two agree)."""
    total = [0]

    def hook(m, inp, out):
        total[0] += out.shape[1] * (m.in_channels // m.groups) * math.prod(m.kernel_size) * math.prod(out.shape[2:])
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(torch.zeros(input_size))
    finally:
        for h in handles:
            h.remove()
    return total[0]


def _ref_trim_block(block, x, fraction):
    from .measure import count_params
    from .prune import select_channels, slim_channels, zero_counter
    block = copy.deepcopy(block).eval()
    with torch.no_grad(), zero_counter({"bn1": block.bn1}) as counts:
        block(x)
    zeros, n = counts["bn1"]
    keep = select_channels({"": 1.0 - (zeros / n).float()}, fraction)[""]
    slim = slim_channels(block, {"": keep})
    return keep, slim, count_params(slim).total, _conv_macs(slim, (1, *x.shape[1:]))


def _block_apoz(block, x) -> torch.Tensor:
    b = copy.deepcopy(block).eval()
    with torch.no_grad():
        return (b.bn1(b.conv1(x)) <= 0).double().mean((0, 2, 3))


def _run_trim_block(fn, case: Case) -> dict:
    block0, x, fraction = case.args
    block = copy.deepcopy(block0)
    out = fn(block, x.clone(), fraction)
    for (k, v), v0 in zip(block.state_dict().items(), block0.state_dict().values()):
        if v.shape != v0.shape or not torch.equal(v, v0):
            raise _Failure(f"expected the block you were given left as it was, but its {k} changed: build the "
                           f"smaller block from a copy (copy.deepcopy(block))")
    if not isinstance(out, (tuple, list)) or len(out) != 4:
        raise _Failure(f"expected a tuple (keep, slim_block, params, macs), got {_fmt(out)}")
    keep, slim, params, macs = out
    try:
        keep = torch.as_tensor(keep).reshape(-1).long()
    except (TypeError, ValueError, RuntimeError):
        raise _Failure(f"keep: expected the indices of the kept channels (a list or a tensor), got {_fmt(keep)}") from None
    if not isinstance(slim, nn.Module):
        raise _Failure(f"slim_block: expected an nn.Module (the smaller block), got {type(slim).__name__}")
    with torch.no_grad():
        slim = slim.eval()
        outputs = [slim(x), slim(case.extra["other"])]
    return {"keep": keep, "params": _as_float(params, "params"), "macs": _as_float(macs, "macs"),
            "outputs": outputs}


def _compare_trim_block(expected: dict, got: dict, case: Case) -> tuple[str, str] | None:
    from .prune import slim_channels
    block, x, fraction = case.args
    c = block.conv1.out_channels
    keep, want = got["keep"], len(expected["keep"])
    if keep.numel() != want:
        return "count", (f"kept channels: expected {want} of {c} (round(fraction · C) = {round(fraction * c)} removed, "
                         f"at least one kept), got {keep.numel()}")
    if keep.unique().numel() != keep.numel() or int(keep.min()) < 0 or int(keep.max()) >= c:
        return "count", f"kept channels: expected {want} distinct indices in 0 … {c - 1}, got {_fmt(keep)}"
    apoz = _block_apoz(block, x)
    kept = torch.zeros(c, dtype=torch.bool)
    kept[keep] = True
    if (~kept).any() and float(apoz[kept].max()) > float(apoz[~kept].min()) + 1e-12:
        return "order", (f"expected the {c - want} channels of highest APoZ removed, but a removed channel has APoZ "
                         f"{_fmt_num(apoz[~kept].min())}, below a kept one's ({_fmt_num(apoz[kept].max())})\n"
                         f"    APoZ per channel: {_fmt(apoz.float(), 16)}\n"
                         f"    kept:             {_fmt(keep, 16)}")
    ref = slim_channels(copy.deepcopy(block).eval(), {"": keep})
    with torch.no_grad():
        ref_out = [ref(x), ref(case.extra["other"])]
    d = _diff(ref_out, got["outputs"], "the smaller block's output (eval mode) on two batches", 1e-4, 1e-4)
    if d:
        return "outputs", d
    for key in ("params", "macs"):
        d = _diff(float(expected[key]), got[key], key, 0.5, 0.0)
        if d:
            return key, d
    return None


def _cases_trim_block() -> list[Case]:
    from .models import BasicBlock
    g = _rng(303)

    def block(cin, cout, stride, dead=()):
        torch.manual_seed(int(torch.randint(0, 2 ** 31, (1,), generator=g)))   # nn init draws from the global RNG
        b = BasicBlock(cin, cout, stride)
        with torch.no_grad():
            for bn in (b.bn1, b.bn2):
                bn.weight.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
                bn.bias.copy_(torch.randn(bn.num_features, generator=g) * 0.8)
                bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.3)
                bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
            for ch in dead:
                b.bn1.bias[ch] = -4.0 - ch         # a channel that is (almost) never active
        return b.eval()

    def imgs(cin, hw, n=4):
        return torch.randn(n, cin, hw, hw, generator=g)

    hints = {"count": "remove round(fraction · C) channels, but keep at least one (a block needs one inner channel)",
             "order": "APoZ of a channel = share of (image, position) where ReLU(bn1(conv1(x))) is 0, with the block "
                      "in eval mode; remove the channels with the HIGHEST APoZ",
             "outputs": "build the smaller block from a copy: conv1 keeps its kept output filters (weight[keep]), bn1 its "
                        "kept weight, bias, running_mean and running_var, conv2 its kept input slices (weight[:, keep]); "
                        "bn2 and the shortcut stay as they are",
             "params": "count every parameter of the smaller block (p.numel() over its parameters: conv weights, "
                       "batch-norm weights and biases — not the running statistics, which are buffers)",
             "macs": "MACs of ONE image: a conv does out_channels · in_channels · k · k multiply-accumulates per "
                     "output position (H_out · W_out of them — conv1 may have stride 2); batch norm, ReLU and the "
                     "shortcut are not counted (measure.count_macs counts the same way)",
             "*": "return (keep, slim_block, params, macs), and leave the block you are given as it is"}
    cases = [
        Case("APoZ ranks the channels: the most often zero go first", (block(6, 6, 1, dead=(1, 4)), imgs(6, 6), 0.5),
             hints, extra={"other": imgs(6, 6)}),
        Case("round(fraction · C) channels go: 8 channels, fraction 0.35 → 3", (block(8, 8, 1, dead=(6,)), imgs(8, 5), 0.35),
             hints, extra={"other": imgs(8, 5)}),
        Case("at least one channel stays", (block(4, 4, 1), imgs(4, 5), 0.95), hints, extra={"other": imgs(4, 5)}),
        Case("the first block of a stage: stride 2, more output channels", (block(4, 8, 2, dead=(0,)), imgs(4, 8), 0.5),
             hints, extra={"other": imgs(4, 8)}),
    ]
    for k in range(2):
        cin = int(torch.randint(3, 9, (1,), generator=g))
        cout = cin * int(torch.randint(1, 3, (1,), generator=g))
        stride = 1 if cout == cin else 2
        f = round(float(torch.rand(1, generator=g)) * 0.8 + 0.1, 2)
        cases.append(Case(f"seeded random case {k + 1}: {cin} → {cout} channels, stride {stride}, fraction {f}",
                          (block(cin, cout, stride), imgs(cin, 6), f), hints, extra={"other": imgs(cin, 6)}))
    return cases


# 04 · one Lloyd step of k-means

def _ref_lloyd_step(values, codebook):
    from .share import lloyd_step
    return lloyd_step(values, codebook)


def _run_lloyd_step(fn, case: Case) -> dict:
    out = _call(fn, case)["output"]
    if isinstance(out, np.ndarray):
        out = torch.from_numpy(out)
    k = case.args[1].numel()
    if not isinstance(out, torch.Tensor):
        raise _Failure(f"expected the new codebook as a torch.Tensor, got {type(out).__name__}")
    if out.numel() != k:
        raise _Failure(f"expected a codebook of {k} entries (as many as given: an empty cluster is re-seeded, "
                       f"not dropped), got {out.numel()}")
    return {"codebook": torch.sort(out.detach().double().reshape(-1)).values}


def _cases_lloyd_step() -> list[Case]:
    g = _rng(403)
    hint = ("assign every value to its nearest centroid, then move each centroid to the mean of the values "
            "assigned to it; return the new codebook sorted ascending")
    hint_empty = ("a centroid left without values moves to the value farthest from its NEW centroid in the cluster "
                  "with the largest within-cluster sum of squares (as scikit-learn's KMeans does); kept in place, it "
                  "wastes a codebook entry")
    cases = [
        Case("every centroid has values: each moves to the mean of its cluster",
             (_t([-1.2, -0.9, -0.8, 0.1, 0.2, 0.9, 1.3]), _t([-1.0, 0.0, 1.0])), hint),
        Case("an unsorted codebook", (_t([-1.2, -0.9, -0.8, 0.1, 0.2, 0.9, 1.3, 2.2]), _t([1.0, -1.0, 2.5, 0.0])),
             "compare every value with every centroid whatever their order (or sort the codebook first); "
             "return the new codebook sorted ascending"),
        Case("a value exactly halfway goes to the lower centroid", (_t([-0.25, 0.0, 0.5, 1.0, 1.5]), _t([0.0, 1.0])),
             "a value exactly halfway between two centroids belongs to the LOWER one (argmin over |value − centroid| "
             "returns the first of a sorted codebook; use ≤ at the midpoint)"),
        Case("an empty cluster is re-seeded", (_t([-1.0, -0.9, -0.8, 0.5, 1.0, 3.0]), _t([-0.9, 0.6, 10.0])), hint_empty),
        Case("two empty clusters take the two clusters with the largest sums of squares",
             (_t([-2.0, -1.0, -0.5, 0.5, 1.0, 3.0]), _t([-1.0, 1.0, 10.0, 12.0])),
             hint_empty + "; a second empty centroid takes the cluster with the second largest sum of squares, and so on"),
        Case("no cluster can be split: an empty centroid keeps its place", (_t([0.3, 0.3, 0.3, 0.3]), _t([0.0, 1.0])),
             "only a cluster with two different values can give one away: when none can, a centroid left empty "
             "keeps its old value"),
        Case("a 4-D weight tensor: all its values are clustered together",
             (torch.randn(4, 3, 3, 3, generator=g) * 0.2, _t([-0.3, -0.1, 0.05, 0.2])),
             "flatten the weights: every value of the tensor takes part, whatever its shape"),
    ]
    for k in range(2):
        bits = int(torch.randint(2, 5, (1,), generator=g))
        v = torch.randn(200, generator=g) * 0.1
        cb = torch.randn(2 ** bits, generator=g) * 0.2
        cb[0] = 1.0                                        # far from every value: its cluster starts empty
        cases.append(Case(f"seeded random case {k + 1}: {2 ** bits} centroids, one far away", (v, cb),
                          hint + "; " + hint_empty))
    return cases


# 05 · one distillation training step

def _ref_kd_step(student, teacher, x, y, optimizer, temperature, alpha):
    from .distill import kd_loss
    teacher.eval()
    student.train()
    with torch.no_grad():
        t_logits = teacher(x)
    loss = kd_loss(student(x), t_logits, y, temperature, alpha)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach()


class _SGD:
    """The optimizer handed to the student's step: SGD with momentum and weight decay, the update of
    `torch.optim.SGD` (dampening 0, no Nesterov) with its two methods, `zero_grad()` and `step()`. (The first
    `torch.optim` optimizer of a session imports torch._dynamo, seconds of start-up a check should not take.)"""

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        self.params = [q for q in params if q.requires_grad]
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.buffers: dict[int, torch.Tensor] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for q in self.params:
            if set_to_none:
                q.grad = None
            elif q.grad is not None:
                q.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        for i, q in enumerate(self.params):
            if q.grad is None:
                continue
            d = q.grad + self.weight_decay * q if self.weight_decay else q.grad.clone()
            if self.momentum:
                buf = self.buffers.get(i)
                d = self.buffers[i] = d if buf is None else buf.mul_(self.momentum).add_(d)
            q.sub_(self.lr * d)

    def __repr__(self) -> str:
        return f"SGD(lr={self.lr}, momentum={self.momentum}, weight_decay={self.weight_decay})"


def _run_kd_step(fn, case: Case) -> dict:
    student0, teacher0, batches, temperature, alpha = case.args
    student, teacher = copy.deepcopy(student0), copy.deepcopy(teacher0)
    student.train(case.extra.get("student_train", True))
    teacher.train(case.extra.get("teacher_train", False))
    opt = _SGD(student.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    fixed = copy.deepcopy(teacher0).eval()
    t_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    losses, entropy = [], []
    for x, y in batches:
        with torch.no_grad():                 # the teacher's entropy: the soft-target CE form's constant
            p = torch.softmax(fixed(x) / temperature, -1)
            entropy.append(float(alpha * temperature ** 2 * -(p * torch.log(p.clamp_min(1e-30))).sum(-1).mean()))
        losses.append(_as_float(fn(student, teacher, x.clone(), y.clone(), opt, temperature, alpha), "the returned loss"))
    changed = [k for k, v in teacher.state_dict().items() if not torch.equal(v, t_before[k])]
    return {"teacher_grad": any(q.grad is not None and bool((q.grad != 0).any()) for q in teacher.parameters()),
            "teacher_changed": changed[0] if changed else "",
            "losses": torch.tensor(losses, dtype=torch.float64), "entropy": torch.tensor(entropy, dtype=torch.float64),
            "student": [v.detach().clone().double() for v in student.state_dict().values() if v.is_floating_point()]}


def _compare_kd_step(expected: dict, got: dict, case: Case) -> tuple[str, str] | None:
    if got["teacher_grad"]:
        return "teacher_grad", "the teacher: expected no gradient in its parameters, found one"
    if got["teacher_changed"]:
        return "teacher_changed", (f"the teacher: expected it unchanged by the step, but its "
                                   f"{got['teacher_changed']} changed")
    kl, ce, g = expected["losses"], expected["losses"] + expected["entropy"], got["losses"]
    ok = torch.isclose(g, kl, rtol=1e-4, atol=1e-5) | torch.isclose(g, ce, rtol=1e-4, atol=1e-5)
    if not bool(ok.all()):
        i = int(torch.nonzero(~ok)[0])
        return "losses", (f"returned loss of step {i + 1}: expected {_fmt_num(kl[i])} (KL form) or "
                          f"{_fmt_num(ce[i])} (soft-target cross-entropy form, + alpha·T²·the teacher's entropy), "
                          f"got {_fmt_num(g[i])}")
    d = _diff(expected["student"], got["student"], "the student's weights and batch-norm statistics after the step(s)",
              1e-5, 1e-4)
    return ("student", d) if d else None


def _cases_kd_step() -> list[Case]:
    g = _rng(503)

    def mlp(hidden, scale=1.0):
        torch.manual_seed(int(torch.randint(0, 2 ** 31, (1,), generator=g)))
        m = nn.Sequential(nn.Linear(12, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, 5))
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (0.4 * scale if p.dim() > 1 else 0.1))
            m[1].running_mean.copy_(torch.randn(hidden, generator=g) * 0.3)
            m[1].running_var.copy_(torch.rand(hidden, generator=g) + 0.5)
        return m

    def batches(k, b=8):
        return [(torch.randn(b, 12, generator=g), torch.randint(0, 5, (b,), generator=g)) for _ in range(k)]

    loss_hint = ("the loss of this batch, before the step: (1 − alpha) · CE(student, y) + alpha · T² · "
                 "KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over the batch (the soft-target "
                 "cross-entropy form is accepted too)")
    step_hint = ("one step: zero the gradients (optimizer.zero_grad), the backward pass of the loss, then "
                 "optimizer.step — with the optimizer you are given")
    teacher_hints = {"teacher_grad": "run the teacher under torch.no_grad() (or detach its logits): no gradient may "
                                     "reach it",
                     "teacher_changed": "put the teacher in eval mode (teacher.eval()) and run it under torch.no_grad(): "
                                        "in train mode its batch norm normalises with the batch's statistics and "
                                        "updates its running averages"}
    cases = [
        Case("alpha = 0: one step on the hard labels", (mlp(16), mlp(32, 2.0), batches(1), 4.0, 0.0),
             {"losses": loss_hint, "student": step_hint, **teacher_hints}),
        Case("two steps in a row: the gradients are zeroed before each backward", (mlp(16), mlp(32, 2.0), batches(2), 4.0, 0.0),
             {"losses": loss_hint, "student": "zero the gradients (optimizer.zero_grad) before the backward pass: they "
                                              "add up in .grad otherwise, and the second step also uses the first "
                                              "batch's gradient",
              **teacher_hints}),
        Case("T = 4, alpha = 0.9: the soft part, scaled by T²", (mlp(16), mlp(32, 2.0), batches(1), 4.0, 0.9),
             {"losses": loss_hint, "student": step_hint + "; the loss: " + loss_hint, **teacher_hints}),
        Case("the teacher is handed over in train mode: it runs in eval mode", (mlp(16), mlp(32, 2.0), batches(2), 2.0, 0.7),
             {"losses": teacher_hints["teacher_changed"], "student": teacher_hints["teacher_changed"], **teacher_hints},
             extra={"teacher_train": True}),
        Case("the student is handed over in eval mode: it trains in train mode", (mlp(16), mlp(32, 2.0), batches(2), 2.0, 0.7),
             {"losses": "put the student in train mode (student.train()) before its forward pass: its batch norm "
                        "then normalises with the batch's statistics and updates its running averages",
              "student": "put the student in train mode (student.train()) before its forward pass: its batch norm "
                         "then normalises with the batch's statistics and updates its running averages",
              **teacher_hints}, extra={"student_train": False}),
    ]
    for k in range(2):
        t = round(float(torch.rand(1, generator=g) * 7 + 1), 2)
        a = round(float(torch.rand(1, generator=g)), 2)
        cases.append(Case(f"seeded random case {k + 1}: two steps, T = {t}, alpha = {a}",
                          (mlp(16), mlp(32, 2.0), batches(2), t, a),
                          {"losses": loss_hint, "student": step_hint, **teacher_hints}, extra={"teacher_train": k == 1}))
    return cases


# 06 · the deployment candidate: Pareto frontier, then the flash budget and the accuracy floor

def _ref_deploy_choice(candidates, flash_bytes, min_val_acc):
    from .combine import pareto_front
    front = pareto_front(candidates, cost="bytes", gain="val_acc")
    ok = [p for p in front if p["bytes"] <= flash_bytes and p["val_acc"] >= min_val_acc]
    return [p["name"] for p in front], (ok[0]["name"] if ok else None)


def _name(p):
    return p.get("name") if isinstance(p, dict) else p


def _run_deploy_choice(fn, case: Case) -> dict:
    cands, flash, floor = case.args
    mine = copy.deepcopy(cands)
    out = fn(mine, flash, floor)
    if mine != cands:
        raise _Failure("your function changed the list of candidates (or one of its dicts): leave them as they are")
    if not isinstance(out, (tuple, list)) or len(out) != 2 or not isinstance(out[0], (list, tuple)):
        raise _Failure(f"expected a pair (frontier names, chosen name or None), got {_fmt(out)}")
    return {"front": [_name(p) for p in out[0]], "choice": _name(out[1])}


def _compare_deploy_choice(expected: dict, got: dict, case: Case) -> tuple[str, str] | None:
    for key, what in (("front", "frontier (names, smallest file first)"), ("choice", "chosen candidate")):
        if got[key] != expected[key]:
            return key, f"{what}: expected {expected[key]!r}, got {got[key]!r}"
    return None


def _cases_deploy_choice() -> list[Case]:
    MB = 1_048_576

    def c(name, nbytes, val, test):
        return {"name": name, "bytes": nbytes, "val_acc": val, "test_acc": test}

    hint_front = ("a candidate is on the frontier when no other is at most as large AND at least as accurate on "
                  "validation, and strictly better on one of the two; list the frontier by size, smallest first")
    hint_choice = ("the chosen candidate: the smallest one that fits in flash (bytes ≤ flash_bytes) and reaches the "
                   "floor (val_acc ≥ min_val_acc) — it is always on the frontier")
    hints = {"front": hint_front, "choice": hint_choice}
    cases = [
        Case("a dominated candidate is not on the frontier",
             ([c("A", 100_000, 88.0, 87.6), c("B", 150_000, 87.5, 87.1), c("C", 300_000, 89.5, 89.1),
               c("D", 1_200_000, 90.0, 90.2)], MB, 88.5), hints),
        Case("validation accuracy decides, never test accuracy",
             ([c("int8", 290_000, 89.1, 88.2), c("4-bit", 150_000, 88.4, 89.4), c("k-means 3-bit", 110_000, 87.2, 88.9),
               c("sparse", 400_000, 88.9, 89.6)], MB, 88.0),
             {"*": "rank and choose on val_acc: the test accuracy is for the final report only (choosing on it turns "
                   "the test set into a validation set)", **hints}),
        Case("two candidates of the same size: only the more accurate is on the frontier",
             ([c("P", 200_000, 86.0, 86.0), c("Q", 200_000, 87.0, 86.5), c("R", 500_000, 88.0, 88.0)], MB, 86.5),
             {"front": "at the same size the more accurate candidate dominates the other", "choice": hint_choice}),
        Case("an exact duplicate is listed once (the first)",
             ([c("run 1", 250_000, 87.0, 86.8), c("run 2", 250_000, 87.0, 87.1), c("big", 900_000, 89.0, 89.0)], MB, 80.0),
             {"front": "two candidates of the same size and accuracy: neither dominates the other, but the frontier "
                       "lists the point once — keep the first of them", "choice": hint_choice}),
        Case("nothing fits the budget and reaches the floor: no candidate (None)",
             ([c("ref", 1_080_000, 89.0, 89.2), c("int8", 290_000, 86.0, 86.4), c("tiny", 60_000, 70.0, 70.5)], MB, 88.0),
             {"choice": "when no candidate both fits in flash and reaches the floor, return None — do not fall back to "
                        "the most accurate or the smallest", "front": hint_front}),
        Case("the smallest file is on the frontier however poor, but below the floor it is not chosen",
             ([c("95% sparse", 20_000, 10.0, 10.0), c("4-bit", 140_000, 88.6, 88.9), c("ref", 1_080_000, 89.0, 89.4)],
              MB, 88.0),
             {"front": "the smallest file is always on the frontier, whatever its accuracy (nothing is smaller)",
              "choice": "below the accuracy floor a file is no candidate, however small"}),
        Case("on the limits: a file of exactly the budget fits, an accuracy of exactly the floor qualifies",
             ([c("at the budget", MB, 89.0, 89.0), c("just below the floor", 500_000, 88.99, 89.3),
               c("too big", MB + 1, 90.0, 90.0)], MB, 89.0),
             {"choice": "both limits are inclusive: bytes ≤ flash_bytes fits, val_acc ≥ min_val_acc qualifies",
              "front": hint_front}),
    ]
    rng = np.random.default_rng(603)
    for k in range(2):
        pts = []
        for i in range(12):
            b = int(10 ** rng.uniform(4.5, 6.3))
            val = round(float(60 + 30 * rng.uniform(0.2, 1.0) - 3 * (b < 5e4)), 2)
            pts.append(c(f"m{i}", b, val, round(val + float(rng.normal(0, 0.8)), 2)))
        floor = round(float(np.percentile([p["val_acc"] for p in pts], 60)), 2)
        cases.append(Case(f"seeded random case {k + 1}: 12 candidates, floor {floor}", (pts, MB, floor), hints))
    return cases


# ---------------------------------------------------------------------------------------------
# the registry

EXERCISES: dict[str, Exercise] = {e.id: e for e in [
    Exercise("01-power-law-fit", "01_marginal_returns", "Fit err(N) = a·N^(−alpha) + c", "fit_power_law_student",
             _ref_power_law, _cases_power_law, hides=("fit_power_law", "_fit_once"),
             run=_run_power_law, compare=_compare_power_law, seconds=1.0,
             forbid=("scaling.fit_power_law", "scaling._fit_once")),
    Exercise("01-gain-per-doubling", "01_marginal_returns", "Accuracy gained per doubling of parameters",
             "gain_per_doubling_student", _ref_gain, _cases_gain, hides=("gain_per_doubling",),
             run=_run_gain, atol=1e-6, rtol=1e-9, forbid=("scaling.gain_per_doubling",)),
    Exercise("01-forecast", "01_marginal_returns", "Fit, extrapolate and invert the power law", "forecast_student",
             _ref_forecast, _cases_forecast, hides=("fit_power_law", "_fit_once", "PowerLaw"),
             run=_run_forecast, compare=_compare_forecast, seconds=2.0,
             forbid=("scaling.fit_power_law", "scaling._fit_once", "scaling.PowerLaw")),
    Exercise("02-quantize-affine", "02_quantization", "The affine quantizer", "quantize_affine_student",
             _ref_quantize_affine, _cases_quantize_affine, hides=("quantize_affine",),
             forbid=("quantize.quantize_affine", "quantize._codes")),
    Exercise("02-ste", "02_quantization", "Fake quantization with the straight-through estimator",
             "fake_quantize_student", _ref_fake_quantize, _cases_ste, hides=("fake_quantize",), run=_run_ste,
             atol=1e-5, rtol=1e-4, forbid=("quantize.fake_quantize", "quantize._StraightThrough")),
    Exercise("02-qat-step", "02_quantization", "One quantization-aware training step on a layer", "qat_step_student",
             _ref_qat_step, _cases_qat_step, hides=("fake_quantize", "WeightFakeQuant"), run=_run_qat_step,
             atol=1e-5, rtol=1e-4, seconds=2.0,
             forbid=("quantize.fake_quantize", "quantize._StraightThrough", "quantize.WeightFakeQuant",
                     "quantize.quantize_model", "combine.qat_step")),
    Exercise("03-magnitude-mask", "03_pruning", "The magnitude mask", "magnitude_mask_student",
             _ref_magnitude_mask, _cases_magnitude_mask, hides=("magnitude_masks", "_keep_mask"),
             compare=_compare_mask, forbid=("prune._keep_mask", "prune.magnitude_masks")),
    Exercise("03-apoz", "03_pruning", "Average Percentage of Zeros", "apoz_student", _ref_apoz, _cases_apoz,
             hides=("zero_counter", "apoz"), atol=1e-6, forbid=("prune.zero_counter", "prune.apoz")),
    Exercise("03-trim-block", "03_pruning", "Trim one block by APoZ, and measure it", "trim_block_student",
             _ref_trim_block, _cases_trim_block, hides=("slim_channels", "select_channels", "zero_counter", "apoz"),
             run=_run_trim_block, compare=_compare_trim_block, seconds=3.0,
             forbid=("prune.zero_counter", "prune.apoz", "prune.channel_scores", "prune.select_channels",
                     "prune.slim_channels", "prune.prune_channels", "prune.trim_round", "prune.network_trimming",
                     "prune.torch_pruning_channels")),
    Exercise("04-kmeans-assign", "04_parameter_sharing", "The k-means assignment step", "assign_student",
             _ref_assign, _cases_assign, hides=("kmeans_1d", "_nearest"), forbid=("share._nearest", "share.kmeans_1d")),
    Exercise("04-truncated-svd", "04_parameter_sharing", "A truncated SVD of a layer", "svd_factors_student",
             _ref_svd, _cases_svd, hides=("svd_factors",), run=_run_svd, atol=1e-4, rtol=1e-4,
             forbid=("share.svd_factors",)),
    Exercise("04-lloyd-step", "04_parameter_sharing", "One Lloyd step of k-means, empty clusters re-seeded",
             "lloyd_step_student", _ref_lloyd_step, _cases_lloyd_step, hides=("kmeans_1d", "lloyd_step"),
             run=_run_lloyd_step, atol=1e-5, rtol=1e-5, seconds=2.0,
             forbid=("share.lloyd_step", "share._lloyd_update", "share.kmeans_1d", "share._nearest")),
    Exercise("05-soften", "05_distillation", "Softened probabilities", "soften_student", _ref_soften,
             _cases_soften, hides=("soften",), atol=1e-6, rtol=1e-5, forbid=("distill.soften",)),
    Exercise("05-kd-loss", "05_distillation", "The distillation loss", "kd_loss_student", _ref_kd_loss,
             _cases_kd, hides=("kd_loss", "soft_loss"), run=_run_kd, atol=1e-5, rtol=1e-4,
             forbid=("distill.kd_loss", "distill.soft_loss")),
    Exercise("05-kd-step", "05_distillation", "One distillation training step", "kd_step_student", _ref_kd_step,
             _cases_kd_step, hides=("kd_loss", "soft_loss", "distillation"), run=_run_kd_step,
             compare=_compare_kd_step, seconds=3.0,
             forbid=("distill.kd_loss", "distill.soft_loss", "distill.distillation", "combine.distill_step",
                     "train.fit")),
    Exercise("06-deploy-choice", "06_putting_it_together", "The deployment candidate: frontier, budget and floor",
             "deploy_choice_student", _ref_deploy_choice, _cases_deploy_choice, hides=("pareto_front", "choose"),
             run=_run_deploy_choice, compare=_compare_deploy_choice, seconds=1.0,
             forbid=("combine.pareto_front", "combine.choose", "combine.draw_front")),
]}
