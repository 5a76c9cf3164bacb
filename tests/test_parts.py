"""slimlab.parts: deterministic keys, resume without recomputation, clear errors on broken files."""
import json
import math

import pytest
import torch
import torch.nn as nn

from slimlab import parts
from slimlab.parts import PartStore, part_key


def test_keys_are_deterministic_and_follow_the_config():
    a = {"sparsity": 0.8, "steps": 1000, "arch": "resnet20", "nested": {"lr": 0.01, "b": [1, 2]}}
    same_other_order = {"nested": {"b": [1, 2], "lr": 0.01}, "arch": "resnet20", "steps": 1000, "sparsity": 0.8}
    k = part_key("finetune magnitude", a)
    assert k == part_key("finetune magnitude", same_other_order) == part_key("finetune magnitude", dict(a))
    assert k.startswith("finetune-magnitude-") and len(k.rsplit("-", 1)[1]) == 12
    for change in ({"sparsity": 0.9}, {"steps": 999}, {"arch": "resnet8"}, {"nested": {"lr": 0.02, "b": [1, 2]}}):
        assert part_key("finetune magnitude", {**a, **change}) != k, change
    assert part_key("finetune random", a) != k
    assert part_key("x", {"t": (1, 2)}) == part_key("x", {"t": [1, 2]})   # tuples are lists in JSON


@pytest.mark.parametrize("kind, config, exc", [("", {}, ValueError), (3, {}, ValueError),
                                               ("k", [1], TypeError), ("k", {"m": object()}, TypeError),
                                               ("k", {"x": math.nan}, TypeError)])
def test_part_key_rejects_bad_input(kind, config, exc):
    with pytest.raises(exc):
        part_key(kind, config)


def test_run_resumes_without_recomputing(tmp_path):
    calls = []

    def fn():
        calls.append(1)
        return {"acc": 91.5, "history": (1.0, 0.5), "seconds": torch.tensor(2.0)}

    cfg = {"sparsity": 0.5}
    first = PartStore(tmp_path / "parts", profile="full")
    rec = first.run("ft", cfg, fn)
    assert rec == {"acc": 91.5, "history": [1.0, 0.5], "seconds": 2.0} and len(calls) == 1
    assert first.computed == [part_key("ft", cfg)] and not first.loaded
    doc = json.loads((tmp_path / "parts" / f"{part_key('ft', cfg)}.json").read_text())
    assert doc["config"] == cfg and doc["record"] == rec and doc["provenance"]["git_commit"]
    assert not list((tmp_path / "parts").glob("*.tmp"))

    again = PartStore(tmp_path / "parts", profile="full")          # a new session
    assert again.run("ft", cfg, fn) == rec and len(calls) == 1     # read back, fn not called
    assert again.loaded == [part_key("ft", cfg)] and "1 of 1 parts loaded" in again.summary()
    again.run("ft", {"sparsity": 0.9}, fn)                         # another config: computed
    assert len(calls) == 2 and again.stored() == 2
    assert "1 of 2 parts loaded" in again.summary() and "1 computed now" in again.summary()


def test_disabled_store_always_computes_and_writes_nothing(tmp_path):
    calls = []
    store = PartStore(tmp_path / "parts", enabled=False, profile="quick")
    for _ in range(2):
        assert store.run("ft", {"a": 1}, lambda: calls.append(1) or {"v": 1}) == {"v": 1}
    assert len(calls) == 2 and not (tmp_path / "parts").exists()
    assert "quick profile: 2 parts computed live so far, none stored" in store.summary()


def test_for_notebook_paths_and_profiles():
    full = PartStore.for_notebook("03_pruning", "full")
    assert full.enabled and full.root.parts[-4:] == ("results", "full", "03_pruning", "parts")
    assert full.work.parts[-4:] == ("data", "work", "03_pruning", "full")
    quick = PartStore.for_notebook("03_pruning", "quick")
    assert not quick.enabled and quick.root.parts[-3] == "quick"
    with pytest.raises(ValueError, match="bare name"):
        PartStore.for_notebook("../x", "full")
    with pytest.raises(ValueError, match="unknown profile"):
        PartStore.for_notebook("03_pruning", "huge")


