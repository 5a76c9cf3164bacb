"""Resumable parts: each expensive step of a full-profile run stored as one JSON file, reused on re-run.

A full-profile notebook is a list of expensive steps (a fine-tune, a training run, a sweep point).
`PartStore` keeps each finished step's metrics record as
`results/<profile>/<notebook>/parts/<key>.json` (written atomically, with the step's config and
provenance), so a run that a session kill interrupts resumes where it stopped, and the records are
committed as they finish. The pattern is `slimlab.scaling`'s per-cell sweep store, made general:

    store = PartStore.for_notebook("03_pruning")            # enabled in the full profile only
    rec = store.run("finetune-magnitude", {"sparsity": 0.8, ...}, lambda: {...metrics...})
    rec, model = store.run_model("trim-apoz", cfg, train_fn, load_fn)   # numbers and a model

* `part_key(kind, config)` is deterministic: a readable `kind` plus a hash of the canonical JSON of
  `config`; any change of the config gives a new key (and so a recomputation).
* `run(kind, config, fn)` returns the stored record, or calls `fn()` and stores what it returns.
* `run_model(kind, config, fn, load)` is for steps whose *model* a later cell needs: `fn(path)`
  returns (record, model) and writes the model to `path` under the ignored `data/work/<notebook>/`;
  on re-run the record comes from `results/` and the model from `load(path)`; a missing model file
  means the step is computed again. Model files never go into `results/`.
* In the quick profile the store is disabled: every part is computed live (so CI runs real code),
  nothing is read and no record is written.
* A stored file that is not valid JSON, or lacks its record, raises ValueError naming the file.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Callable

from .data import ROOT
from .files import atomic_json, atomic_torch_save

PART_FORMAT = "slimlab-part/1"


def canonical(config: dict) -> str:
    """The canonical JSON of `config` (sorted keys, no spaces); tuples become lists."""
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict of JSON-able values, got {type(config).__name__}")
    try:
        return json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"config must hold only JSON values (str, int, float, bool, None, lists, dicts): {e}") from None


def part_key(kind: str, config: dict) -> str:
    """A file-name-safe, deterministic key: `kind` (slugged) + '-' + 12 hex digits of sha256(config)."""
    if not isinstance(kind, str) or not kind.strip():
        raise ValueError(f"kind must be a non-empty str naming the step, got {kind!r}")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", kind.strip()).strip("-.")[:80] or "part"
    return f"{slug}-{hashlib.sha256(canonical(config).encode()).hexdigest()[:12]}"


def save_state(model, path: str | os.PathLike) -> Path:
    """Write `model.state_dict()` (contiguous CPU tensors) to `path` atomically."""
    return atomic_torch_save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, path)


def model_sha(model) -> str:
    """sha256 of a model's state (names and tensor bytes): part configs name the model they start from."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def load_state(model, path: str | os.PathLike):
    """Load a `save_state` file into `model` (strict, weights only); returns the model in eval mode."""
    import torch
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


