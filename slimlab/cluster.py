"""Spreading a notebook's parts over processes or machines: the executor and the data workers use.

    executor = executor_from_env()        # None (serial) unless SLIMLAB_DASK is set
    recs = store.compute("cell", configs, part_fn, executor=executor)   # slimlab.parts.PartStore

* `SLIMLAB_DASK` unset or empty: `executor_from_env()` returns None and every part runs serially
  in the notebook's process (the default). `SLIMLAB_DASK=local:N`: a Dask `LocalCluster` of N
  single-thread worker processes on this machine. `SLIMLAB_DASK=tcp://host:8786`: the Dask
  scheduler at that address (`dask scheduler` on one machine, `dask worker tcp://host:8786
  --nthreads 1` on each worker machine, with the project installed and `SLIMLAB_CIFAR10` set).
* `DaskExecutor` is a `concurrent.futures.Executor` over a Dask client (Dask's own
  `Client.get_executor()` underneath). A worker that dies while it computes a part is replaced and
  its part rescheduled (`ALLOWED_FAILURES` deaths per part on a LocalCluster; a remote scheduler's own
  `distributed.scheduler.allowed-failures`, also 3 by default; `RETRIES` for a task that errs).
  A script that starts `local:N` needs the `if __name__ == "__main__":` guard (workers are spawned);
  a notebook does not.
* `WorkerData(fingerprint)` is how a part names the CIFAR-10 it needs without shipping 180 MB:
  each worker loads its own copy (`SLIMLAB_CIFAR10`, cached once per process) and refuses one whose
  sha256 differs from the notebook's. Models travel as state dicts inside a part's arguments.
"""
from __future__ import annotations

import os
import re
from concurrent.futures import Executor, Future
from dataclasses import dataclass

ENV = "SLIMLAB_DASK"
RETRIES = 2            # re-runs of a task that raises inside Dask (slimlab's parts report errors instead)
ALLOWED_FAILURES = 3   # workers that may die running one part before Dask gives it up (KilledWorker)

# glibc malloc settings for worker processes. Dask's nanny starts each worker with
# MALLOC_TRIM_THRESHOLD_=65536; any explicit malloc threshold switches off glibc's adaptive mmap
# threshold, so every activation tensor above 128 KiB is mmap'd and unmapped each step. A ResNet-20
# bf16 training step at one thread then took 2x as long, half of it in page faults (measured
# 2026-12-02: 385 ms/step unset, 717-857 ms with 65536, 389 ms with these two; ~2.3M minor faults
# per 15 steps against ~3k). Raising the mmap threshold to glibc's ceiling (32 MiB) and the trim
# threshold above it restores plain-process speed. Remote `dask worker`s get the same values from
# slimlab/dask-worker.yaml (`DASK_CONFIG=... dask worker ...`, README).
WORKER_MALLOC = {"MALLOC_MMAP_THRESHOLD_": 32 * 2**20, "MALLOC_TRIM_THRESHOLD_": 2**30}

_DATA: dict[str, object] = {}   # this process's CIFAR-10, by fingerprint


def executor_from_env(value: str | None = None) -> "DaskExecutor | None":
    """The executor `SLIMLAB_DASK` (or `value`) asks for: None for serial, else a `DaskExecutor`."""
    spec = os.environ.get(ENV, "") if value is None else value
    if not isinstance(spec, str):
        raise TypeError(f"{ENV} must be a str, got {type(spec).__name__}")
    spec = spec.strip()
    return DaskExecutor(spec) if spec else None


class DaskExecutor(Executor):
    """A `concurrent.futures.Executor` on a Dask cluster: 'local:N' (a LocalCluster of N single-thread
    worker processes here) or a scheduler address ('tcp://host:8786'). `shutdown()` closes what it opened."""

    def __init__(self, spec: str, *, retries: int = RETRIES):
        import dask
        from distributed import Client, LocalCluster

        if not isinstance(spec, str) or not spec.strip():
            raise ValueError(f"spec must be 'local:N' or a Dask scheduler address, got {spec!r}")
        spec = spec.strip()
        self.spec, self.cluster = spec, None
        if spec.startswith("local"):
            m = re.fullmatch(r"local:(\d+)", spec)
            if not m or int(m.group(1)) < 1:
                raise ValueError(f"{ENV}={spec!r}: write local:N with N >= 1 worker processes, e.g. local:2")
            env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}   # one torch thread per worker
            malloc = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_MALLOC.items()}
            with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES, **malloc}):
                self.cluster = LocalCluster(n_workers=int(m.group(1)), threads_per_worker=1, processes=True,
                                            dashboard_address=None, env=env)
            self.client = Client(self.cluster)
        elif re.fullmatch(r"(tcp|tls|ucx|inproc)://\S+", spec):
            self.client = Client(spec)
        else:
            raise ValueError(f"{ENV}={spec!r}: allowed are local:N or a scheduler address like tcp://host:8786")
        self._executor = self.client.get_executor(retries=retries, pure=False)

    def submit(self, fn, /, *args, **kwargs) -> Future:
        return self._executor.submit(fn, *args, **kwargs)

    def workers(self) -> int:
        """Number of workers connected now."""
        return len(self.client.scheduler_info().get("workers", {}))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __repr__(self) -> str:
        return f"DaskExecutor({self.spec!r}, {self.workers()} workers)"


def describe(executor: Executor | None) -> str:
    """One line for the notebook: where the parts of this run are computed."""
    if executor is None:
        return f"parts computed serially in this process (set {ENV}=local:N or a scheduler address to spread them)"
    return f"parts computed through {executor!r}"


@dataclass(frozen=True)
class WorkerData:
    """CIFAR-10 named by its sha256: `get()` is this process's own copy (`SLIMLAB_CIFAR10`), loaded once."""
    fingerprint: str

    def get(self):
        if self.fingerprint not in _DATA:
            from .data import load_cifar10
            data = load_cifar10(progress=False)
            if data.fingerprint != self.fingerprint:
                raise ValueError(f"this worker's CIFAR-10 ({data.source}, sha256 {data.fingerprint[:16]}…) is not "
                                 f"the notebook's (sha256 {self.fingerprint[:16]}…): point SLIMLAB_CIFAR10 at the same file")
            _DATA[self.fingerprint] = data
        return _DATA[self.fingerprint]


def data_for(data, executor: Executor | None):
    """What a part should be handed to reach `data`: the data itself when the parts run here (serial),
    a `WorkerData` reference when `data` is a loaded CIFAR-10 and an executor runs them elsewhere;
    other data (small test tensors) is shipped as it is."""
    from .data import CIFAR10
    if isinstance(data, CIFAR10):
        _DATA.setdefault(data.fingerprint, data)      # a worker thread of this process reuses it
        if executor is not None:
            return WorkerData(data.fingerprint)
    return data


def resolve(data):
    """The data a part was handed: a `WorkerData` becomes this worker's CIFAR-10; anything else is itself."""
    return data.get() if isinstance(data, WorkerData) else data
