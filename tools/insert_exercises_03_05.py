#!/usr/bin/env python
"""Insert the classroom exercises of notebooks 03, 04 and 05 (issue #9), idempotently.

Each exercise is three cells — the task (markdown), the solution between nbgrader-style markers (code),
the call to its checker — placed next to an anchor cell found by content (the first anchor that matches
wins: the cell that shows slimlab's own source for the method, else the section heading). An exercise
whose tag 'exercise:<id>' is already in the notebook is skipped. Re-execute the notebooks afterwards.

    .venv/bin/python tools/insert_exercises_03_05.py [--dir notebooks]
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from slimlab.student import insert_all  # noqa: E402

EXERCISES = [
    dict(id="03-magnitude-mask", notebook="03_pruning",
         anchors=[("before", "code", ("show_source(", "magnitude_masks")),
                  ("after", "markdown", ("## 2 · C7",))],
         task=r"""
### ✏️ Exercise 03-magnitude-mask · the magnitude mask

Magnitude pruning at sparsity $s$ removes the `round(s · n)` weights of smallest $|w|$ from a tensor of $n$
weights.

* **Signature:** `magnitude_mask_student(w, sparsity)` — a bool tensor of `w`'s shape, `True` = kept,
  `False` = pruned.
* **What the checker tests:** against slimlab's masks — importance is $|w|$ (negative weights), exactly
  `round(s · n)` weights pruned (no more, no fewer, also when several weights tie at the threshold), sparsity
  0 and 1, a 4-D convolution weight, and seeded random cases. Any choice among tied weights is accepted, as
  long as the count is exact and no pruned weight is larger than a kept one.
""",
         solution=r'''
import torch


def magnitude_mask_student(w, sparsity):
    """Bool mask of w's shape: False for the round(sparsity * w.numel()) smallest |w|, True elsewhere."""
    ### BEGIN SOLUTION
    k = round(sparsity * w.numel())
    keep = torch.ones(w.numel(), dtype=torch.bool)
    keep[torch.argsort(w.abs().flatten(), stable=True)[:k]] = False
    return keep.view(w.shape)
    ### END SOLUTION
'''),
    dict(id="03-apoz", notebook="03_pruning",
         anchors=[("before", "code", ("show_source(", "apoz")),
                  ("after", "markdown", ("## 3 · C8",))],
         task=r"""
### ✏️ Exercise 03-apoz · Average Percentage of Zeros

Given the *input* of a ReLU (here: a batch-norm output), the APoZ of a channel is the share of
(image, position) pairs where the ReLU outputs zero — where its input is $\le 0$.

* **Signature:** `apoz_student(pre)` — for `pre` of shape (N, C, H, W) or (N, C), a float tensor of shape
  (C,) holding fractions in [0, 1].
* **What the checker tests:** against slimlab's hook counter (`prune.zero_counter`): exact zeros, the average
  per channel, a channel that is never active, a fully-connected (N, C) input, a single image, and seeded
  random cases.
""",
         solution=r'''
import torch


def apoz_student(pre):
    """Per channel (dim 1): the fraction of entries of `pre` where relu(pre) == 0."""
    ### BEGIN SOLUTION
    other_dims = [d for d in range(pre.dim()) if d != 1]
    return (pre <= 0).float().mean(dim=other_dims)
    ### END SOLUTION
'''),
    dict(id="04-truncated-svd", notebook="04_parameter_sharing",
         anchors=[("before", "code", ("show_source(", "factorize_conv")),
                  ("after", "markdown", ("## Part 1 · Low-rank",))],
         task=r"""
### ✏️ Exercise 04-truncated-svd · a truncated SVD of a layer

View a layer's weight (out, in, k, k) as a matrix **W** of shape (out, in·k·k), take its SVD
W = U S Vᵀ and keep the r largest singular values: two thin factors **A** (out, r) and **B** (r, in·k·k)
whose product A B is the best rank-r approximation of W (Eckart–Young). How you share S between the
factors is up to you (slimlab gives each factor √S).

* **Signature:** `svd_factors_student(weight, rank) -> (A, B)`.
* **What the checker tests:** the shapes of A and B, and A @ B against slimlab's `S.svd_factors` — small
  matrices at rank 1, 2 and full rank, a conv weight, a wide matrix, and seeded random conv weights.
""",
         solution=r'''
import torch


