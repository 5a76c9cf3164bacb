"""The v2 goals table on made-up records: met, missed by how much, not measured, the README block, --before."""
import copy
import json
import subprocess

import pytest

from slimlab import goals
from slimlab.goals import NOT_MEASURED, collect, main, render_markdown, update_readme

UTC, COMMIT = "2026-12-10T10:00:00+00:00", "1234567890abcdef"


def _rec(claim, metrics):
    return {"claim": claim, "verdict": "qualified", "metrics": metrics, "rule": f"rule for {claim}",
            "figures": [], "notebook": "", "label": ""}


def _good() -> dict:
    """notebook -> (records, extra): v2-shaped records in which every goal is met."""
    return copy.deepcopy({
        "02_quantization": ([
            _rec("C5", {"resnet20_ptq8_drop": 0.2}),
            _rec("C14", {"ort_int8_ms_b64": 20.0, "ort_fp32_ms_b64": 50.0, "ORT_int8_ms_b1": 0.25,
                         "ORT_fp32_ms_b1": 0.75, "ort_int8_acc": 90.7, "ort_fp32_acc": 91.0, "latency_threads": 1,
                         "cpu_avx2": True, "cpu_avx512_vnni": True, "cpu_amx_int8": False})],
            {"reference_test_acc": 91.0, "ptq_test_acc": {"per_tensor/8": 90.9, "per_channel/8": 90.8},
             "qat_test_acc": {"4": {"ptq": 89.0, "qat": 90.6}, "2": {"ptq": 12.0, "qat": 89.5}},
             "qat_steps": 6000, "qat_weight_calibrator": {"4": "mse", "2": "minmax"},
             "latency_ms": {"ORT int8/b64": 20.0, "ORT fp32/b64": 50.0, "ORT int8/b1": 0.25, "ORT fp32/b1": 0.75}}),
        "03_pruning": ([
            _rec("C7", {"base_test_acc": 91.0}),
            _rec("C14", {"slim_speedup": 1.7, "mac_reduction": 2.0, "slim_acc_loss_pt": 0.8, "slim_method": "l1",
                         "speedup_over_mac_reduction": 0.85, "torch_pruning_speedup": 1.5,
                         "torch_pruning_acc_loss_pt": 0.9, "latency_batch": 32})],
            # at 80% the goal arm wins on validation (0.3 pt) though the short gradual arm is better on test
            {"base_test_acc": 91.0, "base_val_acc": 90.0, "goal_steps": 6000,
             "finetuned": {"0.5": {"magnitude + fine-tune": 90.9, "gradual magnitude": 90.8,
                                   "random + fine-tune": 88.0},
                           "0.8": {"magnitude + fine-tune": 90.1, "gradual magnitude": 90.6,
                                   "random + fine-tune": 91.0},             # random arms are never candidates
                           "0.9": {"magnitude + fine-tune": 89.0, "gradual magnitude": 89.5}},
             "finetuned_val": {"0.5": {"magnitude + fine-tune": 89.9, "gradual magnitude": 89.8},
                               "0.8": {"magnitude + fine-tune": 89.5, "gradual magnitude": 89.2},
                               "0.9": {"magnitude + fine-tune": 88.5, "gradual magnitude": 88.9}},
             "sparsity_goals": {"0.8": {"sparsity": 0.8, "val_drop": 0.3, "test_drop": 0.45, "goal_pt": 0.5},
                                "0.9": {"sparsity": 0.9, "val_drop": 0.6, "test_drop": 0.9, "goal_pt": 1.0}}}),
        "04_parameter_sharing": ([
            _rec("C10", {"bits": 3, "init": "density", "ref_acc": 91.0, "acc": 90.6, "loss_4bit_pt": 0.25,
                         "goal_4bit_met": True, "loss_3bit_pt": 0.45, "goal_3bit_met": True}),
            _rec("C10", {"compressions": [2.0], "margins": [0.1]})],
            {"reference": {"val_acc": 90.0, "test_acc": 91.0},
             "kmeans": [{"bits": 4, "init": "linear", "val_acc_ft": 89.0, "test_acc": 80.0}]}),
        "05_distillation": ([
            _rec("C11", {"kd_values": [80.6, 80.7, 80.8], "scratch_values": [80.0, 80.1, 80.2], "kd_mean": 80.7,
                         "scratch_mean": 80.1, "gain_pt": 0.62, "p_value": 0.004, "n_seeds": 3})],
            {"students": {"kd": [80.6, 80.7, 80.8], "scratch": [80.0, 80.1, 80.2]}}),
        "06_putting_it_together": ([
            _rec("C13", {"ref_bytes": 1_000_000, "ref_test_acc": 91.0, "chosen_on_val": "prune+share+int8",
                         "chosen_ratio": 24.0, "chosen_test_loss_pt": 0.7, "ratio_within_1pt": 30.0,
                         "best_within_1pt": "prune 90%+share+int4", "goal_reached": True})],
            {"goal": {"chosen_ratio": 1.0}}),
    })


