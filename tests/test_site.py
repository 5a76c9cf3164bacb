"""The static site's landing page (browser/build_site.py) on made-up results files, without a browser:
a verdict measured on an earlier or unrecorded reference checkpoint is marked stale, a current one is not."""
import html
import importlib.util
import json
import re
from pathlib import Path

import pytest

from slimlab.report import collect

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("build_site", ROOT / "browser" / "build_site.py")
build_site = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_site)

NOW = {"resnet20": "a" * 64, "resnet8": "b" * 64}


def _put(results, notebook, records, reference):
    d = results / "full"
    d.mkdir(parents=True, exist_ok=True)
    prov = {"utc": "2026-12-02T10:00:00+00:00", "git_commit": "abc123def4567890", "profile": "full",
            "machine": "test", "torch": "x", "data_sha256": "d"}
    if reference is not None:
        prov["reference_checkpoints"] = reference
    recs = [{"claim": c, "verdict": v, "metrics": {"x": 1.0}, "rule": f"rule for {c}", "figures": [],
             "notebook": notebook} for c, v in records]
    (d / f"{notebook}.json").write_text(json.dumps({"notebook": notebook, "provenance": prov, "records": recs}))


@pytest.fixture
def entries(tmp_path):
    res = tmp_path / "results"
    _put(res, "02_quantization", [("C4", "supported")], NOW)                                  # current
    _put(res, "03_pruning", [("C14", "supported")], {"resnet20": "c" * 64, "resnet8": "b" * 64})  # earlier
    _put(res, "05_distillation", [("C11", "qualified"), ("C14", "refuted")], None)          # unrecorded (v1)
    return collect("full", res, include_full=False)


def _rows(page: str) -> dict[str, str]:
    """{claim: the HTML of its row in the claims table}."""
    return dict(re.findall(r'<tr class="claim" data-claim="(C\d+)"[^>]*>(.*?)</tr>', page, flags=re.S))


def _verdict_cells(row: str) -> list[str]:
    """One HTML fragment per record of a row's verdict cell (they are joined by <br>)."""
    return re.findall(r"<td>(.*?)</td>", row, flags=re.S)[2].split("<br>")


def test_stale_verdicts_are_marked_and_current_ones_are_not(entries, tmp_path):
    page = build_site.landing_page([], entries, {}, tmp_path, current=NOW)
    rows = _rows(page)
    assert len(rows) == 14
    (c4,) = _verdict_cells(rows["C4"])                            # measured on the committed reference
    assert 'class="verdict supported"' in c4 and 'class="stale"' not in c4 and "awaiting re-run" not in c4
    c11 = _verdict_cells(rows["C11"])[0]                          # no reference recorded: the v1 runs
    assert 'class="verdict qualified"' in c11
    note = re.search(r'<small class="stale" title="([^"]+)">([^<]+)</small>', c11)
    assert note and note.group(2) == "v1 reference — awaiting re-run"
    assert "v1 reference checkpoints" in html.unescape(note.group(1))
    c14 = _verdict_cells(rows["C14"])                             # judged twice: 03 (earlier sha), 05 (v1)
    assert ["03_pruning" in c14[0], "05_distillation" in c14[1]] == [True, True]
    note = re.search(r'<small class="stale" title="([^"]+)">([^<]+)</small>', c14[0])
    assert note and note.group(2) == "earlier reference — awaiting re-run"
    assert "resnet20 cccccccccccc" in note.group(1) and "resnet8" not in note.group(1)   # only the one that differs
    assert "v1 reference — awaiting re-run" in c14[1]
    # the marker sits beside the verdict, never inside it (the browser test reads the .verdict spans)
    assert all(re.search(r'<span class="verdict [^"]+"[^>]*>● \w+</span>', v) for v in c14)
    assert page.count('class="stale"') == 3
    line = re.search(r'<p class="stale-summary">(.*?)</p>', page, flags=re.S)
    assert line and "3 of the 4 full-profile records" in re.sub(r"<[^>]+>", "", line.group(1))
    assert page.index("stale-summary") < page.index('<table id="claims">')     # above the table


def test_no_stale_record_no_marker(entries, tmp_path):
    current = [e for e in entries if e.notebook == "02_quantization"]
    page = build_site.landing_page([], current, {}, tmp_path, current=NOW)
    assert 'class="stale"' not in page and "awaiting re-run" not in page
    assert "Every full-profile record (1) was measured on the committed reference checkpoints." in page
    # the same record against another committed reference is stale
    assert 'class="stale"' in build_site.landing_page([], current, {}, tmp_path, current={"resnet20": "f" * 64})
    assert "stale-summary" not in build_site.landing_page([], [], {}, tmp_path, current=NOW)


def test_cell_has_image_finds_a_static_fallback_figure(tmp_path):
    def nb(outputs):
        cell = {"cell_type": "code", "source": ["x = 1\n", "# The temperature slider, static\n"],
                "outputs": outputs, "metadata": {}, "execution_count": 1}
        p = tmp_path / "nb.ipynb"
        p.write_text(json.dumps({"cells": [{"cell_type": "markdown", "source": "# t", "metadata": {}}, cell]}))
        return p
    png = {"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": "<Figure>"}, "metadata": {}}
    text = {"output_type": "stream", "name": "stdout", "text": "hi"}
    assert build_site.cell_has_image(nb([text, png]), "The temperature slider, static")
    assert not build_site.cell_has_image(nb([text]), "The temperature slider, static")       # no output kept
    assert not build_site.cell_has_image(nb([png]), "The rank slider, static")                # another cell
    assert not build_site.cell_has_image(tmp_path / "missing.ipynb", "x")
