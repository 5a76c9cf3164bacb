"""Notebook helpers: where a notebook's outputs come from, verdicts as compact tables, numbers in prose
formatted from the record, the committed full-profile evidence, figures, and stale progress bars
cleaned from saved notebooks.

Displays are small objects with an HTML view (JupyterLab, nbconvert, GitHub) and a plain-text one
(`repr`, terminals, `print`). `python -m slimlab.nb --clean-progress NB.ipynb ...` replaces the frozen
"0%| | 0/600" text of tqdm widgets in executed notebooks by each bar's final line.
"""
from __future__ import annotations

import argparse
import html
import inspect
import os
import re
import string
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path

from .data import ROOT
from .ledger import VERDICTS, Record, read_results
from .report import MAX_KEY_METRICS, QUICK_LABEL, deciding_numbers, format_metric, key_metrics, short_commit

# Where executed full-profile notebooks of the earlier runs live. A notebook of the v2 evidence run is
# committed in notebooks/ itself, with its full-profile outputs (`evidence_notebook` finds either).
EVIDENCE_NOTEBOOKS = Path("results") / "full" / "notebooks"
FULL_HEAD = "These outputs come from the FULL profile: they are the evidence."


def evidence_notebook(notebook: str, root: Path | None = None) -> Path | None:
    """The committed executed full-profile notebook of `notebook`, relative to the project root: notebooks/<name>
    when it carries full-profile outputs (its evidence header says so), else results/full/notebooks/<name>,
    else None."""
    notebook = _check_notebook(notebook)
    root = ROOT if root is None else Path(root)
    own = Path("notebooks") / f"{notebook}.ipynb"
    try:
        if FULL_HEAD in (root / own).read_text(encoding="utf-8"):
            return own
    except (OSError, UnicodeDecodeError):
        pass
    old = EVIDENCE_NOTEBOOKS / f"{notebook}.ipynb"
    return old if (root / old).is_file() else None
_VERDICT_COLOURS = {"supported": "#1a7f37", "qualified": "#9a6700", "refuted": "#cf222e", "missing": "#6e7781"}
_TEXT_WIDTH = 100


class Display:
    """Something a notebook shows: `html` for rich frontends, `text` for everything else."""

    def __init__(self, text: str, html_text: str | None = None, markdown: str | None = None):
        self.text, self.html, self.markdown = text, html_text, markdown

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__

    def _repr_html_(self) -> str | None:
        return self.html

    def _repr_markdown_(self) -> str | None:
        return self.markdown if self.html is None else None


def _show(obj: Display) -> None:
    """Display `obj` in a notebook (rich), print its text elsewhere."""
    from IPython.core.interactiveshell import InteractiveShell
    if InteractiveShell.initialized():
        from IPython.display import display
        display(obj)
    else:
        print(obj.text)


def _h(x) -> str:
    return html.escape(str(x), quote=True)


def _check_notebook(notebook) -> str:
    if not isinstance(notebook, str) or not re.fullmatch(r"[0-9A-Za-z][\w.-]*", notebook):
        raise ValueError(f"notebook must be a bare notebook name such as '03_pruning', got {notebook!r}")
    return notebook


def show_source(*objs):
    """Display the source of slimlab functions/classes in the notebook (so it is never copied by hand)."""
    from IPython.display import Markdown, display
    for obj in objs:
        src = inspect.getsource(obj)
        mod = getattr(obj, "__module__", "")
        display(Markdown(f"`{mod}.{obj.__qualname__}`\n```python\n{src}```"))


# ---------------------------------------------------------------- where the outputs come from
def _precision_path() -> str:
    from .train import default_device, resolve_precision
    dev = default_device()
    p = resolve_precision("auto", dev)
    return (f"bf16 autocast (native bf16 on this {dev.type}), fp32 master weights" if p == "bf16"
            else f"fp32 (no native bf16 on this {dev.type})")


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(ROOT / path, ROOT / start)).as_posix()


