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

MULTI_STEP = {"01_marginal_returns": "01-forecast", "02_quantization": "02-qat-step", "03_pruning": "03-trim-block",
              "04_parameter_sharing": "04-lloyd-step", "05_distillation": "05-kd-step",
              "06_putting_it_together": "06-deploy-choice"}


def test_registry_covers_notebooks_01_to_06():
    for nb in ("01_marginal_returns", "02_quantization", "03_pruning", "04_parameter_sharing", "05_distillation"):
        assert (ROOT / "notebooks" / f"{nb}.ipynb").is_file()
        assert 3 <= len(exercises_for(nb)) <= 4, nb
    assert [e.id for e in exercises_for("06_putting_it_together")] == ["06-deploy-choice"]
    for nb, ex in MULTI_STEP.items():           # one multi-step exercise per notebook, checked within seconds
        assert EXERCISES[ex].notebook == nb and EXERCISES[ex].seconds <= 5.0
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
    # the check's own CPU time, over all of this process's threads: what other processes on a loaded
    # machine take does not count (its wall time did: 16 s for 05-kd-step beside a full-profile run)
    t = time.process_time()
    res, _ = _run(exercise, fn)
    assert res and time.process_time() - t < ex.seconds * max(1, torch.get_num_threads())


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

# a correct block trim; the wrong versions of 03-trim-block below each change one thing in it
_TRIM_OK = """
import copy, torch
from slimlab.models import resize_block
def trim_block_student(block, x, fraction):
    b = copy.deepcopy(block).eval()
    with torch.no_grad():
        apoz = (b.bn1(b.conv1(x)) <= 0).float().mean((0, 2, 3))
    c = apoz.numel(); k = c - min(c - 1, round(fraction * c))
    keep = torch.sort(torch.argsort(apoz, stable=True)[:k]).values
    old1, oldbn, old2 = b.conv1, b.bn1, b.conv2
    resize_block(b, k)
    with torch.no_grad():
        b.conv1.weight.copy_(old1.weight[keep]); b.conv2.weight.copy_(old2.weight[:, keep])
        for n in ("weight", "bias", "running_mean", "running_var"):
            getattr(b.bn1, n).copy_(getattr(oldbn, n)[keep])
    h, w = x.shape[2] // old1.stride[0], x.shape[3] // old1.stride[1]
    macs = 9 * h * w * k * (b.conv1.in_channels + b.conv2.out_channels)
    return keep, b.eval(), sum(p.numel() for p in b.parameters()), macs
"""


def _trim_mutant(old: str, new: str) -> str:
    assert _TRIM_OK.count(old) == 1, old
    return _TRIM_OK.replace(old, new)


# a correct QAT step; the wrong versions of 02-qat-step below each change one thing in it
_QAT_OK = """
import torch
import torch.nn.functional as F
def qat_step_student(layer, x, y, lr, bits):
    qmax = 2 ** (bits - 1) - 1
    w = layer.weight
    with torch.no_grad():
        s = w.abs().amax(1, keepdim=True) / qmax
        s = torch.where(s > 0, s, torch.ones_like(s))
        w_q = torch.clamp(torch.round(w / s), -qmax, qmax) * s
    loss = F.cross_entropy(F.linear(x, w + (w_q - w).detach(), layer.bias), y)
    layer.zero_grad(); loss.backward()
    with torch.no_grad():
        for p in layer.parameters():
            p -= lr * p.grad
    return loss.item()
"""


def _qat_mutant(old: str, new: str) -> str:
    assert _QAT_OK.count(old) == 1, old
    return _QAT_OK.replace(old, new)


# a correct Lloyd step; the wrong versions of 04-lloyd-step below each change one thing in it
_LLOYD_OK = """
import torch
def lloyd_step_student(values, codebook):
    x = values.reshape(-1).double(); c = torch.sort(codebook.double()).values
    idx = (x[:, None] - c[None, :]).abs().argmin(1)
    new = torch.stack([x[idx == j].mean() if (idx == j).any() else c[j] for j in range(len(c))])
    sse = torch.stack([((x[idx == j] - new[j]) ** 2).sum() for j in range(len(c))])
    donors = [d for d in torch.argsort(-sse, stable=True).tolist()
              if (idx == d).sum() >= 2 and x[idx == d].min() < x[idx == d].max()]
    for e, d in zip([e for e in range(len(c)) if not (idx == e).any()], donors):
        m = x[idx == d]
        new[e] = m.min() if new[d] - m.min() > m.max() - new[d] else m.max()
    return torch.sort(new).values.float()
"""


