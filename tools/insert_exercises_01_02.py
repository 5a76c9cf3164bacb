#!/usr/bin/env python
"""Insert the classroom exercises of notebooks 01 and 02 (issue #9), idempotently.

Each exercise is three cells — the task (markdown), the solution between nbgrader-style markers (code),
the call to its checker — placed next to an anchor cell found by content (the first anchor that matches
wins). An exercise whose tag 'exercise:<id>' is already in the notebook is skipped.

    .venv/bin/python tools/insert_exercises_01_02.py [--dir notebooks]
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from slimlab.student import insert_all  # noqa: E402

EXERCISES = [
    dict(id="01-power-law-fit", notebook="01_marginal_returns",
         anchors=[("before", "code", ("show_source(", "fit_power_law")),
                  ("after", "markdown", ("## 1 · Accuracy against parameters",))],
         task=r"""
### ✏️ Exercise 01-power-law-fit · fit the power law yourself

Write the heart of `S.fit_power_law`: a least-squares fit of $\mathrm{err}(N) = a\,N^{-\alpha} + c$ with
`scipy.optimize.curve_fit`.

* **Signature:** `fit_power_law_student(n, err) -> (a, alpha, c)` — `n` parameter counts and `err` errors
  (any unit), both 1-D; return three floats.
* The cell gives you `n0`, a typical size, and the model written in units of it,
  $A\,(N/n_0)^{-\alpha} + c$, which keeps the numbers well scaled for the optimiser; turn `A` back into `a`
  at the end.
* Bounds: $a \ge 0$, $0 \le \alpha \le 5$, $0 \le c \le \min(\mathrm{err})$ — the floor cannot lie above the
  best error measured. Start the optimiser somewhere sensible (`p0`).
* **What the checker tests:** your fitted curve against slimlab's on noiseless curves (with and without a
  floor, sizes in random order — there $\alpha$ must match too) and on seeded curves with 0.5% noise.
""",
         solution=r'''
import numpy as np
from scipy.optimize import curve_fit


def fit_power_law_student(n, err):
    """Least-squares fit of err(N) = a * N**(-alpha) + c; returns (a, alpha, c)."""
    n, err = np.asarray(n, dtype=float), np.asarray(err, dtype=float)
    n0 = float(np.exp(np.mean(np.log(n))))          # a typical size: fit in units of n0

    def model(x, A, alpha, c):                       # A = the error above the floor at N = n0
        return A * (x / n0) ** (-alpha) + c

    ### BEGIN SOLUTION
    start = [err.max() - err.min(), 0.5, 0.5 * err.min()]
    (A, alpha, c), _ = curve_fit(model, n, err, p0=start, maxfev=20000,
                                 bounds=([0.0, 0.0, 0.0], [np.inf, 5.0, err.min()]))
    return float(A * n0 ** alpha), float(alpha), float(c)
    ### END SOLUTION
'''),
    dict(id="01-gain-per-doubling", notebook="01_marginal_returns",
         anchors=[("before", "code", ("S.gain_per_doubling(",)),
                  ("after", "markdown", ("## 1 · Accuracy against parameters",))],
         task=r"""
### ✏️ Exercise 01-gain-per-doubling · what each doubling buys

Between two neighbouring model sizes $n_i < n_{i+1}$ the accuracy gained **per doubling** is
$(\mathrm{acc}_{i+1} - \mathrm{acc}_i) / \log_2(n_{i+1}/n_i)$, placed at the geometric-mean size
$\sqrt{n_i\,n_{i+1}}$. If returns diminish (C1), these gains shrink as the models grow.

* **Signature:** `gain_per_doubling_student(n, acc) -> [(size, gain), ...]` — one pair per consecutive pair
  of sizes, sizes ascending; `n` may arrive in any order.
