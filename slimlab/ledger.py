"""The results ledger: per-notebook results files and verdicts that come from rule functions.

A claim's verdict is never typed. Each claim C1–C14 gets a *rule*: a function from a dict
of measured metrics to 'supported' | 'qualified' | 'refuted', registered with `@rule`.
`judge(claim, metrics)` applies it and returns a `Record`; `write_results(notebook,
records)` writes `results/<profile>/<notebook>.json` atomically, with provenance (UTC time,
git commit, profile, machine and its CPU flags, torch version, data fingerprint) added.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from .data import ROOT
from .files import atomic_write_text

VERDICTS = ("supported", "qualified", "refuted")
CLAIMS = {
    "C1": "accuracy (and information absorbed) grows sub-linearly with parameters: diminishing returns",
    "C2": "model size must match data size: too small underfits, too large for the data overfits",
    "C3": "a small accuracy sacrifice allows a large parameter cut",
    "C4": "8-bit instead of 32-bit weights cuts storage by 75%",
    "C5": "training needs high precision (small updates vanish at low precision); inference tolerates it",
    "C6": "trained weights per layer are near-normal / mixture of normals, concentrated near zero",
    "C7": "small-|w| weights matter least: magnitude pruning beats random pruning at equal sparsity",
    "C8": "many neurons are rarely active whatever the input; removing them costs little (APoZ)",
    "C9": "a low-rank (PCA-like) map of weight matrices keeps performance with fewer parameters",
    "C10": "weight sharing by k-means clustering or by random hashing cuts parameters",
    "C11": "a student trained under a teacher acquires (part of) the teacher's capability",
    "C12": "distillation keeps capability better than quantization, pruning or sharing at equal size",
    "C13": "combining methods beats any single method on the size–accuracy trade-off",
    "C14": "slimmed models fit the edge: smaller files and lower latency on a CPU",
}
RESULTS_DIR = ROOT / "results"


@dataclass(frozen=True)
class Rule:
    claim: str
    name: str
    text: str                       # the decision rule in words
    fn: Callable[[dict], str]


_RULES: dict[tuple[str, str], Rule] = {}


def rule(claim: str, text: str, name: str = "default"):
    """Register `fn(metrics) -> verdict` as the rule `name` for `claim`, described by `text`."""
    if claim not in CLAIMS:
        raise ValueError(f"unknown claim {claim!r}; allowed: {', '.join(CLAIMS)}")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("a rule needs its decision rule in words (text)")

    def register(fn):
        _RULES[(claim, name)] = Rule(claim, name, text, fn)
        return fn
    return register


def _load_rules() -> None:
    from . import claims  # noqa: F401  (registers every rule of C1–C14)


def rules() -> dict[tuple[str, str], Rule]:
    """Every registered rule, keyed by (claim, name)."""
    _load_rules()
    return dict(_RULES)


@dataclass
class Record:
    claim: str
    verdict: str
    metrics: dict
    rule: str
    figures: list[str] = field(default_factory=list)
    notebook: str = ""
    label: str = ""  # 'quick — not evidence' for quick-profile records

    def as_dict(self) -> dict:
        return asdict(self)


def judge(claim: str, metrics: dict, name: str = "default", figures: list[str] | None = None,
          profile: str | None = None) -> Record:
    """Apply the registered rule for `claim` to `metrics` and return the Record."""
    if claim not in CLAIMS:
        raise ValueError(f"unknown claim {claim!r}; allowed: {', '.join(CLAIMS)}")
    _load_rules()
    if (claim, name) not in _RULES:
        have = sorted(n for c, n in _RULES if c == claim)
        raise ValueError(f"no rule {name!r} registered for {claim}; registered: {have or 'none'}")
    if not isinstance(metrics, dict):
        raise TypeError(f"metrics must be a dict, got {type(metrics).__name__}")
    r = _RULES[(claim, name)]
    verdict = r.fn(metrics)
    if verdict not in VERDICTS:
        raise ValueError(f"rule {claim}/{name} returned {verdict!r}; must be one of {VERDICTS}")
    from .profile import get_profile
    prof = get_profile(profile).name
    return Record(claim, verdict, _jsonable(metrics), r.text, list(figures or []),
                  label="quick — not evidence" if prof == "quick" else "")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


REFERENCE_NAMES = ("resnet20", "resnet8")   # the reference checkpoints every result stands on


def reference_checkpoints(root: str | os.PathLike | None = None) -> dict[str, str]:
    """{name: sha256} of the committed reference checkpoints, read from their cards in
    data/checkpoints/ (a card that is missing or unreadable is left out)."""
    folder = Path(root if root is not None else ROOT) / "data" / "checkpoints"
    out = {}
    for name in REFERENCE_NAMES:
        try:
            sha = json.loads((folder / f"{name}.json").read_text()).get("sha256")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(sha, str):
            out[name] = sha
    return out


def provenance(profile: str | None = None, data_fingerprint: str | None = None) -> dict:
    """Where a results file comes from: UTC time, git commit, profile, machine (one line, and
    `machine_info()`: CPU model, flags, bf16-native, torch's CPU capability), the training precision path
    (what `TrainConfig(precision="auto")` resolves to here; experiments that pin fp32 say so in their
    metrics), Python, torch, data sha256, and the sha256 of the reference checkpoints (`reference_checkpoints`),
    so that the report can tell a result measured on an earlier reference."""
    import torch
    from .machine import machine_info
    from .profile import get_profile
    from .train import default_device, resolve_precision
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {
        "utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "profile": get_profile(profile).name,
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {dev}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "data_sha256": data_fingerprint,
        "reference_checkpoints": reference_checkpoints(),
        "machine_info": machine_info(),
        "precision_path": "auto -> " + resolve_precision("auto", default_device()),
    }


def write_results(notebook: str, records: list[Record], *, profile: str | None = None,
                  data_fingerprint: str | None = None, extra: dict | None = None,
                  results_dir: str | os.PathLike | None = None) -> Path:
    """Write `results/<profile>/<notebook>.json` atomically; return its path."""
    if not isinstance(notebook, str) or not notebook or "/" in notebook:
        raise ValueError(f"notebook must be a bare name like '02_quantization', got {notebook!r}")
    if not isinstance(records, list) or not all(isinstance(r, Record) for r in records):
        raise TypeError("records must be a list of Record (from judge)")
    prov = provenance(profile, data_fingerprint)
    for r in records:
        r.notebook = notebook
    out_dir = Path(results_dir) if results_dir is not None else RESULTS_DIR / prov["profile"]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{notebook}.json"
    doc = {"notebook": notebook, "provenance": prov, "records": [r.as_dict() for r in records],
           "extra": _jsonable(extra or {})}
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
    return path


def read_results(path: str | os.PathLike) -> dict:
    """Read one results file, checking its shape; a malformed file raises ValueError naming it."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{p}: not a readable results file ({e})") from None
    if not isinstance(doc, dict) or "records" not in doc or "provenance" not in doc:
        raise ValueError(f"{p}: a results file needs 'provenance' and 'records'")
    for i, r in enumerate(doc["records"]):
        missing = {"claim", "verdict", "metrics", "rule"} - set(r)
        if missing:
            raise ValueError(f"{p}: record {i} lacks {sorted(missing)}")
        if r["verdict"] not in VERDICTS:
            raise ValueError(f"{p}: record {i} has verdict {r['verdict']!r}, not one of {VERDICTS}")
    return doc
