"""Render the course's evidence as a static HTML site: build/site/index.html + one page per notebook.

Usage: python browser/build_site.py [--out build/site] [--notebooks DIR] [--profile quick|full]

The notebooks come from one folder, `NOTEBOOK_SOURCE`: the committed notebooks/, which carry the
full-profile outputs of the v2 run (results/full/notebooks/, where the v1 run kept its executed notebooks,
would be read first if it came back); `--notebooks DIR` (or `make site SITE_NOTEBOOKS=DIR`) picks another, e.g.
build/notebooks after `make run`. A notebook of notebooks/ that the folder lacks (00_setup) is taken
from notebooks/. Pages are made by `jupyter nbconvert --to html` from snapshots whose frozen progress
bars were replaced by their final line (`slimlab.nb.clean_progress`); figures are embedded as data URIs.

index.html is the landing page: the 14 claims with every full-profile verdict (coloured; a claim
without one is "missing"; a verdict whose record was measured on an earlier or unrecorded reference
checkpoint (`report.stale_entries`; records without one predate the field and ran on the v1 references)
carries a note of class `stale` with a title saying why, and one line above the table counts them), one
key figure per notebook (the first figure of its full records, copied
to figures/), links to every notebook page and to the claims report (build/claims_report.html, made
here if missing). site.json lists the pages, claims, figures and the number of stale records for the
browser test.
"""
from __future__ import annotations

import argparse
import html
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from slimlab.files import atomic_write_text  # noqa: E402
from slimlab.ledger import CLAIMS, reference_checkpoints  # noqa: E402
from slimlab.nb import clean_progress  # noqa: E402
from slimlab.report import (REPORT_NAME, collect, deciding_numbers, short_commit, stale_entries,  # noqa: E402
                            write_report)

IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif")
EVIDENCE_NOTEBOOKS = ROOT / "results" / "full" / "notebooks"
NOTEBOOK_SOURCE = EVIDENCE_NOTEBOOKS if any(EVIDENCE_NOTEBOOKS.glob("0*.ipynb")) else ROOT / "notebooks"
VERDICT_COLOURS = {"supported": "#1a7f37", "qualified": "#9a6700", "refuted": "#cf222e", "missing": "#6e7781"}


def source_notebooks(source: Path = NOTEBOOK_SOURCE, root: Path = ROOT) -> list[Path]:
    """The notebooks to render, one per name: those of `source`, then notebooks/ for names it lacks."""
    by_name = {p.name: p for p in sorted((root / "notebooks").glob("0*.ipynb"))}
    by_name.update({p.name: p for p in sorted(Path(source).glob("0*.ipynb"))})
    if not by_name:
        raise ValueError(f"no notebooks found in {source} or {root}/notebooks")
    return [by_name[k] for k in sorted(by_name)]


def expected_images(nb_path: Path) -> int:
    """How many raster images a notebook's outputs hold (each becomes an <img> in its page)."""
    nb = json.loads(nb_path.read_text())
    return sum(1 for c in nb.get("cells", []) if c.get("cell_type") == "code"
               for o in c.get("outputs", []) if any(m in o.get("data", {}) for m in IMAGE_MIMES))


def cell_has_image(nb_path: Path, marker: str) -> bool:
    """Whether the notebook holds a code cell whose source contains `marker` with a raster image among its
    outputs (e.g. a static fallback figure, drawn where a widget cannot run); False for a missing file."""
    try:
        nb = json.loads(Path(nb_path).read_text())
    except (OSError, ValueError):
        return False
    return any(c.get("cell_type") == "code" and marker in "".join(c.get("source", ""))
               and any(m in o.get("data", {}) for o in c.get("outputs", []) for m in IMAGE_MIMES)
               for c in nb.get("cells", []))


def title_of(nb_path: Path) -> str:
    """The first Markdown heading of a notebook, else its file name."""
    nb = json.loads(nb_path.read_text())
    for c in nb.get("cells", []):
        if c.get("cell_type") == "markdown":
            for line in "".join(c.get("source", "")).splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return nb_path.stem


def _rel(p: Path) -> str:
    try:
        return p.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return p.as_posix()


def _h(x) -> str:
    return html.escape(str(x), quote=True)


def _verdict(v: str) -> str:
    return (f'<span class="verdict {_h(v)}" style="color:{VERDICT_COLOURS.get(v, "#000")}">'
            f'● {_h(v)}</span>')


STALE_CLASS = "stale"


