import json
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from slimlab import nb  # noqa: E402


def test_save_figure_writes_a_png_under_the_profile_and_returns_the_report_path(tmp_path, monkeypatch):
    monkeypatch.setattr(nb, "ROOT", tmp_path)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    rel = nb.save_figure(fig, "04_test.png", profile="quick")
    plt.close(fig)
    assert rel == "quick/figures/04_test.png"           # relative to results/, as the report resolves it
    out = tmp_path / "results" / rel
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["04_test.png"]     # no temporary file left


@pytest.mark.parametrize("name", ["x.jpg", "../x.png", "a/b.png", ".png", 3])
def test_save_figure_rejects_bad_names(tmp_path, monkeypatch, name):
    monkeypatch.setattr(nb, "ROOT", tmp_path)
    fig = plt.figure()
    with pytest.raises(ValueError):
        nb.save_figure(fig, name, profile="quick")
    plt.close(fig)
    assert not (tmp_path / "results").exists()


def test_save_figure_rejects_non_figures(tmp_path, monkeypatch):
    monkeypatch.setattr(nb, "ROOT", tmp_path)
    with pytest.raises(TypeError):
        nb.save_figure("not a figure", "x.png", profile="quick")


# ---------------------------------------------------------------- evidence header
from slimlab.ledger import Record  # noqa: E402
from slimlab.report import QUICK_LABEL  # noqa: E402


def _full_results(root, notebook="03_pruning", records=None, machine_info=None):
    d = root / "results" / "full"
    d.mkdir(parents=True, exist_ok=True)
    prov = {"utc": "2026-11-29T19:08:33+00:00", "git_commit": "6213386b1e6ed909145d+dirty", "profile": "full",
            "machine": "Linux x86_64, 2 cores, cpu", "torch": "2.14.1"}
    if machine_info:
        prov["machine_info"] = machine_info
    recs = records or [{"claim": "C7", "verdict": "supported", "rule": "supported if magnitude beats random",
                        "metrics": {"magnitude_ft_loss_pt": [0.26, 1.95], "base_test_acc": 86.9, "layers": 20},
                        "figures": [], "notebook": notebook, "label": ""}]
    (d / f"{notebook}.json").write_text(json.dumps({"notebook": notebook, "provenance": prov, "records": recs}))
    return d / f"{notebook}.json"