def _write(folder, docs, utc=UTC, commit=COMMIT, reference=None):
    folder.mkdir(parents=True, exist_ok=True)
    for nb, (records, extra) in docs.items():
        prov = {"utc": utc, "git_commit": commit, "profile": "full", "machine": "test"}
        if reference is not None:
            prov["reference_checkpoints"] = reference
        for r in records:
            r["notebook"] = nb
        doc = {"notebook": nb, "provenance": prov, "records": records, "extra": extra}
        (folder / f"{nb}.json").write_text(json.dumps(doc, indent=1))
    return folder


def _rows(folder, card=None):
    return {r.goal.id: r for r in collect(folder, card=card)}


@pytest.fixture
def good(tmp_path):
    return _write(tmp_path / "results" / "full", _good())


def test_every_goal_met_reads_the_right_fields(good):
    rows = _rows(good)
    assert [r.goal.id for r in rows.values()] == [g.id for g in goals.GOALS]
    want = {
        "reference": "91.00%",
        "ptq-int8": "0.20 pt",
        "qat-4": "0.40 pt",
        "qat-2": "1.50 pt",
        "sparse-80": "0.45 pt lost at 80%",          # chosen on validation: not the 0.40 pt arm best on test
        "sparse-floor": "80% (0.45 pt lost)",
        "sparse-90": "0.90 pt lost at 90%",
        "channels": "0.85 of the MAC cut, 0.80 pt lost",
        "kmeans-4": "0.25 pt",                       # the C10 record's seed mean, not the extra.kmeans row
        "kmeans-3": "0.45 pt",
        "combined": "24.0× smaller, 0.70 pt lost",   # the pipeline chosen on validation, not the best on test
        "distillation": "+0.62 pt (p = 0.004, 3 seeds a side)",
        "ort-int8-latency": "batch 1: int8 0.25 ms, fp32 0.75 ms (3.00× faster); "
                            "batch 64: int8 20 ms, fp32 50 ms (2.50× faster)",
    }
    assert {k: r.outcome.measured for k, r in rows.items()} == want
    assert all(r.met_text == "yes" for k, r in rows.items() if k != "ort-int8-latency")
    assert rows["ort-int8-latency"].met_text == "—" and rows["ort-int8-latency"].outcome.met is None
    # the details say where the numbers come from and how they were chosen
    assert rows["sparse-80"].outcome.detail == "gradual, 6,000 steps, chosen on validation"
    assert rows["qat-4"].outcome.detail == ("QAT 90.60% against fp32 91.00% (PTQ before it 89.00%); 6,000 steps; "
                                            "weight range 'mse' chosen on validation")
    assert "Torch-Pruning at the same cut: 0.75 (1.50× faster), 0.90 pt lost" in rows["channels"].outcome.detail
    assert "largest cut within 1 pt on test: 30.0× (prune 90%+share+int4)" in rows["combined"].outcome.detail
    assert rows["ort-int8-latency"].outcome.detail == "int8 flags: avx2, avx512_vnni (not amx_int8); 1 thread(s)"
    assert ("PTQ 90.80% against fp32 91.00%; ONNX Runtime int8 90.70% against fp32 91.00%"
            in rows["ptq-int8"].outcome.detail)
    assert rows["reference"].source.name == "02_quantization" and rows["kmeans-3"].source.name == "04_parameter_sharing"


