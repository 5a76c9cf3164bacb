"""The exercise checkers: each passes the solution taken from the instructor notebook's marked cell, and
fails the student stub and deliberately wrong versions — on the case whose hint names the mistake —
without ever printing the solution."""
import contextlib
import io
import re
import shutil
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
import torch

from slimlab.exercises import EXERCISES, CheckResult, check, exercises_for
from slimlab.student import CODE_STUB, clear_solutions, notebook_exercises, solution_cell, solution_regions

ROOT = Path(__file__).resolve().parents[1]


def instructor_copy(dest: Path) -> tuple[Path, list[str]]:
    """Copy notebooks/*.ipynb to `dest`. Returns (dest, exercises missing from them)."""
    dest.mkdir(parents=True, exist_ok=True)
    for p in sorted((ROOT / "notebooks").glob("*.ipynb")):
        shutil.copy(p, dest / p.name)

    def missing():
        present = set()
        for p in dest.glob("*.ipynb"):
            present.update(notebook_exercises(nbformat.read(p, as_version=4)))
        return [e for e in EXERCISES if e not in present]

    return dest, missing()


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory):
    d, _ = instructor_copy(tmp_path_factory.mktemp("instructor"))
    return {p.stem: nbformat.read(p, as_version=4) for p in d.glob("*.ipynb")}


def _cell(notebooks, exercise):
    ex = EXERCISES[exercise]
    cell = solution_cell(notebooks[ex.notebook], exercise) if ex.notebook in notebooks else None
    if cell is None:
        pytest.fail(f"{exercise}: its cells are not in notebooks/{ex.notebook}.ipynb")
    return cell


def _define(source: str, name: str):
    ns: dict = {}
    exec(compile(source, f"<{name}>", "exec"), ns)
    return ns[name]


def _run(exercise, fn) -> tuple[CheckResult, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        res = check(exercise, fn)
    return res, buf.getvalue()


# --------------------------------------------------------------------------------------------- the registry

def test_registry_covers_notebooks_01_to_05():
    for nb in ("01_marginal_returns", "02_quantization", "03_pruning", "04_parameter_sharing", "05_distillation"):
        assert (ROOT / "notebooks" / f"{nb}.ipynb").is_file()
        assert 2 <= len(exercises_for(nb)) <= 4, nb
    assert all(e.id.startswith(e.notebook[:2] + "-") for e in EXERCISES.values())
    names = [e.function for e in EXERCISES.values()]
    assert len(set(names)) == len(names) and all(n.endswith("_student") for n in names)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="allowed: 01-power-law-fit"):
        check("02-quantise", lambda *a: None)
    with pytest.raises(TypeError, match="callable"):
        check("02-ste", "fake_quantize_student")


# --------------------------------------------------------------------------------------------- instructor solutions

@pytest.mark.parametrize("exercise", list(EXERCISES))
def test_instructor_solution_passes(notebooks, exercise):
    """The code between the markers of the instructor cell — not slimlab's function — passes, fast."""
    ex = EXERCISES[exercise]
    cell = _cell(notebooks, exercise)
    regions = solution_regions(cell.source)
    assert len(regions) == 1 and regions[0].strip()
    for hidden in ex.hides:            # a real solution, not a call of the reference implementation
        assert not re.search(rf"\b{re.escape(hidden)}\(", regions[0]), (exercise, hidden)
    fn = _define(cell.source, ex.function)
    res, out = _run(exercise, fn)
    assert res.passed and res.cases_passed == res.cases_total >= 5, out
    assert "✔" in out and exercise in out
    t = time.perf_counter()
    res, _ = _run(exercise, fn)
    assert res and time.perf_counter() - t < 0.5


@pytest.mark.parametrize("exercise", list(EXERCISES))
def test_student_stub_is_reported_as_not_done(notebooks, exercise):
    ex = EXERCISES[exercise]
    source = clear_solutions(_cell(notebooks, exercise).source)
    assert CODE_STUB in source
    res, out = _run(exercise, _define(source, ex.function))
    assert not res and res.status == "not implemented"
    assert "not implemented yet" in out and "✔" not in out


# --------------------------------------------------------------------------------------------- wrong versions
# (exercise, label, code, a word of the case that must catch it, a word of the hint printed)