def _stale_note(e, current: dict[str, str]) -> str:
    """The marker beside a verdict whose record stands on an earlier or unrecorded reference checkpoint."""
    if not e.reference:     # runs before the provenance recorded the references: the v1 checkpoints
        note, why = ("v1 reference — awaiting re-run",
                     "measured before results recorded their reference checkpoints, i.e. on the v1 reference "
                     "checkpoints; a re-run on the committed reference checkpoints will replace this record")
    else:
        old = ", ".join(f"{n} {sha[:12]}" for n, sha in e.reference if current.get(n, sha) != sha)
        note, why = ("earlier reference — awaiting re-run",
                     f"measured on an earlier reference checkpoint ({old}) than the committed one; "
                     "a re-run on the committed reference checkpoints will replace this record")
    return f' <small class="{STALE_CLASS}" title="{_h(why)}">{_h(note)}</small>'


def _stale_line(entries, stale) -> str:
    """One sentence above the claims table: how many full-profile records wait for a re-run."""
    if not entries:
        return ""
    if not stale:
        return (f'<p class="stale-summary">Every full-profile record ({len(entries)}) was measured on the '
                f"committed reference checkpoints.</p>")
    return (f'<p class="stale-summary"><strong>{len(stale)} of the {len(entries)} full-profile records</strong> '
            f"were measured on an earlier (or unrecorded) reference checkpoint than the committed one and "
            "await a re-run; their verdicts are marked <em>awaiting re-run</em>.</p>")


def _key_figures(entries, results_dir: Path, out: Path) -> dict[str, str]:
    """{notebook: 'figures/<name>'}: the first existing figure of each notebook's full records, copied."""
    figs: dict[str, str] = {}
    for e in sorted(entries, key=lambda e: (e.notebook, e.index)):
        if e.notebook in figs:
            continue
        for f in e.figures:
            src = results_dir / f
            if src.is_file():
                (out / "figures").mkdir(exist_ok=True)
                shutil.copyfile(src, out / "figures" / src.name)
                figs[e.notebook] = f"figures/{src.name}"
                break
    return figs


def landing_page(pages: list[dict], entries, figures: dict[str, str], source: Path,
                 current: dict[str, str] | None = None) -> str:
    """index.html: the claims with their verdicts (each stale one marked, against `current`, the committed
    reference checkpoints by default), a card per notebook with its key figure, every link."""
    current = reference_checkpoints() if current is None else current
    stale = stale_entries(entries, current)
    by_claim = {c: [e for e in entries if e.claim == c] for c in CLAIMS}
    rows = []
    for c, text in CLAIMS.items():
        recs = by_claim[c]
        verdicts = "<br>".join(f'{_verdict(e.verdict)} <small>({_h(e.notebook)})</small>'
                               + (_stale_note(e, current) if e in stale else "") for e in recs) \
            or _verdict("missing")
        nums = "<br>".join(" · ".join(f"<code>{_h(n)}</code> {_h(v)}" for n, v in deciding_numbers(e.claim, e.metrics))
                           for e in recs) or "no full-profile record yet"
        said = " ".join(e.verdict for e in recs) or "missing"
        rows.append(f'<tr class="claim" data-claim="{c}" data-verdicts="{_h(said)}">'
                    f'<td><a href="{REPORT_NAME}.html#{c.lower()}">{c}</a></td><td>{_h(text)}</td>'
                    f"<td>{verdicts}</td><td><small>{nums}</small></td></tr>")
    cards = []
    for p in pages:
        if p["href"].startswith(REPORT_NAME):
            continue
        stem = p["href"][:-len(".html")]
        judged = sorted({e.claim for e in entries if e.notebook == stem}, key=lambda c: int(c[1:]))
        fig = figures.get(stem)
        img = (f'<a href="{_h(p["href"])}"><img class="key-figure" src="{_h(fig)}" alt="key figure of {_h(stem)}">'
               f"</a>" if fig else "")
        cards.append(f'<div class="card"><h3><a href="{_h(p["href"])}">{_h(p["title"])}</a></h3>'
                     f"<p><small>claims: {_h(', '.join(judged) or '—')} · source <code>{_h(p['source'])}</code>"
                     f"</small></p>{img}</div>")
    dated = sorted(entries, key=lambda e: e.utc)
    when = (f"records written {_h(dated[0].utc[:10])} to {_h(dated[-1].utc[:10])} (UTC), commits "
            + ", ".join(f"<code>{_h(c)}</code>" for c in sorted({short_commit(e.commit) for e in entries}))
            if entries else "no full-profile records yet")
    css = ("body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;line-height:1.45;"
           "color:#222}table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.3rem .5rem;"
           "vertical-align:top;text-align:left}th{background:#f3f3f3}.verdict{font-weight:bold}small{color:#555}"
           ".stale{font-style:italic;border-bottom:1px dotted #555;white-space:nowrap;cursor:help}"
           ".cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(20rem,1fr));gap:1rem}"
           ".card{border:1px solid #ddd;border-radius:6px;padding:.5rem 1rem}.card img{max-width:100%}")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>slimlab — model slimming, measured</title>