def _lloyd_mutant(old: str, new: str) -> str:
    assert _LLOYD_OK.count(old) == 1, old
    return _LLOYD_OK.replace(old, new)


# a correct distillation step; the wrong versions of 05-kd-step below each change one thing in it
_KD_STEP_OK = """
import torch
import torch.nn.functional as F
def kd_step_student(student, teacher, x, y, optimizer, temperature, alpha):
    T = temperature
    teacher.eval(); student.train()
    with torch.no_grad():
        t = teacher(x)
    s = student(x)
    soft = F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean")
    loss = (1 - alpha) * F.cross_entropy(s, y) + alpha * T * T * soft
    optimizer.zero_grad(); loss.backward(); optimizer.step()
    return loss.item()
"""


def _kd_mutant(old: str, new: str) -> str:
    assert _KD_STEP_OK.count(old) == 1, old
    return _KD_STEP_OK.replace(old, new)


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
    ("01-forecast", "straight line in log-log (no floor)", """
        import math
        import numpy as np
        def forecast_student(n, err, n_new, target):
            slope, icpt = np.polyfit(np.log(n), np.log(err), 1)
            pred = np.exp(icpt) * np.asarray(n_new) ** slope
            return pred, float(np.exp((np.log(target) - icpt) / slope))
        """, "noiseless curve", "fit a · N^(−alpha) + c"),
    ("01-forecast", "inverts without the floor", """
        import math
        import numpy as np
        from scipy.optimize import curve_fit
        def forecast_student(n, err, n_new, target):
            n0 = float(np.exp(np.mean(np.log(n))))
            f = lambda x, A, al, c: A * (x / n0) ** (-al) + c
            (A, al, c), _ = curve_fit(f, n, err, p0=[err.max() - err.min(), 0.5, 0.5 * err.min()], maxfev=20000,
                                      bounds=([0, 0, 0], [np.inf, 5, err.min()]))
            a = A * n0 ** al
            return a * np.asarray(n_new) ** (-al) + c, float((a / target) ** (1 / al))
        """, "noiseless curve", "(target − c)"),
    ("01-forecast", "no inf below the floor", """
        import math
        import numpy as np
        from scipy.optimize import curve_fit
        def forecast_student(n, err, n_new, target):
            n0 = float(np.exp(np.mean(np.log(n))))
            f = lambda x, A, al, c: A * (x / n0) ** (-al) + c
            (A, al, c), _ = curve_fit(f, n, err, p0=[err.max() - err.min(), 0.5, 0.5 * err.min()], maxfev=20000,
                                      bounds=([0, 0, 0], [np.inf, 5, err.min()]))
            a = A * n0 ** al
            return a * np.asarray(n_new) ** (-al) + c, float(abs(a / (target - c)) ** (1 / al))
        """, "floor c", "math.inf"),
    ("02-qat-step", "loss with the float weights",
     _qat_mutant("F.linear(x, w + (w_q - w).detach(), layer.bias)", "layer(x)"), "4-bit", "fake-quantized weights"),
    ("02-qat-step", "no straight-through estimator",
     _qat_mutant("        w_q = torch.clamp(torch.round(w / s), -qmax, qmax) * s\n    loss = F.cross_entropy(F.linear(x, w + (w_q - w).detach(),",
                 "    w_q = torch.clamp(torch.round(w / s), -qmax, qmax) * s\n    loss = F.cross_entropy(F.linear(x, w_q,"),
     "4-bit", "straight through"),
    ("02-qat-step", "one scale for the whole matrix", _qat_mutant("w.abs().amax(1, keepdim=True)", "w.abs().max()"),
     "4-bit", "per output row"),
    ("02-qat-step", "updates the quantized copy",
     _qat_mutant("        for p in layer.parameters():\n            p -= lr * p.grad",
                 "        layer.weight.copy_(w_q - lr * layer.weight.grad)\n        layer.bias -= lr * layer.bias.grad"),
     "4-bit", "not on their quantized copy"),
    ("02-qat-step", "the gradient flows through torch.clamp (0 on the bound)",
     _qat_mutant("        w_q = torch.clamp(torch.round(w / s), -qmax, qmax) * s\n    loss = F.cross_entropy(F.linear(x, w + (w_q - w).detach(),",
                 "    v = w / s\n    w_q = torch.clamp(v + (torch.round(v) - v).detach(), -qmax, qmax) * s\n"
                 "    loss = F.cross_entropy(F.linear(x, w_q,"),
     "4-bit", "torch.clamp's own"),
    ("03-trim-block", "removes the LOWEST APoZ",
     _trim_mutant("argsort(apoz, stable=True)", "argsort(apoz, descending=True)"), "APoZ ranks", "HIGHEST"),
    ("03-trim-block", "int() instead of round(), no channel kept at 0.95",
     _trim_mutant("min(c - 1, round(fraction * c))", "int(fraction * c)"), "round(fraction", "round(fraction · C)"),
    ("03-trim-block", "forgets bn1's running statistics",
     _trim_mutant('for n in ("weight", "bias", "running_mean", "running_var"):', 'for n in ("weight", "bias"):'),
     "APoZ ranks", "running_mean"),
    ("03-trim-block", "MACs of the whole batch, ignoring the stride",
     _trim_mutant("h, w = x.shape[2] // old1.stride[0], x.shape[3] // old1.stride[1]\n    macs = 9",
                  "h, w = x.shape[2], x.shape[3]\n    macs = x.shape[0] * 9"), "APoZ ranks", "ONE image"),
    ("03-trim-block", "counts the buffers as parameters",
     _trim_mutant("sum(p.numel() for p in b.parameters())", "sum(v.numel() for v in b.state_dict().values())"),
     "APoZ ranks", "buffers"),
    ("03-trim-block", "changes the block it was given", _trim_mutant("copy.deepcopy(block).eval()", "block.eval()"),
     "APoZ ranks", "deepcopy"),
    ("04-lloyd-step", "drops empty clusters",
     _lloyd_mutant("return torch.sort(new).values", "return torch.sort(new[[j for j in range(len(c)) if (idx == j).any()]]).values"),
     "empty cluster", "not dropped"),
    ("04-lloyd-step", "leaves an empty centroid in place",
     _lloyd_mutant("new[e] = m.min() if new[d] - m.min() > m.max() - new[d] else m.max()", "pass"),
     "empty cluster", "largest within-cluster sum of squares"),
    ("04-lloyd-step", "ties go to the upper centroid",
     _lloyd_mutant("idx = (x[:, None] - c[None, :]).abs().argmin(1)",
                   "idx = len(c) - 1 - (x[:, None] - c[None, :]).abs().flip(1).argmin(1)"), "halfway", "LOWER"),
    ("04-lloyd-step", "one donor for every empty cluster", _lloyd_mutant("], donors):", "], donors[:1] * len(c)):"),
     "two empty clusters", "second largest"),
    ("05-kd-step", "forgets zero_grad", _kd_mutant("optimizer.zero_grad(); ", ""), "two steps", "optimizer.zero_grad"),
    ("05-kd-step", "teacher left in train mode", _kd_mutant("teacher.eval(); student.train()", "student.train()"),
     "train mode", "teacher.eval()"),
    ("05-kd-step", "student left in eval mode", _kd_mutant("teacher.eval(); student.train()", "teacher.eval()"),
     "eval mode", "student.train()"),
    ("05-kd-step", "teacher gets a gradient", _kd_mutant("with torch.no_grad():\n        t = teacher(x)", "t = teacher(x)"),
     "T = 4", "no gradient"),
    ("05-kd-step", "forgets T²", _kd_mutant("alpha * T * T * soft", "alpha * soft"), "T = 4", "T²"),
    ("06-deploy-choice", "chooses on test accuracy", """
        def deploy_choice_student(candidates, flash_bytes, min_val_acc):
            ordered = sorted(candidates, key=lambda p: (p["bytes"], -p["test_acc"]))
            front, best = [], float("-inf")
            for p in ordered:
                if p["test_acc"] > best:
                    front.append(p); best = p["test_acc"]
            ok = [p for p in front if p["bytes"] <= flash_bytes and p["test_acc"] >= min_val_acc]
            return [p["name"] for p in front], (ok[0]["name"] if ok else None)
        """, "validation accuracy decides", "val_acc"),
    ("06-deploy-choice", "falls back to the most accurate", """
        def deploy_choice_student(candidates, flash_bytes, min_val_acc):
            ordered = sorted(candidates, key=lambda p: (p["bytes"], -p["val_acc"]))
            front, best = [], float("-inf")
            for p in ordered:
                if p["val_acc"] > best:
                    front.append(p); best = p["val_acc"]
            ok = [p for p in front if p["bytes"] <= flash_bytes and p["val_acc"] >= min_val_acc]
            return [p["name"] for p in front], (ok[0] if ok else front[-1])["name"]
        """, "nothing fits", "return None"),
    ("06-deploy-choice", "strict limits", """
        def deploy_choice_student(candidates, flash_bytes, min_val_acc):
            ordered = sorted(candidates, key=lambda p: (p["bytes"], -p["val_acc"]))
            front, best = [], float("-inf")
            for p in ordered:
                if p["val_acc"] > best:
                    front.append(p); best = p["val_acc"]
            ok = [p for p in front if p["bytes"] < flash_bytes and p["val_acc"] > min_val_acc]
            return [p["name"] for p in front], (ok[0]["name"] if ok else None)
        """, "on the limits", "inclusive"),
    ("06-deploy-choice", "keeps dominated points of equal size", """
        def deploy_choice_student(candidates, flash_bytes, min_val_acc):
            front = [p for p in candidates if not any(q["bytes"] < p["bytes"] and q["val_acc"] >= p["val_acc"]
                                                      for q in candidates)]
            front.sort(key=lambda p: p["bytes"])
            ok = [p for p in front if p["bytes"] <= flash_bytes and p["val_acc"] >= min_val_acc]
            return [p["name"] for p in front], (ok[0]["name"] if ok else None)
        """, "same size", "dominates"),
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