def _miss(docs):
    """The good records changed so that every goal is missed."""
    q = docs["02_quantization"][1]
    q["reference_test_acc"] = 89.41
    q["ptq_test_acc"]["per_channel/8"] = 89.06
    q["qat_test_acc"] = {"4": {"ptq": 88.0, "qat": 88.81}, "2": {"ptq": 10.0, "qat": 86.91}}
    p = docs["03_pruning"][1]
    p["sparsity_goals"] = {"0.8": {"val_drop": 0.3, "test_drop": 0.75}, "0.9": {"val_drop": 0.6, "test_drop": 1.4}}
    p["finetuned"]["0.5"] = {"magnitude + fine-tune": 90.4, "gradual magnitude": 90.3}     # 0.6 pt lost at 50%
    docs["03_pruning"][0][1]["metrics"].update(slim_speedup=1.5, slim_acc_loss_pt=1.3)      # 0.75 of the cut
    docs["04_parameter_sharing"][0][0]["metrics"].update(loss_4bit_pt=0.42, loss_3bit_pt=0.5)
    docs["05_distillation"][0][0]["metrics"].update(gain_pt=0.41, p_value=0.09)
    docs["06_putting_it_together"][0][0]["metrics"].update(chosen_ratio=16.4, chosen_test_loss_pt=1.56)
    return docs


def test_every_goal_missed_says_by_how_much(tmp_path):
    rows = _rows(_write(tmp_path / "full", _miss(_good())))
    assert {k: r.met_text for k, r in rows.items()} == {
        "reference": "no (by 0.59 pt)",
        "ptq-int8": "no (by 0.05 pt)",
        "qat-4": "no (by 0.10 pt)",
        "qat-2": "no (by 0.50 pt)",
        "sparse-80": "no (by 0.25 pt)",
        "sparse-floor": "no (least lost: 0.60 pt at 50%)",
        "sparse-90": "no (by 0.40 pt)",
        "channels": "no (ratio by 0.05; loss by 0.30 pt)",
        "kmeans-4": "no (by 0.12 pt)",
        "kmeans-3": "yes",                           # exactly at the limit counts as met
        "combined": "no (by 3.6×; loss by 0.56 pt)",
        "distillation": "no (gain by 0.09 pt; not significant (p = 0.09))",
        "ort-int8-latency": "—",
    }
    assert rows["sparse-floor"].outcome.measured == "no sparsity within 0.5 pt"
    assert rows["reference"].outcome.measured == "89.41%"


def test_the_floor_is_missed_below_70_percent(tmp_path):
    docs = _good()
    p = docs["03_pruning"][1]
    p["sparsity_goals"] = {}
    p["finetuned"]["0.8"] = {"magnitude + fine-tune": 89.0}
    rows = _rows(_write(tmp_path / "full", docs))
    assert rows["sparse-floor"].outcome.measured == "50% (0.10 pt lost)"   # magnitude: best on validation
    assert rows["sparse-floor"].met_text == "no (largest within 0.5 pt: 50%)"
    assert rows["sparse-80"].outcome.measured == "2.00 pt lost at 80%"


def test_distillation_needs_three_seeds_and_significance(tmp_path):
    docs = _good()
    docs["05_distillation"][0][0]["metrics"].update(kd_values=[80.6, 80.8], scratch_values=[80.0, 80.2],
                                                    p_value=None, gain_pt=0.6)
    docs["05_distillation"][1]["students"] = {"kd": [80.6, 80.8], "scratch": [80.0, 80.2]}
    rows = _rows(_write(tmp_path / "full", docs))
    o = rows["distillation"].outcome
    assert o.measured.startswith("+0.60 pt (p = ") and "recomputed from the seeds, 2 seeds a side)" in o.measured
    assert rows["distillation"].met_text == "no (2 seeds, not 3)"


def test_older_records_fall_back_to_what_they_hold(tmp_path):
    """v1 shapes: no validation numbers in 03, no loss_<b>bit_pt in 04, C5's drop instead of the PTQ table."""
    docs = _good()
    docs["02_quantization"][1].pop("ptq_test_acc")
    docs["02_quantization"][0][0]["metrics"]["resnet20_ptq8_drop"] = 0.12
    p = docs["03_pruning"][1]
    for k in ("finetuned_val", "sparsity_goals", "base_val_acc"):
        p.pop(k)
    docs["04_parameter_sharing"][0][0]["metrics"] = {"bits": 3, "init": "density", "ref_acc": 91.0}
    docs["04_parameter_sharing"][1]["kmeans"] = [
        {"bits": 4, "init": "linear", "val_acc_ft": 89.0, "test_acc": 90.9},
        {"bits": 4, "init": "density", "val_acc_ft": 89.5, "test_acc": 90.5},   # chosen: best on validation
        {"bits": 3, "init": "linear", "val_acc_ft": None, "test_acc": 91.0}]      # not fine-tuned: ignored
    rows = _rows(_write(tmp_path / "full", docs))
    assert rows["ptq-int8"].outcome.measured == "0.12 pt"
    assert rows["sparse-80"].outcome.measured == "0.40 pt lost at 80%"
    assert rows["sparse-80"].outcome.detail == ("gradual magnitude, best on test: the record has no validation "
                                                "accuracies")
    assert rows["kmeans-4"].outcome.measured == "0.50 pt"
    assert rows["kmeans-4"].outcome.detail == "4-bit codebooks, fine-tuned; density start chosen on validation, one run"
    assert rows["kmeans-3"].outcome.measured == NOT_MEASURED