def _evidence_where(notebook: str, here: Path) -> tuple[str, str]:
    """(text, html) naming the committed full-profile evidence of `notebook`, links relative to `here`."""
    rec = Path("results") / "full" / f"{notebook}.json"
    nbk = evidence_notebook(notebook)
    parts_t, parts_h = [], []
    if nbk is not None:
        parts_t.append(f"the executed full-profile notebook {nbk.as_posix()}")
        parts_h.append(f'the executed full-profile notebook <a href="{_h(_rel(nbk, here))}"><code>{_h(nbk.as_posix())}'
                       f"</code></a>")
    if (ROOT / rec).is_file():
        p = read_results(ROOT / rec)["provenance"]
        when = f"written {p.get('utc', '?')}, commit {short_commit(str(p.get('git_commit', '?')))}"
        parts_t.append(f"its records {rec.as_posix()} ({when})")
        parts_h.append(f'its records <a href="{_h(_rel(rec, here))}"><code>{_h(rec.as_posix())}</code></a> '
                       f"({_h(when)})")
    if not parts_t:
        msg = f"no full-profile run of {notebook} is committed yet ({rec.as_posix()} is missing)"
        return msg, _h(msg)
    return " and ".join(parts_t), " and ".join(parts_h)


def evidence_header(notebook: str, profile: str | None = None, *, show: bool = True) -> Display | None:
    """State which profile, git commit, UTC date, machine (CPU model and flags) and training precision
    path the outputs below come from. In the quick profile it says plainly that the numbers are a smoke
    run and names where the full-profile evidence is. Displays it; with `show=False` returns it instead."""
    from .ledger import git_commit
    from .machine import describe
    from .profile import get_profile
    notebook = _check_notebook(notebook)
    prof = get_profile(profile).name
    facts = [("profile", prof), ("commit", git_commit()[:16]),
             ("date", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
             ("machine", describe()), ("training precision", _precision_path())]
    where_t, where_h = _evidence_where(notebook, Path("notebooks"))
    if prof == "full":
        head = FULL_HEAD
        tail_t = f"Its records are written to results/full/{notebook}.json, each with this provenance."
        tail_h = _h(tail_t)
    else:
        head = (f"These outputs are a {prof} smoke run ({QUICK_LABEL}): tiny budgets, so the numbers and "
                "verdicts below say nothing about the claims.")
        tail_t, tail_h = f"The evidence is {where_t}.", f"The evidence is {where_h}."
    text = "\n".join([head, *(textwrap.fill(f"  {k}: {v}", _TEXT_WIDTH, subsequent_indent="    ")
                              for k, v in facts), textwrap.fill(tail_t, _TEXT_WIDTH)])
    colour = "#1a7f37" if prof == "full" else "#9a6700"
    rows = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{_h(k)}</th><td style='text-align:left'>"
                   f"{_h(v)}</td></tr>" for k, v in facts)
    page = (f"<div class='slimlab-evidence' style='border-left:4px solid {colour};padding:.3em .8em'>"
            f"<p><strong style='color:{colour}'>{_h(head)}</strong></p><table>{rows}</table><p>{tail_h}</p></div>")
    out = Display(text, page)
    if not show:
        return out
    _show(out)
    return None


# ---------------------------------------------------------------- verdicts
def _as_dict(record) -> dict:
    if isinstance(record, Record):
        return record.as_dict()
    if isinstance(record, dict) and {"claim", "verdict", "metrics", "rule"} <= set(record):
        return record
    raise TypeError(f"expected a ledger Record (from judge) or a record dict, got {type(record).__name__}")


def _as_records(records) -> list[dict]:
    if isinstance(records, (Record, dict)):
        records = [records]
    if not isinstance(records, (list, tuple)) or not records:
        raise TypeError("records must be a Record, a record dict or a non-empty list of them")
    return [_as_dict(r) for r in records]


