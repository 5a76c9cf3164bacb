"""The claims report: every results file merged into one page per profile, claim by claim.

`python -m slimlab.report [--profile quick|full] [--results results] [--out build]` reads
`results/<profile>/*.json` (and, for the quick profile, the committed `results/full/*.json`
too) and writes `<out>/claims_report.md` and `<out>/claims_report.html`: one section per claim
C1–C14 with every record that judges it (verdict, metrics, rule, notebook, profile, date,
commit) and its figures. Only full-profile records are evidence: a claim without one is shown
as MISSING, and quick records are shown only as "quick — not evidence". The output depends on
the results files alone (no clock, everything sorted), so the same inputs give the same bytes.

`python -m slimlab.report --readme [README.md]` rewrites the README's claims table (between its two
markers) from `results/full/*.json`; `python -m slimlab.report --rules` prints every rule as it reads.
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .files import atomic_write_text
from .ledger import CLAIMS, RESULTS_DIR, read_results, reference_checkpoints
from .profile import PROFILES

QUICK_LABEL = "quick — not evidence"
MISSING = "MISSING"
REPORT_NAME = "claims_report"
FORMATS = ("md", "html")
_PROVENANCE_KEYS = ("utc", "git_commit", "profile")
_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class Entry:
    """One record of one results file, with where it came from."""
    claim: str
    verdict: str
    metrics: dict
    rule: str
    figures: tuple[str, ...]   # paths relative to the results directory
    notebook: str
    profile: str               # the profile of the run that wrote the file
    utc: str                   # when that run wrote it
    commit: str                # git commit of that run
    source: str                # the results file, relative to the results directory
    index: int                 # position of the record in its file
    reference: tuple = ()      # (name, sha256) of the reference checkpoints the run stood on (empty: unrecorded)

    @property
    def evidence(self) -> bool:
        """Only full-profile records count as evidence."""
        return self.profile == "full"

    def sort_key(self) -> tuple:
        return (self.claim_number, not self.evidence, self.notebook, self.source, self.index)

    @property
    def claim_number(self) -> int:
        return int(self.claim[1:])

    def on_current_reference(self, current: dict[str, str]) -> bool:
        """True when the run recorded its reference checkpoints and each one that is committed now
        (`current`: name -> sha256) is the same file; False for a run on an earlier or unrecorded one."""
        mine = dict(self.reference)
        return bool(mine) and all(mine[n] == sha for n, sha in current.items() if n in mine)


def stale_entries(entries: list[Entry], current: dict[str, str] | None = None) -> list[Entry]:
    """The full-profile entries measured on an earlier (or unrecorded) reference checkpoint than the
    committed one (`ledger.reference_checkpoints()` by default): evidence that a re-run must replace."""
    cur = reference_checkpoints() if current is None else current
    return [e for e in entries if e.evidence and not e.on_current_reference(cur)]


def _fail(path: Path, what: str) -> ValueError:
    return ValueError(f"{path}: {what}")


def _reference_of(path: Path, prov: dict) -> tuple:
    ref = prov.get("reference_checkpoints") or {}
    if not isinstance(ref, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in ref.items()):
        raise _fail(path, "provenance 'reference_checkpoints' must map checkpoint names to sha256 strings")
    return tuple(sorted(ref.items()))


def _entries_of(path: Path, results_dir: Path, expected_profile: str) -> list[Entry]:
    """The records of one results file, checked beyond `read_results` (claims, provenance, figures)."""
    try:
        doc = read_results(path)                  # raises ValueError naming the file ...
    except (TypeError, AttributeError, KeyError) as e:   # ... or chokes on records that are not objects
        raise _fail(path, f"records must be a list of objects ({type(e).__name__}: {e})") from None
    prov = doc["provenance"]
    if not isinstance(prov, dict):
        raise _fail(path, "'provenance' must be an object")
    missing = [k for k in _PROVENANCE_KEYS if not prov.get(k)]
    if missing:
        raise _fail(path, f"provenance lacks {missing}")
    if prov["profile"] != expected_profile:
        raise _fail(path, f"provenance says profile {prov['profile']!r} but the file lies under "
                          f"{expected_profile}/; results files belong under results/<their profile>/")
    if not isinstance(doc["records"], list):
        raise _fail(path, "'records' must be a list")
    out = []
    for i, r in enumerate(doc["records"]):
        if r["claim"] not in CLAIMS:
            raise _fail(path, f"record {i} judges unknown claim {r['claim']!r}; allowed: C1–C14")
        if not isinstance(r["metrics"], dict):
            raise _fail(path, f"record {i} has metrics of type {type(r['metrics']).__name__}, not an object")
        if not isinstance(r["rule"], str) or not r["rule"].strip():
            raise _fail(path, f"record {i} has no decision rule in words ('rule')")
        figures = r.get("figures") or []
        if not isinstance(figures, list) or not all(isinstance(f, str) and f for f in figures):
            raise _fail(path, f"record {i} has 'figures' that are not a list of paths")
        for f in figures:
            if Path(f).is_absolute() or ".." in Path(f).parts:
                raise _fail(path, f"record {i} figure {f!r} must be a path inside the results directory")
        if prov["profile"] == "full" and r.get("label") == QUICK_LABEL:
            raise _fail(path, f"record {i} is labelled {QUICK_LABEL!r} in a full-profile file")
        out.append(Entry(claim=r["claim"], verdict=r["verdict"], metrics=r["metrics"], rule=r["rule"].strip(),
                         figures=tuple(figures), notebook=r.get("notebook") or doc.get("notebook") or path.stem,
                         profile=prov["profile"], utc=str(prov["utc"]), commit=str(prov["git_commit"]),
                         source=path.relative_to(results_dir).as_posix(), index=i,
                         reference=_reference_of(path, prov)))
    return out


def collect(profile: str = "quick", results_dir: str | os.PathLike = RESULTS_DIR,
            include_full: bool = True) -> list[Entry]:
    """Every record in `results_dir/<profile>/*.json` (plus `full/` for quick when `include_full`), sorted.

    A malformed or partial file raises ValueError naming it.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    if not isinstance(include_full, bool):
        raise TypeError(f"include_full must be a bool, got {type(include_full).__name__}")
    root = Path(results_dir)
    if not root.is_dir():
        raise ValueError(f"results directory {root} does not exist (expected results/<profile>/*.json)")
    profiles = sorted({profile, "full"} if include_full else {profile})
    entries = []
    for prof in profiles:
        for path in sorted((root / prof).glob("*.json")):
            entries.extend(_entries_of(path, root, prof))
    return sorted(entries, key=Entry.sort_key)