# --------------------------------------------------------------------------------------------- shortcuts
# calling slimlab's own version of the exercise fails, however it is imported, and the verdict says why

@pytest.mark.parametrize("exercise", list(EXERCISES))
def test_calling_the_reference_is_a_shortcut(exercise):
    """Every reference calls one of its exercise's forbidden functions: handed in as the answer, it fails."""
    ex = EXERCISES[exercise]
    assert ex.forbid
    res, out = _run(exercise, ex.reference)
    assert not res and res.status == "failed" and res.cases_passed == 0, out
    assert "calls slimlab." in out and "Write the steps yourself" in out and "hint:" not in out, out


SHORTCUTS = [
    ("04-truncated-svd", "the module's function", """
        import slimlab.share as S
        def svd_factors_student(weight, rank):
            return S.svd_factors(weight, rank)
        """, "share.svd_factors"),
    ("04-truncated-svd", "imported under another name, before the check", """
        from slimlab.share import svd_factors as my_svd
        def svd_factors_student(weight, rank):
            return my_svd(weight, rank)
        """, "share.svd_factors"),
    ("04-truncated-svd", "through a function that calls it", """
        import torch
        import slimlab.share as S
        def svd_factors_student(weight, rank):
            w = weight.reshape(weight.shape[0], -1)
            lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
            lin.weight.data = w.clone()
            first, second = S.factorize_linear(lin, rank)
            return second.weight.detach(), first.weight.detach()
        """, "share.svd_factors"),
    ("05-kd-loss", "slimlab's loss", """
        from slimlab import distill as D
        def kd_loss_student(s, t, y, T, alpha):
            return D.kd_loss(s, t, y, T, alpha)
        """, "distill.kd_loss"),
    ("05-kd-loss", "slimlab's soft part, own hard part", """
        import torch.nn.functional as F
        from slimlab.distill import soft_loss
        def kd_loss_student(s, t, y, T, alpha):
            return (1 - alpha) * F.cross_entropy(s, y) + alpha * soft_loss(s, t, T)
        """, "distill.soft_loss"),
    ("02-qat-step", "a method of slimlab's class", """
        import torch.nn.functional as F
        from slimlab.quantize import WeightFakeQuant
        def qat_step_student(layer, x, y, lr, bits):
            loss = F.cross_entropy(F.linear(x, WeightFakeQuant(bits)(layer.weight), layer.bias), y)
            layer.zero_grad(); loss.backward()
            for p in layer.parameters():
                p.data -= lr * p.grad
            return loss.item()
        """, "quantize.WeightFakeQuant"),
    ("03-trim-block", "slimlab's surgery", """
        import copy, torch
        from slimlab.prune import slim_channels
        from slimlab.measure import count_params
        def trim_block_student(block, x, fraction):
            b = copy.deepcopy(block).eval()
            with torch.no_grad():
                apoz = (b.bn1(b.conv1(x)) <= 0).float().mean((0, 2, 3))
            c = apoz.numel(); k = c - min(c - 1, round(fraction * c))
            keep = torch.sort(torch.argsort(apoz, stable=True)[:k]).values
            slim = slim_channels(b, {"": keep})
            return keep, slim, count_params(slim).total, 0
        """, "prune.slim_channels"),
    ("06-deploy-choice", "slimlab's frontier", """
        from slimlab.combine import pareto_front
        def deploy_choice_student(candidates, flash_bytes, min_val_acc):
            front = pareto_front(candidates, cost="bytes", gain="val_acc")
            ok = [p for p in front if p["bytes"] <= flash_bytes and p["val_acc"] >= min_val_acc]
            return [p["name"] for p in front], (ok[0]["name"] if ok else None)
        """, "combine.pareto_front"),
]