<style>{css}</style></head><body>
<h1>slimlab — model slimming, measured (CIFAR-10)</h1>
<p>A course on making neural networks smaller, in notebooks. Each claim of the article it follows gets a
verdict computed by a unit-tested rule from numbers measured in the full profile; the notebooks below are the
executed evidence (from <code>{_h(_rel(source))}</code>), rendered with <code>jupyter nbconvert --to html</code>.
The <a href="{REPORT_NAME}.html">claims report</a> has every record, metric, rule and figure.</p>
<h2>The claims</h2>
{_stale_line(entries, stale)}
<table id="claims">
<tr><th>claim</th><th>statement</th><th>verdict (full profile)</th><th>the numbers that decide it</th></tr>
{chr(10).join(rows)}
</table>
<p><small>From <code>results/full/*.json</code>: {when}. A claim without a full-profile record is
<em>missing</em>; quick-profile runs are smoke runs, not evidence.</small></p>
<h2>The notebooks</h2>
<div class="cards">
{chr(10).join(cards)}
</div>
<p><a href="{REPORT_NAME}.html">Claims report (C1–C14)</a> · interactive widgets need a live kernel
(<code>make lab</code>); the pages show their static fallbacks.</p>
</body></html>
"""


def render_pages(notebooks: list[Path], out: Path, source: Path | None = None) -> list[dict]:
    """Render `notebooks` into `out` as <stem>.html (nbconvert, from cleaned snapshots); return their
    site.json entries. The browser test also uses it to render a single notebook."""
    out.mkdir(parents=True, exist_ok=True)
    jupyter = Path(sys.executable).with_name("jupyter")
    with tempfile.TemporaryDirectory() as tmp:     # one snapshot: pages and figure counts from the same bytes
        snaps = [Path(tmp) / nb.name for nb in notebooks]
        for nb, snap in zip(notebooks, snaps):
            shutil.copyfile(nb, snap)
            clean_progress(snap)
        cmd = [str(jupyter) if jupyter.exists() else "jupyter", "nbconvert", "--to", "html",
               "--output-dir", str(out), *map(str, snaps)]
        where = _rel(Path(source)) if source is not None else ", ".join(_rel(Path(nb)) for nb in notebooks)
        print(f"build_site: rendering {len(notebooks)} notebook(s) from {where} with nbconvert", flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        return [{"href": f"{nb.stem}.html", "title": title_of(snap), "images": expected_images(snap),
                 "source": _rel(nb)} for nb, snap in zip(notebooks, snaps)]


def build(out: Path, profile: str | None = None, source: Path = NOTEBOOK_SOURCE,
          results_dir: Path = ROOT / "results") -> dict:
    """Render every notebook, the claims report and the landing page into `out`; return the manifest
    (also written as site.json)."""
    pages = render_pages(source_notebooks(source), out, source)
    report = ROOT / "build" / f"{REPORT_NAME}.html"
    if not report.is_file():
        write_report(profile, out_dir=ROOT / "build")
    shutil.copyfile(report, out / f"{REPORT_NAME}.html")
    pages.append({"href": f"{REPORT_NAME}.html", "title": "Claims report (C1–C14)",
                  "images": (out / f"{REPORT_NAME}.html").read_text().count("<img "), "source": _rel(report)})
    entries = [e for e in collect("full", results_dir, include_full=False) if e.evidence]
    figures = _key_figures(entries, results_dir, out)
    atomic_write_text(out / "index.html", landing_page(pages, entries, figures, Path(source)))
    claims = {c: [e.verdict for e in entries if e.claim == c] or ["missing"] for c in CLAIMS}
    stale = len(stale_entries(entries))
    manifest = {"pages": pages, "claims": claims, "figures": sorted(figures.values()),
                "source": _rel(Path(source)), "colours": VERDICT_COLOURS, "stale": stale}
    atomic_write_text(out / "site.json", json.dumps(manifest, indent=2) + "\n")
    print(f"build_site: wrote {out}/index.html ({len(CLAIMS)} claims, {len(figures)} key figures, {stale} of "
          f"{len(entries)} full records stale) and {len(pages)} page(s)")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Render the evidence notebooks and the claims as a static HTML site.")
    ap.add_argument("--out", default=str(ROOT / "build" / "site"))
    ap.add_argument("--notebooks", default=None,
                    help=f"folder of executed notebooks to render (default {_rel(NOTEBOOK_SOURCE)})")
    ap.add_argument("--profile", default=None, help="profile of the claims report if it must be made")
    args = ap.parse_args(argv)
    source = Path(args.notebooks).resolve() if args.notebooks else NOTEBOOK_SOURCE
    try:
        build(Path(args.out), args.profile, source)
    except subprocess.CalledProcessError as e:
        print(f"build_site: error: nbconvert failed:\n{e.stderr[-2000:]}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"build_site: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
