"""Self-grading exercises for notebooks 01–05: one checker per exercise.

In each notebook an exercise is three cells (tagged ``exercise:<id>`` in their metadata): a markdown task,
a code cell where the student writes the heart of a method (the instructor version holds the solution
between ``### BEGIN SOLUTION`` / ``### END SOLUTION``), and a cell that calls

    check("02-quantize-affine", quantize_affine_student)

`check` runs the student's function and slimlab's own implementation (the reference) on the same inputs —
edge cases that catch the typical mistakes first, then seeded random cases — and prints a short verdict:
which case failed, expected against got, and a hint. It never prints a solution. It returns a
`CheckResult` (truthy when every case passed) for tests and scripts.

`EXERCISES` lists every exercise: its notebook, the student's function name, and `hides`, the slimlab
functions whose displayed source would give the answer away (`python -m slimlab.student` drops them from
the student notebooks' `show_source(...)` cells).
"""
from __future__ import annotations

import copy
import math
import traceback
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
        try:
            got = run(fn, case)
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
        if problem is None:
            passed += 1
            continue
        hint = _hint(case, key) if key else ""
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
             "LOG-probabilities first and reduction='batchmean' (plain 'mean' also divides by the classes)"),
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
# the registry

EXERCISES: dict[str, Exercise] = {e.id: e for e in [
    Exercise("01-power-law-fit", "01_marginal_returns", "Fit err(N) = a·N^(−alpha) + c", "fit_power_law_student",
             _ref_power_law, _cases_power_law, hides=("fit_power_law", "_fit_once"),
             run=_run_power_law, compare=_compare_power_law),
    Exercise("01-gain-per-doubling", "01_marginal_returns", "Accuracy gained per doubling of parameters",
             "gain_per_doubling_student", _ref_gain, _cases_gain, hides=("gain_per_doubling",),
             run=_run_gain, atol=1e-6, rtol=1e-9),
    Exercise("02-quantize-affine", "02_quantization", "The affine quantizer", "quantize_affine_student",
             _ref_quantize_affine, _cases_quantize_affine, hides=("quantize_affine",)),
    Exercise("02-ste", "02_quantization", "Fake quantization with the straight-through estimator",
             "fake_quantize_student", _ref_fake_quantize, _cases_ste, hides=("fake_quantize",), run=_run_ste,
             atol=1e-5, rtol=1e-4),
    Exercise("03-magnitude-mask", "03_pruning", "The magnitude mask", "magnitude_mask_student",
             _ref_magnitude_mask, _cases_magnitude_mask, hides=("magnitude_masks", "_keep_mask"),
             compare=_compare_mask),
    Exercise("03-apoz", "03_pruning", "Average Percentage of Zeros", "apoz_student", _ref_apoz, _cases_apoz,
             hides=("zero_counter", "apoz"), atol=1e-6),
    Exercise("04-kmeans-assign", "04_parameter_sharing", "The k-means assignment step", "assign_student",
             _ref_assign, _cases_assign, hides=("kmeans_1d", "_nearest")),
    Exercise("04-truncated-svd", "04_parameter_sharing", "A truncated SVD of a layer", "svd_factors_student",
             _ref_svd, _cases_svd, hides=("svd_factors",), run=_run_svd, atol=1e-4, rtol=1e-4),
    Exercise("05-soften", "05_distillation", "Softened probabilities", "soften_student", _ref_soften,
             _cases_soften, hides=("soften",), atol=1e-6, rtol=1e-5),
    Exercise("05-kd-loss", "05_distillation", "The distillation loss", "kd_loss_student", _ref_kd_loss,
             _cases_kd, hides=("kd_loss", "soft_loss"), run=_run_kd, atol=1e-5, rtol=1e-4),
]}
