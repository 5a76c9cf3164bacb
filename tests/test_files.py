import json

import pytest
import torch

from slimlab.files import atomic_json, atomic_path, atomic_torch_save, atomic_write_bytes


def test_atomic_writes_round_trip(tmp_path):
    atomic_json({"a": 1}, tmp_path / "x.json")
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1}
    atomic_write_bytes(tmp_path / "b.bin", [b"ab", b"cd"])
    assert (tmp_path / "b.bin").read_bytes() == b"abcd"
    atomic_torch_save({"w": torch.arange(3)}, tmp_path / "t.pt")
    assert torch.equal(torch.load(tmp_path / "t.pt", weights_only=True)["w"], torch.arange(3))
    assert (tmp_path / "t.pt").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "t.pt", "x.json"]


def test_failure_midway_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "keep.json"
    atomic_json({"old": True}, target)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-way")
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]


def test_container_round_trip_and_clear_errors(tmp_path):
    from slimlab.files import read_container, write_container
    p = write_container(tmp_path / "m.bin", b"MAG1", b'{"a":1}', [b"xy", b"z"])
    raw = p.read_bytes()
    assert raw == b"MAG1" + (7).to_bytes(4, "little") + b'{"a":1}' + b"xyz"
    header, body = read_container(p, b"MAG1", "test file")
    assert header == b'{"a":1}' and bytes(body) == b"xyz"
    with pytest.raises(ValueError, match="not a test file"):
        read_container(p, b"OTHR", "test file")
    (tmp_path / "short.bin").write_bytes(raw[:9])        # header announced, not present
    with pytest.raises(ValueError, match="truncated"):
        read_container(tmp_path / "short.bin", b"MAG1")
    with pytest.raises(FileNotFoundError):
        read_container(tmp_path / "none.bin", b"MAG1")
    with pytest.raises(TypeError):
        write_container(tmp_path / "bad.bin", "MAG1", b"")
    assert not (tmp_path / "bad.bin").exists()


class _RunsCode:
    """A pickle payload that would run a shell command when unpickled without weights_only."""
    def __reduce__(self):
        import os
        return (os.system, ("echo this-must-never-run",))


def test_load_torch_turns_every_bad_file_into_one_clear_error(tmp_path):
    from slimlab.files import CheckpointError, load_torch
    good = atomic_torch_save({"arch": {"name": "x"}, "state_dict": {"w": torch.ones(2)}}, tmp_path / "good.pt")
    assert torch.equal(load_torch(good, required=("arch", "state_dict"))["state_dict"]["w"], torch.ones(2))
    torch.save({"arch": _RunsCode()}, tmp_path / "code.pt")
    (tmp_path / "trunc.pt").write_bytes(good.read_bytes()[:300])
    (tmp_path / "junk.pt").write_bytes(b"not a torch file at all")
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save([torch.ones(1)], tmp_path / "list.pt")
    torch.save({"state_dict": {}}, tmp_path / "noarch.pt")
    cases = {"code.pt": "pickle that holds more than tensors", "trunc.pt": "damaged or truncated",
             "junk.pt": "not a my file", "empty.pt": "damaged or truncated", "list.pt": "holds a list",
             "noarch.pt": "lacks 'arch'"}
    for name, msg in cases.items():
        with pytest.raises(CheckpointError, match=msg) as e:
            load_torch(tmp_path / name, what="my file", required=("arch",))
        assert str(tmp_path / name) in str(e.value) and isinstance(e.value, ValueError)
    with pytest.raises(FileNotFoundError, match="no my file"):
        load_torch(tmp_path / "none.pt", what="my file")


def test_load_state_names_the_file_on_an_architecture_mismatch(tmp_path):
    from slimlab.files import CheckpointError, load_state
    lin = torch.nn.Linear(2, 3)
    with pytest.raises(CheckpointError, match=r"w\.pt.*size mismatch"):
        load_state(lin, {"weight": torch.ones(4, 2), "bias": torch.ones(3)}, "w.pt")
    with pytest.raises(CheckpointError, match="Missing key"):
        load_state(lin, {"other": torch.ones(1)}, "w.pt")
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_state(lin, [1], "w.pt")
    ref = torch.nn.Linear(2, 3)
    assert torch.equal(load_state(lin, ref.state_dict(), "w.pt").weight, ref.weight)