@pytest.mark.parametrize("exercise,label,code,name", SHORTCUTS, ids=[f"{s[0]}:{s[1]}" for s in SHORTCUTS])
def test_shortcut_fails_and_says_why(exercise, label, code, name):
    res, out = _run(exercise, _define(textwrap.dedent(code), EXERCISES[exercise].function))
    assert not res and res.status == "failed" and res.cases_passed == 0, out
    assert f"calls slimlab.{name}" in out, out


def test_allowed_slimlab_helpers_are_not_shortcuts():
    """The watch is narrow: helpers that are not the exercise's answer may be used (qrange in 02-ste)."""
    code = """
        import torch
        from slimlab.quantize import qrange
        def fake_quantize_student(x, scale, zero_point, bits, symmetric=True):
            qmin, qmax = qrange(bits, symmetric)
            q = torch.round(x / scale) + zero_point
            dq = (torch.clamp(q, qmin, qmax) - zero_point) * scale
            inside = (q >= qmin) & (q <= qmax)
            return torch.where(inside, x + (dq - x).detach(), dq.detach())
        """
    res, out = _run("02-ste", _define(textwrap.dedent(code), "fake_quantize_student"))
    assert res, out


def test_the_watch_is_removed_after_the_check():
    import sys
    before = sys.getprofile()
    _run("04-truncated-svd", EXERCISES["04-truncated-svd"].reference)
    assert sys.getprofile() is before


