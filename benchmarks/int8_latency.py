"""int8 vs fp32 CPU latency of ResNet-20, side by side in one run (run by hand, not a test).

    SLIMLAB_CIFAR10=... python benchmarks/int8_latency.py [--threads 2] [--repeats 30] [--batches 64 1] [--torchao]

Measures, on the same random inputs: ONNX Runtime static int8 (per-channel weights, uint8
activations calibrated on training images), ONNX Runtime fp32, and torch eager fp32 (channels_last),
and prints the ratios and the file sizes. With --torchao (needs `pip install 'slimlab[torchao]'`) it also
times torch's own route: torchao PT2E int8 (x86 inductor quantizer) compiled with inductor, against the
same fp32 model compiled with inductor. Goals (issue 4): int8 >= 1.4x ORT fp32 and >= 2.5x torch
eager fp32 at batch 64; batch 1 reported as measured.
"""
from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import torch

from slimlab import quantize as Q
from slimlab import zoo
from slimlab.measure import latency, time_fn


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--batches", type=int, nargs="+", default=[64, 1])
    ap.add_argument("--calib-images", type=int, default=512)
    ap.add_argument("--torchao", action="store_true", help="also time torchao PT2E int8 vs compiled fp32")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from slimlab.data import load_cifar10, subset
    data = load_cifar10(progress=False)
    calib_x = subset(data.train_x, data.train_y, args.calib_images, seed=1)[0]
    ref = zoo.load("resnet20")
    folded = Q.fold_bn(ref)
    out = Path(tempfile.mkdtemp(prefix="int8bench-"))
    fp = Q.export_onnx(folded, out / "fp32.onnx")
    i8 = Q.quantize_onnx_int8(out / "fp32.onnx", out / "int8.onnx", calib_x)
    s32, s8 = Q.ort_session(out / "fp32.onnx", args.threads), Q.ort_session(out / "int8.onnx", args.threads)
    print(f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}")
    print("int8 instructions:", Q.cpu_int8_features())
    print(f"ONNX files: fp32 {fp:,} B, int8 {i8:,} B ({fp / i8:.2f}x smaller)")
    for b in args.batches:
        r8 = Q.ort_latency(s8, b, repeats=args.repeats, warmup=5)
        r32 = Q.ort_latency(s32, b, repeats=args.repeats, warmup=5)
        eager = latency(ref, b, repeats=args.repeats, warmup=5)
        print(f"batch {b:>3}: ORT int8 {r8.median_ms:8.2f} ms | ORT fp32 {r32.median_ms:8.2f} ms | "
              f"torch eager fp32 {eager.median_ms:8.2f} ms | int8 speed-up {r32.median_ms / r8.median_ms:.2f}x "
              f"vs ORT fp32, {eager.median_ms / r8.median_ms:.2f}x vs eager")
    if args.torchao:
        import time
        t0 = time.perf_counter()
        ao8 = Q.torchao_int8(ref, calib_x)
        with torch.no_grad():
            ao8(calib_x[:2])
        t1 = time.perf_counter()
        c32 = torch.compile(Q.fold_bn(ref).eval())
        with torch.no_grad():
            c32(calib_x[:2])
        t2 = time.perf_counter()
        print(f"torchao: quantize+compile {t1 - t0:.1f} s, fp32 compile {t2 - t1:.1f} s")
        for b in args.batches:
            xb = torch.rand((b, 3, 32, 32), generator=torch.Generator().manual_seed(0))
            with torch.inference_mode():
                a8 = time_fn(lambda: ao8(xb), repeats=args.repeats, warmup=5, batch_size=b)
                a32 = time_fn(lambda: c32(xb), repeats=args.repeats, warmup=5, batch_size=b)
            eager = latency(ref, b, repeats=args.repeats, warmup=5)
            print(f"batch {b:>3}: torchao int8 (inductor) {a8.median_ms:8.2f} ms | inductor fp32 "
                  f"{a32.median_ms:8.2f} ms | torch eager fp32 {eager.median_ms:8.2f} ms | int8 speed-up "
                  f"{a32.median_ms / a8.median_ms:.2f}x vs compiled fp32, {eager.median_ms / a8.median_ms:.2f}x vs eager")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