# ---------------------------------------------------------------- formatting helpers
def format_value(v) -> str:
    """A metric value as text: floats to 4 significant digits, containers as sorted JSON."""
    if isinstance(v, bool) or v is None:
        return {True: "true", False: "false", None: "—"}[v]
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, ensure_ascii=False,
                          default=str, separators=(", ", ": "))
    return str(v)


# The 3–5 numbers that decide each claim, in the order a reader should see them: the first
# MAX_KEY_METRICS of these names that a record holds (a claim judged in several notebooks, or by two
# records as C10 is, lists the names of every variant). A record holding none of them shows its first
# scalar metrics instead, so a renamed metric never hides the numbers.
MAX_KEY_METRICS = 5
KEY_METRICS: dict[str, tuple[str, ...]] = {
    "C1": ("alpha", "alpha_he2015", "gain_first", "gain_last", "bits_small"),
    "C2": ("acc_gain_at_large_data", "gap_growth_at_small_data", "best_params_small_data",
           "best_params_large_data"),
    "C3": ("frac_params_95", "frac_params_99", "best_acc", "best_cut_1pt", "best_cut_3pt"),
    "C4": ("fp32_bytes", "int8_bytes", "saving", "ratio"),
    "C5": ("fp32_train_acc", "lowprec8_acc", "lowprec4_acc", "ptq8_acc", "below_half_8"),
    "C6": ("share_layers_fit", "share_layers_normal_fit", "share_layers_centred", "median_share_small",
           "median_normal_ks"),
    "C7": ("finetune_sparsities", "magnitude_ft_loss_pt", "finetuned_gaps_pt", "base_test_acc"),
    "C8": ("share_rare_channels", "mean_apoz", "apoz_acc", "l1_acc", "random_acc"),
    "C9": ("ref_acc", "acc", "param_saving", "latency_ms", "ref_latency_ms"),
    "C10": ("bits", "ref_acc", "acc", "bytes_ratio", "acc_4bit", "compressions", "margins"),
    "C11": ("scratch_mean", "kd_mean", "gain_pt", "n_seeds", "teacher_acc"),
    "C12": ("distilled_acc", "distilled_bytes", "baseline_acc", "student", "student_scratch"),
    "C13": ("chosen_on_val", "chosen_ratio", "chosen_test_loss_pt", "ratio_within_1pt", "goal_reached"),
    "C14": ("flash_bytes", "int8_bytes", "ort_int8_ms_b64", "ort_fp32_ms_b64", "usable_sparse_int8_bytes",
            "slim_speedup", "mac_reduction", "slim_acc_loss_pt", "candidate", "bytes", "int8_loss_pt",
            "speedup"),
}
VERDICT_MARKS = {"supported": "🟢", "qualified": "🟡", "refuted": "🔴", "missing": "⚪"}