def _names_for(rec: dict, keys) -> list[str]:
    """The metric names to show for `rec`: keys[claim] (dict), keys (list) or the defaults."""
    if keys is None:
        return key_metrics(rec["claim"], rec["metrics"])
    names = keys.get(rec["claim"]) if isinstance(keys, dict) else keys
    if names is None:
        return key_metrics(rec["claim"], rec["metrics"])
    if isinstance(names, str) or not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"keys must map a claim to a list of metric names (or be one list), got {names!r}")
    if not 1 <= len(names) <= MAX_KEY_METRICS:
        raise ValueError(f"show 1 to {MAX_KEY_METRICS} deciding numbers per claim, got {len(names)} for {rec['claim']}")
    unknown = [n for n in names if n not in rec["metrics"]]
    if unknown:
        raise ValueError(f"{rec['claim']} has no metric {unknown}; it has: {', '.join(rec['metrics'])}")
    return list(names)


def _status(rec: dict) -> str:
    return QUICK_LABEL if rec.get("label") == QUICK_LABEL else "full profile"


def verdict_table(records, keys=None, *, details: bool = True) -> Display:
    """A compact table of verdicts: claim, verdict, the 3–5 numbers that decide it (formatted with their
    units), the rule in words. `keys` picks the numbers: {claim: [metric names]} or one list for every
    record (default `slimlab.report.KEY_METRICS`). With `details`, every metric is folded below
    (HTML only). Returns the display object (shown when it is a cell's last value)."""
    recs = _as_records(records)
    if keys is not None and not isinstance(keys, (dict, list, tuple)):
        raise TypeError(f"keys must be a dict {{claim: [metric names]}} or a list of names, got {type(keys).__name__}")
    rows_t, rows_h, folds = [], [], []
    for r in recs:
        names = _names_for(r, keys)
        nums = deciding_numbers(r["claim"], r["metrics"], names)
        v, status = r["verdict"], _status(r)
        who = f" ({r['notebook']})" if r.get("notebook") else ""
        rows_t.append(f"{r['claim']}: {v.upper()}  [{status}]{who}")
        rows_t += [f"  {n} = {val}" for n, val in nums]
        rows_t.append(textwrap.fill(f"rule: {r['rule']}", _TEXT_WIDTH, initial_indent="  ", subsequent_indent="    "))
        more = len(r["metrics"]) - len(nums)
        if more > 0:
            rows_t.append(f"  (+{more} more metric{'s' * (more > 1)} in the results file)")
        colour = _VERDICT_COLOURS.get(v, "#000")
        nums_h = "<br>".join(f"<code>{_h(n)}</code> {_h(val)}" for n, val in nums) or "—"
        rows_h.append(f"<tr><td style='text-align:left'><strong>{_h(r['claim'])}</strong>{_h(who)}</td>"
                      f"<td style='text-align:left;color:{colour}' class='verdict {_h(v)}'>● <strong>{_h(v)}"
                      f"</strong><br><small>{_h(status)}</small></td><td style='text-align:left'>{nums_h}</td>"
                      f"<td style='text-align:left'><small>{_h(r['rule'])}</small></td></tr>")
        if details and r["metrics"]:
            cells = "".join(f"<tr><td style='text-align:left'><code>{_h(k)}</code></td><td style='text-align:left'>"
                            f"{_h(format_metric(k, val))}</td></tr>" for k, val in r["metrics"].items())
            folds.append(f"<details><summary>all {len(r['metrics'])} metrics of {_h(r['claim'])}{_h(who)}"
                         f"</summary><table>{cells}</table></details>")
    head = ("<tr><th style='text-align:left'>claim</th><th style='text-align:left'>verdict</th>"
            "<th style='text-align:left'>the numbers that decide it</th><th style='text-align:left'>rule</th></tr>")
    page = f"<table class='slimlab-verdicts'>{head}{''.join(rows_h)}</table>{''.join(folds)}"
    return Display("\n".join(rows_t), page)


def show_verdict(record: Record, keys=None) -> None:
    """Display one verdict as a compact table (see `verdict_table`); quick verdicts carry their label."""
    _show(verdict_table([record], keys))