def test_missing_records_and_fields_say_not_measured(tmp_path):
    empty = tmp_path / "none" / "full"
    empty.mkdir(parents=True)
    rows = collect(empty, card=None)
    assert len(rows) == len(goals.GOALS)
    assert all(r.outcome.measured == NOT_MEASURED and r.met_text == "—" and r.source is None for r in rows)
    md = render_markdown(rows)
    assert "| no `02_quantization.json` |" in md and "0 met, 0 missed, 13 not measured" in md
    # the files exist but hold none of the fields: each row names what it lacks and the file it read
    bare = {nb: ([_rec("C4", {"x": 1.0})], {}) for nb in goals.NOTEBOOKS}
    rows = _rows(_write(tmp_path / "bare" / "full", bare))
    assert all(r.outcome.measured == NOT_MEASURED and r.outcome.met is None for r in rows.values())
    assert rows["qat-2"].outcome.detail == ("02_quantization.json lacks extra.qat_test_acc[2] or "
                                            "extra.reference_test_acc")
    assert rows["qat-2"].source.name == "02_quantization"
    # one field missing leaves the other goals of the same file alone
    docs = _good()
    del docs["02_quantization"][1]["qat_test_acc"]["2"]
    rows = _rows(_write(tmp_path / "one" / "full", docs))
    assert rows["qat-2"].outcome.measured == NOT_MEASURED and rows["qat-4"].met_text == "yes"


def test_reference_falls_back_to_the_card_and_names_stale_records(tmp_path):
    card = tmp_path / "resnet20.json"
    card.write_text(json.dumps({"name": "resnet20", "test_acc": 90.3, "sha256": "a" * 64,
                                "date": "2026-12-02T07:03:27+00:00"}))
    docs = _good()
    docs["02_quantization"][1].pop("reference_test_acc")
    docs["02_quantization"][0][0]["metrics"].pop("resnet20_ptq8_drop")
    for nb in ("03_pruning", "04_parameter_sharing", "06_putting_it_together"):
        docs.pop(nb)
    rows = _rows(_write(tmp_path / "full", docs, reference={"resnet20": "a" * 64}), card=card)
    assert rows["reference"].outcome.measured == "90.30%" and rows["reference"].source.name == goals.CARD
    assert rows["ptq-int8"].outcome.measured == NOT_MEASURED
    md = render_markdown(list(rows.values()))
    assert "[`resnet20.json`](" in md and "(2026-12-02, sha256 `aaaaaaa`)" in md
    assert "earlier reference checkpoint" not in md                     # the records stood on the card's checkpoint
    # a record on another checkpoint: its reference accuracy is named beside the card's, the rows are marked
    rows = _rows(_write(tmp_path / "old" / "full", _good(), reference={"resnet20": "b" * 64}), card=card)
    assert rows["reference"].outcome.detail == ("extra.reference_test_acc of 02_quantization; this record stood on an "
                                                "earlier reference checkpoint: the committed card says 90.30%")
    md = render_markdown(list(rows.values()))
    assert md.count("— earlier reference checkpoint |") == len(goals.GOALS)
    assert "5 of the 5 records" in md


def test_markdown_table_columns_and_record_cells(good, tmp_path):
    md = render_markdown(collect(good, card=None), link_root=tmp_path)
    lines = md.splitlines()
    assert lines[0] == "| goal | target | published | measured (v2) | met | record (date, commit) |"
    row = next(line for line in lines if line.startswith("| 2-bit QAT"))
    assert row == ("| 2-bit QAT: accuracy drop | ≤ 2.0 pt | −2.00 pt (APoT, ResNet-20) | 1.50 pt — QAT 89.50% "
                   "against fp32 91.00% (PTQ before it 12.00%); 6,000 steps; weight range 'minmax' chosen on "
                   "validation | yes | "
                   "[`02_quantization.json`](results/full/02_quantization.json) (2026-12-10, `1234567`) |")
    assert "of 13 goals, 12 met, 0 missed, 0 not measured" in md and "Records written 2026-12-10 (UTC)." in md


