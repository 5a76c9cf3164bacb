"""Atomic file writes: every file slimlab writes goes to a temporary name first, then is renamed.

A failure mid-way (an exception, Ctrl-C) leaves the old file, or none, but never a half-written one.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is made readable (0644) and renamed onto `path`."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=p.name, suffix=suffix)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, chunks: bytes | Iterable[bytes]) -> Path:
    """Write `chunks` (bytes, or an iterable of bytes) to `path` atomically; return the path."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for c in ([chunks] if isinstance(chunks, (bytes, bytearray)) else chunks):
            f.write(c)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 `text` to `path` atomically (newlines as given); return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_json(obj, path: str | os.PathLike, indent: int = 1) -> Path:
    """Write `obj` as JSON (plus a final newline) to `path` atomically; return the path."""
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    """`torch.save(obj)` to `path` atomically; return the path."""
    import torch
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def file_hash(path: str | os.PathLike, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file's bytes ('sha256', or 'md5' for the official CIFAR-10 checksums), read in chunks."""
    import hashlib
    h = hashlib.new(algorithm, usedforsecurity=False) if algorithm == "md5" else hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class CheckpointError(ValueError):
    """A file that is not the slimlab file it should be: damaged, truncated, code in its pickle,
    not a dict, missing keys, or weights that do not fit the model."""


def write_container(path: str | os.PathLike, magic: bytes, header: bytes, chunks: Iterable[bytes] = ()) -> Path:
    """Write slimlab's small binary container atomically: `magic`, the header's length (uint32,
    little-endian), the `header` bytes, then the body `chunks`; return the path.

    The course's model files (`packing`'s one packed format: quantized, sparse, shared, dense and
    packed models) use this layout, so the bytes on disk are exactly the header plus the payload, with
    no pickle or zip overhead."""
    if not (isinstance(magic, bytes) and magic) or not isinstance(header, (bytes, bytearray)):
        raise TypeError("magic must be non-empty bytes and header bytes")
    return atomic_write_bytes(path, [magic, struct.pack("<I", len(header)), bytes(header), *chunks])


def read_container(path: str | os.PathLike, magic: bytes, what: str = "slimlab file") -> tuple[bytes, memoryview]:
    """(header bytes, body) of a file written by `write_container` with the same `magic`.

    FileNotFoundError if there is no file; `CheckpointError` (a ValueError) naming the file and `what`
    if the magic differs or the file is shorter than its header says."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no file at {p}")
    raw = p.read_bytes()
    n = len(magic)
    if not raw.startswith(magic):
        raise CheckpointError(f"{p} is not a {what} (bad magic {raw[:n]!r}, expected {magic!r})")
    if len(raw) < n + 4:
        raise CheckpointError(f"{p} is not a complete {what}: truncated (no header length)")
    (hlen,) = struct.unpack("<I", raw[n:n + 4])
    if len(raw) < n + 4 + hlen:
        raise CheckpointError(f"{p} is not a complete {what}: truncated (header of {hlen} bytes announced, {len(raw) - n - 4} present)")
    return raw[n + 4:n + 4 + hlen], memoryview(raw)[n + 4 + hlen:]


def load_torch(path: str | os.PathLike, what: str = "slimlab checkpoint", required: Iterable[str] = (),
               map_location="cpu") -> dict:
    """The dict stored at `path` by `torch.save`, loaded safely (`weights_only=True`: tensors and
    plain containers only, no code runs); `required` are keys it must have.

    FileNotFoundError if there is no file; `CheckpointError` (a ValueError) naming the file, `what` it
    should be and what is wrong for anything else: a pickle that would run code, a damaged or
    truncated file, a file that is not a dict or lacks a required key."""
    import pickle
    import torch
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no {what} at {p}")
    try:
        blob = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "GLOBAL" in ln or "Unpickler error" in ln), type(e).__name__)
        raise CheckpointError(f"{p} is not a {what}: it is damaged, or a pickle that holds more than "
                              f"tensors, which is refused (weights_only=True; {why[:200]})") from None
    except Exception as e:  # torch raises RuntimeError, EOFError, OSError, … for damaged files
        raise CheckpointError(f"{p} is not a {what}: unreadable, damaged or truncated "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from None
    if not isinstance(blob, dict):
        raise CheckpointError(f"{p} is not a {what}: it holds a {type(blob).__name__}, not a dict")
    missing = [k for k in required if k not in blob]
    if missing:
        raise CheckpointError(f"{p} is not a {what}: it lacks {', '.join(map(repr, missing))} "
                              f"(keys present: {', '.join(map(repr, list(blob)[:10])) or 'none'})")
    return blob


def load_state(model, state: dict, path: str | os.PathLike, what: str = "slimlab checkpoint",
               strict: bool = True):
    """`model.load_state_dict(state)`, turning a mismatch (another architecture, other shapes) into a
    `CheckpointError` naming the file; return `model`."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: the {what}'s weights are a {type(state).__name__}, not a state dict")
    try:
        model.load_state_dict(state, strict=strict)
    except (RuntimeError, KeyError, TypeError) as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = "; ".join(lines[1:4] or lines[:1])[:400]
        raise CheckpointError(f"{path}: the {what} does not fit a {type(model).__name__} of this "
                              f"architecture ({detail})") from None
    return model
