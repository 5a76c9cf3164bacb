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
