"""Training throughput, side by side in one run (images/s), for ResNet-8 and ResNet-20.

(a) compute limit: the same training step repeated on one pre-made batch;
(b) slimlab's pipeline: `slimlab.train.fit` on in-memory uint8 tensors with batch augmentation;
(c) a torchvision CIFAR10-style DataLoader with PIL transforms, 0 and 2 workers, same step.

Goals: (b) >= 0.95 x (a) and (b) > (c) for both models.
Run by hand:  SLIMLAB_CIFAR10=... .venv/bin/python benchmarks/train_throughput.py [--steps 40]
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from slimlab.data import load_cifar10, subset
from slimlab.models import build
from slimlab.train import TrainConfig, fit, seed_everything


def step_fn(model, opt):
    def step(xb, yb):
        xb = xb.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(xb), yb, label_smoothing=0.1)
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
    m, _ = fresh(name)
    fit(m, x, y, TrainConfig(steps=3, batch_size=bs), progress=False, device="cpu")  # warm-up
    m, _ = fresh(name)
    t = time.perf_counter()
    fit(m, x, y, TrainConfig(steps=steps, batch_size=bs), progress=False, device="cpu")
    return steps * bs / (time.perf_counter() - t)


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    d = load_cifar10(progress=False)
    x, y = subset(d.train_x, d.train_y, args.batch_size * (args.steps + 8))
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"batch {args.batch_size}, {args.steps} timed steps")
    for name in ("resnet8", "resnet20"):
        a = fixed_batch(name, x, y, args.batch_size, args.steps)
        b = slimlab_fit(name, x, y, args.batch_size, args.steps)
        c0 = dataloader(name, x, y, args.batch_size, args.steps, 0)
        c2 = dataloader(name, x, y, args.batch_size, args.steps, 2)
        print(f"{name:9s} (a) fixed batch {a:6.0f} img/s | (b) slimlab fit {b:6.0f} | "
              f"(c) DataLoader+PIL 0 workers {c0:6.0f}, 2 workers {c2:6.0f}")
        print(f"{'':9s} (b)/(a) = {b / a:.3f} (goal >= 0.95)   (b)/(c best) = {b / max(c0, c2):.3f} (goal > 1)")


if __name__ == "__main__":
    main()
