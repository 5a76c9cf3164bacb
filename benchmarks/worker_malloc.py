"""What glibc's malloc settings cost a training step: the environment a Dask nanny gives its workers
(`MALLOC_TRIM_THRESHOLD_=65536`) against a plain process and against slimlab's worker settings
(`slimlab.cluster.WORKER_MALLOC`), each in a fresh single-thread process, interleaved over rounds.

A ResNet-20 SGD step on a fixed batch of 128 (bf16 autocast where the CPU has BF16, else fp32) is timed
for `--steps` steps after a warm-up; the process's minor page faults over those steps are counted
(`resource.getrusage`). An explicit malloc threshold switches off glibc's adaptive mmap threshold, so a
process with only the nanny's trim threshold maps and faults in every large tensor afresh.

Run by hand (nothing else running, for fair times):
    .venv/bin/python benchmarks/worker_malloc.py [--steps 15] [--rounds 3] [--json results/benchmarks/worker_malloc.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MALLOC_KEYS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


def child(steps: int) -> dict:
    import resource
    import time

    import torch

    from slimlab.models import build
    from slimlab.train import resolve_precision

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build("resnet20")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
    precision = resolve_precision("auto", "cpu")
    dtype = torch.bfloat16 if precision == "bf16" else None

    def step():
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        step()
    dt, r1 = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
    return {"ms_per_step": 1000 * dt / steps, "minor_faults_per_step": (r1.ru_minflt - r0.ru_minflt) / steps,
            "sys_s_per_step": (r1.ru_stime - r0.ru_stime) / steps, "precision": precision}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.steps)))
        return
    from slimlab.cluster import WORKER_MALLOC
    from slimlab.machine import describe, machine_info

    variants = {"plain process (no malloc variables)": {},
                "Dask nanny default (MALLOC_TRIM_THRESHOLD_=65536)": {"MALLOC_TRIM_THRESHOLD_": "65536"},
                "slimlab.cluster.WORKER_MALLOC": {k: str(v) for k, v in WORKER_MALLOC.items()}}
    base = {k: v for k, v in os.environ.items() if k not in MALLOC_KEYS}
    base.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    print(f"{describe()}\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, ResNet-20, batch 128, "
          f"{args.steps} steps, {args.rounds} rounds")
    runs = {name: [] for name in variants}
    for r in range(args.rounds):
        for name, env in variants.items():
            out = subprocess.run([sys.executable, __file__, "--child", "--steps", str(args.steps)],
                                 env={**base, **env}, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            m = runs[name][-1]
            print(f"round {r + 1} {name:52s} {m['ms_per_step']:7.0f} ms/step "
                  f"{m['minor_faults_per_step']:9.0f} faults/step ({m['precision']})")
    summary = {name: {"env": variants[name],
                      "ms_per_step": round(statistics.median(m["ms_per_step"] for m in ms), 1),
                      "minor_faults_per_step": round(statistics.median(m["minor_faults_per_step"] for m in ms)),
                      "sys_s_per_step": round(statistics.median(m["sys_s_per_step"] for m in ms), 4)}
               for name, ms in runs.items()}
    plain = summary["plain process (no malloc variables)"]["ms_per_step"]
    for name, s in summary.items():
        s["time_vs_plain"] = round(s["ms_per_step"] / plain, 3)
        print(f"median {name:52s} {s['ms_per_step']:7.0f} ms/step ({s['time_vs_plain']:.2f}x plain), "
              f"{s['minor_faults_per_step']:,} faults/step")
    if args.json:
        doc = {"utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_info(),
               "command": "benchmarks/worker_malloc.py " + " ".join(sys.argv[1:]), "steps": args.steps,
               "rounds": args.rounds, "precision": runs[next(iter(runs))][0]["precision"], "variants": summary}
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