class _RecordFormatter(string.Formatter):
    """str.format over a record's metrics; a field without a format spec gets the metric's units."""

    def vformat(self, template, args, kwargs):
        out = []
        for literal, field, spec, conv in self.parse(template):
            out.append(literal)
            if field is None:
                continue
            if field == "" or field.isdigit():
                raise ValueError(f"explain: use named fields such as {{gain_pt}}, got {{{field}}}")
            root = re.match(r"[^.\[]*", field).group(0)
            if root not in kwargs:
                raise ValueError(f"explain: the record has no field {root!r}; it has: {', '.join(kwargs)}")
            value, _ = self.get_field(field, args, kwargs)
            value = self.convert_field(value, conv)
            spec = self.vformat(spec, args, kwargs) if spec and "{" in spec else spec
            out.append(format(value, spec) if spec or conv else format_metric(root, value))
        return "".join(out)


def explain(template, record, **extra) -> Display:
    """Prose with numbers taken from a record, never typed: `template` is a str.format string over the
    record's metrics (plus `claim`, `verdict` and `extra`). '{int8_bytes}' gets the metric's units
    ('286,727 B'); a format spec ('{gain_pt:.1f}') is used as written. Shown as Markdown.

    `template` may also be a dict from verdict ('supported', 'qualified', 'refuted')
    to template, so that the explanation written before the run fits whichever verdict the numbers
    give; the key '*' is the text for any verdict not listed. A verdict with no text is an error."""
    rec = _as_dict(record)
    if isinstance(template, dict):
        bad = [k for k in template if k not in (*VERDICTS, "*")]
        if bad:
            raise ValueError(f"explain: template keys must be verdicts {VERDICTS} or '*', got {bad}")
        chosen = template.get(rec["verdict"], template.get("*"))
        if chosen is None:
            raise ValueError(f"explain: no text for the verdict {rec['verdict']!r} of {rec['claim']}; "
                             f"the templates cover {sorted(template)}")
        template = chosen
    if not isinstance(template, str) or not template.strip():
        raise ValueError("template must be a non-empty str.format template, or a dict of them by verdict")
    fields = {**rec["metrics"], "claim": rec["claim"], "verdict": rec["verdict"], **extra}
    try:
        text = _RecordFormatter().vformat(template, (), fields)
    except (IndexError, KeyError, AttributeError) as e:
        raise ValueError(f"explain: cannot fill {template[:60]!r} from {rec['claim']}'s record ({e!r})") from None
    return Display(text, markdown=text)


# ---------------------------------------------------------------- the committed evidence
def committed_full(notebook: str) -> dict | None:
    """The committed full-profile results of `notebook` (results/full/<notebook>.json), or None."""
    path = ROOT / "results" / "full" / f"{_check_notebook(notebook)}.json"
    if not path.is_file():
        return None
    return read_results(path)


def provenance_line(prov: dict) -> str:
    """One line from a results file's provenance: date, commit, machine (CPU model, flags), torch."""
    info = prov.get("machine_info") or {}
    machine = prov.get("machine", "?")
    if info:
        flags = " ".join(info.get("cpu_flags", []))
        machine = f"{info.get('cpu_model', '?')}, {info.get('cpu_count', '?')} cores [{flags}]"
    return (f"written {prov.get('utc', '?')}, commit {short_commit(str(prov.get('git_commit', '?')))}, "
            f"profile {prov.get('profile', '?')}, {machine}, torch {prov.get('torch', '?')}")


def show_committed_full(notebook: str, keys=None) -> None:
    """Display the committed full-profile verdicts of `notebook` (the evidence) as a verdict table,
    under the line that says where and when they were measured."""
    doc = committed_full(notebook)
    if doc is None:
        _show(Display(f"No committed full-profile results for {notebook} yet (results/full/{notebook}.json)."))
        return
    line = f"Committed FULL-profile evidence, results/full/{notebook}.json: {provenance_line(doc['provenance'])}"
    table = verdict_table(doc["records"], keys)
    _show(Display(f"{textwrap.fill(line, _TEXT_WIDTH)}\n{table.text}",
                  f"<p><strong>{_h(line.split(':', 1)[0])}</strong>:{_h(line.split(':', 1)[1])}</p>{table.html}"))


# ---------------------------------------------------------------- figures
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


# ---------------------------------------------------------------- stale progress bars in saved notebooks
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
_TQDM_TEXT = re.compile(r"\d+%\|.*\|\s*\S+/\S+")
_BAR_WIDTH = 10