README = """# project

Intro kept.

<!-- goals-table:begin -->
| typed | by hand |
<!-- goals-table:end -->

After the table, kept.
<!-- claims-table:begin -->
other block kept
<!-- claims-table:end -->
"""


def test_readme_block_is_replaced_idempotently(good, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert update_readme(readme, good, card=None) is True
    text = readme.read_text()
    assert text.startswith("# project\n\nIntro kept.\n\n" + goals.README_BEGIN + "\n| goal | target |")
    assert text.endswith(goals.README_END + "\n\nAfter the table, kept.\n<!-- claims-table:begin -->\n"
                                            "other block kept\n<!-- claims-table:end -->\n")
    assert "typed | by hand" not in text
    assert "[`02_quantization.json`](results/full/02_quantization.json)" in text   # relative to the README
    assert update_readme(readme, good, card=None) is False and readme.read_text() == text
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match=r"exactly one goals table .* \(found 0\)"):
        update_readme(readme, good, card=None)
    assert readme.read_text() == "# no markers\n"


def test_cli_prints_the_table_and_rewrites_the_readme(good, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(goals, "DEFAULT_CARD", None)
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert main(["--results", str(good), "--readme", str(readme)]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("| goal | target | published | measured (v2) | met |")
    assert "goals table rewritten" in out.err
    assert "| 24.0× smaller, 0.70 pt lost" in readme.read_text()


def test_bad_input_is_named(tmp_path, capsys):
    with pytest.raises(TypeError, match="results_dir must be a str or os.PathLike"):
        collect(3)
    with pytest.raises(ValueError, match="does not exist; expected a directory of full-profile records"):
        collect(tmp_path / "nope")
    assert main(["--results", str(tmp_path / "nope")]) == 2
    assert "slimlab.goals: error: results directory" in capsys.readouterr().err
    bad = tmp_path / "bad" / "full"
    bad.mkdir(parents=True)
    (bad / "05_distillation.json").write_text(json.dumps({"provenance": {"utc": UTC}, "records": []}))
    with pytest.raises(ValueError, match="05_distillation.json: provenance lacks"):
        collect(bad, card=None)
    with pytest.raises(TypeError, match="readme must be a str or os.PathLike"):
        update_readme(None, bad)


def _git(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false",
                    *args], cwd=repo, check=True, capture_output=True)


def test_before_reads_a_git_revision(tmp_path, capsys, monkeypatch):
    repo = tmp_path / "repo"
    full = repo / "results" / "full"
    old = _good()
    del old["03_pruning"]                                   # the old revision has no pruning record
    old["02_quantization"][1]["qat_test_acc"]["2"]["qat"] = 84.95
    old["02_quantization"][1].pop("latency_ms")
    _write(full, old, utc="2026-11-29T19:00:00+00:00")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "v1 records")
    _write(full, _good())
    rows = {r.goal.id: r for r in collect(full, before="HEAD", card=None)}
    assert rows["qat-2"].before.measured == "6.05 pt" and rows["qat-2"].before.met is False
    assert rows["qat-2"].outcome.measured == "1.50 pt"
    assert rows["sparse-80"].before.measured == NOT_MEASURED and rows["sparse-80"].outcome.met is True
    assert rows["ort-int8-latency"].before.measured.startswith("batch 1: int8 0.25 ms")   # from the C14 metrics
    monkeypatch.setattr(goals, "DEFAULT_CARD", None)
    monkeypatch.chdir(repo)
    assert main(["--results", "results/full", "--before", "HEAD"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("| goal | target | published | before (HEAD) | measured (v2) | met | record (date, commit) |")
    qat2 = next(line for line in lines if line.startswith("| 2-bit QAT"))
    assert "| 6.05 pt; met: no (by 4.05 pt) | 1.50 pt — QAT 89.50%" in qat2 and "| yes |" in qat2
    assert "[`02_quantization.json`](results/full/02_quantization.json) (2026-12-10, `1234567`)" in qat2
    sparse = next(line for line in lines if line.startswith("| Unstructured sparsity: 80%"))
    assert "| not measured | 0.45 pt lost at 80%" in sparse
    with pytest.raises(ValueError, match="'no-such-rev' is not a commit"):
        collect(full, before="no-such-rev", card=None)
    with pytest.raises(ValueError, match="rev must be a git revision"):
        collect(full, before="--all", card=None)
