"""Training throughput (images/s), side by side in one run, for ResNet-8 and ResNet-20 at batch 128.

Precision paths (the default part): `slimlab.train.fit` in eager fp32 against the `precision="auto"`
path (bf16 autocast where the CPU computes bf16 natively — AVX512-BF16 or AMX, asked of torch — else
fp32), rounds interleaved, median of the rounds; with --compile also a torch.compile'd training step
(fp32 and auto) on a fixed batch, with its compile time reported (it counts). Goal: auto >= 1.6x eager
fp32 on a CPU with native bf16, and no loss (>= 0.97x) on an AVX2-only CPU.

With --pipeline, the data-pipeline comparison: (a) the same step on one pre-made batch, (b) `fit` on
in-memory uint8 tensors with batch augmentation, (c) a torchvision DataLoader with PIL transforms, 0
and 2 workers. Goals: (b) >= 0.95 x (a) and (b) > (c).

Run by hand:  SLIMLAB_CIFAR10=... .venv/bin/python benchmarks/train_throughput.py [--steps 30] [--rounds 3]
              [--threads 2] [--compile] [--pipeline] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timezone

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from slimlab.data import load_cifar10, subset
from slimlab.machine import describe, machine_info
from slimlab.models import build
from slimlab.train import TrainConfig, fit, resolve_precision, seed_everything


def step_fn(model, opt):
    def step(xb, yb):
        xb = xb.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def fresh(name):
    seed_everything(0)
    m = build(name).to(memory_format=torch.channels_last).train()
    return m, torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)


def fixed_batch(name, x, y, bs, steps):
    m, opt = fresh(name)
    step = step_fn(m, opt)
    xb, yb = x[:bs].float() / 255, y[:bs]
    for _ in range(3):
        step(xb, yb)
    t = time.perf_counter()
    for _ in range(steps):
        step(xb, yb)
    return steps * bs / (time.perf_counter() - t)


def slimlab_fit(name, x, y, bs, steps):
    """`fit` in fp32, steady state: the pipeline comparison holds the precision fixed (fp32, like (a)
    and (c)), so that the ratios measure the data path and not bf16."""
    return fit_rate(name, x, y, bs, steps, "fp32")


class PILDataset(torch.utils.data.Dataset):
    """What a torchvision CIFAR10 dataset does per item: array -> PIL -> transforms."""

    def __init__(self, x, y):
        import torchvision.transforms as T
        self.x = x.permute(0, 2, 3, 1).numpy()
        self.y = y
        self.tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                             T.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))])

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.tf(Image.fromarray(self.x[i])), int(self.y[i])


def dataloader(name, x, y, bs, steps, workers):
    m, opt = fresh(name)
    m.normalize = torch.nn.Identity()  # the transform normalises, as torchvision recipes do
    step = step_fn(m, opt)
    dl = torch.utils.data.DataLoader(PILDataset(x, y), batch_size=bs, shuffle=True, num_workers=workers,
                                     drop_last=True, persistent_workers=workers > 0)
    it = iter(dl)
    for _ in range(3):
        step(*next(it))
    t = time.perf_counter()
    for _ in range(steps):
        step(*next(it))
    return steps * bs / (time.perf_counter() - t)


WARM_STEPS = 5  # steps of every `fit` call left out of its rate (first-call allocations, kernel selection)


def fit_rate(name, x, y, bs, steps, precision):
    """Steady-state images/s of `fit` (augmentation, optimiser step, everything but the first
    WARM_STEPS steps of the call), as in a long training run: timed between `on_step` calls."""
    seed_everything(0)
    m = build(name)
    stamps = []
    fit(m, x, y, TrainConfig(steps=steps + WARM_STEPS, batch_size=bs, precision=precision), progress=False,
        device="cpu", on_step=lambda *_: stamps.append(time.perf_counter()))
    return steps * bs / (stamps[-1] - stamps[WARM_STEPS - 1])


def compiled_rate(name, x, y, bs, steps, precision):
    """(images/s, compile seconds) of a torch.compile'd training step on one pre-made batch."""
    m, opt = fresh(name)
    use_bf16 = resolve_precision(precision, "cpu") == "bf16"

    def step(xb, yb):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            loss = F.cross_entropy(m(xb).float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    m_c = torch.compile(m)
    m_orig, m = m, m_c
    xb = (x[:bs].float() / 255).contiguous(memory_format=torch.channels_last)
    yb = y[:bs]
    t = time.perf_counter()
    for _ in range(3):
        step(xb, yb)
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(steps):
        step(xb, yb)
    del m_orig
    return steps * bs / (time.perf_counter() - t), compile_s


def precision_paths(x, y, args) -> dict:
    auto = resolve_precision("auto", "cpu")
    out = {}
    for name in ("resnet8", "resnet20"):
        fit_rate(name, x, y, args.batch_size, 3, "fp32")          # warm-up both paths
        fit_rate(name, x, y, args.batch_size, 3, "auto")
        rates = {"fp32": [], "auto": []}
        for _ in range(args.rounds):                                 # interleaved rounds
            for p in rates:
                rates[p].append(fit_rate(name, x, y, args.batch_size, args.steps, p))
        med = {p: statistics.median(v) for p, v in rates.items()}
        row = {"eager_fp32_img_s": round(med["fp32"]), "auto_img_s": round(med["auto"]), "auto_path": auto,
               "auto_over_fp32": round(med["auto"] / med["fp32"], 3),
               "rounds": {p: [round(r) for r in v] for p, v in rates.items()}}
        if args.compile:
            for p in ("fp32", "auto"):
                r, c = compiled_rate(name, x, y, args.batch_size, args.steps, p)
                row[f"compiled_{p}_img_s"], row[f"compiled_{p}_compile_s"] = round(r), round(c, 1)
        out[name] = row
        goal = 1.6 if auto == "bf16" else 0.97
        print(f"{name:9s} eager fp32 {med['fp32']:6.0f} img/s | auto ({auto}) {med['auto']:6.0f} img/s | "
              f"ratio {med['auto'] / med['fp32']:.2f} (goal >= {goal})"
              + (f" | compiled fp32 {row['compiled_fp32_img_s']} img/s (compile {row['compiled_fp32_compile_s']} s),"
                 f" compiled auto {row['compiled_auto_img_s']} img/s (compile {row['compiled_auto_compile_s']} s)"
                 if args.compile else ""))
    return out


def pipeline(x, y, args) -> dict:
    out = {}
    for name in ("resnet8", "resnet20"):
        a = fixed_batch(name, x, y, args.batch_size, args.steps)
        b = slimlab_fit(name, x, y, args.batch_size, args.steps)
        c0 = dataloader(name, x, y, args.batch_size, args.steps, 0)
        c2 = dataloader(name, x, y, args.batch_size, args.steps, 2)
        print(f"{name:9s} (a) fixed batch {a:6.0f} img/s | (b) slimlab fit {b:6.0f} | "
              f"(c) DataLoader+PIL 0 workers {c0:6.0f}, 2 workers {c2:6.0f}")
        print(f"{'':9s} (b)/(a) = {b / a:.3f} (goal >= 0.95)   (b)/(c best) = {b / max(c0, c2):.3f} (goal > 1)")
        out[name] = {"fixed_batch_img_s": round(a), "fit_img_s": round(b), "dataloader_0_workers_img_s": round(c0),
                     "dataloader_2_workers_img_s": round(c2), "fit_over_fixed": round(b / a, 3),
                     "fit_over_best_dataloader": round(b / max(c0, c2), 3), "precision": "fp32"}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--compile", action="store_true", help="also time a torch.compile'd step (fp32 and auto)")
    ap.add_argument("--pipeline", action="store_true", help="the data-pipeline comparison instead")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    d = load_cifar10(progress=False)
    x, y = subset(d.train_x, d.train_y, args.batch_size * (args.steps + WARM_STEPS + 8))
    print(f"{describe()}\n{torch.get_num_threads()} threads, batch {args.batch_size}, {args.steps} timed steps, "
          f"{args.rounds} interleaved rounds, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    res = pipeline(x, y, args) if args.pipeline else precision_paths(x, y, args)
    if args.json:
        doc = {"utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_info(),
               "command": "benchmarks/train_throughput.py " + " ".join(sys.argv[1:]),
               "part": "pipeline" if args.pipeline else "precision",
               "threads": torch.get_num_threads(), "batch_size": args.batch_size, "steps": args.steps,
               "rounds": args.rounds, "results": res}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