def svd_factors_student(weight, rank):
    """(A, B): A (out, rank), B (rank, in*k*k), A @ B the best rank-`rank` approximation of weight."""
    ### BEGIN SOLUTION
    u, s, vh = torch.linalg.svd(weight.reshape(weight.shape[0], -1), full_matrices=False)
    root = s[:rank].sqrt()
    return u[:, :rank] * root, root[:, None] * vh[:rank]
    ### END SOLUTION
'''),
    dict(id="04-kmeans-assign", notebook="04_parameter_sharing",
         anchors=[("before", "code", ("show_source(", "kmeans_1d")),
                  ("after", "markdown", ("## Part 2 · k-means",))],
         task=r"""
### ✏️ Exercise 04-kmeans-assign · the k-means assignment step

Each iteration of Lloyd's algorithm first **assigns** every weight to its nearest centroid, then moves
each centroid to the mean of the weights assigned to it. Write the assignment step.

* **Signature:** `assign_student(values, codebook)` — an integer tensor of `values`' shape: for each value
  the index (into `codebook` as given, sorted or not) of the centroid with the smallest
  |value − centroid|; on an exact tie, the smaller centroid.
* **What the checker tests:** against slimlab's assignment — values near each centroid, distances on both
  sides, an unsorted codebook, a tie, a 4-D weight, and seeded random codebooks.
""",
         solution=r'''
import torch


def assign_student(values, codebook):
    """Index of the nearest codebook entry for every value (same shape as values)."""
    ### BEGIN SOLUTION
    distance = (values.reshape(-1, 1) - codebook.reshape(1, -1)).abs()
    return distance.argmin(dim=1).reshape(values.shape)
    ### END SOLUTION
'''),
    dict(id="05-soften", notebook="05_distillation",
         anchors=[("before", "code", ("show_source(", "soften")),
                  ("after", "markdown", ("## 1 · Dark knowledge",))],
         task=r"""
### ✏️ Exercise 05-soften · softened probabilities

* **Signature:** `soften_student(logits, temperature)` — for (batch, classes) logits, the class
  probabilities $\mathrm{softmax}(z / T)$, one row per image.
* **What the checker tests:** against `D.soften` — T = 1 (the ordinary softmax), T = 4 and T = 0.5, one image,
  very large logits (they must not overflow), and seeded random cases.
""",
         solution=r'''
import torch


def soften_student(logits, temperature):
    """softmax(logits / T) over the classes of (batch, classes) logits."""
    ### BEGIN SOLUTION
    return torch.softmax(logits / temperature, dim=-1)
    ### END SOLUTION
'''),
    dict(id="05-kd-loss", notebook="05_distillation",
         anchors=[("before", "code", ("show_source(", "kd_loss")),
                  ("after", "markdown", ("## 2 · The loss",))],
         task=r"""
### ✏️ Exercise 05-kd-loss · the distillation loss

Write Hinton's loss from the formula above:
$(1-\alpha)\,\mathrm{CE}(z_s, y) + \alpha\,T^2\,\mathrm{KL}\big(\mathrm{softmax}(z_t/T)\,\|\,\mathrm{softmax}(z_s/T)\big)$,
averaged over the batch. The teacher is fixed: no gradient may flow into its logits.

* **Signature:** `kd_loss_student(student_logits, teacher_logits, targets, temperature, alpha)` — a scalar
  tensor.
* **What the checker tests:** against `D.kd_loss` — α = 0 (cross-entropy only), α = 1 at T = 1 (the KL
  term alone, its direction and batch mean) and at T = 4 (the T² factor), the usual T = 4, α = 0.9, that
  the teacher gets no gradient, and seeded random cases.
""",
         solution=r'''
import torch
import torch.nn.functional as F


def kd_loss_student(student_logits, teacher_logits, targets, temperature, alpha):
    """(1 - alpha) * CE(student, targets) + alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T))."""
    ### BEGIN SOLUTION
    T = temperature
    hard = F.cross_entropy(student_logits, targets)
    soft = F.kl_div(F.log_softmax(student_logits / T, dim=-1), F.softmax(teacher_logits.detach() / T, dim=-1),
                    reduction="batchmean")
    return (1 - alpha) * hard + alpha * T * T * soft
    ### END SOLUTION
'''),
]


if __name__ == "__main__":
    sys.exit(insert_all(EXERCISES, description=__doc__.split("\n")[0]))