WRONG = [
    ("01-power-law-fit", "straight line in log-log, no floor", """
        import numpy as np
        def fit_power_law_student(n, err):
            slope, icpt = np.polyfit(np.log(n), np.log(err), 1)
            return float(np.exp(icpt)), float(-slope), 0.0
        """, "error floor", "floor c"),
    ("01-power-law-fit", "returns A for N/n0 instead of a", """
        import numpy as np
        from scipy.optimize import curve_fit
        def fit_power_law_student(n, err):
            n, err = np.asarray(n, float), np.asarray(err, float)
            n0 = float(np.exp(np.mean(np.log(n))))
            f = lambda x, A, al, c: A * (x / n0) ** (-al) + c
            (A, al, c), _ = curve_fit(f, n, err, p0=[1, 0.5, 0], bounds=([0, 0, 0], [np.inf, 5, err.min()]))
            return A, al, c
        """, "error floor", "n0^alpha"),
    ("01-gain-per-doubling", "divides by the size ratio", """
        import numpy as np
        def gain_per_doubling_student(n, acc):
            return [(np.sqrt(n[i] * n[i + 1]), (acc[i + 1] - acc[i]) / (n[i + 1] / n[i])) for i in range(len(n) - 1)]
        """, "double exactly", "log2"),
    ("01-gain-per-doubling", "does not sort the sizes", """
        import numpy as np
        def gain_per_doubling_student(n, acc):
            return [(np.sqrt(n[i] * n[i + 1]), (acc[i + 1] - acc[i]) / np.log2(n[i + 1] / n[i])) for i in range(len(n) - 1)]
        """, "random order", "sort"),
    ("01-gain-per-doubling", "arithmetic mean for the size", """
        import numpy as np
        def gain_per_doubling_student(n, acc):
            return [((n[i] + n[i + 1]) / 2, (acc[i + 1] - acc[i]) / np.log2(n[i + 1] / n[i])) for i in range(len(n) - 1)]
        """, "double exactly", "geometric mean"),
    ("02-quantize-affine", "truncates instead of rounding", """
        import torch
        def quantize_affine_student(x, scale, zero_point, bits, symmetric=True):
            qmin, qmax = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)
            return torch.clamp((x / scale).to(torch.int32) + zero_point, qmin, qmax)
        """, "inside the range", "NEAREST"),
    ("02-quantize-affine", "forgets the zero-point", """
        import torch
        def quantize_affine_student(x, scale, zero_point, bits, symmetric=True):
            qmin, qmax = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)
            return torch.clamp(torch.round(x / scale), qmin, qmax).to(torch.int32)
        """, "zero-point", "zero-point"),
    ("02-quantize-affine", "code range off by one (-2^(b-1))", """
        import torch
        def quantize_affine_student(x, scale, zero_point, bits, symmetric=True):
            qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)
            return torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax).to(torch.int32)
        """, "clamped", "−(2^(b−1) − 1)"),
    ("02-quantize-affine", "no clamp", """
        import torch
        def quantize_affine_student(x, scale, zero_point, bits, symmetric=True):
            return (torch.round(x / scale) + zero_point).to(torch.int32)
        """, "clamped", "clamp"),
    ("02-ste", "no straight-through estimator (zero gradient)", """
        import torch
        from slimlab.quantize import qrange
        def fake_quantize_student(x, scale, zero_point, bits, symmetric=True):
            qmin, qmax = qrange(bits, symmetric)
            return (torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax) - zero_point) * scale
        """, "inside the range", "straight-through"),
    ("02-ste", "straight-through without clipping the gradient", """
        import torch
        from slimlab.quantize import qrange
        def fake_quantize_student(x, scale, zero_point, bits, symmetric=True):
            qmin, qmax = qrange(bits, symmetric)
            dq = (torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax) - zero_point) * scale
            return x + (dq - x).detach()
        """, "beyond the range", "gradient there is 0"),
    ("02-ste", "forgets the zero-point on the way back", """
        import torch
        from slimlab.quantize import qrange
        def fake_quantize_student(x, scale, zero_point, bits, symmetric=True):
            qmin, qmax = qrange(bits, symmetric)
            dq = torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax) * scale
            xc = torch.clamp(x, (qmin - zero_point) * scale, (qmax - zero_point) * scale)
            return xc + (dq - xc).detach()
        """, "zero-point 3", "subtract the zero-point"),
    ("03-magnitude-mask", "threshold with >= keeps the k-th smallest", """
        import torch
        def magnitude_mask_student(w, sparsity):
            k = round(sparsity * w.numel())
            t = torch.kthvalue(w.abs().flatten(), k).values
            return w.abs() >= t
        """, "distinct magnitudes", "≤, not <"),
    ("03-magnitude-mask", "ranks w instead of |w|", """
        import torch
        def magnitude_mask_student(w, sparsity):
            k = round(sparsity * w.numel())
            keep = torch.ones(w.numel(), dtype=torch.bool)
            keep[torch.argsort(w.flatten(), stable=True)[:k]] = False
            return keep.view(w.shape)
        """, "negative weights", "|w|"),
    ("03-magnitude-mask", "int() instead of round()", """
        import torch
        def magnitude_mask_student(w, sparsity):
            k = int(sparsity * w.numel())
            keep = torch.ones(w.numel(), dtype=torch.bool)
            keep[torch.argsort(w.abs().flatten(), stable=True)[:k]] = False
            return keep.view(w.shape)
        """, "not int", "round(sparsity"),
    ("03-magnitude-mask", "threshold with > breaks on ties", """
        import torch
        def magnitude_mask_student(w, sparsity):
            k = round(sparsity * w.numel())
            if k == 0:
                return torch.ones_like(w, dtype=torch.bool)
            return w.abs() > torch.kthvalue(w.abs().flatten(), k).values
        """, "ties", "stable argsort"),
    ("03-apoz", "< 0 misses exact zeros", """
        def apoz_student(pre):
            return (pre < 0).float().mean(dim=[d for d in range(pre.dim()) if d != 1])
        """, "exact zeros", "≤ 0"),
    ("03-apoz", "hard-coded (0, 2, 3)", """
        def apoz_student(pre):
            return (pre <= 0).float().mean(dim=(0, 2, 3))
        """, "(N, C)", "every dim except 1"),
    ("03-apoz", "a percentage", """
        def apoz_student(pre):
            return 100 * (pre <= 0).float().mean(dim=[d for d in range(pre.dim()) if d != 1])
        """, "exact zeros", "ReLU"),
    ("04-kmeans-assign", "returns the centroid values", """
        def assign_student(values, codebook):
            return codebook[(values.reshape(-1, 1) - codebook).abs().argmin(1)].reshape(values.shape)
        """, "near each centroid", "INDEX"),
    ("04-kmeans-assign", "signed distance", """
        def assign_student(values, codebook):
            return (values.reshape(-1, 1) - codebook).argmin(1).reshape(values.shape)
        """, "near each centroid", "INDEX"),
    ("04-kmeans-assign", "indexes the sorted codebook", """
        import torch
        def assign_student(values, codebook):
            c = torch.sort(codebook).values
            return (values.reshape(-1, 1) - c).abs().argmin(1).reshape(values.shape)
        """, "unsorted codebook", "map the positions back"),
    ("04-kmeans-assign", "ties go to the larger centroid", """
        import torch
        def assign_student(values, codebook):
            c, order = torch.sort(codebook)
            pos = torch.searchsorted((c[1:] + c[:-1]) / 2, values.reshape(-1).contiguous(), right=True)
            return order[pos].reshape(values.shape)
        """, "tie", "smaller centroid"),
    ("04-truncated-svd", "forgets the singular values", """
        import torch
        def svd_factors_student(weight, rank):
            u, s, vh = torch.linalg.svd(weight.reshape(weight.shape[0], -1), full_matrices=False)
            return u[:, :rank], vh[:rank]
        """, "rank 2", "LARGEST"),
    ("04-truncated-svd", "keeps the smallest singular values", """
        import torch
        def svd_factors_student(weight, rank):
            u, s, vh = torch.linalg.svd(weight.reshape(weight.shape[0], -1), full_matrices=False)
            return u[:, -rank:] * s[-rank:], vh[-rank:]
        """, "rank 2", "LARGEST"),
    ("04-truncated-svd", "no reshape of a conv weight", """
        import torch
        def svd_factors_student(weight, rank):
            u, s, vh = torch.linalg.svd(weight, full_matrices=False)
            return u[..., :rank] * s[..., :rank].unsqueeze(-2), vh[..., :rank, :]
        """, "conv weight", "reshape"),
    ("05-soften", "multiplies by T", """
        import torch
        def soften_student(logits, temperature):
            return torch.softmax(logits * temperature, dim=-1)
        """, "T = 4", "divide"),
    ("05-soften", "softmax over the batch", """
        import torch
        def soften_student(logits, temperature):
            return torch.softmax(logits / temperature, dim=0)
        """, "T = 1", "dim=-1"),
    ("05-soften", "naive exp overflows", """
        def soften_student(logits, temperature):
            e = (logits / temperature).exp()
            return e / e.sum(-1, keepdim=True)
        """, "large logits", "overflows"),
    ("05-kd-loss", "forgets T²", """
        import torch.nn.functional as F
        def kd_loss_student(s, t, y, T, alpha):
            soft = F.kl_div(F.log_softmax(s / T, -1), F.softmax(t.detach() / T, -1), reduction="batchmean")
            return (1 - alpha) * F.cross_entropy(s, y) + alpha * soft
        """, "scaled by T²", "T²"),
    ("05-kd-loss", "KL the wrong way round", """
        import torch.nn.functional as F
        def kd_loss_student(s, t, y, T, alpha):
            soft = F.kl_div(F.log_softmax(t.detach() / T, -1), F.softmax(s / T, -1), reduction="batchmean")
            return (1 - alpha) * F.cross_entropy(s, y) + alpha * T * T * soft
        """, "T = 1", "LOG-probabilities"),
    ("05-kd-loss", "reduction='mean'", """
        import torch.nn.functional as F
        def kd_loss_student(s, t, y, T, alpha):
            soft = F.kl_div(F.log_softmax(s / T, -1), F.softmax(t.detach() / T, -1), reduction="mean")
            return (1 - alpha) * F.cross_entropy(s, y) + alpha * T * T * soft
        """, "T = 1", "batchmean"),
    ("05-kd-loss", "the teacher gets a gradient", """
        import torch.nn.functional as F
        def kd_loss_student(s, t, y, T, alpha):
            soft = F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean")
            return (1 - alpha) * F.cross_entropy(s, y) + alpha * T * T * soft
        """, "no gradient", "detach"),
]


