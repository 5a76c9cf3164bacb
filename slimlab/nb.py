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