@pytest.mark.parametrize("content, match", [('{"format": "slimlab-part/1", "rec', "not readable JSON"),
                                            ("", "not readable JSON"),
                                            ('{"format": "slimlab-part/1", "config": {}}', "'record' dict"),
                                            ('[1, 2]', "'record' dict")])
def test_corrupt_or_partial_file_names_the_file(tmp_path, content, match):
    store = PartStore(tmp_path, profile="full")
    path = store.path(part_key("ft", {"a": 1}))
    path.write_text(content)
    with pytest.raises(ValueError, match=match) as e:
        store.run("ft", {"a": 1}, lambda: {"v": 1})
    assert str(path) in str(e.value) and "delete the file" in str(e.value)


def test_a_file_stored_for_another_config_is_refused(tmp_path):
    store = PartStore(tmp_path, profile="full")
    store.run("ft", {"a": 1}, lambda: {"v": 1})
    key = part_key("ft", {"a": 1})
    doc = json.loads(store.path(key).read_text())
    doc["config"] = {"a": 2}
    store.path(key).write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="another config"):
        store.get(key, {"a": 1})


def test_run_rejects_bad_records(tmp_path):
    store = PartStore(tmp_path, profile="full")
    with pytest.raises(TypeError, match="must return a dict"):
        store.run("ft", {}, lambda: [1])
    with pytest.raises(TypeError, match="JSON values"):
        store.run("ft", {}, lambda: {"model": nn.Linear(1, 1)})
    with pytest.raises(TypeError, match="callable"):
        store.run("ft", {}, None)
    assert store.run("ft", {"nan": 1}, lambda: {"x": math.nan}) == {"x": None}


def test_run_model_reuses_the_model_file_and_retrains_when_it_is_missing(tmp_path):
    calls = []

    def train(path):
        calls.append(1)
        torch.manual_seed(len(calls))
        m = nn.Linear(3, 2)
        parts.save_state(m, path)
        return {"n": len(calls)}, m

    load = lambda p: parts.load_state(nn.Linear(3, 2), p)
    store = PartStore(tmp_path / "parts", tmp_path / "work", profile="full")
    rec, m1 = store.run_model("lin", {"a": 1}, train, load)
    assert rec == {"n": 1} and store.model_path(part_key("lin", {"a": 1})).is_file()
    rec2, m2 = PartStore(tmp_path / "parts", tmp_path / "work", profile="full").run_model("lin", {"a": 1}, train, load)
    assert rec2 == rec and len(calls) == 1
    torch.testing.assert_close(m1.weight, m2.weight, atol=0, rtol=0)
    numbers_only = PartStore(tmp_path / "parts", tmp_path / "work", profile="full")
    assert numbers_only.run_model("lin", {"a": 1}, train, load, need_model=False) == (rec, None)
    store.model_path(part_key("lin", {"a": 1})).unlink()                 # a new session: no model file
    rec3, m3 = PartStore(tmp_path / "parts", tmp_path / "work", profile="full").run_model("lin", {"a": 1}, train, load)
    assert len(calls) == 2 and rec3 == {"n": 2}
    assert not list((tmp_path / "parts").glob("*.pt"))                   # models never go into results/
    with pytest.raises(TypeError, match=r"\(record dict, model\)"):
        store.run_model("bad", {}, lambda p: {"n": 1}, load)


def test_model_sha_follows_the_weights():
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert parts.model_sha(a) == parts.model_sha(b) and len(parts.model_sha(a)) == 64
    with torch.no_grad():
        b.bias[0] += 1e-3
    assert parts.model_sha(a) != parts.model_sha(b)


# ---------------------------------------------------------------------------------------------
# compute: batches of parts, serially or through an executor

def square(config):
    """A deterministic part (top-level: a process pool can pickle it)."""
    if config.get("fail"):
        raise ValueError(f"part {config['i']} was told to fail")
    return {"i": config["i"], "sq": config["i"] ** 2, "seconds": 0.1 * config["i"]}


def comparable(path):
    """A part file without its timing fields: what two runs of the same part must share, byte for byte."""
    doc = json.loads(path.read_text())
    for k in parts.TIMING_FIELDS:
        doc["provenance"].pop(k, None)
        doc["record"].pop(k, None)
    return json.dumps(doc, sort_keys=True)


