"""Render the executed course as a static HTML site: build/site/index.html + one page per notebook.

Usage: python browser/build_site.py [--out build/site] [--profile quick|full]

Each notebook comes from build/notebooks/<name>.ipynb (what `make run` executes) when present,
else from the committed notebooks/<name>.ipynb (committed with real outputs). Pages are made by
`jupyter nbconvert --to html` (offline, no dependency beyond the course's own); figures are
embedded in the pages as data URIs. The claims report (build/claims_report.html, made here if
missing) is copied in beside them, and index.html links every page.
"""
from __future__ import annotations

import argparse
import html
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from slimlab.report import REPORT_NAME, write_report  # noqa: E402

IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif")


def source_notebooks(root: Path = ROOT) -> list[Path]:
    """The notebooks to render, one per name, executed copies (build/notebooks) preferred."""
    by_name = {p.name: p for p in sorted((root / "notebooks").glob("0*.ipynb"))}
    by_name.update({p.name: p for p in sorted((root / "build" / "notebooks").glob("0*.ipynb"))})
    if not by_name:
        raise SystemExit(f"build_site: no notebooks found in {root}/notebooks or {root}/build/notebooks")
    return [by_name[k] for k in sorted(by_name)]


def expected_images(nb_path: Path) -> int:
    """How many raster images a notebook's outputs hold (each becomes an <img> in its page)."""
    nb = json.loads(nb_path.read_text())
    return sum(1 for c in nb.get("cells", []) if c.get("cell_type") == "code"
               for o in c.get("outputs", []) if any(m in o.get("data", {}) for m in IMAGE_MIMES))


def title_of(nb_path: Path) -> str:
    """The first Markdown heading of a notebook, else its file name."""
    nb = json.loads(nb_path.read_text())
    for c in nb.get("cells", []):
        if c.get("cell_type") == "markdown":
            for line in "".join(c.get("source", "")).splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return nb_path.stem


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def build(out: Path, profile: str | None = None) -> dict:
    """Render every notebook and the index into `out`; return the manifest (also written as site.json)."""
    notebooks = source_notebooks()
    out.mkdir(parents=True, exist_ok=True)
    jupyter = Path(sys.executable).with_name("jupyter")
    with tempfile.TemporaryDirectory() as tmp:     # one snapshot: pages and figure counts from the same bytes
        snaps = [Path(tmp) / nb.name for nb in notebooks]
        for nb, snap in zip(notebooks, snaps):
            shutil.copyfile(nb, snap)
        cmd = [str(jupyter) if jupyter.exists() else "jupyter", "nbconvert", "--to", "html",
               "--output-dir", str(out), *map(str, snaps)]
        print(f"build_site: rendering {len(notebooks)} notebook(s) with jupyter nbconvert --to html", flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        pages = [{"href": f"{nb.stem}.html", "title": title_of(snap), "images": expected_images(snap),
                  "source": nb.relative_to(ROOT).as_posix()} for nb, snap in zip(notebooks, snaps)]

    report = ROOT / "build" / f"{REPORT_NAME}.html"
    if not report.is_file():
        write_report(profile, out_dir=ROOT / "build")
    shutil.copyfile(report, out / f"{REPORT_NAME}.html")
    pages.append({"href": f"{REPORT_NAME}.html", "title": "Claims report (C1–C14)",
                  "images": (out / f"{REPORT_NAME}.html").read_text().count("<img "),
                  "source": report.relative_to(ROOT).as_posix()})
    items = "\n".join(f'<li><a href="{html.escape(p["href"])}">{html.escape(p["title"])}</a> '
                      f'<small>({html.escape(p["source"])})</small></li>' for p in pages)
    index = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>slimlab — a course on model slimming</title>
<style>body{{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}
small{{color:#777}}</style></head><body>
<h1>slimlab — a course on model slimming (CIFAR-10)</h1>
<p>The executed notebooks of the course, rendered with <code>jupyter nbconvert --to html</code>, and the
claims report. Figures are embedded in the pages; interactive widgets need a live kernel
(open the notebooks in JupyterLab: <code>make lab</code>).</p>
<ul>
{items}
</ul>
</body></html>
"""
    _write_atomic(out / "index.html", index)
    manifest = {"pages": pages}
    _write_atomic(out / "site.json", json.dumps(manifest, indent=2) + "\n")
    print(f"build_site: wrote {out}/index.html and {len(pages)} page(s)")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Render the executed notebooks as a static HTML site.")
    ap.add_argument("--out", default=str(ROOT / "build" / "site"))
    ap.add_argument("--profile", default=None, help="profile of the claims report if it must be made")
    args = ap.parse_args(argv)
    try:
        build(Path(args.out), args.profile)
    except subprocess.CalledProcessError as e:
        print(f"build_site: error: nbconvert failed:\n{e.stderr[-2000:]}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"build_site: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
