from pathlib import Path

import pytest
import torch

from slimlab import machine


def test_flags_are_the_listed_ones_and_match_proc_cpuinfo():
    flags = machine.cpu_flags()
    assert list(flags) == list(machine.CPU_FLAGS) and all(isinstance(v, bool) for v in flags.values())
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo here")
    line = next(ln for ln in cpuinfo.read_text().splitlines() if ln.startswith("flags"))
    present = set(line.split(":", 1)[1].split())
    assert flags == {k: k in present for k in machine.CPU_FLAGS}


def test_bf16_native_is_asked_of_torch():
    probes = [getattr(torch.cpu, n, lambda: False)() for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    assert machine.cpu_bf16_native() is any(bool(p) for p in probes)


def test_machine_info_and_describe_agree():
    info = machine.machine_info()
    assert {"system", "cpu_model", "cpu_count", "torch_cpu_capability", "cpu_flags", "cpu_bf16_native",
            "gpu", "torch"} <= set(info)
    assert info["cpu_flags"] == sorted(k for k, v in machine.cpu_flags().items() if v)
    assert info["torch"] == torch.__version__
    line = machine.describe()
    assert info["cpu_model"] in line and f"[{' '.join(info['cpu_flags'])}]" in line
    assert f"{info['cpu_count']} cores" in line


def test_an_unreadable_cpuinfo_gives_no_flags(monkeypatch):
    monkeypatch.setattr(machine, "_cpuinfo", lambda: ("some cpu", frozenset()))
    assert not any(machine.cpu_flags().values())
    assert machine.machine_info()["cpu_flags"] == [] and "some cpu" in machine.describe()
