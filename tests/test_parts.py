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