@pytest.mark.parametrize("exercise,label,code,case_word,hint_word", WRONG, ids=[f"{w[0]}:{w[1]}" for w in WRONG])
def test_wrong_version_fails_on_the_right_case(notebooks, exercise, label, code, case_word, hint_word):
    ex = EXERCISES[exercise]
    res, out = _run(exercise, _define(textwrap.dedent(code), ex.function))
    assert not res and res.status == "failed", out
    assert case_word in res.case, (res.case, out)
    assert "expected" in out and "hint:" in out and hint_word in out, out
    # the verdict never shows the solution: no line of the instructor's solution region appears in it
    cell = solution_cell(notebooks[ex.notebook], exercise) if ex.notebook in notebooks else None
    if cell is not None:
        for line in solution_regions(cell.source)[0].split("\n"):
            if len(line.strip()) >= 12:
                assert line.strip() not in out, line


def test_every_exercise_has_two_wrong_versions():
    counts = {e: sum(w[0] == e for w in WRONG) for e in EXERCISES}
    assert min(counts.values()) >= 2, counts


def test_errors_and_input_mutation_are_reported():
    def crashes(x, scale, zero_point, bits, symmetric=True):
        return 1 // 0
    res, out = _run("02-quantize-affine", crashes)
    assert res.status == "failed" and res.cases_passed == 0 and "ZeroDivisionError" in out

    def mutates(x, scale, zero_point, bits, symmetric=True):
        from slimlab.quantize import quantize_affine
        q = quantize_affine(x, scale, zero_point, bits, symmetric)
        x.mul_(2)
        return q
    res, out = _run("02-quantize-affine", mutates)
    assert not res and "in place" in out

    def wrong_type(logits, temperature):
        return torch.softmax(logits / temperature, -1).tolist()
    res, out = _run("05-soften", wrong_type)
    assert not res and "expected a torch.Tensor, got list" in out


def test_result_object():
    res = CheckResult("02-ste", "passed", 3, 3)
    assert res and res.passed and "3/3" in repr(res)
    assert not CheckResult("02-ste", "failed", 3, 1, "case x")
