"""Does the short fine-tune's recipe cost accuracy by itself? A diagnostic for the v2 goals (not a verdict).

The v2 run's fine-tunes after compression (03's pruning, 04's low-rank and codebooks, 06's pipelines) use one
short recipe: cosine from lr 0.01 with 10% warm-up, label smoothing 0.1, crop + flip, no cutout
(`share.finetune_config`). The v2 reference ResNet-20 was trained without label smoothing and with cutout 16
(`zoo.RECIPES['resnet20']`). In 04's v2 run an 8-bit codebook model, as accurate as the reference before its
fine-tune, lost more than a point *in* the fine-tune. This script separates the recipe from the compression:
it fine-tunes the same starting models for the same steps with

  * "course":  `share.finetune_config(steps)` (the recipe of the v2 run), and
  * "teacher": the same schedule (lr 0.01, cosine, 10% warm-up, same steps and seed) with the reference's own
               label smoothing (0) and augmentation (crop + flip + cutout 16), and
  * "low-lr":  the course's recipe with a peak learning rate ten times lower (0.001), and
  * "teacher-low-lr": the reference's own label smoothing and augmentation at that lower learning rate,

starting from the unchanged reference, from its k-means share (density start, `--bits`) and from a one-shot
layer-wise magnitude-pruned copy (`--sparsity`, masks kept through the fine-tune), as `--starts` asks, and reports validation
accuracy (all 5,000 validation images; no test numbers: this informs the next run's recipe, chosen on
validation).

Run by hand (about 2 min per fine-tune and thread on an AVX-512 BF16 core):
    SLIMLAB_CIFAR10=... OMP_NUM_THREADS=1 .venv/bin/python benchmarks/finetune_recipe.py \
        [--steps 600] [--bits 4] [--seeds 0] [--json results/full/diagnostics/finetune_recipe.json]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone

import torch

from slimlab import combine as C
from slimlab import prune as PR
from slimlab import share as S
from slimlab import zoo
from slimlab.data import load_cifar10
from slimlab.files import atomic_json
from slimlab.machine import describe, machine_info
from slimlab.train import evaluate, fit, resolve_precision


RECIPES = ("course", "teacher", "low-lr", "teacher-low-lr")


def recipes(steps: int, seed: int) -> dict:
    """The four fine-tune recipes (`train.TrainConfig`), same steps, seed, batch and schedule."""
    course = S.finetune_config(steps, 128, seed=seed)
    # the reference's own recipe at lr 0.01 with cosine (05's C12 fine-tune), given the course's warm-up
    teacher = replace(C.c12_finetune_config(steps, seed, course.batch_size), warmup=course.warmup)
    return dict(zip(RECIPES, (course, teacher, replace(course, lr=course.lr / 10), replace(teacher, lr=course.lr / 10))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--bits", type=int, default=4, help="bit width of the k-means start")
    ap.add_argument("--sparsity", type=float, default=0.8, help="sparsity of the one-shot magnitude start")
    ap.add_argument("--starts", nargs="+", default=["reference", "kmeans"], choices=["reference", "kmeans", "magnitude"],
                    help="the models fine-tuned: the unchanged reference, its k-means share, its magnitude-pruned copy")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    print(f"{describe()}\n{torch.get_num_threads()} thread(s); precision auto -> {resolve_precision('auto', 'cpu')}")
    d = load_cifar10(progress=False)
    ref = zoo.load("resnet20")
    val = lambda m: evaluate(m, d.val_x, d.val_y)["acc"]
    if not 0 < args.sparsity < 1:
        raise ValueError(f"--sparsity must be in (0, 1), got {args.sparsity}")
    every = {"reference": ("reference", lambda: zoo.load("resnet20")),
             "kmeans": (f"kmeans-{args.bits}bit-density",
                        lambda: S.kmeans_share(ref, S.KMeansConfig(bits=args.bits, init="density", grad="mean"))),
             "magnitude": (f"magnitude-{round(100 * args.sparsity)}pc",          # one-shot, layer-wise, masks kept
                           lambda: PR.prune_magnitude(ref, args.sparsity))}
    starts = dict(every[k] for k in args.starts)
    rows = []
    for start, make in starts.items():
        before = val(make())
        for seed in args.seeds:
            for name, cfg in recipes(args.steps, seed).items():
                if name not in args.recipes:
                    continue
                model = make()
                t0 = time.perf_counter()
                fit(model, d.train_x, d.train_y, cfg, desc=f"{start}, {name} recipe, seed {seed}")
                after = val(model.cpu().eval())
                rows.append({"start": start, "recipe": name, "seed": seed, "val_before": before, "val_after": after,
                             "seconds": time.perf_counter() - t0, "config": asdict(cfg)})
                print(f"{start:22s} {name:7s} seed {seed}: val {before:.2f}% -> {after:.2f}% "
                      f"({after - before:+.2f} pt, {rows[-1]['seconds']:.0f} s)", flush=True)
    commands = ["OMP_NUM_THREADS=%s python benchmarks/finetune_recipe.py --steps %d --bits %d --sparsity %g --starts %s "
                "--seeds %s --recipes %s" % (os.environ.get("OMP_NUM_THREADS", "?"), args.steps, args.bits, args.sparsity,
                                             " ".join(args.starts), " ".join(map(str, args.seeds)), " ".join(args.recipes))]
    summary = {}
    for start in starts:
        for name in RECIPES:
            v = [r["val_after"] for r in rows if r["start"] == start and r["recipe"] == name]
            if v:
                summary[f"{start}/{name}"] = statistics.fmean(v)
    print("means:", {k: round(v, 2) for k, v in summary.items()})
    if args.json:
        doc = {"commands": commands,
               "utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_info(),
               "precision": resolve_precision("auto", "cpu"), "val_images": len(d.val_y),
               "reference_val_acc": val(ref), "rows": rows, "means": summary}
        print("wrote", atomic_json(doc, args.json))


if __name__ == "__main__":
    main()