def key_metrics(claim: str, metrics: dict, names=None, limit: int = MAX_KEY_METRICS) -> list[str]:
    """The names of the (at most `limit`) metrics that decide `claim`, in display order.

    `names` (a list of metric names) overrides `KEY_METRICS[claim]`; names the record lacks are
    skipped. With no listed name present, the first `limit` scalar metrics are taken."""
    if not isinstance(metrics, dict):
        raise TypeError(f"metrics must be a dict, got {type(metrics).__name__}")
    if names is not None and (isinstance(names, str) or not all(isinstance(n, str) for n in names)):
        raise TypeError(f"names must be a list of metric names, got {names!r}")
    wanted = list(names) if names is not None else list(KEY_METRICS.get(claim, ()))
    picked = [n for n in dict.fromkeys(wanted) if n in metrics][:limit]
    if picked or names is not None:
        return picked
    scalar = (bool, int, float, str, type(None))
    return [k for k, v in metrics.items() if isinstance(v, scalar)][:limit]


def _unit_of(name: str) -> str:
    """The unit a metric's name announces: 'B', 'ms', 'pt', '%' (a share 0–1), 'acc' (%), '×' or ''."""
    n = name.lower()
    if n == "bytes" or n.endswith("_bytes") or n.startswith("bytes_") and not n.endswith("ratio"):
        return "B"
    if n.endswith("_ms") or "_ms_" in n:
        return "ms"
    if n.endswith("_pt") or "_pt_" in n:
        return "pt"
    if (n.startswith(("share_", "frac_", "median_share")) or n.endswith(("saving", "_share", "_frac", "_fraction",
                                                                        "gap_closed")) or n.startswith("below_half")):
        return "%"
    if n == "acc" or n.endswith(("_acc", "acc_4bit")) or n.startswith("acc_") and "gain" not in n:
        return "acc"
    if n.endswith(("ratio", "speedup", "reduction")) or n.startswith("best_cut"):
        return "×"
    return ""


_UNIT_FORMATS = {"B": lambda v: f"{round(v):,} B", "ms": lambda v: f"{v:.3g} ms", "pt": lambda v: f"{v:.2f} pt",
                 "%": lambda v: f"{100 * v:.1f}%", "acc": lambda v: f"{v:.2f}%", "×": lambda v: f"{v:.3g}×"}


def format_metric(name: str, value) -> str:
    """A metric value as a reader wants it, by the unit its name announces: bytes with thousands
    separators ('286,727 B'), ms to 3 significant digits, points and accuracies to 2 decimals,
    shares 0–1 as percentages ('73.5%'), ratios as '3.77×'; lists as 'a / b / c', dicts as 'k: v; …'."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a metric name (str), got {type(name).__name__}")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "—"
    if isinstance(value, (list, tuple)):
        return " / ".join(format_metric(name, v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {format_metric(name, v)}" for k, v in value.items())
    if not isinstance(value, (int, float)):
        return str(value)
    unit = _unit_of(name)
    if unit:
        return _UNIT_FORMATS[unit](value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.4g}"


def short_commit(commit: str) -> str:
    """The first 10 characters of a commit id, a "+dirty" suffix kept."""
    base, plus, rest = commit.partition("+")
    return base[:10] + plus + rest


def _status(entries: list[Entry]) -> str:
    """The claim's status in words: the full-profile verdicts with their notebooks, or MISSING."""
    full = [e for e in entries if e.evidence]
    if not full:
        return MISSING
    return "; ".join(f"{e.verdict} ({e.notebook})" for e in full)