class PartStore:
    """Stored metrics records of finished parts under `root` (and their models under `work`).

    `enabled=False` (the quick profile) computes every part live and stores nothing.
    Counters `loaded` and `computed` say what this session did; `summary()` says it in words."""

    def __init__(self, root: str | os.PathLike, work: str | os.PathLike | None = None, *,
                 enabled: bool = True, profile: str | None = None, data_fingerprint: str | None = None):
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
        self.root = Path(root)
        self.work = Path(work) if work is not None else self.root / "work"
        self.enabled = enabled
        self.profile = profile
        self.data_fingerprint = data_fingerprint
        self.loaded: list[str] = []
        self.computed: list[str] = []

    @classmethod
    def for_notebook(cls, notebook: str, profile: str | None = None, *,
                     data_fingerprint: str | None = None) -> "PartStore":
        """The store of `notebook` ('03_pruning'): results/<profile>/<notebook>/parts, models under
        data/work/<notebook>/<profile>; enabled in the full profile only."""
        from .profile import get_profile
        if not isinstance(notebook, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", notebook):
            raise ValueError(f"notebook must be a bare name like '03_pruning', got {notebook!r}")
        prof = get_profile(profile).name
        return cls(ROOT / "results" / prof / notebook / "parts", ROOT / "data" / "work" / notebook / prof,
                   enabled=prof == "full", profile=prof, data_fingerprint=data_fingerprint)

    # ---- files

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def model_path(self, key: str, suffix: str = ".pt") -> Path:
        return self.work / f"{key}{suffix}"

    def get(self, key: str, config: dict | None = None) -> dict | None:
        """The stored record of `key`, or None if there is none (or the store is disabled).

        A file that is not valid JSON, lacks its record, or was stored for another config
        raises ValueError naming the file (delete it to recompute that part)."""
        if not self.enabled:
            return None
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            doc = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{p}: stored part is not readable JSON ({e}); delete the file to recompute it") from None
        if not isinstance(doc, dict) or doc.get("format") != PART_FORMAT or not isinstance(doc.get("record"), dict):
            raise ValueError(f"{p}: not a {PART_FORMAT} file with a 'record' dict; delete the file to recompute it")
        if config is not None and doc.get("config") != json.loads(canonical(config)):
            raise ValueError(f"{p}: stored for another config than the one asked for; delete the file to recompute it")
        return doc["record"]

    def put(self, key: str, record: dict, config: dict) -> Path | None:
        """Store `record` (a JSON-able dict) under `key` with its config and provenance; atomic.
        Returns the path, or None when the store is disabled."""
        if not isinstance(record, dict):
            raise TypeError(f"a part's record must be a dict, got {type(record).__name__}")
        from .ledger import provenance
        body = _plain(record)
        if not self.enabled:
            return None
        doc = {"format": PART_FORMAT, "key": key, "config": json.loads(canonical(config)),
               "provenance": provenance(self.profile, self.data_fingerprint), "record": body}
        return atomic_json(doc, self.path(key))

    # ---- running parts

    def run(self, kind: str, config: dict, fn: Callable[[], dict]) -> dict:
        """The stored record of the part (`kind`, `config`), or `fn()` computed now and stored."""
        if not callable(fn):
            raise TypeError("fn must be a callable returning the part's metrics record (a dict)")
        key = part_key(kind, config)
        rec = self.get(key, config)
        if rec is not None:
            self.loaded.append(key)
            return rec
        rec = fn()
        if not isinstance(rec, dict):
            raise TypeError(f"fn of part {key} must return a dict (its metrics record), got {type(rec).__name__}")
        rec = _plain(rec)
        self.put(key, rec, config)
        self.computed.append(key)
        return rec

    def run_model(self, kind: str, config: dict, fn: Callable[[Path], tuple[dict, Any]],
                  load: Callable[[Path], Any], *, suffix: str = ".pt", need_model: bool = True) -> tuple[dict, Any]:
        """(record, model) of a part whose model a later cell needs.

        `fn(path)` trains, writes the model to `path` (e.g. with `save_state`) and returns
        (record, model); `load(path)` reads the model back. The model file lives under the ignored
        work folder; when it is missing the part is computed again, even if its record is stored.
        With `need_model=False` a stored record is enough: (record, None) comes back without the model."""
        if not callable(fn) or not callable(load):
            raise TypeError("fn (path -> (record, model)) and load (path -> model) must be callables")
        key = part_key(kind, config)
        path = self.model_path(key, suffix)
        rec = self.get(key, config)
        if rec is not None and not need_model:
            self.loaded.append(key)
            return rec, None
        if rec is not None and path.is_file():
            self.loaded.append(key)
            return rec, load(path)
        out = fn(path)
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], dict)):
            raise TypeError(f"fn of part {key} must return (record dict, model)")
        rec = _plain(out[0])
        self.put(key, rec, config)
        self.computed.append(key)
        return rec, out[1]

    # ---- telling the reader

    def stored(self) -> int:
        """Number of part files now under `root`."""
        return len(list(self.root.glob("*.json"))) if self.root.is_dir() else 0

    def summary(self) -> str:
        """'n of m parts loaded from <root>, k computed now' (or the quick profile's note)."""
        n, k = len(self.loaded), len(self.computed)
        where = _rel(self.root)
        if not self.enabled:
            return (f"{self.profile or 'this'} profile: {k} part{'s' * (k != 1)} computed live so far, none stored "
                    f"(the part store {where} is used in the full profile only)")
        return f"{n} of {n + k} parts loaded from {where}, {k} computed now and stored there"


def _plain(obj):
    """`obj` as plain JSON types (the same whether computed now or read back): tuples become lists,
    numpy/torch scalars Python numbers, non-finite floats None."""
    import math
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    raise TypeError(f"a part's record must hold only JSON values; got {type(obj).__name__}")


def _rel(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)
