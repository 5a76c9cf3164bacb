"""Masked vs physically slimmed ResNet-20: CPU latency side by side (run by hand, not by pytest).

    .venv/bin/python benchmarks/prune_latency.py [--batch 32] [--repeats 30] [--rounds 5] [--threads 1]

For each channel fraction, the slimmed model (inner channels removed by L1 norm; weights need not be
trained for timing), Torch-Pruning's model of the same cut, and the dense model are timed interleaved
with `slimlab.measure.compare_latency` (fixed threads), so a background load hits them alike. Reports the MAC reduction, the median speed-up, and their ratio
(the course's goal: speed-up >= 0.8 of the MAC reduction). A 90%-masked model is timed as well: masks
save no time on dense kernels.
"""
from __future__ import annotations

import argparse

import torch

from slimlab import measure, prune
from slimlab.models import build


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="resnet20")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (measure.compare_latency)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads while timing")
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    dense = build(args.arch).eval()
    models = {"dense": dense, "masked 90%": prune.prune_magnitude(dense, 0.9, "global").eval()}
    for f in args.fractions:
        models[f"slimmed {f:.0%}"] = prune.prune_channels(dense, f, "l1")
        models[f"Torch-Pruning {f:.0%}"] = prune.torch_pruning_channels(dense, f)   # same cut, the tool's ranking
    lat = measure.compare_latency(models, args.batch, rounds=args.rounds, repeats=args.repeats, threads=args.threads)
    macs = {k: measure.count_macs(m) for k, m in models.items()}
    print(f"{args.arch}, batch {args.batch}, {args.threads} thread(s), {args.rounds} interleaved rounds x "
          f"{args.repeats} repeats (median of round medians, IQR over rounds)")
    print(f"{'model':18s} {'ms':>9s} {'IQR':>13s} {'MACs (M)':>9s} {'MAC red.':>9s} {'speed-up':>9s} {'ratio':>6s}")
    for k in models:
        red, sp = macs["dense"] / macs[k], lat["dense"].median_ms / lat[k].median_ms
        print(f"{k:18s} {lat[k].median_ms:9.2f} {lat[k].q1_ms:6.2f}–{lat[k].q3_ms:6.2f} {macs[k] / 1e6:9.1f} "
              f"{red:9.2f} {sp:9.2f} {sp / red:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