def test_compute_stores_every_part_in_order_and_resumes(tmp_path):
    store = PartStore(tmp_path, profile="full")
    configs = [{"i": i} for i in (3, 1, 2)]
    recs = store.compute(lambda c: f"sq-{c['i']}", configs, square)
    assert [r["sq"] for r in recs] == [9, 1, 4] and len(store.computed) == 3
    assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted(
        f"{part_key(f'sq-{i}', {'i': i})}.json" for i in (1, 2, 3))
    doc = json.loads(store.path(part_key("sq-3", {"i": 3})).read_text())
    assert doc["record"] == recs[0] and doc["config"] == {"i": 3} and doc["provenance"]["machine"]
    assert doc["provenance"]["precision_path"].startswith("auto -> ") and doc["provenance"]["machine_info"]
    again = PartStore(tmp_path, profile="full")
    assert again.compute(lambda c: f"sq-{c['i']}", configs, lambda c: pytest.fail("recomputed")) == recs
    assert len(again.loaded) == 3 and not again.computed
    # a batch that adds a config computes only the new part
    more = again.compute("sq", [{"i": 5}], square)
    assert more == [{"i": 5, "sq": 25, "seconds": 0.5}] and again.computed == [part_key("sq", {"i": 5})]


def test_compute_through_an_executor_writes_the_same_bytes_as_serial(tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    configs = [{"i": i} for i in range(6)]
    serial = PartStore(tmp_path / "serial", profile="full")
    a = serial.compute("sq", configs, square)
    with ThreadPoolExecutor(3) as pool:
        pooled = PartStore(tmp_path / "pooled", profile="full")
        b = pooled.compute("sq", configs, square, executor=pool)
    assert a == b
    for p in sorted((tmp_path / "serial").glob("*.json")):
        assert comparable(p) == comparable(tmp_path / "pooled" / p.name)
        assert json.loads(p.read_text())["provenance"]["utc"]   # the timing field is there, only not compared


def test_a_failing_part_is_reported_with_its_config_after_the_others_are_stored(tmp_path):
    store = PartStore(tmp_path, profile="full")
    configs = [{"i": 0}, {"i": 1, "fail": True}, {"i": 2}, {"i": 3, "fail": True}]
    with pytest.raises(parts.PartsFailed) as e:
        store.compute("sq", configs, square)
    failed = e.value.failures
    assert [(k, c) for k, c, _ in failed] == [(part_key("sq", configs[1]), configs[1]),
                                              (part_key("sq", configs[3]), configs[3])]
    assert "ValueError: part 1 was told to fail" in failed[0][2] and "in square" in failed[0][2]
    assert '{"fail":true,"i":1}' in str(e.value) and "2 parts failed" in str(e.value)
    assert store.stored() == 2 and store.get(part_key("sq", configs[2]), configs[2]) == square(configs[2])
    # fixed: only the failed parts are computed on the next run
    fixed = PartStore(tmp_path, profile="full")
    recs = fixed.compute("sq", [{**c, "fail": False} if c.get("fail") else c for c in configs], square)
    assert [r["sq"] for r in recs] == [0, 1, 4, 9] and len(fixed.computed) == 2


def test_compute_refuses_a_damaged_part_before_any_work(tmp_path):
    store = PartStore(tmp_path, profile="full")
    store.compute("sq", [{"i": 1}], square)
    path = store.path(part_key("sq", {"i": 2}))
    path.write_text('{"format": "slimlab-part/0", "record": {}}')
    calls = []
    with pytest.raises(ValueError, match="not a slimlab-part/1 file") as e:
        store.compute("sq", [{"i": 0}, {"i": 2}], lambda c: calls.append(c) or square(c))
    assert str(path) in str(e.value) and not calls


@pytest.mark.parametrize("args, exc, match", [
    (("sq", [{"i": 1}], None), TypeError, "fn must be a callable"),
    (("sq", {"i": 1}, square), TypeError, "configs must be a list"),
    (("sq", [{"i": 1}, {"i": 1}], square), ValueError, "the same part"),
    (("", [{"i": 1}], square), ValueError, "kind must be a non-empty str"),
])
def test_compute_rejects_bad_input(tmp_path, args, exc, match):
    with pytest.raises(exc, match=match):
        PartStore(tmp_path, profile="full").compute(*args)
    with pytest.raises(TypeError, match="executor must be a concurrent.futures.Executor"):
        PartStore(tmp_path, profile="full").compute("sq", [{"i": 1}], square, executor="dask")


def test_compute_reports_a_part_that_returns_no_dict(tmp_path):
    with pytest.raises(parts.PartsFailed, match="must return a dict"):
        PartStore(tmp_path, profile="full").compute("sq", [{"i": 1}], lambda c: [c])


def test_disabled_store_computes_every_part_of_a_batch_live(tmp_path):
    store = PartStore(tmp_path / "parts", enabled=False, profile="quick")
    for _ in range(2):
        assert [r["sq"] for r in store.compute("sq", [{"i": 2}, {"i": 3}], square)] == [4, 9]
    assert len(store.computed) == 4 and not (tmp_path / "parts").exists()


def test_a_damaged_model_file_is_named(tmp_path):
    from slimlab.files import CheckpointError
    path = tmp_path / "m.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="part model") as e:
        parts.load_state(nn.Linear(3, 2), path)
    assert str(path) in str(e.value)
    parts.save_state(nn.Linear(3, 2), path)
    with pytest.raises(CheckpointError, match="does not fit"):
        parts.load_state(nn.Linear(4, 2), path)


# ---------------------------------------------------------------------------------------------
# compute_models and compute_chains: parts whose models a later cell needs, and rounds of them

CALLS = []


def model_part(config, start=None):
    """A deterministic part with a model: its state is a tensor; `start` is the previous stage's state."""
    CALLS.append(config["i"])
    if config.get("fail"):
        raise ValueError(f"stage {config['i']} was told to fail")
    v = (start["v"] if start is not None else torch.zeros(3)) + config["i"]
    return {"i": config["i"], "sum": float(v.sum())}, ({"v": v} if config.get("keep", True) else None)


def vec(state, config):
    return state["v"].clone()


def test_compute_models_keeps_models_resumes_and_recomputes_a_missing_model(tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    CALLS.clear()
    configs = [{"i": 1}, {"i": 2, "keep": False}, {"i": 3}]
    serial = PartStore(tmp_path / "serial", tmp_path / "work", profile="full")
    outs = serial.compute_models("m", configs, model_part, vec, need_model=lambda c: c["i"] == 3)
    assert [r["sum"] for r, _ in outs] == [3.0, 6.0, 9.0] and outs[1][1] is None
    torch.testing.assert_close(outs[2][1], torch.full((3,), 3.0))
    assert sorted(CALLS) == [1, 2, 3] and serial.stored() == 3
    assert serial.model_path(part_key("m", configs[0])).is_file()              # every returned state is kept
    assert not serial.model_path(part_key("m", configs[1])).exists()
    with ThreadPoolExecutor(2) as pool:                                          # the same bytes through a pool
        pooled = PartStore(tmp_path / "pooled", tmp_path / "work2", profile="full")
        assert [r for r, _ in pooled.compute_models("m", configs, model_part, vec, pool, need_model=False)] == \
            [r for r, _ in outs]
    for p in sorted((tmp_path / "serial").glob("*.json")):
        assert comparable(p) == comparable(tmp_path / "pooled" / p.name)
    CALLS.clear()
    again = PartStore(tmp_path / "serial", tmp_path / "work", profile="full")
    back = again.compute_models("m", configs, model_part, vec, need_model=lambda c: c["i"] == 3)
    assert not CALLS and [r for r, _ in back] == [r for r, _ in outs] and back[0][1] is None
    torch.testing.assert_close(back[2][1], outs[2][1], atol=0, rtol=0)         # the model from its file
    again.model_path(part_key("m", configs[2])).unlink()                       # a new machine: no model file
    assert again.compute_models("m", configs, model_part, vec, need_model=lambda c: c["i"] == 3)[2][0] == outs[2][0]
    assert CALLS == [3]
    quick = PartStore(tmp_path / "q", tmp_path / "qwork", enabled=False, profile="quick")
    live = quick.compute_models("m", configs[::2], model_part, vec)             # quick: models in memory only
    assert [r for r, _ in live] == [outs[0][0], outs[2][0]]
    torch.testing.assert_close(live[1][1], outs[2][1], atol=0, rtol=0)
    with pytest.raises(parts.PartsFailed, match="returned no model state, and its model is needed"):
        quick.compute_models("m", configs, model_part, vec)                    # part 2 keeps no model
    assert not (tmp_path / "q").exists() and not (tmp_path / "qwork").exists()  # quick: nothing written
    with pytest.raises(parts.PartsFailed, match=r"must return \(record dict, model state"):
        quick.compute_models("m", [{"i": 1}], lambda c: {"i": 1}, vec)


def test_compute_models_hands_each_part_its_input(tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    store = PartStore(tmp_path, profile="full")
    configs = [{"i": i, "start": i * 10} for i in range(4)]
    with ThreadPoolExecutor(2) as pool:
        outs = store.compute_models("in", configs, model_part, vec, pool,
                                    inputs=lambda c: {"v": torch.full((3,), float(c["start"]))})
    assert [r["sum"] for r, _ in outs] == [3 * (11 * i) for i in range(4)]


def chain_configs(n_chains=3, stages=2, **extra):
    return [[{"i": 10 * c + s + 1, "chain": c, "stage": s, **extra} for s in range(stages)] for c in range(n_chains)]


def test_compute_chains_stage_by_stage_equals_serial_and_resumes_lazily(tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    CALLS.clear()
    chains = chain_configs()
    kind = lambda c: f"stage{c['stage']}-chain{c['chain']}"
    serial = PartStore(tmp_path / "serial", tmp_path / "work", profile="full")
    outs = serial.compute_chains(kind, chains, model_part, vec, need_model=lambda c: c["chain"] == 0)
    # stage 2 starts from stage 1's state: v = i1 + i2 in every entry
    assert [r["sum"] for r, _ in outs] == [3.0 * (ch[0]["i"] + ch[1]["i"]) for ch in chains]
    torch.testing.assert_close(outs[0][1], torch.full((3,), 3.0))
    assert outs[1][1] is not None                                   # computed now: its model comes back too
    assert len(CALLS) == 6 and serial.stored() == 6
    with ThreadPoolExecutor(3) as pool:
        pooled = PartStore(tmp_path / "pooled", tmp_path / "work2", profile="full")
        assert [r for r, _ in pooled.compute_chains(kind, chains, model_part, vec, pool)] == [r for r, _ in outs]
    for p in sorted((tmp_path / "serial").glob("*.json")):
        assert comparable(p) == comparable(tmp_path / "pooled" / p.name)

    CALLS.clear()
    again = PartStore(tmp_path / "serial", tmp_path / "work", profile="full")
    for ch in chains:                                               # no model files on this machine
        for c in ch:
            again.model_path(part_key(kind(c), c)).unlink()
    back = again.compute_chains(kind, chains, model_part, vec)      # records only: nothing is computed
    assert not CALLS and [r for r, _ in back] == [r for r, _ in outs] and all(m is None for _, m in back)
    again.path(part_key(kind(chains[1][1]), chains[1][1])).unlink() # chain 1's last stage lost: its first
    back = again.compute_chains(kind, chains, model_part, vec)      # stage is recomputed for its model
    assert CALLS == [chains[1][0]["i"], chains[1][1]["i"]] and [r for r, _ in back] == [r for r, _ in outs]
    CALLS.clear()
    again.path(part_key(kind(chains[1][1]), chains[1][1])).unlink() # chain 1's first model is there now:
    again.compute_chains(kind, chains[1:2], model_part, vec)        # only its stage 2 runs, from that file
    assert CALLS == [chains[1][1]["i"]]
    CALLS.clear()
    last = again.compute_chains(kind, chains, model_part, vec, need_model=True)  # the last models: chain 1's
    assert sorted(CALLS) == [chains[0][0]["i"], chains[0][1]["i"], chains[2][0]["i"], chains[2][1]["i"]]
    for (_, m), ch in zip(last, chains):
        torch.testing.assert_close(m, torch.full((3,), float(ch[0]["i"] + ch[1]["i"])))


def test_compute_chains_a_failed_stage_stops_its_chain_only(tmp_path):
    CALLS.clear()
    chains = chain_configs()
    chains[1][0]["fail"] = True
    store = PartStore(tmp_path, profile="full")
    with pytest.raises(parts.PartsFailed) as e:
        store.compute_chains(lambda c: f"s{c['stage']}-c{c['chain']}", chains, model_part, vec)
    [(key, config, tb)] = e.value.failures
    assert config == chains[1][0] and "stage 11 was told to fail" in tb
    assert chains[1][1]["i"] not in CALLS and store.stored() == 4   # the other two chains are complete
    with pytest.raises(TypeError, match="non-empty list of chains"):
        store.compute_chains("s", [[]], model_part, vec)
    with pytest.raises(ValueError, match="the same part"):
        store.compute_chains("s", [[{"i": 1}], [{"i": 1}]], model_part, vec)


# ---------------------------------------------------------------------------------------------
# notebook 03's parts on a tiny ResNet and tiny data: serial and through a pool give the same records,
# and the same numbers as the library calls the notebook made before it used parts

def parts_03(store, executor, data, ref):
    import functools
    from dataclasses import asdict
    from slimlab import prune as P
    REF = (ref.arch, {k: v.clone() for k, v in ref.state_dict().items()})
    BASE = {"base": parts.model_sha(ref), "data": "tiny", "val_images": 20, "test_images": 20}
    cfg = P.finetune_config(2, 10, 0.01)
    part = lambda f: functools.partial(f, reference=REF, data=data)
    oneshot = store.compute(lambda c: f"oneshot-s{c['sparsity']:g}",
                            [{**BASE, "step": "oneshot", "sparsity": s, "seed": 0, "bn_images": 30} for s in (0.5, 0.9)],
                            part(P.oneshot_part), executor)
    FT = {**BASE, "step": "finetune", "train": asdict(cfg), "scope": "global", "seed": 0, "bn_images": 30}
    ft = store.compute_models(lambda c: f"finetune-{c['variant']}-s{c['sparsity']:g}",
                              [{**FT, "sparsity": 0.5, "variant": v} for v in P.FINETUNE_VARIANTS],
                              part(P.finetune_part), lambda st, c: st, executor,
                              need_model=lambda c: c["variant"] == "magnitude")
    channels = store.compute(lambda c: f"channels-f{c['fraction']:g}",
                             [{**BASE, "step": "channels", "fraction": f, "apoz_images": 30, "seed": 0} for f in (0.25, 0.5)],
                             part(P.channels_part), executor)
    TRIM = {**BASE, "step": "trim", "train": asdict(cfg), "fraction": 0.5, "rounds": 2, "apoz_images": 30}
    trims = store.compute_chains(lambda c: f"trim-{c['method']}-round{c['round']}-seed{c['seed']}",
                                 [[{**TRIM, "method": m, "round": r + 1, "seed": 0} for r in range(2)]
                                  for m in P.CHANNEL_METHODS],
                                 part(P.trim_part), lambda st, c: P.model_from_blob(st), executor, need_model=True)
    return oneshot, ft, channels, trims


def test_03_parts_serial_and_through_a_pool_give_the_same_records_and_models(tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    from slimlab import prune as P
    from slimlab.models import build
    from slimlab.train import evaluate
    from test_scaling import fake_data
    data = fake_data(n_train=60, n_eval=20)
    torch.manual_seed(0)
    ref = build("resnet8", width=0.25).eval()
    serial = parts_03(PartStore(tmp_path / "serial", tmp_path / "w1", profile="full"), None, data, ref)
    with ThreadPoolExecutor(2) as pool:
        pooled = parts_03(PartStore(tmp_path / "pooled", tmp_path / "w2", profile="full"), pool, data, ref)
    strip = lambda r: {k: v for k, v in r.items() if k != "seconds"}
    oneshot, ft, channels, trims = serial
    assert oneshot == pooled[0] and channels == pooled[2]
    assert [strip(r) for r, _ in ft] == [strip(r) for r, _ in pooled[1]]
    assert [r for r, _ in trims] == [r for r, _ in pooled[3]]
    for (_, a), (_, b) in zip(ft + trims, pooled[1] + pooled[3]):
        assert (a is None) == (b is None)
        if a is not None:
            a, b = (x if isinstance(x, dict) else x.state_dict() for x in (a, b))
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    names = sorted(p.name for p in (tmp_path / "serial").glob("*.json"))
    assert len(names) == 2 + 3 + 2 + 6 and names == sorted(p.name for p in (tmp_path / "pooled").glob("*.json"))
    for name in names:
        assert comparable(tmp_path / "serial" / name) == comparable(tmp_path / "pooled" / name)
    assert set(oneshot[0]) == set(P.ONESHOT_CURVES) and set(channels[0]) == set(P.CHANNEL_METHODS)

    # the same numbers as the library calls of the notebook before it used parts
    from slimlab.data import subset
    ax = subset(data.train_x, data.train_y, 30, seed=P.STATS_SEED)[0]
    cfg = P.finetune_config(2, 10, 0.01)
    net = P.finetune_pruned(ref, 0.5, "magnitude", (data.train_x, data.train_y), cfg, bn_x=ax, progress=False)
    assert ft[0][0]["test_acc"] == evaluate(net, data.test_x, data.test_y)["acc"]
    assert all(torch.equal(v, ft[0][1][k]) for k, v in net.state_dict().items())
    trimmed = P.network_trimming(ref, 0.5, "apoz", ax, (data.train_x, data.train_y), cfg, rounds=2, progress=False)
    assert trims[0][0]["val_acc"] == evaluate(trimmed, data.val_x, data.val_y)["acc"]
    assert all(torch.equal(v, trims[0][1].state_dict()[k]) for k, v in trimmed.state_dict().items())
    m = P.prune_random(ref, 0.9, like=P.get_masks(P.prune_magnitude(ref, 0.9, "layer")), seed=0)
    assert oneshot[1]["random, stale BN statistics"] == evaluate(m, data.val_x, data.val_y)["acc"]

    # a part refuses a reference that is not the one its config names
    with pytest.raises(ValueError, match="sha256 differs"):
        P.part_reference((ref.arch, build("resnet8", width=0.25).state_dict()), parts.model_sha(ref))


def test_03_torch_pruning_part_and_model_blobs(tmp_path):
    pytest.importorskip("torch_pruning")
    from dataclasses import asdict
    from slimlab import prune as P
    from slimlab.models import build
    from test_scaling import fake_data
    data = fake_data(n_train=40, n_eval=20)
    torch.manual_seed(0)
    ref = build("resnet8", width=0.25).eval()
    config = {"base": parts.model_sha(ref), "val_images": 20, "test_images": 20, "fraction": 0.5, "seed": 1,
              "train": asdict(P.finetune_config(2, 10, 0.01))}
    rec, blob = P.torch_pruning_part(config, reference=(ref.arch, ref.state_dict()), data=data)
    again, _ = P.torch_pruning_part(config, reference=(ref.arch, ref.state_dict()), data=data)
    assert rec == again and rec["inner_channels"] == {n: b.conv1.out_channels // 2 for n, b in P.blocks(ref).items()}
    model = P.model_from_blob(blob)
    assert model.arch["inner_channels"] == rec["inner_channels"]
    from slimlab.files import CheckpointError
    with pytest.raises(CheckpointError, match="not a model blob"):
        P.model_from_blob({"state_dict": {}})


def test_03_part_functions_pickle_for_a_process_or_dask_worker():
    import functools
    import pickle
    from slimlab import prune as P
    from slimlab.cluster import WorkerData
    ref = WorkerData("0" * 64)
    for fn in (P.oneshot_part, P.finetune_part, P.channels_part, P.trim_part, P.torch_pruning_part):
        part = pickle.loads(pickle.dumps(functools.partial(fn, reference="resnet20", data=ref)))
        assert part.func is fn and part.keywords == {"reference": "resnet20", "data": ref}


def test_a_long_part_resumes_its_qat_fit_from_the_last_epoch_and_drops_the_checkpoint_when_stored(tmp_path):
    """Notebook 02's QAT parts train for hours: `resume_path` gives `fit` a checkpoint under the work folder,
    a run stopped mid-part resumes from its last finished epoch (a fake-quantized model: parametrizations,
    activation ranges) to the same weights as an uninterrupted run, and storing the part removes it."""
    from slimlab import quantize as Q
    from slimlab.models import build
    from slimlab.train import TrainConfig, fit
    torch.manual_seed(0)
    ref = build("resnet8", width=0.25).eval()
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (64,))
    qcfg = Q.QuantConfig(bits=4, granularity="per_channel", edge_bits=8, act_bits=8)
    cfg = TrainConfig(steps=8, batch_size=16, lr=0.01, schedule="cosine", seed=0, precision="fp32")
    config = {"bits": 4, "steps": 8}
    store = PartStore(tmp_path / "parts", tmp_path / "work")
    ck = store.resume_path("qat-4bit", config)
    assert ck == tmp_path / "work" / f"{part_key('qat-4bit', config)}{parts.RESUME_SUFFIX}"
    assert PartStore(tmp_path / "p2", enabled=False).resume_path("qat-4bit", config) is None

    whole = Q.quantize_model(ref, qcfg, x)
    fit(whole, x, y, cfg, progress=False, device="cpu")

    def stop(step, total, m):
        if step == 6:                                            # in epoch 2 (4 steps an epoch)
            raise KeyboardInterrupt
    first = Q.quantize_model(ref, qcfg, x)
    with pytest.raises(KeyboardInterrupt):
        fit(first, x, y, cfg, checkpoint=ck, on_step=stop, progress=False, device="cpu")
    assert ck.is_file()

    def run():
        m = Q.quantize_model(ref, qcfg, x)                       # a fresh process would rebuild it
        calls = []
        h = fit(m, x, y, cfg, checkpoint=ck, progress=False, device="cpu", on_step=lambda s, t, _: calls.append(s))
        assert h.step[-1] == 8 and len(calls) == 4             # epoch 1 was not trained again
        for (k, va), vb in zip(whole.state_dict().items(), m.state_dict().values()):
            torch.testing.assert_close(va, vb, atol=1e-6, rtol=1e-5, msg=k)
        return {"steps": h.step[-1]}
    assert store.run("qat-4bit", config, run) == {"steps": 8}
    assert not ck.exists() and store.get(part_key("qat-4bit", config), config) == {"steps": 8}


def test_03_fine_tune_part_resumes_from_its_checkpoint_through_compute_models(tmp_path, monkeypatch):
    """Notebook 03's 6,000-step gradual fine-tunes take hours: each gets `store.resume_path` as its input;
    a part interrupted mid-way (reported, not stored) resumes from its last epoch on the next run and ends
    with the record of an uninterrupted run; storing it removes the checkpoint."""
    import functools
    from dataclasses import asdict
    from slimlab import prune as P
    from slimlab.models import build
    from test_scaling import fake_data
    data = fake_data(n_train=60, n_eval=20)
    torch.manual_seed(0)
    ref = build("resnet8", width=0.25).eval()
    REF = (ref.arch, {k: v.clone() for k, v in ref.state_dict().items()})
    cfg = P.finetune_config(12, 10, 0.01)                              # 6 steps an epoch, 2 epochs
    FT = {"base": parts.model_sha(ref), "data": "tiny", "val_images": 20, "test_images": 20, "step": "finetune",
          "train": asdict(cfg), "scope": "global", "seed": 0, "bn_images": 30, "sparsity": 0.8, "variant": "gradual"}
    kind = lambda c: f"finetune-{c['variant']}-s{c['sparsity']:g}"
    fn = functools.partial(P.finetune_part, reference=REF, data=data)

    def run(store):
        return store.compute_models(kind, [FT], fn, lambda st, c: st, need_model=False,
                                    inputs=lambda c: store.resume_path(kind(c), c))[0][0]
    whole = run(PartStore(tmp_path / "whole", tmp_path / "w0", profile="full"))

    store = PartStore(tmp_path / "parts", tmp_path / "work", profile="full")
    ck = store.resume_path(kind(FT), FT)
    original, calls = P.gradual_pruning, []

    def counting(stop_at):
        def make(*a, **k):
            hook = original(*a, **k)

            def on_step(step, total, net):
                calls.append(step)
                if step == stop_at:
                    raise RuntimeError("stopped mid-part")
                hook(step, total, net)
            return on_step
        return make
    monkeypatch.setattr(P, "gradual_pruning", counting(9))
    with pytest.raises(parts.PartsFailed, match="stopped mid-part"):
        run(store)
    assert ck.is_file() and not store.path(part_key(kind(FT), FT)).exists()
    calls.clear()
    monkeypatch.setattr(P, "gradual_pruning", counting(None))
    resumed = run(store)
    assert calls == list(range(7, 13))                                 # epoch 1 was not trained again
    strip = lambda r: {k: v for k, v in r.items() if k != "seconds"}
    assert strip(resumed) == strip(whole) and not ck.exists()
