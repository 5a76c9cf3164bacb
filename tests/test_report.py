"""The claims report on made-up results files: missing stays missing, quick is labelled, errors name the file."""
import base64
import json
import re

import pytest

from slimlab import report
from slimlab.ledger import CLAIMS, Record, write_results
from slimlab.report import MISSING, QUICK_LABEL, collect, format_value, main, render_markdown, write_report

PNG = base64.b64decode(  # a valid 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==")


def _rec(claim, verdict, metrics=None, figures=(), label=""):
    return {"claim": claim, "verdict": verdict, "metrics": metrics if metrics is not None else {"x": 1.0},
            "rule": f"rule for {claim}", "figures": list(figures), "notebook": "", "label": label}


def _put(results, profile, notebook, records, commit="abc123def4567890", utc="2026-11-28T10:00:00+00:00"):
    d = results / profile
    d.mkdir(parents=True, exist_ok=True)
    for r in records:
        r["notebook"] = notebook
    doc = {"notebook": notebook, "provenance": {"utc": utc, "git_commit": commit, "profile": profile,
                                                "machine": "test", "torch": "x", "data_sha256": "d"},
           "records": records, "extra": {}}
    path = d / f"{notebook}.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


@pytest.fixture
def results(tmp_path):
    res = tmp_path / "results"
    (res / "full" / "figures").mkdir(parents=True)
    (res / "full" / "figures" / "02_bytes.png").write_bytes(PNG)
    _put(res, "full", "02_quantization", [
        _rec("C4", "supported", {"saving_pct": 74.9, "int8_bytes": 81234, "ok": True},
             figures=["full/figures/02_bytes.png"]),
        _rec("C14", "qualified", {"latency_ms": 1.23456})])
    _put(res, "full", "03_pruning", [_rec("C14", "supported", {"file_ratio": 0.5})])
    _put(res, "quick", "01_marginal_returns", [_rec("C1", "supported", label=QUICK_LABEL),
                                               _rec("C4", "refuted", label=QUICK_LABEL)],
         commit="fff000+dirty")
    return res


def _section(md, claim):
    """The markdown of one claim's section."""
    m = re.search(rf"^## {claim}\n(.*?)(?=^## C\d+\n|\Z)", md, flags=re.S | re.M)
    assert m, f"no section for {claim}"
    return m.group(1)


def test_every_claim_has_a_section_and_missing_ones_say_missing(results, tmp_path):
    md_path, html_path = write_report("quick", results, tmp_path / "build")
    md, page = md_path.read_text(), html_path.read_text()
    for c in CLAIMS:
        assert f'id="{c.lower()}"' in page
        sec = _section(md, c)
        if c in ("C4", "C14"):
            assert MISSING not in sec.split("###")[0]
        else:
            assert f"**Status: {MISSING}**" in sec
    # C1 has only a quick record: it is shown, labelled, and the claim is still MISSING (never supported)
    c1 = _section(md, "C1")
    assert f"**Status: {MISSING}**" in c1 and f"C1: supported — 01_marginal_returns ({QUICK_LABEL})" in c1
    assert "SUPPORTED" not in c1 and "Full-profile verdict" not in c1
    summary_row = next(line for line in md.splitlines() if line.startswith("| [C1]"))
    assert f"**{MISSING}**" in summary_row and "supported (01_marginal_returns)" in summary_row
    assert page.count(f'<span class="missing">{MISSING}</span>') == 12
    assert f"supported — 01_marginal_returns ({QUICK_LABEL})" in page and "C1: <span" in page


def test_claim_judged_twice_shows_both_records_full_before_quick(results, tmp_path):
    md = write_report("quick", results, tmp_path)[0].read_text()
    c14 = _section(md, "C14")
    assert "**Full-profile verdict(s): qualified (02_quantization); supported (03_pruning)**" in c14
    c4 = _section(md, "C4")
    assert c4.index("C4: SUPPORTED — 02_quantization (full profile)") < c4.index(
        f"C4: refuted — 01_marginal_returns ({QUICK_LABEL})")
    # the numbers, the rule, notebook, profile, date and commit of each record
    assert "| saving_pct | 74.9 |" in c4 and "| int8_bytes | 81234 |" in c4 and "| ok | true |" in c4
    assert "- rule: rule for C4" in c4
    assert "date: 2026-11-28T10:00:00+00:00" in c4 and "commit: `abc123def4`" in c4
    assert "commit: `fff000+dirty`" in c4 and "file: `quick/01_marginal_returns.json`" in c4
    assert "| latency_ms | 1.235 |" in c14


def test_figures_linked_in_markdown_and_embedded_in_html(results, tmp_path):
    md_path, html_path = write_report("full", results, tmp_path / "build")
    assert "![C4 — 02_bytes.png](../results/full/figures/02_bytes.png)" in md_path.read_text()
    assert f"data:image/png;base64,{base64.b64encode(PNG).decode()}" in html_path.read_text()
    # the committed layout: the report beside its figures under results/full/
    md = write_report("full", results, results / "full", formats=("md",))[0].read_text()
    assert "![C4 — 02_bytes.png](figures/02_bytes.png)" in md


def test_missing_figure_is_reported_not_fatal(results, tmp_path, capsys):
    (results / "full" / "figures" / "02_bytes.png").unlink()
    assert main(["--profile", "full", "--results", str(results), "--out", str(tmp_path)]) == 0
    assert "*figure missing: `full/figures/02_bytes.png`*" in (tmp_path / "claims_report.md").read_text()
    assert "figure full/figures/02_bytes.png not found" in capsys.readouterr().err


def test_full_profile_report_ignores_quick_records(results, tmp_path):
    md = write_report("full", results, tmp_path)[0].read_text()
    assert "01_marginal_returns" not in md and QUICK_LABEL in md  # the label appears only in the intro
    assert "quick records (not evidence) |" in md
    md_nofull = write_report("quick", results, tmp_path, include_full=False)[0].read_text()
    assert "02_quantization" not in md_nofull and md_nofull.count(f"**Status: {MISSING}**") == 14


def test_report_is_deterministic(results, tmp_path):
    a = [p.read_bytes() for p in write_report("quick", results, tmp_path / "a")]
    b = [p.read_bytes() for p in write_report("quick", results, tmp_path / "a")]
    assert a == b
    # file creation order does not matter either: rebuild the same files in reverse order
    other = tmp_path / "other" / "results"
    for path in sorted(results.rglob("*"), reverse=True):
        dest = other / path.relative_to(results)
        if path.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(path.read_bytes())
    c = [p.read_bytes() for p in write_report("quick", other, tmp_path / "other" / "a")]
    assert c == a


def test_written_by_the_ledger_round_trips(tmp_path):
    rec = Record("C9", "qualified", {"rank_frac": 0.25}, "qualified if ...", [])
    write_results("04_parameter_sharing", [rec], profile="full", data_fingerprint="f", results_dir=tmp_path / "full")
    entries = collect("full", tmp_path)
    assert [(e.claim, e.verdict, e.notebook, e.profile, e.evidence) for e in entries] == [
        ("C9", "qualified", "04_parameter_sharing", "full", True)]


@pytest.mark.parametrize("content,match", [
    ("{not json", "not a readable results file"),
    (json.dumps({"records": []}), "needs 'provenance' and 'records'"),
    (json.dumps({"provenance": {"utc": "t", "git_commit": "c", "profile": "quick"},
                 "records": [{"claim": "C4", "verdict": "supported"}]}), "record 0 lacks"),
    (json.dumps({"provenance": {"utc": "t", "git_commit": "c", "profile": "quick"}, "records": [1]}),
     "records must be a list of objects"),
    (json.dumps({"provenance": {"utc": "t", "profile": "quick"}, "records": []}), r"provenance lacks \['git_commit'\]"),
    (json.dumps({"provenance": {"utc": "t", "git_commit": "c", "profile": "full"}, "records": []}),
     "provenance says profile 'full' but the file lies under quick/"),
    (json.dumps({"provenance": {"utc": "t", "git_commit": "c", "profile": "quick"},
                 "records": [_rec("C99", "supported")]}), "unknown claim 'C99'"),
    (json.dumps({"provenance": {"utc": "t", "git_commit": "c", "profile": "quick"},
                 "records": [_rec("C4", "supported", metrics=[1, 2])]}), "metrics of type list"),
    (json.dumps({"provenance": {"utc": "t", "git_commit": "c", "profile": "quick"},
                 "records": [_rec("C4", "supported", figures=["../../etc/passwd"])]}), "inside the results directory"),
    (json.dumps({"provenance": {"utc": "t", "git_commit": "c", "profile": "quick"},
                 "records": [{**_rec("C4", "supported"), "figures": "a.png"}]}), "not a list of paths"),
    (json.dumps({"provenance": {"utc": "t", "git_commit": "c", "profile": "quick"},
                 "records": [{**_rec("C4", "supported"), "rule": " "}]}), "no decision rule in words"),
])
def test_malformed_or_partial_file_is_one_clear_line_naming_it(results, tmp_path, capsys, content, match):
    bad = results / "quick" / "05_distillation.json"
    bad.write_text(content)
    with pytest.raises(ValueError, match=match):
        collect("quick", results)
    out = tmp_path / "out"
    assert main(["--profile", "quick", "--results", str(results), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("slimlab.report: error: ") and str(bad) in err and re.search(match, err)
    assert not out.exists()  # nothing half-written


def test_quick_label_in_full_file_is_an_error(results):
    _put(results, "full", "05_distillation", [_rec("C11", "supported", label=QUICK_LABEL)])
    with pytest.raises(ValueError, match="05_distillation.json: record 0 is labelled"):
        collect("quick", results)


def test_cli_profile_defaults_to_environment(results, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLIMLAB_PROFILE", "full")
    assert main(["--results", str(results), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "(full profile): 14 claims: 2 with full-profile records, 12 MISSING; 0 quick record(s)" in out
    assert (tmp_path / "claims_report.md").read_text().startswith("# Claims report — slimlab, full profile")
    monkeypatch.delenv("SLIMLAB_PROFILE")
    assert main(["--results", str(results), "--out", str(tmp_path), "--formats", "md"]) == 0
    assert "(quick profile)" in capsys.readouterr().out


def test_argument_errors(results, tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown profile 'medium'; allowed: quick, full"):
        collect("medium", results)
    with pytest.raises(TypeError, match="include_full must be a bool"):
        collect("quick", results, include_full="yes")
    with pytest.raises(ValueError, match="results directory .*nowhere does not exist"):
        collect("quick", tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"formats must be a non-empty subset of \('md', 'html'\)"):
        write_report("quick", results, tmp_path, formats=("pdf",))
    with pytest.raises(TypeError, match="profile must be a str"):
        write_report(3, results, tmp_path)
    assert main(["--profile", "medium", "--results", str(results), "--out", str(tmp_path)]) == 2
    assert "unknown profile 'medium'" in capsys.readouterr().err


def test_format_value_by_hand():
    assert format_value(74.91234) == "74.91" and format_value(1e-7) == "1e-07" and format_value(3) == "3"
    assert format_value(True) == "true" and format_value(None) == "—"
    assert format_value({"b": 1, "a": [1.5, 2]}) == '{"a": [1.5, 2], "b": 1}'


def test_markdown_escapes_table_cells(tmp_path):
    e = report.Entry("C2", "refuted", {"a|b": "x\ny"}, "r", (), "nb", "full", "t", "c", "full/nb.json", 0)
    md = render_markdown([e], "full", tmp_path, tmp_path)
    assert "| a\\|b | x y |" in md


# ---------------------------------------------------------------- deciding numbers, README table, rules
def test_format_metric_by_the_unit_in_the_name():
    fm = report.format_metric
    assert fm("int8_bytes", 286727) == "286,727 B" and fm("bytes", 107583.0) == "107,583 B"
    assert fm("ort_int8_ms_b64", 19.8433) == "19.8 ms" and fm("latency_ms", 0.34112) == "0.341 ms"
    assert fm("gain_pt", 0.46667) == "0.47 pt" and fm("magnitude_ft_loss_pt", [0.26, 1.951]) == "0.26 pt / 1.95 pt"
    assert fm("saving", 0.73457) == "73.5%" and fm("share_rare_channels", 0.0238) == "2.4%"
    assert fm("kd_acc", 79.3767) == "79.38%" and fm("acc", 86.0) == "86.00%"
    assert fm("ratio", 3.7675) == "3.77×" and fm("slim_speedup", 1.1385) == "1.14×"
    assert fm("bytes_ratio", 0.1144) == "0.114×"           # a ratio of bytes is not a byte count
    assert fm("params", 269722) == "269,722" and fm("alpha", 0.131292) == "0.1313"
    assert fm("ok", True) == "yes" and fm("x", None) == "—" and fm("init", "density") == "density"
    assert fm("baseline_acc", {"pruned": 85.59, "low-rank": 75.18}) == "pruned: 85.59%; low-rank: 75.18%"
    with pytest.raises(TypeError, match="metric name"):
        fm(3, 1.0)


def test_key_metrics_take_the_listed_names_present_then_fall_back():
    m = {"torch_save_bytes": 1, "ratio": 3.7, "fp32_bytes": 2, "int8_bytes": 3, "saving": 0.7}
    assert report.key_metrics("C4", m) == ["fp32_bytes", "int8_bytes", "saving", "ratio"]
    c14 = {"flash_bytes": 1, "candidate": "k-means", "bytes": 2, "int8_loss_pt": 0.4, "speedup": 2.2, "sram": 3}
    assert report.key_metrics("C14", c14) == ["flash_bytes", "candidate", "bytes", "int8_loss_pt", "speedup"]
    assert report.key_metrics("C4", {"a": [1], "b": 2.0, "c": {"x": 1}}) == ["b"]   # scalars only
    assert report.key_metrics("C4", m, names=["saving", "absent"]) == ["saving"]
    assert len(report.key_metrics("C14", {f"m{i}": i for i in range(9)})) == report.MAX_KEY_METRICS
    with pytest.raises(TypeError, match="names must be a list"):
        report.key_metrics("C4", m, names="saving")


README_TEXT = """# project

## The claims

Intro text kept.

<!-- claims-table:begin -->
| claim | verdict | from |
|---|---|---|
| C4 | typed by hand | x |
<!-- claims-table:end -->

Text after the table kept.
"""


def test_readme_table_is_generated_from_the_full_records(results, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(README_TEXT)
    assert main(["--readme", str(readme), "--results", str(results)]) == 0
    assert "claims table rewritten" in capsys.readouterr().out
    text = readme.read_text()
    assert text.startswith("# project\n\n## The claims\n\nIntro text kept.\n\n" + report.README_BEGIN)
    assert text.endswith(report.README_END + "\n\nText after the table kept.\n")
    assert "typed by hand" not in text
    rows = [line for line in text.splitlines() if line.startswith("| C")]
    # one row per full record, one 'missing' row per claim without one; quick records never count
    assert len(rows) == 12 + 1 + 2
    c14 = [r for r in rows if r.startswith("| C14 ")]
    assert len(c14) == 2 and "qualified" in c14[0] and "02_quantization.json" in c14[0]
    assert "supported" in c14[1] and "03_pruning.json" in c14[1] and "`file_ratio` 0.5×" in c14[1]
    c4 = next(r for r in rows if r.startswith("| C4 "))
    assert "supported" in c4 and "`int8_bytes` 81,234 B" in c4 and "(2026-11-28, `abc123d`)" in c4
    c1 = next(r for r in rows if r.startswith("| C1 "))
    assert "**missing**" in c1 and "supported" not in c1           # C1 has a quick record only
    assert sum("**missing**" in r for r in rows) == 12
    assert ("Generated from `results/full/*.json` by `python -m slimlab.report --readme` (not typed): "
            "2 of 14 claims judged, 12 missing; records written 2026-11-28 (UTC) at commit `abc123d`.") in text
    # idempotent: a second run changes nothing
    assert report.update_readme(readme, results) is False and readme.read_text() == text


def test_readme_without_markers_is_an_error_and_left_alone(results, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# no table here\n")
    assert main(["--readme", str(readme), "--results", str(results)]) == 2
    assert "needs exactly one claims table between" in capsys.readouterr().err
    assert readme.read_text() == "# no table here\n"
    readme.write_text(README_TEXT + README_TEXT)
    with pytest.raises(ValueError, match=r"found 2"):
        report.update_readme(readme, results)


def test_rules_prints_every_registered_rule(capsys):
    from slimlab.ledger import rules
    assert main(["--rules"]) == 0
    out = capsys.readouterr().out.splitlines()
    registered = rules()
    assert len(out) == len(registered) >= 14
    assert {line.split(" ", 1)[0] for line in out} == set(CLAIMS)
    for (claim, name), r in registered.items():
        assert f"{claim} ({name}, claims.{r.fn.__name__}): {r.text}" in out
    nums = [int(line.split(" ", 1)[0][1:]) for line in out]
    assert nums == sorted(nums)


def test_records_on_an_earlier_reference_checkpoint_are_named_stale(tmp_path, monkeypatch):
    res = tmp_path / "results"
    now = {"resnet20": "a" * 64, "resnet8": "b" * 64}
    for nb_name, ref in (("02_quantization", now), ("03_pruning", {"resnet20": "c" * 64, "resnet8": "b" * 64}),
                         ("04_parameter_sharing", None)):
        path = _put(res, "full", nb_name, [_rec("C4", "supported")])
        if ref is not None:
            doc = json.loads(path.read_text())
            doc["provenance"]["reference_checkpoints"] = ref
            path.write_text(json.dumps(doc))
    entries = collect("full", res, include_full=False)
    stale = report.stale_entries(entries, now)
    assert sorted(e.notebook for e in stale) == ["03_pruning", "04_parameter_sharing"]   # older sha; unrecorded
    assert report.stale_entries(entries, {"resnet20": "c" * 64}) == [e for e in entries if e.notebook != "03_pruning"]
    monkeypatch.setattr(report, "reference_checkpoints", lambda: now)
    assert report.summary(entries).endswith("2 full record(s) on an earlier or unrecorded reference checkpoint")
    assert "2 of the 3 records were measured on an earlier" in report.render_readme_table(entries)
    md = render_markdown(entries, "full", res, tmp_path, include_full=False)
    assert md.count("measured on an earlier or unrecorded reference checkpoint") == 2
    bad = _put(res, "full", "05_distillation", [_rec("C11", "supported")])
    doc = json.loads(bad.read_text())
    doc["provenance"]["reference_checkpoints"] = {"resnet20": 5}
    bad.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="05_distillation.json: provenance 'reference_checkpoints' must map"):
        collect("full", res, include_full=False)