# --------------------------------------------------------------------------------------------- equivalent forms pass

EQUIVALENT = [
    ("05-kd-loss", "soft-target cross-entropy, written out", """
        import torch.nn.functional as F
        def kd_loss_student(s, t, y, T, alpha):
            p_t = F.softmax(t.detach() / T, dim=-1)
            soft = -(p_t * F.log_softmax(s / T, dim=-1)).sum(-1).mean()
            return (1 - alpha) * F.cross_entropy(s, y) + alpha * T * T * soft
        """),
    ("05-kd-loss", "soft-target cross-entropy with probability targets", """
        import torch.nn.functional as F
        def kd_loss_student(s, t, y, T, alpha):
            soft = F.cross_entropy(s / T, F.softmax(t.detach() / T, dim=-1))
            return (1 - alpha) * F.cross_entropy(s, y) + alpha * T * T * soft
        """),
    ("05-kd-step", "soft-target cross-entropy, its value returned", """
        import torch
        import torch.nn.functional as F
        def kd_step_student(student, teacher, x, y, optimizer, temperature, alpha):
            T = temperature
            teacher.eval(); student.train()
            with torch.no_grad():
                p_t = F.softmax(teacher(x) / T, dim=-1)
            s = student(x)
            soft = -(p_t * F.log_softmax(s / T, dim=-1)).sum(-1).mean()
            loss = (1 - alpha) * F.cross_entropy(s, y) + alpha * T * T * soft
            optimizer.zero_grad(); loss.backward(); optimizer.step()
            return loss
        """),
    ("04-truncated-svd", "all of S in the first factor", """
        import torch
        def svd_factors_student(weight, rank):
            u, s, vh = torch.linalg.svd(weight.reshape(weight.shape[0], -1), full_matrices=False)
            return u[:, :rank] * s[:rank], vh[:rank]
        """),
    ("04-lloyd-step", "numpy, codebook in the given order", """
        import numpy as np
        def lloyd_step_student(values, codebook):
            x = np.sort(values.reshape(-1).double().numpy()); c = codebook.double().numpy()
            order = np.argsort(c, kind="stable"); cs = c[order]
            idx = order[np.searchsorted((cs[1:] + cs[:-1]) / 2, x, side="left")]
            counts = np.bincount(idx, minlength=len(c))
            new = np.where(counts > 0, np.bincount(idx, weights=x, minlength=len(c)) / np.maximum(counts, 1), c)
            sse = np.bincount(idx, weights=(x - new[idx]) ** 2, minlength=len(c))
            donors = [d for d in np.argsort(-sse, kind="stable") if counts[d] >= 2 and np.ptp(x[idx == d]) > 0]
            for e, d in zip(np.flatnonzero(counts == 0), donors):
                m = x[idx == d]
                new[e] = m.min() if new[d] - m.min() > m.max() - new[d] else m.max()
            return new
        """),
    ("06-deploy-choice", "dicts instead of names, dominance written out", """
        def deploy_choice_student(candidates, flash_bytes, min_val_acc):
            def dominated(p):
                return any(q["bytes"] <= p["bytes"] and q["val_acc"] >= p["val_acc"]
                           and (q["bytes"] < p["bytes"] or q["val_acc"] > p["val_acc"]) for q in candidates)
            front = []
            for p in sorted(candidates, key=lambda p: p["bytes"]):
                if not dominated(p) and not any(f["bytes"] == p["bytes"] and f["val_acc"] == p["val_acc"] for f in front):
                    front.append(p)
            ok = [p for p in front if p["bytes"] <= flash_bytes and p["val_acc"] >= min_val_acc]
            return front, (ok[0] if ok else None)
        """),
    ("02-qat-step", "STE through a custom autograd function, loss as a tensor", """
        import torch
        import torch.nn.functional as F
        class RoundClampSTE(torch.autograd.Function):
            @staticmethod
            def forward(ctx, v, qmax):
                q = torch.round(v)
                ctx.save_for_backward((q >= -qmax) & (q <= qmax))
                return torch.clamp(q, -qmax, qmax)
            @staticmethod
            def backward(ctx, g):
                inside, = ctx.saved_tensors
                return g * inside, None
        def qat_step_student(layer, x, y, lr, bits):
            qmax = 2 ** (bits - 1) - 1
            s = layer.weight.detach().abs().amax(1, keepdim=True) / qmax
            s[s == 0] = 1.0
            w_q = RoundClampSTE.apply(layer.weight / s, qmax) * s
            loss = F.cross_entropy(x @ w_q.t() + layer.bias, y)
            for p in layer.parameters():
                p.grad = None
            loss.backward()
            for p in layer.parameters():
                p.data.add_(p.grad, alpha=-lr)
            return loss.detach()
        """),
    ("03-trim-block", "keep as an unsorted list, MACs from torch's counter", """
        import copy, torch
        from slimlab.models import resize_block
        from slimlab.measure import count_macs
        def trim_block_student(block, x, fraction):
            b = copy.deepcopy(block).eval()
            with torch.no_grad():
                apoz = (b.bn1(b.conv1(x)) <= 0).float().mean((0, 2, 3))
            c = apoz.numel(); k = c - min(c - 1, round(fraction * c))
            keep = torch.argsort(apoz, stable=True)[:k].tolist()[::-1]
            old1, oldbn, old2 = b.conv1, b.bn1, b.conv2
            resize_block(b, k)
            with torch.no_grad():
                b.conv1.weight.copy_(old1.weight[keep]); b.conv2.weight.copy_(old2.weight[:, keep])
                for n in ("weight", "bias", "running_mean", "running_var"):
                    getattr(b.bn1, n).copy_(getattr(oldbn, n)[keep])
            return keep, b, sum(p.numel() for p in b.parameters()), count_macs(b, (1, *x.shape[1:]))
        """),
]


