"""The part store's executors side by side: the same notebook-01 sweep cells computed serially (one
process, one torch thread, as `make full` runs) and through `SLIMLAB_DASK=local:N` (a Dask LocalCluster
of N single-thread worker processes), each into its own empty store, in one run on one machine.

Reports the wall-clock time of each (the cluster's start-up and every worker's own CIFAR-10 load
included: they are what a user pays), the ratio serial / Dask, and whether the stored part files are
the same bytes apart from the timing fields (`slimlab.parts.TIMING_FIELDS`).

Run by hand (nothing else running, for a fair ratio):
    SLIMLAB_CIFAR10=... .venv/bin/python benchmarks/parts_executor.py [--workers 2] [--steps 150]
        [--json results/benchmarks/parts_executor.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")       # the serial arm is `make full`'s one thread
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

from slimlab import scaling as S  # noqa: E402
from slimlab.cluster import DaskExecutor  # noqa: E402
from slimlab.data import load_cifar10  # noqa: E402
from slimlab.machine import describe, machine_info  # noqa: E402
from slimlab.parts import TIMING_FIELDS, PartStore  # noqa: E402


def _untimed(obj):
    if isinstance(obj, dict):
        return {k: _untimed(v) for k, v in obj.items() if k not in TIMING_FIELDS}
    if isinstance(obj, list):
        return [_untimed(v) for v in obj]
    return obj


def _worker_fields(doc: dict) -> dict:
    """A part's provenance without the fields that name the process that computed it."""
    prov = {k: v for k, v in doc["provenance"].items() if k not in ("pid", "host", "worker")}
    return {**doc, "provenance": prov}


def _diff(x, y, path="") -> list[str]:
    if isinstance(x, dict) and isinstance(y, dict):
        return [d for k in sorted(set(x) | set(y)) for d in _diff(x.get(k), y.get(k), f"{path}.{k}")]
    if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        return [d for i, (u, v) in enumerate(zip(x, y)) for d in _diff(u, v, f"{path}[{i}]")]
    return [] if x == y else [f"{path}: {x!r} != {y!r}"[:200]]


def compare(a: Path, b: Path) -> dict:
    fa, fb = sorted(p.name for p in a.glob("*.json")), sorted(p.name for p in b.glob("*.json"))
    diffs = []
    for n in sorted(set(fa) & set(fb)):
        da = _untimed(_worker_fields(json.loads((a / n).read_text())))
        db = _untimed(_worker_fields(json.loads((b / n).read_text())))
        diffs += [f"{n}{d}" for d in _diff(da, db)]
    return {"files": len(fa), "same_files": fa == fb, "same_records_apart_from_timing": fa == fb and not diffs,
            "differences": diffs[:20]}


def run(cells, data, executor, root: Path) -> float:
    store = PartStore(root / "parts", root / "work", profile="full", data_fingerprint=data.fingerprint)
    t = time.perf_counter()
    S.run_sweep(cells, data, store=store, executor=executor, threads=1, progress=True)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=150, help="SGD steps of each cell")
    ap.add_argument("--cells", type=int, default=8, help="how many of the 8 cells to run (the first ones)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load_cifar10(progress=False)
    cells = S.grid_cells(("resnet8", "resnet20"), (0.25, 0.5, 1.0), (1250,), args.steps, seeds=(0,),
                         eval_images=2000)
    cells += S.grid_cells(("resnet8",), (0.25, 0.5), (1250,), args.steps, seeds=(1,), eval_images=2000)
    cells = cells[:args.cells]
    print(f"{describe()}\n{len(cells)} notebook-01 sweep cells, {args.steps} steps each, 1,250 images, "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        serial = run(cells, data, None, tmp / "serial")
        print(f"serial (1 process, 1 thread): {serial:.1f} s")
        t = time.perf_counter()
        ex = DaskExecutor(f"local:{args.workers}")
        try:
            start = time.perf_counter() - t
            dask = run(cells, data, ex, tmp / "dask") + start
        finally:
            ex.shutdown()
        print(f"Dask local:{args.workers} ({args.workers} single-thread workers): {dask:.1f} s "
              f"(cluster start {start:.1f} s)")
        same = compare(tmp / "serial" / "parts", tmp / "dask" / "parts")
    ratio = serial / dask
    print(f"serial / Dask = {ratio:.2f}x; stored parts equal apart from timing: "
          f"{same['same_records_apart_from_timing']} ({same['files']} files)")
    for d in same["differences"]:
        print("  differs:", d)
    if args.json:
        doc = {"utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_info(),
               "command": "benchmarks/parts_executor.py " + " ".join(sys.argv[1:]),
               "cells": [c.key for c in cells], "steps": args.steps, "workers": args.workers,
               "serial_s": round(serial, 1), "dask_s": round(dask, 1), "cluster_start_s": round(start, 1),
               "serial_over_dask": round(ratio, 3), **same}
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