def _model_id(ref) -> str | None:
    return ref[len("IPY_MODEL_"):] if isinstance(ref, str) and ref.startswith("IPY_MODEL_") else None


def _refs(state: dict, mid: str) -> set[str]:
    """Every widget model reachable from `mid` (itself, children, layouts, styles)."""
    seen, todo = set(), [mid]
    while todo:
        m = todo.pop()
        if m in seen or m not in state:
            continue
        seen.add(m)
        for v in state[m].get("state", {}).values():
            for ref in (v if isinstance(v, list) else [v]):
                if (child := _model_id(ref)) is not None:
                    todo.append(child)
    return seen


def _plain(html_text) -> str:
    return html.unescape(str(html_text or "")).replace("\u2007", " ").replace("\xa0", " ").strip()


def _bar_text(state: dict, mid: str) -> str | None:
    """The final line of a tqdm widget (HBox of HTML, FloatProgress, HTML) from the saved widget state."""
    box = state.get(mid, {})
    if box.get("model_name") != "HBoxModel":
        return None
    kids = [state.get(_model_id(c) or "", {}) for c in box.get("state", {}).get("children", [])]
    progress = [k for k in kids if k.get("model_name") == "FloatProgressModel"]
    labels = [k for k in kids if k.get("model_name") == "HTMLModel"]
    if len(progress) != 1 or len(labels) != 2:
        return None
    p = progress[0]["state"]
    top, value = p.get("max") or 0, p.get("value") or 0
    filled = round(_BAR_WIDTH * min(max(value / top, 0.0), 1.0)) if top else 0
    bar = "█" * filled + " " * (_BAR_WIDTH - filled)
    return f"{_plain(labels[0]['state'].get('value'))}|{bar}| {_plain(labels[1]['state'].get('value'))}".strip()


def _is_progress(output: dict, state: dict) -> bool:
    data = output.get("data", {})
    if output.get("output_type") != "display_data" or WIDGET_VIEW not in data:
        return False
    mid = data[WIDGET_VIEW].get("model_id")
    text = "".join(data.get("text/plain", ""))
    return bool(_TQDM_TEXT.search(text)) or _bar_text(state, mid) is not None


def _collapse_returns(text: str) -> str:
    """What a terminal would show: on each line, only what the last carriage return left."""
    return "\n".join(next((seg for seg in reversed(line.split("\r")) if seg.strip()), "")
                     for line in text.split("\n"))


WIDGET_TEXT = ("[an interactive widget: it needs a live kernel (run the notebook); the static figures beside it "
               "show its states]")


def clean_progress(path: str | os.PathLike) -> tuple[int, int, int]:
    """Rewrite an executed notebook so that no frozen progress bar is left: every tqdm widget output
    becomes one stderr line with the bar's final state (from the saved widget state; dropped where
    none was saved), their widget models go from the metadata, and text progress (carriage returns)
    in stream outputs keeps only its last state. Every other widget (a slider) keeps its saved state,
    and its plain-text form, which is what a viewer without a kernel shows (GitHub), becomes
    `WIDGET_TEXT` instead of the widget's repr. Returns (bars replaced or dropped, streams collapsed,
    widgets labelled); the file is rewritten (atomically) only when something changed."""
    import nbformat
    from .files import atomic_write_text
    p = Path(path)
    if p.suffix != ".ipynb" or not p.is_file():
        raise ValueError(f"{p}: not a notebook file (.ipynb)")
    try:
        nb = nbformat.read(p, as_version=4)
    except Exception as e:  # nbformat raises several kinds for a damaged file
        raise ValueError(f"{p}: not a readable notebook ({type(e).__name__}: {e})") from None
    widgets = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {})
    state = widgets.get("state", {})
    bars, streams, labelled, dropped, kept = 0, 0, 0, set(), set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outs = []
        for o in cell.get("outputs", []):
            if _is_progress(o, state):
                mid = o["data"][WIDGET_VIEW].get("model_id")
                final = _bar_text(state, mid)
                dropped |= _refs(state, mid)
                bars += 1
                if final is not None:
                    outs.append(nbformat.v4.new_output("stream", name="stderr", text=final + "\n"))
                continue
            if o.get("output_type") == "stream" and "\r" in o.get("text", ""):
                o["text"] = _collapse_returns(o["text"])
                streams += 1
            if WIDGET_VIEW in o.get("data", {}):
                kept |= _refs(state, o["data"][WIDGET_VIEW].get("model_id"))
                if o["data"].get("text/plain") != WIDGET_TEXT:
                    o["data"]["text/plain"] = WIDGET_TEXT
                    labelled += 1
            outs.append(o)
        cell.outputs = outs
    if not (bars or streams or labelled):
        return 0, 0, 0
    for mid in dropped - kept:
        state.pop(mid, None)
    if widgets and not state:
        nb.metadata["widgets"].pop(WIDGET_STATE)
        if not nb.metadata["widgets"]:
            nb.metadata.pop("widgets")
    atomic_write_text(p, nbformat.writes(nb) + "\n")   # the newline editors and git expect at the end
    return bars, streams, labelled


