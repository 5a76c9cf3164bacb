import json

import pytest

from slimlab import ledger
from slimlab.ledger import CLAIMS, Record, judge, read_results, rule, rules, write_results


@pytest.fixture
def toy_rule():
    @rule("C4", "supported if saving >= 74%, qualified if >= 60%, else refuted", name="test-toy")
    def _r(m):
        s = m["saving_pct"]
        return "supported" if s >= 74 else "qualified" if s >= 60 else "refuted"
    yield
    ledger._RULES.pop(("C4", "test-toy"))


@pytest.mark.parametrize("saving,verdict", [(75.0, "supported"), (65.0, "qualified"), (10.0, "refuted")])
def test_judge_applies_the_registered_rule(toy_rule, saving, verdict):
    r = judge("C4", {"saving_pct": saving}, name="test-toy", profile="full")
    assert r.verdict == verdict and r.label == "" and "74%" in r.rule
    assert judge("C4", {"saving_pct": saving}, name="test-toy", profile="quick").label == "quick — not evidence"


def test_results_file_round_trip(toy_rule, tmp_path):
    recs = [judge("C4", {"saving_pct": 75.0, "bytes": 123}, name="test-toy", profile="full")]
    p = write_results("02_quantization", recs, profile="full", data_fingerprint="abc", results_dir=tmp_path)
    doc = read_results(p)
    assert doc["provenance"]["profile"] == "full" and doc["provenance"]["data_sha256"] == "abc"
    assert {"utc", "git_commit", "profile", "machine", "python", "torch", "data_sha256"} <= set(doc["provenance"])
    from slimlab.machine import cpu_bf16_native, machine_info
    info = doc["provenance"]["machine_info"]       # what decides speed: CPU model, flags, bf16, capability
    assert info == json.loads(json.dumps(machine_info()))
    assert info["cpu_bf16_native"] is cpu_bf16_native() and isinstance(info["cpu_flags"], list)
    assert {"cpu_model", "torch_cpu_capability"} <= set(info)
    assert doc["records"][0]["notebook"] == "02_quantization"
    assert doc["records"][0]["metrics"] == {"saving_pct": 75.0, "bytes": 123}
    assert not list(tmp_path.glob("*.tmp"))


def test_malformed_results_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        read_results(bad)
    part = tmp_path / "part.json"
    part.write_text(json.dumps({"provenance": {}, "records": [{"claim": "C4"}]}))
    with pytest.raises(ValueError, match="part.json: record 0 lacks"):
        read_results(part)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"provenance": {}, "records": [
        {"claim": "C4", "verdict": "true", "metrics": {}, "rule": "x"}]}))
    with pytest.raises(ValueError, match="verdict 'true'"):
        read_results(wrong)


def test_ledger_errors(toy_rule):
    with pytest.raises(ValueError, match="unknown claim 'C99'"):
        rule("C99", "x")
    with pytest.raises(ValueError, match="decision rule in words"):
        rule("C4", " ")
    with pytest.raises(ValueError, match="no rule 'nope' registered for C4"):
        judge("C4", {}, name="nope")
    with pytest.raises(ValueError, match="unknown claim"):
        judge("C0", {})
    with pytest.raises(TypeError, match="metrics must be a dict"):
        judge("C4", [1], name="test-toy")

    @rule("C4", "broken", name="test-broken")
    def _b(m):
        return "true"
    with pytest.raises(ValueError, match="must be one of"):
        judge("C4", {}, name="test-broken")
    ledger._RULES.pop(("C4", "test-broken"))
    with pytest.raises(ValueError, match="bare name"):
        write_results("a/b", [])
    with pytest.raises(TypeError, match="list of Record"):
        write_results("x", [{"claim": "C4"}])
    assert len(CLAIMS) == 14 and ("C4", "test-toy") in rules()


def test_provenance_records_the_reference_checkpoints_from_their_cards(tmp_path):
    from slimlab import ledger
    (tmp_path / "data" / "checkpoints").mkdir(parents=True)
    (tmp_path / "data" / "checkpoints" / "resnet20.json").write_text(json.dumps({"sha256": "e" * 64}))
    (tmp_path / "data" / "checkpoints" / "resnet8.json").write_text("{not json")
    (tmp_path / "data" / "checkpoints" / "resnet20-v1.json").write_text(json.dumps({"sha256": "f" * 64}))
    assert ledger.reference_checkpoints(tmp_path) == {"resnet20": "e" * 64}
    prov = ledger.provenance("quick")
    assert prov["reference_checkpoints"] == ledger.reference_checkpoints()
    assert set(prov["reference_checkpoints"]) <= {"resnet20", "resnet8"}