def test_evidence_header_quick_says_smoke_run_and_points_to_the_evidence(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(nb, "ROOT", tmp_path)
    monkeypatch.setattr("slimlab.ledger.git_commit", lambda: "0123456789abcdef0123")
    _full_results(tmp_path)
    (tmp_path / nb.EVIDENCE_NOTEBOOKS).mkdir(parents=True)
    (tmp_path / nb.EVIDENCE_NOTEBOOKS / "03_pruning.ipynb").write_text("{}")
    assert nb.evidence_header("03_pruning", "quick") is None     # shown, not returned (no double display)
    printed = capsys.readouterr().out
    out = nb.evidence_header("03_pruning", "quick", show=False)
    def undated(t):
        return [line for line in t.splitlines() if "date:" not in line]
    assert undated(printed) == undated(out.text)                # outside IPython: printed as plain text
    for s in (QUICK_LABEL, "smoke run", "profile: quick", "commit: 0123456789abcdef", "UTC",
              "machine: ", "training precision: ", "results/full/notebooks/03_pruning.ipynb",
              "results/full/03_pruning.json", "2026-11-29T19:08:33+00:00", "6213386b1e+dirty"):
        assert s in out.text, s
    # the links in the HTML view are relative to notebooks/, where the notebook runs
    assert 'href="../results/full/03_pruning.json"' in out.html
    assert 'href="../results/full/notebooks/03_pruning.ipynb"' in out.html


def test_evidence_header_machine_and_precision_come_from_this_machine(tmp_path, monkeypatch):
    monkeypatch.setattr(nb, "ROOT", tmp_path)
    monkeypatch.setattr("slimlab.machine.describe", lambda: "Linux x86_64, Test CPU, 2 cores [avx2 fma]")
    monkeypatch.setattr("slimlab.machine.cpu_bf16_native", lambda: False)
    monkeypatch.setattr("slimlab.train.default_device", lambda: __import__("torch").device("cpu"))
    out = nb.evidence_header("01_marginal_returns", "quick", show=False)
    assert "machine: Linux x86_64, Test CPU, 2 cores [avx2 fma]" in out.text
    assert "training precision: fp32 (no native bf16 on this cpu)" in out.text
    assert "no full-profile run of 01_marginal_returns is committed yet" in out.text
    monkeypatch.setattr("slimlab.machine.cpu_bf16_native", lambda: True)
    assert "bf16 autocast" in nb.evidence_header("01_marginal_returns", "quick", show=False).text


def test_evidence_header_full_says_evidence_not_smoke(tmp_path, monkeypatch):
    monkeypatch.setattr(nb, "ROOT", tmp_path)
    out = nb.evidence_header("02_quantization", "full", show=False)
    assert "FULL profile" in out.text and "evidence" in out.text
    assert QUICK_LABEL not in out.text and "smoke" not in out.text
    assert "results/full/02_quantization.json" in out.text


@pytest.mark.parametrize("bad", ["", "../02", "a/b", 3, None])
def test_evidence_header_rejects_bad_names(bad):
    with pytest.raises(ValueError, match="bare notebook name"):
        nb.evidence_header(bad, "quick", show=False)


# ---------------------------------------------------------------- verdict tables and prose
def _c4(label=QUICK_LABEL):
    return Record("C4", "supported", {"fp32_bytes": 1080257, "int8_bytes": 286727, "saving": 0.7346,
                                      "ratio": 3.7675, "torch_save_bytes": 1122679, "ok": True,
                                      "files": {"int4": 152546}}, "supported if 72%-78% smaller", [],
                  notebook="02_quantization", label=label)


def test_verdict_table_shows_the_deciding_numbers_with_units_not_a_dump():
    t = nb.verdict_table([_c4()])
    assert t.text.splitlines()[0] == f"C4: SUPPORTED  [{QUICK_LABEL}] (02_quantization)"
    for s in ("fp32_bytes = 1,080,257 B", "int8_bytes = 286,727 B", "saving = 73.5%", "ratio = 3.77×",
              "rule: supported if 72%-78% smaller", "(+3 more metrics in the results file)"):
        assert s in t.text, s
    assert "torch_save_bytes" not in t.text and "{" not in t.text     # no dict dump in the text view
    # rich view: the verdict coloured, every metric folded below the table
    assert "class='verdict supported'" in t.html and "color:#1a7f37" in t.html
    assert "<details><summary>all 7 metrics of C4" in t.html and "<code>torch_save_bytes</code>" in t.html
    assert "full profile" in nb.verdict_table(_c4(label="")).text


def test_verdict_table_keys_pick_the_numbers_and_are_checked():
    rec = _c4()
    t = nb.verdict_table(rec, keys={"C4": ["ratio", "ok"]})
    lines = t.text.splitlines()
    assert lines[1:3] == ["  ratio = 3.77×", "  ok = yes"]
    assert nb.verdict_table([rec, rec.as_dict()], keys=["saving"]).text.count("saving = 73.5%") == 2
    with pytest.raises(ValueError, match=r"C4 has no metric \['nope'\]; it has: fp32_bytes"):
        nb.verdict_table(rec, keys={"C4": ["nope"]})
    with pytest.raises(ValueError, match="1 to 5 deciding numbers"):
        nb.verdict_table(rec, keys={"C4": ["fp32_bytes", "int8_bytes", "saving", "ratio", "ok", "files"]})
    with pytest.raises(TypeError, match="Record"):
        nb.verdict_table(["C4"])
    with pytest.raises(TypeError, match="non-empty"):
        nb.verdict_table([])
    with pytest.raises(TypeError, match="keys must"):
        nb.verdict_table(rec, keys="ratio")


def test_unknown_metric_names_fall_back_to_the_first_scalars():
    rec = Record("C9", "qualified", {"new_name": 0.5, "curve": [1, 2], "other": 3, "x": "a"}, "r", [])
    assert nb.verdict_table(rec).text.splitlines()[1:4] == ["  new_name = 0.5", "  other = 3", "  x = a"]


def test_show_verdict_keeps_its_signature_and_prints_the_table(capsys):
    nb.show_verdict(_c4())
    out = capsys.readouterr().out
    assert out.startswith("C4: SUPPORTED") and "int8_bytes = 286,727 B" in out


def test_explain_formats_numbers_from_the_record():
    rec = Record("C11", "qualified", {"gain_pt": 0.4667, "kd_mean": 79.3767, "n_seeds": 3,
                                      "margins": [0.7, 4.78]}, "r", [])
    t = nb.explain("{claim} is {verdict}: +{gain_pt} ({kd_mean:.1f}% over {n_seeds} seeds; first margin "
                   "{margins[0]:.2f}), {note}", rec, note="one regime")
    assert t.text == "C11 is qualified: +0.47 pt (79.4% over 3 seeds; first margin 0.70), one regime"
    assert t._repr_markdown_() == t.text and str(t) == t.text
    with pytest.raises(ValueError, match="no field 'gain'; it has: gain_pt"):
        nb.explain("{gain}", rec)
    with pytest.raises(ValueError, match="named fields"):
        nb.explain("{} and {0}", rec)
    with pytest.raises(ValueError, match="cannot fill"):
        nb.explain("{margins[5]}", rec)


def test_show_committed_full_is_a_readable_table_with_provenance(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(nb, "ROOT", tmp_path)
    nb.show_committed_full("03_pruning")
    assert "No committed full-profile results for 03_pruning yet" in capsys.readouterr().out
    _full_results(tmp_path, machine_info={"cpu_model": "AMD EPYC", "cpu_count": 2, "cpu_flags": ["avx2", "fma"]})
    nb.show_committed_full("03_pruning")
    out = capsys.readouterr().out
    assert "Committed FULL-profile evidence, results/full/03_pruning.json" in out
    assert "2026-11-29T19:08:33+00:00" in out and "6213386b1e+dirty" in out and "AMD EPYC, 2 cores [avx2 fma]" in out
    assert "C7: SUPPORTED  [full profile] (03_pruning)" in out
    assert "magnitude_ft_loss_pt = 0.26 pt / 1.95 pt" in out and "base_test_acc = 86.90%" in out


# ---------------------------------------------------------------- frozen progress bars
def _widget(mid, model, **state):
    return {mid: {"model_name": model, "model_module": "@jupyter-widgets/controls", "state": state}}


def _notebook_with_bars(path, with_state=True):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output
    view = "application/vnd.jupyter.widget-view+json"
    bar = new_output("display_data", data={
        view: {"model_id": "box1", "version_major": 2, "version_minor": 0},
        "text/plain": "fine-tune:   0%|          | 0/600 [00:00<?, ?step/s]"})
    slider = new_output("display_data", data={
        view: {"model_id": "slider1", "version_major": 2, "version_minor": 0},
        "text/plain": "interactive(children=(IntSlider(value=4, description='bits'),))"})
    text_bar = new_output("stream", name="stderr", text="sweep:   0%|   | 0/3\rsweep:  33%|#  | 1/3\r"
                                                            "sweep: 100%|###| 3/3 [00:03<00:00]\ndone\n")
    nbk = new_notebook(cells=[new_code_cell("fit(...)", outputs=[bar, new_output("stream", name="stdout",
                                                                                  text="acc 86.9%\n")]),
                              new_code_cell("explore()", outputs=[slider]),
                              new_code_cell("sweep()", outputs=[text_bar])])
    state = {**_widget("box1", "HBoxModel", children=["IPY_MODEL_lab1", "IPY_MODEL_prog1", "IPY_MODEL_lab2"],
                       layout="IPY_MODEL_lay1"),
             **_widget("lab1", "HTMLModel", value="fine\u2011tune:\u2007100%"),
             **_widget("prog1", "FloatProgressModel", value=600.0, max=600.0, bar_style="success"),
             **_widget("lab2", "HTMLModel", value="\u2007600/600\u2007[04:00&lt;00:00,\u2007\u20072.38step/s]"),
             **_widget("lay1", "LayoutModel"),
             **_widget("slider1", "IntSliderModel", value=4, layout="IPY_MODEL_lay2"),
             **_widget("lay2", "LayoutModel")}
    if with_state:
        nbk.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json":
                                   {"state": state, "version_major": 2, "version_minor": 0}}
    nbformat.write(nbk, str(path))
    return path


def test_clean_progress_replaces_frozen_bars_by_their_final_line(tmp_path, capsys):
    import nbformat
    path = _notebook_with_bars(tmp_path / "x.ipynb")
    assert nb.main(["--clean-progress", str(path)]) == 0
    assert ("1 progress bar(s) replaced by their final line, 1 text stream(s) collapsed, 1 widget(s) labelled"
            in capsys.readouterr().out)
    out = nbformat.read(str(path), as_version=4)
    fit_outs = out.cells[0].outputs
    assert [o.output_type for o in fit_outs] == ["stream", "stream"]
    assert fit_outs[0].text == "fine\u2011tune: 100%|██████████| 600/600 [04:00<00:00,  2.38step/s]\n"
    assert fit_outs[1].text == "acc 86.9%\n"
    assert not re.search(r"(?<!\d)0%\|", json.dumps(out))               # no frozen bar anywhere
    slider = out.cells[1].outputs[0].data                                   # the slider is kept, with a readable text form
    assert "application/vnd.jupyter.widget-view+json" in slider and slider["text/plain"] == nb.WIDGET_TEXT
    assert out.cells[2].outputs[0].text == "sweep: 100%|###| 3/3 [00:03<00:00]\ndone\n"
    state = out.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    assert sorted(state) == ["lay2", "slider1"]                            # the bar's models went with it
    nbformat.validate(out)
    before = path.read_bytes()
    assert nb.clean_progress(path) == (0, 0, 0) and path.read_bytes() == before   # idempotent, not rewritten


def test_clean_progress_drops_bars_without_saved_state(tmp_path):
    import nbformat
    path = _notebook_with_bars(tmp_path / "y.ipynb", with_state=False)
    assert nb.clean_progress(path) == (1, 1, 1)
    out = nbformat.read(str(path), as_version=4)
    assert [o.get("text") for o in out.cells[0].outputs] == ["acc 86.9%\n"]


def test_clean_progress_errors_name_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.ipynb: not a readable notebook"):
        nb.clean_progress(bad)
    with pytest.raises(ValueError, match="not a notebook file"):
        nb.clean_progress(tmp_path / "x.txt")
    assert nb.main(["--clean-progress", str(bad)]) == 2
    assert capsys.readouterr().err.startswith("slimlab.nb: error: ")


def test_explain_picks_the_text_written_for_the_verdict_the_numbers_gave():
    texts = {"supported": "{claim} holds: +{gain_pt}.", "refuted": "{claim} fails: +{gain_pt} is no gain.",
             "*": "{claim} is {verdict}."}
    rec = Record("C11", "refuted", {"gain_pt": 0.05}, "r", [])
    assert nb.explain(texts, rec).text == "C11 fails: +0.05 pt is no gain."
    assert nb.explain(texts, Record("C11", "supported", {"gain_pt": 0.6}, "r", [])).text == "C11 holds: +0.60 pt."
    assert nb.explain(texts, Record("C11", "qualified", {"gain_pt": 0.3}, "r", [])).text == "C11 is qualified."
    with pytest.raises(ValueError, match="no text for the verdict 'qualified' of C11"):
        nb.explain({"supported": "x"}, Record("C11", "qualified", {}, "r", []))
    with pytest.raises(ValueError, match="keys must be verdicts"):
        nb.explain({"inconclusive": "x"}, rec)
    with pytest.raises(ValueError, match="non-empty"):
        nb.explain({"refuted": ""}, rec)


def test_evidence_notebook_prefers_a_committed_notebook_with_full_outputs(tmp_path):
    (tmp_path / "notebooks").mkdir()
    own = tmp_path / "notebooks" / "01_marginal_returns.ipynb"
    own.write_text(json.dumps({"cells": [{"outputs": [{"text": "These outputs are a quick smoke run"}]}]}))
    assert nb.evidence_notebook("01_marginal_returns", tmp_path) is None           # quick outputs, nothing older
    (tmp_path / nb.EVIDENCE_NOTEBOOKS).mkdir(parents=True)
    (tmp_path / nb.EVIDENCE_NOTEBOOKS / "01_marginal_returns.ipynb").write_text("{}")
    assert nb.evidence_notebook("01_marginal_returns", tmp_path) == nb.EVIDENCE_NOTEBOOKS / "01_marginal_returns.ipynb"
    own.write_text(json.dumps({"cells": [{"outputs": [{"text": nb.FULL_HEAD}]}]}))   # the v2 run's own outputs
    assert nb.evidence_notebook("01_marginal_returns", tmp_path).as_posix() == "notebooks/01_marginal_returns.ipynb"
    with pytest.raises(ValueError, match="bare notebook name"):
        nb.evidence_notebook("../x")


def _executed(path, text):
    import nbformat
    nbk = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("evidence_header('01_marginal_returns')")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
    nbk.cells = [cell]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nbformat.writes(nbk))
    return path