def publish_evidence(executed: str | os.PathLike, root: Path | None = None) -> tuple[Path, Path | None]:
    """Make the executed full-profile notebook `executed` (e.g. build/full/03_pruning.ipynb, as `make full`
    writes it) the committed notebook: copied to <root>/notebooks/<name>.ipynb (atomically) with its frozen
    progress bars cleaned (`clean_progress`), and the older copy under results/full/notebooks/ deleted.
    Refuses a notebook whose outputs do not say they come from the full profile (a quick run, an
    unexecuted notebook) and a name that is not one of the course's notebooks. Returns (the committed
    notebook, the deleted old copy or None)."""
    import shutil
    import tempfile
    src = Path(executed)
    if src.suffix != ".ipynb" or not src.is_file():
        raise ValueError(f"{src}: not a notebook file (.ipynb)")
    root = ROOT if root is None else Path(root)
    dest = root / "notebooks" / src.name
    if not dest.is_file():
        raise ValueError(f"{src.name} is not one of the course's notebooks (no {dest})")
    if FULL_HEAD not in src.read_text(encoding="utf-8", errors="replace"):
        raise ValueError(f"{src}: its outputs do not come from the full profile (no '{FULL_HEAD}' in them); "
                         "run `make full NB=...` first")
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        staged = Path(tmp) / src.name
        shutil.copyfile(src, staged)
        clean_progress(staged)
        os.replace(staged, dest)
    old = root / EVIDENCE_NOTEBOOKS / src.name
    if old.is_file():
        old.unlink()
        return dest, old
    return dest, None


def main(argv: list[str] | None = None) -> int:
    """`python -m slimlab.nb --clean-progress NB.ipynb ...`: clean saved progress bars (see clean_progress);
    `python -m slimlab.nb --publish build/full/NB.ipynb`: make an executed full-profile notebook the
    committed one (see publish_evidence)."""
    ap = argparse.ArgumentParser(prog="python -m slimlab.nb", description="Notebook helpers of slimlab.")
    act = ap.add_mutually_exclusive_group(required=True)
    act.add_argument("--clean-progress", nargs="+", metavar="NOTEBOOK",
                     help="replace frozen tqdm widget outputs by their final line, in place")
    act.add_argument("--publish", nargs="+", metavar="EXECUTED",
                     help="copy executed full-profile notebooks (build/full/*.ipynb) over notebooks/, cleaned")
    args = ap.parse_args(argv)
    def published(path):
        dest, old = publish_evidence(path)
        return f"{path} -> {dest}" + (f"; removed the older {old}" if old else "")

    def cleaned(path):
        bars, streams, widgets = clean_progress(path)
        return (f"{path}: {bars} progress bar(s) replaced by their final line, {streams} text stream(s) collapsed, "
                f"{widgets} widget(s) labelled for viewers without a kernel")

    action, paths = (published, args.publish) if args.publish else (cleaned, args.clean_progress)
    for path in paths:
        try:
            print(action(path))
        except ValueError as e:
            print(f"slimlab.nb: error: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
