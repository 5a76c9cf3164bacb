"""slimlab.cluster on a real Dask LocalCluster of two worker processes: the parts written equal a
serial run's, a worker killed mid-run still leaves every part computed, a part that raises is
reported with its config while the others are kept."""
import json
import os
import signal
import sys
from pathlib import Path

import pytest

pytest.importorskip("distributed")
import cloudpickle  # noqa: E402  (comes with dask)

from slimlab import cluster, parts, scaling as S  # noqa: E402
from slimlab.parts import PartStore, part_key  # noqa: E402

from test_parts import comparable  # noqa: E402
from test_scaling import fake_data, tiny_cells  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])   # workers cannot import this test module


@pytest.fixture(scope="module")
def dask2():
    ex = cluster.executor_from_env("local:2")
    try:
        ex.client.wait_for_workers(2, timeout=60)
        yield ex
    finally:
        ex.shutdown()


def test_executor_from_env_reads_the_variable(monkeypatch):
    monkeypatch.delenv(cluster.ENV, raising=False)
    assert cluster.executor_from_env() is None
    monkeypatch.setenv(cluster.ENV, "  ")
    assert cluster.executor_from_env() is None
    assert "serially" in cluster.describe(None)
    for bad in ("local:0", "local:x", "local", "my-cluster"):
        with pytest.raises(ValueError, match="local:N"):
            cluster.executor_from_env(bad)


def test_worker_data_is_resolved_from_the_workers_own_copy(monkeypatch):
    from slimlab.data import CIFAR10
    monkeypatch.setattr(cluster, "_DATA", {})
    small = fake_data()
    assert cluster.data_for(small, object()) is small and cluster.resolve(small) is small
    data = CIFAR10(small.train_x, small.train_y, small.val_x, small.val_y, small.test_x, small.test_y,
                   classes=tuple("abcdefghij"), fingerprint="f" * 64, source="test")
    assert cluster.data_for(data, None) is data                  # serial: the data itself
    ref = cluster.data_for(data, object())
    assert ref == cluster.WorkerData("f" * 64) and len(cloudpickle.dumps(ref)) < 200   # not the tensors
    assert cluster.resolve(ref) is data                          # this process already holds it
    monkeypatch.setattr(cluster, "_DATA", {})
    import slimlab.data
    monkeypatch.setattr(slimlab.data, "load_cifar10", lambda **k: CIFAR10(
        *[getattr(small, a) for a in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")],
        classes=data.classes, fingerprint="0" * 64, source="another copy"))
    with pytest.raises(ValueError, match="not the notebook's"):
        cluster.resolve(ref)


def _fresh_allocation_faults() -> tuple[dict, int]:
    """This process's malloc/thread environment, and the minor page faults of 40 fresh 4 MiB tensors."""
    import resource
    import torch
    env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", *cluster.WORKER_MALLOC)}
    torch.ones(2**20).sum()                                       # warm up (first-touch of the heap)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(40):
        torch.ones(2**20).sum()                                   # 4 MiB allocated, touched, freed
    return env, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_workers_reuse_freed_memory_instead_of_faulting_it_in_again(dask2):
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536, which made each worker map and fault in every
    large tensor afresh (training at half speed); the LocalCluster's workers must start without it."""
    for env, faults in dask2.client.run(_fresh_allocation_faults).values():
        assert env == {"OMP_NUM_THREADS": "1", **{k: str(v) for k, v in cluster.WORKER_MALLOC.items()}}
        assert faults < 40 * 1024 // 4, f"{faults} minor faults for 40 reused 4 MiB tensors"   # 1024 pages each if mapped afresh


def test_the_remote_workers_config_file_sets_the_same_malloc_values():
    import yaml
    conf = yaml.safe_load((Path(cluster.__file__).parent / "dask-worker.yaml").read_text())
    assert conf["distributed"]["nanny"]["pre-spawn-environ"] == cluster.WORKER_MALLOC


def test_sweep_parts_through_dask_equal_a_serial_runs(dask2, tmp_path):
    data, cells = fake_data(), tiny_cells()[:2]
    serial = S.run_sweep(cells, data, store=PartStore(tmp_path / "serial", profile="full"), threads=1,
                         progress=False)
    spread = S.run_sweep(cells, data, store=PartStore(tmp_path / "dask", profile="full"), executor=dask2,
                         threads=1, progress=False)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert strip(spread) == strip(serial)
    names = sorted(p.name for p in (tmp_path / "serial").glob("*.json"))
    assert names == sorted(p.name for p in (tmp_path / "dask").glob("*.json")) and len(names) == 2
    for name in names:
        assert comparable(tmp_path / "serial" / name) == comparable(tmp_path / "dask" / name)
    assert not list((tmp_path / "dask").glob("*.tmp"))


def slow_part(config):
    """Sleeps; the part marked `die` kills its own worker process the first time it runs."""
    import time
    marker = Path(config["marker"])
    if config.get("die") and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.3)
    return {"i": config["i"], "pid": os.getpid()}


def test_a_killed_worker_is_replaced_and_every_part_completes(dask2, tmp_path):
    marker = tmp_path / "killed"
    configs = [{"i": i, "marker": str(marker), "die": i == 2} for i in range(6)]
    store = PartStore(tmp_path / "parts", profile="full")
    recs = store.compute("slow", configs, slow_part, executor=dask2)
    assert [r["i"] for r in recs] == list(range(6)) and store.stored() == 6
    killed = int(marker.read_text())
    assert recs[2]["pid"] != killed                       # part 2 was recomputed by another worker process
    dask2.client.wait_for_workers(2, timeout=60)          # the nanny brought a fresh worker up


def failing_part(config):
    if config["i"] == 1:
        raise RuntimeError("cell 1 diverged")
    return {"i": config["i"]}


def test_a_part_that_raises_on_a_worker_is_reported_and_the_others_kept(dask2, tmp_path):
    store = PartStore(tmp_path, profile="full")
    configs = [{"i": i} for i in range(4)]
    with pytest.raises(parts.PartsFailed) as e:
        store.compute("f", configs, failing_part, executor=dask2)
    [(key, config, tb)] = e.value.failures
    assert key == part_key("f", {"i": 1}) and config == {"i": 1}
    assert "RuntimeError: cell 1 diverged" in tb and "failing_part" in tb
    assert store.stored() == 3 and not store.path(key).exists()
    assert json.loads(store.path(part_key("f", {"i": 3})).read_text())["record"] == {"i": 3}
