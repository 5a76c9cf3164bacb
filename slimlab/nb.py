"""Small notebook helpers: show a function's source, state a verdict, show committed full results."""
from __future__ import annotations

import inspect
import json

from .data import ROOT
from .ledger import Record, read_results


def show_source(*objs):
    """Display the source of slimlab functions/classes in the notebook (so it is never copied by hand)."""
    from IPython.display import Markdown, display
    for obj in objs:
        src = inspect.getsource(obj)
        mod = getattr(obj, "__module__", "")
        display(Markdown(f"`{mod}.{obj.__qualname__}`\n```python\n{src}```"))


def show_verdict(record: Record) -> None:
    """Print a verdict with its rule and metrics; quick-profile verdicts carry their label."""
    label = f"  [{record.label}]" if record.label else "  [full profile]"
    print(f"{record.claim}: {record.verdict.upper()}{label}")
    print(f"  rule: {record.rule}")
    for k, v in record.metrics.items():
        print(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")


def committed_full(notebook: str) -> dict | None:
    """The committed full-profile results of `notebook` (results/full/<notebook>.json), or None."""
    path = ROOT / "results" / "full" / f"{notebook}.json"
    if not path.is_file():
        return None
    return read_results(path)


def show_committed_full(notebook: str) -> None:
    """Print the committed full-profile verdicts beside the live ones, clearly labelled."""
    doc = committed_full(notebook)
    if doc is None:
        print(f"No committed full-profile results for {notebook} yet (results/full/{notebook}.json).")
        return
    p = doc["provenance"]
    print(f"Committed FULL-profile results ({p['utc']}, commit {p['git_commit'][:10]}, {p['machine']}):")
    for r in doc["records"]:
        print(f"  {r['claim']}: {r['verdict'].upper()} — " + json.dumps(r["metrics"])[:300])


def save_figure(fig, name: str, profile: str | None = None, dpi: int = 80) -> str:
    """Save a matplotlib figure as results/<profile>/figures/<name> (PNG, written atomically) and return
    its path relative to results/ ('<profile>/figures/<name>'), the form `judge(..., figures=[...])`
    records and the claims report resolves.

    `name` is a plain file name ending in .png (e.g. '04_c9_lowrank.png'); `profile` defaults to the
    active one (SLIMLAB_PROFILE)."""
    from .files import atomic_path
    from .profile import get_profile
    if not hasattr(fig, "savefig"):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    if not isinstance(name, str) or not name.endswith(".png") or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"name must be a plain file name ending in .png, got {name!r}")
    prof = profile if profile is not None else get_profile().name
    if not isinstance(prof, str) or not prof or "/" in prof:
        raise ValueError(f"profile must be a profile name such as 'quick' or 'full', got {prof!r}")
    with atomic_path(ROOT / "results" / prof / "figures" / name, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return f"{prof}/figures/{name}"
