"""int8 vs fp32 CPU latency of ResNet-20, side by side in one run (run by hand, not a test).

    SLIMLAB_CIFAR10=... python benchmarks/int8_latency.py [--threads 2] [--repeats 30] [--batches 64 1] [--torchao]

Measures, on the same random inputs: ONNX Runtime static int8 (per-channel weights, uint8
activations calibrated on training images), ONNX Runtime fp32, and torch eager fp32 (channels_last),
and prints the ratios and the file sizes. With --torchao (torchao is a core dependency) it also times
torch's own route: torchao PT2E int8 (x86 inductor quantizer) compiled with inductor, against the same
fp32 model compiled with inductor. Candidates are interleaved over rounds (`measure.compare_latency`:
median of per-round medians, IQR as spread) at a fixed thread count; the CPU's flags are printed.
Goals: int8 >= 1.4x ORT fp32 and >= 2.5x torch eager fp32 at batch 64; batch 1 reported as measured.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from slimlab import deploy as D
from slimlab import zoo
from slimlab.machine import describe
from slimlab.measure import compare_latency
from slimlab.quantize import fold_bn


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10, help="timed calls per round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batches", type=int, nargs="+", default=[64, 1])
    ap.add_argument("--calib-images", type=int, default=512)
    ap.add_argument("--torchao", action="store_true", help="also time torchao PT2E int8 vs compiled fp32")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from slimlab.data import load_cifar10, subset
    data = load_cifar10(progress=False)
    calib_x = subset(data.train_x, data.train_y, args.calib_images, seed=1)[0]
    ref = zoo.load("resnet20")
    folded = fold_bn(ref)
    out = Path(tempfile.mkdtemp(prefix="int8bench-"))
    fp = D.export_onnx(folded, out / "fp32.onnx")
    i8 = D.quantize_onnx_int8(out / "fp32.onnx", out / "int8.onnx", calib_x)
    s32, s8 = D.ort_session(out / "fp32.onnx", args.threads), D.ort_session(out / "int8.onnx", args.threads)
    print(f"{describe()}; {args.threads} threads")
    print("int8 instructions:", D.cpu_int8_features())
    print(f"ONNX files: fp32 {fp:,} B, int8 {i8:,} B ({fp / i8:.2f}x smaller)")
    cands = {"ORT int8": D.ort_runner(s8), "ORT fp32": D.ort_runner(s32), "torch eager fp32": ref}
    if args.torchao:
        import time
        t0 = time.perf_counter()
        ao8 = D.torchao_int8(ref, calib_x)
        c32 = torch.compile(fold_bn(ref).eval())
        with torch.inference_mode():
            ao8(torch.rand(2, 3, 32, 32))
            t1 = time.perf_counter()
            c32(torch.rand(2, 3, 32, 32))
        print(f"torchao: quantize+compile {t1 - t0:.1f} s, fp32 compile {time.perf_counter() - t1:.1f} s")
        cands.update({"torchao int8 (inductor)": ao8, "inductor fp32": c32})
    for b in args.batches:
        st = compare_latency(cands, b, rounds=args.rounds, repeats=args.repeats, threads=args.threads)
        for k, v in st.items():
            print(f"batch {b:>3} {k:>24}: {v}")
        r8, r32, eager = st["ORT int8"].median_ms, st["ORT fp32"].median_ms, st["torch eager fp32"].median_ms
        print(f"batch {b:>3}: ORT int8 speed-up {r32 / r8:.2f}x vs ORT fp32, {eager / r8:.2f}x vs eager")
        if args.torchao:
            a8, a32 = st["torchao int8 (inductor)"].median_ms, st["inductor fp32"].median_ms
            print(f"batch {b:>3}: torchao int8 speed-up {a32 / a8:.2f}x vs compiled fp32, {eager / a8:.2f}x vs eager")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
