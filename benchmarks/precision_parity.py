"""Accuracy parity of the precision paths: the same short schedule trained in eager fp32 and on the
`precision="auto"` path (bf16 autocast where the CPU computes bf16 natively), three seeds each.

The question is whether bf16 autocast (fp32 master weights) changes what a model learns: the means of
the two paths should differ by less than the seed noise. Validation split only (no test numbers).

Run by hand:  SLIMLAB_CIFAR10=... .venv/bin/python benchmarks/precision_parity.py [--model resnet8]
              [--images 10000] [--epochs 6] [--seeds 0 1 2] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import datetime, timezone

import torch

from slimlab.data import load_cifar10, subset
from slimlab.machine import describe, machine_info
from slimlab.models import build
from slimlab.train import TrainConfig, evaluate, fit, resolve_precision, seed_everything


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resnet8")
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--epochs", type=float, default=6)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    auto = resolve_precision("auto", "cpu")
    print(f"{describe()}\n{torch.get_num_threads()} threads; auto resolves to {auto}")
    d = load_cifar10(progress=False)
    x, y = subset(d.train_x, d.train_y, args.images)
    rows = {"fp32": [], "auto": []}
    for seed in args.seeds:
        for prec in rows:
            seed_everything(seed)
            m = build(args.model)
            cfg = TrainConfig(epochs=args.epochs, schedule="cosine", warmup=0.05, label_smoothing=0.0,
                              precision=prec, seed=seed)
            t = time.perf_counter()
            fit(m, x, y, cfg, progress=False, device="cpu")
            acc = evaluate(m, d.val_x, d.val_y)["acc"]
            rows[prec].append({"seed": seed, "val_acc": round(acc, 2), "seconds": round(time.perf_counter() - t, 1)})
            print(f"seed {seed} {prec:4s}: val {acc:.2f}%  ({rows[prec][-1]['seconds']} s)", flush=True)
    summary = {}
    for prec, r in rows.items():
        v = [e["val_acc"] for e in r]
        summary[prec] = {"mean": round(statistics.mean(v), 2), "std": round(statistics.stdev(v), 2) if len(v) > 1 else 0.0}
    diff = summary["auto"]["mean"] - summary["fp32"]["mean"]
    noise = max(summary["auto"]["std"], summary["fp32"]["std"])
    print(f"fp32 {summary['fp32']['mean']:.2f} ± {summary['fp32']['std']:.2f} | auto ({auto}) "
          f"{summary['auto']['mean']:.2f} ± {summary['auto']['std']:.2f} | difference {diff:+.2f} pt, "
          f"seed noise (larger std) {noise:.2f} pt -> {'within' if abs(diff) <= noise else 'OUTSIDE'} seed noise")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_info(),
                       "threads": torch.get_num_threads(), "args": vars(args), "auto_path": auto, "runs": rows,
                       "summary": summary, "difference_pt": round(diff, 2), "seed_noise_pt": noise}, f, indent=1)


if __name__ == "__main__":
    main()
