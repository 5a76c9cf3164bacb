"""Masked vs physically slimmed ResNet-20: CPU latency side by side (run by hand, not by pytest).

    .venv/bin/python benchmarks/prune_latency.py [--batch 32] [--repeats 30] [--rounds 5]

For each channel fraction, the slimmed model (inner channels removed by L1 norm; weights need not be
trained for timing) and the dense model are timed in alternating rounds with `slimlab.measure.latency`,
so a background load hits both alike. Reports the MAC reduction, the median speed-up, and their ratio
(the course's goal: speed-up >= 0.8 of the MAC reduction). A 90%-masked model is timed as well: masks
save no time on dense kernels.
"""
from __future__ import annotations

import argparse
import statistics

import torch

from slimlab import measure, prune
from slimlab.models import build


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="resnet20")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5, help="alternating timing rounds per model")
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    dense = build(args.arch).eval()
    models = {"dense": dense, "masked 90%": prune.prune_magnitude(dense, 0.9, "global").eval()}
    for f in args.fractions:
        models[f"slimmed {f:.0%}"] = prune.prune_channels(dense, f, "l1")
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.rounds):
        for k, m in models.items():
            times[k].append(measure.latency(m, args.batch, repeats=args.repeats, warmup=3).median_ms)
    med = {k: statistics.median(v) for k, v in times.items()}
    macs = {k: measure.count_macs(m) for k, m in models.items()}
    print(f"{args.arch}, batch {args.batch}, {torch.get_num_threads()} threads, "
          f"{args.rounds} rounds x {args.repeats} repeats (median of round medians)")
    print(f"{'model':14s} {'ms':>9s} {'MACs (M)':>9s} {'MAC red.':>9s} {'speed-up':>9s} {'ratio':>6s}")
    for k in models:
        red, sp = macs["dense"] / macs[k], med["dense"] / med[k]
        print(f"{k:14s} {med[k]:9.2f} {macs[k] / 1e6:9.1f} {red:9.2f} {sp:9.2f} {sp / red:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