def _by_claim(entries: list[Entry]) -> dict[str, list[Entry]]:
    out: dict[str, list[Entry]] = {c: [] for c in CLAIMS}
    for e in entries:
        out[e.claim].append(e)
    return out


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _sources(entries: list[Entry]) -> list[Entry]:
    seen, out = set(), []
    for e in sorted(entries, key=lambda e: e.source):
        if e.source not in seen:
            seen.add(e.source)
            out.append(e)
    return out


def _intro(profile: str, include_full: bool) -> str:
    read = f"results/{profile}/*.json" + (" and results/full/*.json" if include_full and profile != "full" else "")
    return (f"Generated by `python -m slimlab.report` from {read}. Only full-profile records are "
            f"evidence: a claim without one is {MISSING}, and quick-profile records are shown as "
            f"\"{QUICK_LABEL}\". Every verdict comes from a rule function applied to measured metrics.")


# ---------------------------------------------------------------- markdown
def render_markdown(entries: list[Entry], profile: str, results_dir: str | os.PathLike,
                    out_dir: str | os.PathLike, include_full: bool = True) -> str:
    """The report as Markdown; figure links are relative to `out_dir` (where the .md is written)."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    by = _by_claim(entries)
    current = reference_checkpoints()
    lines = [f"# Claims report — slimlab, {profile} profile", "", _intro(profile, include_full), ""]
    lines += ["## Summary", "", "| claim | statement | full-profile verdict(s) | quick records (not evidence) |",
              "|---|---|---|---|"]
    for c, text in CLAIMS.items():
        quick = [e for e in by[c] if not e.evidence]
        q = ", ".join(f"{e.verdict} ({e.notebook})" for e in quick) or "—"
        st = _status(by[c])
        lines.append(f"| [{c}](#{c.lower()}) | {_md_cell(text)} | "
                     f"{'**' + MISSING + '**' if st == MISSING else _md_cell(st)} | {_md_cell(q)} |")
    lines += ["", "## Results files", ""]
    if entries:
        lines += ["| file | notebook | profile | date (UTC) | commit |", "|---|---|---|---|---|"]
        for e in _sources(entries):
            lines.append(f"| `{e.source}` | {e.notebook} | {e.profile} | {e.utc} | `{short_commit(e.commit)}` |")
    else:
        lines.append("No results files found.")
    for c, text in CLAIMS.items():
        lines += ["", f"## {c}", "", f"*{text}*", ""]
        st = _status(by[c])
        if st == MISSING:
            lines.append(f"**Status: {MISSING}** — no full-profile record judges this claim yet.")
        else:
            lines.append(f"**Full-profile verdict(s): {st}**")
        for e in by[c]:
            tag = "full profile" if e.evidence else QUICK_LABEL
            head = e.verdict.upper() if e.evidence else e.verdict
            ref = ("" if not e.evidence or e.on_current_reference(current) else
                   " · **measured on an earlier or unrecorded reference checkpoint**")
            lines += ["", f"### {c}: {head} — {e.notebook} ({tag})", "",
                      f"- rule: {e.rule}{ref}",
                      f"- notebook: {e.notebook} · profile: {e.profile} · date: {e.utc} · "
                      f"commit: `{short_commit(e.commit)}` · file: `{e.source}`", ""]
            if e.metrics:
                lines += ["| metric | value |", "|---|---|"]
                lines += [f"| {_md_cell(str(k))} | {_md_cell(format_value(v))} |" for k, v in e.metrics.items()]
            else:
                lines.append("(no metrics)")
            for f in e.figures:
                target = results_dir / f
                if target.is_file():
                    rel = Path(os.path.relpath(target, out_dir)).as_posix()
                    lines += ["", f"![{c} — {Path(f).name}]({rel})"]
                else:
                    lines += ["", f"*figure missing: `{f}`*"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- html
_CSS = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45;color:#222}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem;vertical-align:top}
th{background:#f3f3f3}code{background:#f6f6f6;padding:0 .2rem}
.missing{color:#a00;font-weight:bold}.supported{color:#060}.qualified{color:#a60}.refuted{color:#a00}
.quick{color:#777;font-style:italic}section.claim{border-top:2px solid #ddd;margin-top:2rem}
img{max-width:100%;border:1px solid #eee;margin:.5rem 0}
""".strip()


def _h(x) -> str:
    return html.escape(str(x), quote=True)


