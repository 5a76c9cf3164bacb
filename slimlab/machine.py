"""What this machine is: CPU model and the instruction-set flags that decide speed.

Every timing, trained checkpoint and results file records `machine_info()`, because the course's
build machines differ from one session to the next (some have AVX-512 with VNNI and BF16, others
AVX2 only). Native bf16 is detected through torch (`torch.cpu._is_avx512_bf16_supported`,
`_is_amx_tile_supported`), never guessed from a model name.
"""
from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path

import torch

# /proc/cpuinfo flags that matter for the course's kernels (bf16 training, int8 inference).
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
             "amx_tile", "amx_bf16", "amx_int8")


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = platform.processor() or platform.machine(), frozenset()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line and not flags:
                flags = frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, flags


def _torch_cpu_check(name: str) -> bool:
    fn = getattr(torch.cpu, name, None)
    try:
        return bool(fn()) if fn is not None else False
    except Exception:  # an older torch without the probe
        return False


def cpu_bf16_native() -> bool:
    """True when torch can compute bf16 natively on this CPU (AVX512-BF16 or AMX)."""
    return _torch_cpu_check("_is_avx512_bf16_supported") or _torch_cpu_check("_is_amx_tile_supported")


def cpu_flags() -> dict[str, bool]:
    """The relevant /proc/cpuinfo flags (all False where /proc/cpuinfo cannot be read)."""
    flags = _cpuinfo()[1]
    return {k: k in flags for k in CPU_FLAGS}


def machine_info() -> dict:
    """CPU model, core count, torch's CPU capability, the relevant flags, bf16-native, GPU (or None)."""
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:
        capability = "unknown"
    return {
        "system": f"{platform.system()} {platform.machine()}",
        "cpu_model": _cpuinfo()[0],
        "cpu_count": os.cpu_count(),
        "torch_cpu_capability": capability,
        "cpu_flags": sorted(k for k, v in cpu_flags().items() if v),
        "cpu_bf16_native": cpu_bf16_native(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
    }


def describe() -> str:
    """One line: 'Linux x86_64, AMD EPYC, 2 cores, AVX512 [avx2 … avx512_bf16], torch 2.14.1'."""
    m = machine_info()
    dev = f", GPU {m['gpu']}" if m["gpu"] else ""
    return (f"{m['system']}, {m['cpu_model']}, {m['cpu_count']} cores, {m['torch_cpu_capability']} "
            f"[{' '.join(m['cpu_flags'])}]{dev}, torch {m['torch']}")