@pytest.mark.parametrize("exercise,label,code", EQUIVALENT, ids=[f"{e[0]}:{e[1]}" for e in EQUIVALENT])
def test_equivalent_correct_forms_pass(exercise, label, code):
    res, out = _run(exercise, _define(textwrap.dedent(code), EXERCISES[exercise].function))
    assert res, out


def test_kd_hints_name_the_two_forms():
    """A wrong soft part gets a hint that names the accepted forms and how they differ."""
    code = """
        import torch.nn.functional as F
        def kd_loss_student(s, t, y, T, alpha):
            p_t = F.softmax(t.detach() / T, dim=-1)
            soft = -(p_t * F.log_softmax(s / T, dim=-1)).sum()          # summed over the batch, not averaged
            return (1 - alpha) * F.cross_entropy(s, y) + alpha * T * T * soft
        """
    res, out = _run("05-kd-loss", _define(textwrap.dedent(code), "kd_loss_student"))
    assert not res and "T = 1" in res.case and "soft-target cross-entropy" in out and "teacher's entropy" in out
    code = """
        import torch
        import torch.nn.functional as F
        def kd_step_student(student, teacher, x, y, optimizer, temperature, alpha):
            teacher.eval(); student.train()
            with torch.no_grad():
                t = teacher(x)
            loss = F.cross_entropy(student(x), y)          # the distillation term is missing
            optimizer.zero_grad(); loss.backward(); optimizer.step()
            return loss.item()
        """
    res, out = _run("05-kd-step", _define(textwrap.dedent(code), "kd_step_student"))
    assert not res and "T = 4" in res.case
    assert "(KL form) or" in out and "soft-target cross-entropy form" in out and "teacher's entropy" in out, out