def _img_tag(path: Path, alt: str) -> str:
    mime = _IMAGE_TYPES.get(path.suffix.lower(), "application/octet-stream")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_h(alt)}" src="data:{mime};base64,{data}">'


def render_html(entries: list[Entry], profile: str, results_dir: str | os.PathLike,
                include_full: bool = True) -> str:
    """The report as one self-contained HTML page (figures embedded), for the browser and the site."""
    results_dir = Path(results_dir)
    by = _by_claim(entries)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>Claims report — slimlab, {_h(profile)} profile</title>", f"<style>{_CSS}</style></head><body>",
           f"<h1>Claims report — slimlab, {_h(profile)} profile</h1>",
           "<p>" + re.sub(r"`([^`]*)`", r"<code>\1</code>", _h(_intro(profile, include_full))) + "</p>",
           "<h2>Summary</h2>", "<table><tr><th>claim</th><th>statement</th><th>full-profile verdict(s)</th>"
           "<th>quick records (not evidence)</th></tr>"]
    for c, text in CLAIMS.items():
        st = _status(by[c])
        quick = ", ".join(f"{e.verdict} ({e.notebook})" for e in by[c] if not e.evidence) or "—"
        cell = f'<span class="missing">{MISSING}</span>' if st == MISSING else _h(st)
        out.append(f'<tr><td><a href="#{c.lower()}">{c}</a></td><td>{_h(text)}</td><td>{cell}</td>'
                   f'<td class="quick">{_h(quick)}</td></tr>')
    out += ["</table>", "<h2>Results files</h2>"]
    if entries:
        out.append("<table><tr><th>file</th><th>notebook</th><th>profile</th><th>date (UTC)</th><th>commit</th></tr>")
        for e in _sources(entries):
            out.append(f"<tr><td><code>{_h(e.source)}</code></td><td>{_h(e.notebook)}</td><td>{_h(e.profile)}</td>"
                       f"<td>{_h(e.utc)}</td><td><code>{_h(short_commit(e.commit))}</code></td></tr>")
        out.append("</table>")
    else:
        out.append("<p>No results files found.</p>")
    for c, text in CLAIMS.items():
        st = _status(by[c])
        out += [f'<section class="claim" id="{c.lower()}"><h2>{c}</h2><p><em>{_h(text)}</em></p>']
        if st == MISSING:
            out.append(f'<p class="missing">Status: {MISSING} — no full-profile record judges this claim yet.</p>')
        else:
            out.append(f"<p><strong>Full-profile verdict(s): {_h(st)}</strong></p>")
        for e in by[c]:
            if e.evidence:
                head = (f'<span class="{_h(e.verdict)}">{_h(e.verdict.upper())}</span> — '
                        f'{_h(e.notebook)} (full profile)')
            else:
                head = f'<span class="quick">{_h(e.verdict)} — {_h(e.notebook)} ({QUICK_LABEL})</span>'
            out += [f"<h3>{c}: {head}</h3>", "<ul>", f"<li>rule: {_h(e.rule)}</li>",
                    f"<li>notebook: {_h(e.notebook)} · profile: {_h(e.profile)} · date: {_h(e.utc)} · "
                    f"commit: <code>{_h(short_commit(e.commit))}</code> · file: <code>{_h(e.source)}</code></li>",
                    "</ul>"]
            if e.metrics:
                out.append("<table><tr><th>metric</th><th>value</th></tr>")
                out += [f"<tr><td>{_h(k)}</td><td>{_h(format_value(v))}</td></tr>" for k, v in e.metrics.items()]
                out.append("</table>")
            else:
                out.append("<p>(no metrics)</p>")
            for f in e.figures:
                target = results_dir / f
                out.append(f"<p>{_img_tag(target, f'{c} — {Path(f).name}')}</p>" if target.is_file()
                           else f'<p class="missing">figure missing: <code>{_h(f)}</code></p>')
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- writing
def _write_atomic(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def _check_args(profile, formats) -> tuple[str, tuple[str, ...]]:
    if profile is None:
        profile = os.environ.get("SLIMLAB_PROFILE", "quick") or "quick"
    if not isinstance(profile, str):
        raise TypeError(f"profile must be a str, got {type(profile).__name__}")
    if isinstance(formats, str):
        formats = (formats,)
    formats = tuple(formats)
    if not formats or any(f not in FORMATS for f in formats):
        raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {formats!r}")
    return profile.strip().lower(), formats


def write_report(profile: str | None = None, results_dir: str | os.PathLike | None = None,
                 out_dir: str | os.PathLike | None = None, include_full: bool = True,
                 formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Write `<out_dir>/claims_report.{md,html}` from the results files; return the paths written.

    `profile` defaults to `$SLIMLAB_PROFILE` or quick; `results_dir` to `results/`; `out_dir` to `build/`.
    A malformed or partial results file raises ValueError naming it (and nothing is written).
    """
    return _write(profile, results_dir, out_dir, include_full, formats)[0]


def _write(profile, results_dir, out_dir, include_full, formats) -> tuple[list[Path], list[Entry]]:
    profile, formats = _check_args(profile, formats)
    results_dir = Path(results_dir) if results_dir is not None else RESULTS_DIR
    out_dir = Path(out_dir) if out_dir is not None else RESULTS_DIR.parent / "build"
    entries = collect(profile, results_dir, include_full)
    texts = {}
    if "md" in formats:
        texts[out_dir / f"{REPORT_NAME}.md"] = render_markdown(entries, profile, results_dir, out_dir, include_full)
    if "html" in formats:
        texts[out_dir / f"{REPORT_NAME}.html"] = render_html(entries, profile, results_dir, include_full)
    for path, text in texts.items():
        _write_atomic(path, text)
    return list(texts), entries


# ---------------------------------------------------------------- the README's claims table
README_BEGIN = "<!-- claims-table:begin (generated by `python -m slimlab.report --readme`; do not edit by hand) -->"
README_END = "<!-- claims-table:end -->"
_README_BLOCK = re.compile(r"<!-- claims-table:begin.*?-->.*?<!-- claims-table:end -->", flags=re.S)


def deciding_numbers(claim: str, metrics: dict, names=None) -> list[tuple[str, str]]:
    """(metric name, formatted value) for the numbers that decide `claim` (see `key_metrics`)."""
    return [(n, format_metric(n, metrics[n])) for n in key_metrics(claim, metrics, names)]


def _commit7(commit: str) -> str:
    base, plus, rest = commit.partition("+")
    return base[:7] + plus + rest


def _date(utc: str) -> str:
    return utc[:10]


def render_readme_table(entries: list[Entry]) -> str:
    """The README's claims table (Markdown) from the full-profile entries: one row per full record, in
    claim order (a claim judged in two notebooks, or by two records, gets a row each), and one
    'missing' row for a claim without a full record; then the line saying where it comes from."""
    full = [e for e in entries if e.evidence]
    by = _by_claim(full)
    lines = ["| claim | verdict (full profile) | the numbers that decide it | record (date, commit) |",
             "|---|---|---|---|"]
    for c, text in CLAIMS.items():
        head = f"{c} — {_md_cell(text)}"
        if not by[c]:
            lines.append(f"| {head} | {VERDICT_MARKS['missing']} **missing** | no full-profile record yet | — |")
        for e in by[c]:
            nums = " · ".join(f"`{_md_cell(n)}` {_md_cell(v)}" for n, v in deciding_numbers(e.claim, e.metrics))
            lines.append(f"| {head} | {VERDICT_MARKS.get(e.verdict, '')} {e.verdict} | {nums or '—'} | "
                         f"[`{e.source.split('/')[-1]}`](results/{e.source}) ({_date(e.utc)}, "
                         f"`{_commit7(e.commit)}`) |")
    have = sum(1 for c in CLAIMS if by[c])
    if full:
        dates = sorted(e.utc for e in full)
        commits = sorted({_commit7(e.commit) for e in full})
        when = (f"records written {_date(dates[0])}" +
                (f" to {_date(dates[-1])}" if _date(dates[-1]) != _date(dates[0]) else "") +
                f" (UTC) at commit{'s' if len(commits) > 1 else ''} " + ", ".join(f"`{c}`" for c in commits))
    else:
        when = "no full-profile record yet"
    stale = stale_entries(full)
    old_ref = (f" {len(stale)} of the {len(full)} records were measured on an earlier (or unrecorded) reference "
               f"checkpoint than the committed one and wait for a re-run." if stale else "")
    lines += ["", f"Generated from `results/full/*.json` by `python -m slimlab.report --readme` (not typed): "
                  f"{have} of {len(CLAIMS)} claims judged, {len(CLAIMS) - have} missing; {when}.{old_ref} The rules and "
                  f"every metric are in the [claims report](results/full/claims_report.md)."]
    return "\n".join(lines)


def update_readme(readme: str | os.PathLike, results_dir: str | os.PathLike = RESULTS_DIR) -> bool:
    """Rewrite the claims table between the README's two markers from `results_dir/full/*.json`.

    Returns True when the file changed. Raises ValueError when the markers are missing (or doubled)
    or a results file is malformed; the README is then left as it was."""
    path = Path(readme)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"{path}: cannot read the README ({e})") from None
    blocks = _README_BLOCK.findall(text)
    if len(blocks) != 1:
        raise ValueError(f"{path}: needs exactly one claims table between '{README_BEGIN}' and '{README_END}' "
                         f"(found {len(blocks)})")
    table = render_readme_table(collect("full", results_dir, include_full=False))
    new = _README_BLOCK.sub(lambda _: f"{README_BEGIN}\n{table}\n{README_END}", text)
    if new == text:
        return False
    atomic_write_text(path, new)
    return True


def rules_text() -> str:
    """Every registered rule as it now reads, one paragraph each: 'C4 (default, claims.fn): <text>'."""
    from .ledger import rules
    rs = sorted(rules().values(), key=lambda r: (int(r.claim[1:]), r.name))
    return "\n".join(f"{r.claim} ({r.name}, {getattr(r.fn, '__module__', '?').rsplit('.', 1)[-1]}."
                     f"{getattr(r.fn, '__name__', '?')}): {r.text}" for r in rs) + "\n"


def summary(entries: list[Entry]) -> str:
    """One line: how many claims have full-profile evidence, how many are missing."""
    by = _by_claim(entries)
    have = sum(1 for c in CLAIMS if any(e.evidence for e in by[c]))
    quick = sum(1 for e in entries if not e.evidence)
    stale = len(stale_entries(entries))
    return (f"{len(CLAIMS)} claims: {have} with full-profile records, {len(CLAIMS) - have} {MISSING}; "
            f"{quick} quick record(s) ({QUICK_LABEL})"
            + (f"; {stale} full record(s) on an earlier or unrecorded reference checkpoint" if stale else ""))


def main(argv: list[str] | None = None) -> int:
    """Command line: write the claims report; a bad results file is one line on stderr and exit code 2."""
    ap = argparse.ArgumentParser(prog="python -m slimlab.report", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=os.environ.get("SLIMLAB_PROFILE") or "quick",
                    help="quick or full (default: $SLIMLAB_PROFILE, else quick)")
    ap.add_argument("--results", default=str(RESULTS_DIR), help="results directory (default: results/)")
    ap.add_argument("--out", default=str(RESULTS_DIR.parent / "build"), help="output directory (default: build/)")
    ap.add_argument("--no-full", action="store_true",
                    help="for the quick profile, do not merge the committed results/full/*.json")
    ap.add_argument("--formats", default="md,html", help="comma-separated subset of md,html (default: both)")
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--readme", nargs="?", const=str(RESULTS_DIR.parent / "README.md"), metavar="README",
                      help="instead of the report: rewrite the claims table between the README's markers "
                           "from results/full/*.json (default README.md)")
    what.add_argument("--rules", action="store_true", help="instead of the report: print every rule as it now reads")
    args = ap.parse_args(argv)
    if args.rules:
        sys.stdout.write(rules_text())
        return 0
    if args.readme is not None:
        try:
            changed = update_readme(args.readme, args.results)
        except (ValueError, TypeError, OSError) as e:
            print(f"slimlab.report: error: {e}", file=sys.stderr)
            return 2
        print(f"{args.readme}: claims table {'rewritten' if changed else 'already up to date'}")
        return 0
    try:
        formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
        paths, entries = _write(args.profile, args.results, args.out, not args.no_full, formats)
    except (ValueError, TypeError, OSError) as e:
        print(f"slimlab.report: error: {e}", file=sys.stderr)
        return 2
    for e in entries:
        for f in e.figures:
            if not (Path(args.results) / f).is_file():
                print(f"slimlab.report: warning: {e.source} record {e.index} ({e.claim}): figure {f} not found",
                      file=sys.stderr)
    print(f"claims report ({args.profile} profile): {summary(entries)}")
    for p in paths:
        print(f"  wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