def test_publish_evidence_replaces_the_committed_notebook_and_the_old_copy(tmp_path):
    (tmp_path / "notebooks").mkdir()
    committed = _executed(tmp_path / "notebooks" / "01_marginal_returns.ipynb", "quick smoke run")
    old = tmp_path / nb.EVIDENCE_NOTEBOOKS / "01_marginal_returns.ipynb"
    old.parent.mkdir(parents=True)
    old.write_text("{}")
    quick = _executed(tmp_path / "build" / "quick" / "01_marginal_returns.ipynb", "quick smoke run")
    with pytest.raises(ValueError, match="do not come from the full profile"):
        nb.publish_evidence(quick, tmp_path)
    assert "quick smoke run" in committed.read_text() and old.is_file()          # nothing touched
    full = _executed(tmp_path / "build" / "full" / "01_marginal_returns.ipynb", nb.FULL_HEAD + "\nA\rB\rdone\n")
    dest, removed = nb.publish_evidence(full, tmp_path)
    assert dest == committed and removed == old and not old.exists()
    text = committed.read_text()
    assert nb.FULL_HEAD in text and "\\r" not in text and "done" in text        # progress collapsed
    assert nb.evidence_notebook("01_marginal_returns", tmp_path).as_posix() == "notebooks/01_marginal_returns.ipynb"
    stray = _executed(tmp_path / "build" / "full" / "07_extra.ipynb", nb.FULL_HEAD)
    with pytest.raises(ValueError, match="not one of the course's notebooks"):
        nb.publish_evidence(stray, tmp_path)
    with pytest.raises(ValueError, match="not a notebook file"):
        nb.publish_evidence(tmp_path / "missing.ipynb", tmp_path)