def test_trim_block_macs_agree_with_measure():
    """The checker counts conv MACs from output shapes (fast); measure.count_macs (torch's counter) agrees."""
    from slimlab.exercises import _conv_macs
    from slimlab.measure import count_macs
    for case in EXERCISES["03-trim-block"].cases():
        block, x, _ = case.args
        assert _conv_macs(block, (1, *x.shape[1:])) == count_macs(block, (1, *x.shape[1:]))


def test_lloyd_step_is_kmeans_1d_s_iteration():
    """share.lloyd_step (the 04-lloyd-step reference) repeated from kmeans_1d's start is kmeans_1d."""
    import numpy as np
    from slimlab.share import kmeans_1d, lloyd_step
    g = torch.Generator().manual_seed(7)
    v = torch.randn(500, generator=g) * 0.1
    c = torch.from_numpy(np.linspace(float(v.min()), float(v.max()), 8)).float()
    for _ in range(1000):
        new = lloyd_step(v, c)
        if torch.equal(new, c):
            break
        c = new
    assert torch.allclose(c, kmeans_1d(v, 3)[0], atol=1e-6)


@pytest.mark.parametrize("exercise, code", [("02-qat-step", _QAT_OK), ("03-trim-block", _TRIM_OK),
                                             ("04-lloyd-step", _LLOYD_OK), ("05-kd-step", _KD_STEP_OK)])
def test_the_correct_versions_the_wrong_ones_are_made_from_pass(exercise, code):
    res, _ = _run(exercise, _define(textwrap.dedent(code), code.split("def ")[1].split("(")[0]))
    assert res, f"{exercise}: the correct version should pass: {res}"