* **What the checker tests:** sizes that double, sizes that quadruple (the notebook's width steps), sizes in
  random order, two sizes only, and seeded random curves, against `S.gain_per_doubling`.
""",
         solution=r'''
import numpy as np


def gain_per_doubling_student(n, acc):
    """[(geometric-mean size, accuracy gained per doubling), ...] between consecutive sizes, ascending."""
    ### BEGIN SOLUTION
    order = np.argsort(n)
    n, acc = np.asarray(n, dtype=float)[order], np.asarray(acc, dtype=float)[order]
    return [(float(np.sqrt(n[i] * n[i + 1])), float((acc[i + 1] - acc[i]) / np.log2(n[i + 1] / n[i])))
            for i in range(len(n) - 1)]
    ### END SOLUTION
'''),
    dict(id="02-quantize-affine", notebook="02_quantization",
         anchors=[("before", "code", ("show_source(", "quantize_affine")),
                  ("after", "markdown", ("## Part 1 · How quantization works",))],
         task=r"""
### ✏️ Exercise 02-quantize-affine · the affine quantizer

Write the quantizer above for one scale and one zero-point for the whole tensor: integer codes
`clamp(round(x / scale) + zero_point, qmin, qmax)`, where `qmin … qmax` is the code range of `bits`:
symmetric −(2^(b−1) − 1) … 2^(b−1) − 1, asymmetric 0 … 2^b − 1.

* **Signature:** `quantize_affine_student(x, scale, zero_point, bits, symmetric=True)` — `x` a float tensor,
  `scale` and `zero_point` 0-d tensors; return integer codes (any integer dtype) of `x`'s shape.
* **What the checker tests:** against `Q.quantize_affine` — rounding to the nearest code (also below zero), a
  zero-point, clamping at 4 and 2 bits (symmetric and asymmetric), a 2-D tensor, and seeded random cases.
""",
         solution=r'''
import torch


def quantize_affine_student(x, scale, zero_point, bits, symmetric=True):
    """Integer codes of x on the `bits` grid of (scale, zero_point), one of each for the whole tensor."""
    ### BEGIN SOLUTION
    qmin, qmax = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)
    return torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax).to(torch.int32)
    ### END SOLUTION
'''),
    dict(id="02-ste", notebook="02_quantization",
         anchors=[("before", "code", ("show_source(", "fake_quantize")),
                  ("after", "markdown", ("## Part 3 · Post-training quantization",))],
         task=r"""
### ✏️ Exercise 02-ste · fake quantization with the straight-through estimator

Quantization-aware training (Part 4) trains *through* the quantizer. The forward pass must see the
quantized value `(q − zero_point) · scale`, but `round` has zero gradient almost everywhere, so nothing
would train. The **straight-through estimator** treats the quantizer as the identity in the backward pass —
inside the representable range `[(qmin − zero_point)·scale, (qmax − zero_point)·scale]`. Outside it the
output is clipped and does not move with `x`, so there the gradient is 0.

* **Signature:** `fake_quantize_student(x, scale, zero_point, bits, symmetric=True)` — a float tensor of
  `x`'s shape; `qmin, qmax` are given.
* **What the checker tests:** forward *and* backward (with a random upstream gradient) against
  `Q.fake_quantize`: values on the grid, the gradient inside the range, clipped values with zero gradient, an
  asymmetric grid with a zero-point, and seeded random cases.
""",
         solution=r'''
import torch
from slimlab.quantize import qrange


def fake_quantize_student(x, scale, zero_point, bits, symmetric=True):
    """Forward: x rounded to the grid (as floats). Backward: gradient 1 inside the range, 0 outside."""
    qmin, qmax = qrange(bits, symmetric)
    ### BEGIN SOLUTION
    dq = (torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax) - zero_point) * scale
    inside = torch.clamp(x, (qmin - zero_point) * scale, (qmax - zero_point) * scale)
    return inside + (dq - inside).detach()
    ### END SOLUTION
'''),
]


if __name__ == "__main__":
    sys.exit(insert_all(EXERCISES, description=__doc__.split("\n")[0]))
