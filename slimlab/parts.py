"""Resumable parts: each expensive step of a full-profile run stored as one JSON file, reused on re-run.

A full-profile notebook is a list of expensive steps (a fine-tune, a training run, a sweep point).
`PartStore` keeps each finished step's metrics record as
`results/<profile>/<notebook>/parts/<key>.json` (written atomically, with the step's config and
provenance), so a run that a session kill interrupts resumes where it stopped, and the records are
committed as they finish. It is the course's one resumable cache (notebook 01's sweep cells are parts too):

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
* A stored file that is not valid JSON, lacks its record, or holds another config raises ValueError
  naming the file (it is never overwritten silently: it may be evidence; delete it to recompute).

Batches of parts through an executor (`compute`), the API the notebooks share:

    from slimlab.cluster import executor_from_env
    executor = executor_from_env()        # None (serial) unless SLIMLAB_DASK is set
    recs = store.compute("oneshot", [{"sparsity": s, ...} for s in S], oneshot_part, executor=executor)

* `compute(kind, configs, fn, executor=None)` returns one record per config, in order. Stored parts
  are read back; the missing ones are computed as `fn(config) -> record dict`, one after another in
  this process (`executor=None`, the default) or submitted to any `concurrent.futures.Executor`
  (a process pool, or Dask via `slimlab.cluster`). `kind` is a str or a function config -> str.
* The process that owns the store writes every part (atomically, as each finishes); workers only
  return records, so no two processes write one file and workers need no shared disk. The files are
  the same bytes as a serial run's apart from the timing fields (`TIMING_FIELDS`).
* `fn` and its arguments must pickle for an executor (a top-level function, or a
  `functools.partial` of one): models travel as state dicts inside the config or the partial, data
  as a `slimlab.cluster.WorkerData` that each worker resolves from its own `SLIMLAB_CIFAR10`.
* A part whose `fn` raises does not stop the others: every part that finishes is written, then
  `PartsFailed` (a RuntimeError) lists each failed part's key, config and traceback.

Batches of parts whose *models* a later cell needs (`run_model` for a batch), and chains of them:

    outs = store.compute_models("finetune", configs, finetune_part, load, executor=executor,
                                need_model=lambda c: c["sparsity"] == 0.9)       # [(record, model or None)]
    outs = store.compute_chains(kind, [[round1_cfg, round2_cfg], ...], round_part, load, executor=executor)

* `compute_models(kind, configs, fn, load, executor=None, *, need_model=True, inputs=None)`: `fn(config)`
  returns (record, state), the state a torch-saveable dict (a state dict, or a dict holding one) or None
  when the part keeps no model. The state travels back from the worker; this process writes it to
  `model_path(key)` under the ignored work folder (not in the quick profile), then the record, and
  `load(state, config)` makes the model. Where `need_model` (a bool, or config -> bool) holds, a stored
  record is reused only together with its model file; otherwise the part is computed again, as `run_model`.
  `inputs` (config -> value, called here only for the parts computed) gives each part one more argument,
  `fn(config, value)`, e.g. the state of the model it starts from; the config must name that input.
* `compute_chains(kind, chains, fn, load, executor=None, *, need_model=False)`: chains of parts where
  each stage starts from the previous stage's model (Network Trimming's rounds): stage i of a chain is
  `fn(config, state of stage i - 1)` (stage 0: `fn(config, None)`). The stages go stage by stage, each
  one batch over every chain through `executor`; a stage is computed only where its record is missing,
  or where the next stage must be computed and the model file is missing. Returns one (record, model or
  None) per chain, for its last stage.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import traceback
from concurrent.futures import Executor, as_completed
from pathlib import Path
from typing import Any, Callable, Sequence

from .data import ROOT
from .files import atomic_json, atomic_torch_save

PART_FORMAT = "slimlab-part/1"
# Fields of a part file that differ between two runs of the same part (everything else is the same
# bytes): the provenance's wall-clock time, and the timing fields of records.
TIMING_FIELDS = ("utc", "seconds", "ms", "median_ms", "latency_ms")
RESUME_SUFFIX = ".resume.pt"   # a part's `fit` resume checkpoint under the work folder (`PartStore.resume_path`)

# Provenance fields that describe where a part was computed (taken from the worker that ran it).
WORKER_FIELDS = ("machine", "machine_info", "precision_path", "python", "torch")


class PartsFailed(RuntimeError):
    """Some parts of a batch raised; the others were stored. `failures`: [(key, config, traceback)]."""

    def __init__(self, failures: list[tuple[str, dict, str]]):
        self.failures = failures
        lines = [f"{len(failures)} part{'s' * (len(failures) != 1)} failed (every other part was stored):"]
        for key, config, tb in failures:
            lines += [f"--- {key}  config {canonical(config)}", tb.rstrip()]
        super().__init__("\n".join(lines))


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
    """Load a `save_state` file into `model` (strict, weights only); returns the model in eval mode.
    A damaged file, or one for another architecture, raises `files.CheckpointError` naming it."""
    from . import files
    what = "part model (a slimlab.parts.save_state file)"
    return files.load_state(model, files.load_torch(path, what), path, what).eval()


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

    def resume_path(self, kind: str, config: dict) -> Path | None:
        """Where a long part keeps `fit`'s resume checkpoint (`fit(..., checkpoint=path)`, saved after
        every epoch), so that a run stopped mid-part resumes from its last epoch rather than from step 0:
        `<work>/<key>.resume.pt`, deleted once the part's record is stored. None when the store is
        disabled (the quick profile): then the part trains without one."""
        if not self.enabled:
            return None
        return self.model_path(part_key(kind, config), RESUME_SUFFIX)

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

    def put(self, key: str, record: dict, config: dict, where: dict | None = None) -> Path | None:
        """Store `record` (a JSON-able dict) under `key` with its config and provenance; atomic.
        `where`: the `WORKER_FIELDS` of the process that computed it (default: this one).
        Returns the path, or None when the store is disabled."""
        if not isinstance(record, dict):
            raise TypeError(f"a part's record must be a dict, got {type(record).__name__}")
        from .ledger import provenance
        body = _plain(record)
        if not self.enabled:
            return None
        prov = provenance(self.profile, self.data_fingerprint)
        prov.update({k: v for k, v in (where or {}).items() if k in WORKER_FIELDS})
        doc = {"format": PART_FORMAT, "key": key, "config": json.loads(canonical(config)),
               "provenance": prov, "record": body}
        path = atomic_json(doc, self.path(key))
        self.model_path(key, RESUME_SUFFIX).unlink(missing_ok=True)   # the part is done: its resume point goes
        return path

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

    def compute(self, kind: str | Callable[[dict], str], configs: Sequence[dict], fn: Callable[[dict], dict],
                executor: Executor | None = None, *, progress: bool = False, desc: str = "parts") -> list[dict]:
        """One record per config (in order): stored parts read back, missing ones computed as
        `fn(config)` serially here (`executor=None`) or through `executor`, each stored as it finishes.

        Raises `PartsFailed` after the batch if any `fn` raised (the finished parts are stored)."""
        keys = self._check_batch(kind, configs, fn, executor)
        records: dict[str, dict] = {}
        for key, config in zip(keys, configs):          # every stored part checked before any work starts
            rec = self.get(key, config)
            if rec is not None:
                records[key] = rec
                self.loaded.append(key)
        todo = [(key, config, ()) for key, config in zip(keys, configs) if key not in records]

        def finish(key: str, config: dict, out: dict) -> str | None:
            records[key] = out["record"]
            self.put(key, out["record"], config, out["where"])
            self.computed.append(key)
            return None

        failures = self._batch(todo, fn, executor, compute_part, finish, progress, desc)
        if failures:
            raise PartsFailed(sorted(failures, key=lambda f: keys.index(f[0])))
        return [records[k] for k in keys]

    def compute_models(self, kind: str | Callable[[dict], str], configs: Sequence[dict], fn: Callable[..., tuple],
                       load: Callable[[dict, dict], Any], executor: Executor | None = None, *,
                       need_model: bool | Callable[[dict], bool] = True, inputs: Callable[[dict], Any] | None = None,
                       suffix: str = ".pt", progress: bool = False, desc: str = "parts") -> list[tuple[dict, Any]]:
        """One (record, model or None) per config, in order: `run_model` for a batch, through `executor`.

        `fn(config)` (`fn(config, inputs(config))` with `inputs`) returns (record, state): the model's
        state (a torch-saveable dict) travels back, this process writes it to `model_path(key, suffix)`
        (when the store is enabled) and then the record; `load(state, config)` makes the model. A stored
        record is enough where `need_model` is False (the model is then None unless the part was computed
        now); where it holds, the model file must be there too, else the part is computed again.
        Raises `PartsFailed` after the batch if any part failed (the finished parts are stored)."""
        if not callable(load):
            raise TypeError("load must be a callable (state, config) -> model")
        keys = self._check_batch(kind, configs, fn, executor)
        results, failures = self._compute_states(keys, configs, fn, executor, need_model, inputs, suffix, progress, desc)
        if failures:
            raise PartsFailed(sorted(failures, key=lambda f: keys.index(f[0])))
        return [(rec, None if state is None else load(state, config))
                for (rec, state), config in zip((results[k] for k in keys), configs)]

    def compute_chains(self, kind: str | Callable[[dict], str], chains: Sequence[Sequence[dict]],
                       fn: Callable[[dict, Any], tuple], load: Callable[[dict, dict], Any],
                       executor: Executor | None = None, *, need_model: bool | Callable[[dict], bool] = False,
                       suffix: str = ".pt", progress: bool = False, desc: str = "parts") -> list[tuple[dict, Any]]:
        """One (record, model or None) per chain, for its last stage: chains of parts in which stage i
        is `fn(config, state of stage i - 1)` (stage 0: `fn(config, None)`) returning (record, state).

        Stage by stage, each stage is one batch over every chain that needs it, through `executor`: a
        stage is computed where its record is missing, or where the next stage must be computed and this
        stage's model file is missing; the model of a stage that is not computed comes from its file.
        `need_model` (a bool, or config -> bool) asks for the last stage's model. A failed stage stops its
        own chain only: the others go on, then `PartsFailed` lists what failed."""
        bad = TypeError("chains must be a non-empty list of chains, each a non-empty list of config dicts")
        if isinstance(chains, dict) or not isinstance(chains, Sequence) or not chains:
            raise bad
        chains = [list(c) for c in chains]
        if not all(c and all(isinstance(x, dict) for x in c) for c in chains):
            raise bad
        if not callable(load):
            raise TypeError("load must be a callable (state, config) -> model")
        flat = [c for chain in chains for c in chain]
        all_keys = self._check_batch(kind, flat, fn, executor)
        keys, at = [], 0
        for chain in chains:
            keys.append(all_keys[at:at + len(chain)])
            at += len(chain)
        # from the last stage down: which stages must be computed (run), and whose models are needed (want)
        run, want = [], []
        for chain, ks in zip(chains, keys):
            n = len(chain)
            r, w = [False] * n, [False] * n
            w[-1] = bool(need_model(chain[-1])) if callable(need_model) else bool(need_model)
            for i in reversed(range(n)):
                r[i] = not (self.get(ks[i], chain[i]) is not None
                            and (not w[i] or self.model_path(ks[i], suffix).is_file()))
                if i > 0:
                    w[i - 1] = r[i]
            run.append(r)
            want.append(w)
        states: dict[int, Any] = {}                  # chain -> the state its next stage starts from
        results: dict[int, tuple[dict, Any]] = {}    # chain -> (record, state) of its last stage
        failures: list[tuple[str, dict, str]] = []
        broken: set[int] = set()
        for i in range(max(len(c) for c in chains)):
            live = [j for j, c in enumerate(chains) if i < len(c) and j not in broken]
            for j in live:
                if run[j][i]:
                    continue
                last, key = i == len(chains[j]) - 1, keys[j][i]
                state = load_torch_state(self.model_path(key, suffix)) if want[j][i] else None
                if last:
                    results[j] = (self.get(key, chains[j][i]), state)
                    self.loaded.append(key)
                else:
                    states[j] = state
            todo = [j for j in live if run[j][i]]
            if not todo:
                continue
            ids = {id(chains[j][i]): j for j in todo}
            done, fails = self._compute_states(
                [keys[j][i] for j in todo], [chains[j][i] for j in todo], fn, executor,
                lambda c: want[ids[id(c)]][i], lambda c: states.get(ids[id(c)]) if i > 0 else None,
                suffix, progress, f"{desc} (stage {i + 1})")
            failures += fails
            for j in todo:
                key = keys[j][i]
                if key not in done:
                    broken.add(j)
                elif i == len(chains[j]) - 1:
                    results[j] = done[key]
                else:
                    states[j] = done[key][1]
        if failures:
            raise PartsFailed(sorted(failures, key=lambda f: all_keys.index(f[0])))
        return [(results[j][0], None if results[j][1] is None else load(results[j][1], chains[j][-1]))
                for j in range(len(chains))]

    # ---- the batch machinery

    def _check_batch(self, kind, configs, fn, executor) -> list[str]:
        """The keys of a batch, after checking its arguments (every key distinct)."""
        if not callable(fn):
            raise TypeError("fn must be a callable config -> the part's metrics record (a dict)")
        if isinstance(configs, dict) or not isinstance(configs, Sequence):
            raise TypeError(f"configs must be a list of config dicts, got {type(configs).__name__}")
        if executor is not None and not isinstance(executor, Executor):
            raise TypeError(f"executor must be a concurrent.futures.Executor or None, got {type(executor).__name__}")
        kinds = [kind(c) if callable(kind) else kind for c in configs]
        keys = [part_key(k, c) for k, c in zip(kinds, configs)]
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise ValueError(f"two configs of the batch give the same part {dup}: every config must differ")
        return keys

    def _compute_states(self, keys, configs, fn, executor, need_model, inputs, suffix, progress, desc
                        ) -> tuple[dict[str, tuple[dict, Any]], list[tuple[str, dict, str]]]:
        """({key: (record, state or None)}, failures) of a checked batch: stored parts read back (with
        their model file's state where the model is needed), the others computed by `compute_model_part`
        and stored (model file first, then the record)."""
        if inputs is not None and not callable(inputs):
            raise TypeError("inputs must be a callable config -> the part's extra argument, or None")
        need = {k: bool(need_model(c)) if callable(need_model) else bool(need_model) for k, c in zip(keys, configs)}
        results: dict[str, tuple[dict, Any]] = {}
        for key, config in zip(keys, configs):
            rec = self.get(key, config)
            if rec is None:
                continue
            if not need[key]:
                results[key] = (rec, None)
            elif self.model_path(key, suffix).is_file():
                results[key] = (rec, load_torch_state(self.model_path(key, suffix)))
            else:
                continue                                  # its model is needed and gone: compute it again
            self.loaded.append(key)
        todo = [(key, config, (inputs(config),) if inputs is not None else ())
                for key, config in zip(keys, configs) if key not in results]

        def finish(key: str, config: dict, out: dict) -> str | None:
            state = out["state"]
            if state is None and need[key]:
                return f"fn of part {key} returned no model state, and its model is needed"
            if state is not None and self.enabled:
                atomic_torch_save(state, self.model_path(key, suffix))
            self.put(key, out["record"], config, out["where"])
            self.computed.append(key)
            results[key] = (out["record"], state)
            return None

        return results, self._batch(todo, fn, executor, compute_model_part, finish, progress, desc)

    def _batch(self, todo, fn, executor, runner, finish, progress: bool, desc: str) -> list[tuple[str, dict, str]]:
        """Run `runner(fn, key, config, *args)` for each (key, config, args) of `todo`, here or through
        `executor`, and hand each finished part to `finish` (which returns an error text or None) as
        it finishes; returns the failures [(key, config, traceback)]."""
        from tqdm.auto import tqdm
        failures: list[tuple[str, dict, str]] = []
        bar = tqdm(total=len(todo), desc=desc, unit="part", disable=not progress or not todo)

        def done(key: str, config: dict, out: dict) -> None:
            error = out.get("error") or finish(key, config, out)
            if error:
                failures.append((key, config, error))
            bar.update(1)

        if executor is None:
            for key, config, args in todo:
                done(key, config, runner(fn, key, config, *args))
        else:
            futures = {executor.submit(runner, fn, key, config, *args): (key, config) for key, config, args in todo}
            for f in as_completed(futures):
                key, config = futures[f]
                try:
                    out = f.result()
                except Exception as e:   # the executor itself failed the part (e.g. Dask: KilledWorker)
                    out = {"error": "".join(traceback.format_exception(type(e), e, e.__traceback__))}
                done(key, config, out)
        bar.close()
        return failures

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


def compute_part(fn: Callable[..., dict], key: str, config: dict, *args) -> dict:
    """Run one part where it is scheduled: {'record', 'where'} (the plain JSON record and the
    `WORKER_FIELDS` of this process), or {'error': traceback text}. Never raises, so a part that
    fails is reported once, not retried; a worker that dies is retried by the scheduler."""
    try:
        rec = fn(config, *args)
        if not isinstance(rec, dict):
            raise TypeError(f"fn of part {key} must return a dict (its metrics record), got {type(rec).__name__}")
        return {"record": _plain(rec), "where": _where()}
    except Exception as e:
        return {"error": "".join(traceback.format_exception(type(e), e, e.__traceback__))}


def compute_model_part(fn: Callable[..., tuple], key: str, config: dict, *args) -> dict:
    """Run one part that keeps a model, where it is scheduled: `fn(config, *args)` returns (record, state);
    {'record', 'state', 'where'}, or {'error': traceback text}. The state (a dict of tensors, or None)
    travels back to the process that owns the store. Never raises, as `compute_part`."""
    try:
        out = fn(config, *args)
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], dict)):
            raise TypeError(f"fn of part {key} must return (record dict, model state dict or None), "
                            f"got {type(out).__name__}")
        rec, state = out
        if state is not None and not isinstance(state, dict):
            raise TypeError(f"fn of part {key} must return its model's state as a dict (or None), "
                            f"got {type(state).__name__}")
        return {"record": _plain(rec), "state": state, "where": _where()}
    except Exception as e:
        return {"error": "".join(traceback.format_exception(type(e), e, e.__traceback__))}


def load_torch_state(path: str | os.PathLike) -> dict:
    """A model state written by `compute_models` (or `save_state`), loaded safely (weights only);
    a damaged file raises `files.CheckpointError` naming it."""
    from .files import load_torch
    return load_torch(path, "part model (a slimlab.parts model state file)")


def _where() -> dict:
    """The `WORKER_FIELDS` of this process's provenance (machine and CPU flags, precision path, versions)."""
    from .ledger import provenance
    prov = provenance("quick")
    return {k: prov[k] for k in WORKER_FIELDS if k in prov}


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
