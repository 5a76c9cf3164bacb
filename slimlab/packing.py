"""Packing integers into bytes: the course's one bit packer, one entropy coder, one position code.

* `pack_bits` / `unpack_bits` — unsigned codes of any width 1..16 packed densely, little-endian bit
  order (4-bit: two per byte). Every slimlab file that stores codes or indices uses it.
* `huffman_lengths`, `canonical_codes`, `huffman_code`, `huffman_decode` — a canonical Huffman coder
  written here: only the code lengths go into a file. It is the course's one entropy coder because it
  is exact at small alphabets: a two-symbol stream costs 1 bit per symbol (dahuffman's end-of-file
  symbol makes a three-symbol code of the same stream, about 1.5 bits per symbol).
* `gaps_from_mask` / `mask_from_gaps` — positions of the kept weights as a stream of gaps (Deep
  Compression's relative indices), with a filler token for long runs of zeros.
* the course's one model-file format. `PackWriter` / `read_packed` (and `pack_state`, a state dict
  in one call): per weight layer the positions of its nonzero weights (none, or the cheaper of a 1-bit
  mask and the gap stream), their values (raw floats; a codebook — k-means or a uniform grid,
  `CodebookGrid` — or an affine integer grid with per-tensor or per-channel scale and zero point,
  `AffineGrid`; one index per stored weight, optionally canonical-Huffman-coded), batch norm folded
  to a scale and shift, and any other tensor exactly in its own dtype; a versioned, zlib-compressed JSON
  header with the architecture and the writer's `meta` record; the data's CRC-32 last. Every slimlab
  model file is one: `save_packed` / `load_packed` (notebook 06), `quantize.save_quantized`,
  `prune.save_sparse` / `save_dense`, `share.export_shared`. Loads turn a damaged, truncated or
  foreign file into one `files.CheckpointError` naming it; the sizes reported are the files' on disk.
"""
from __future__ import annotations

import heapq
import json
import math
import os
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from .checks import check_int, check_model


def pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack unsigned codes in [0, 2^bits) densely, little-endian bit order: 4-bit gives two per byte,
    2-bit four per byte; any width 1..16 works. Returns a flat uint8 tensor of ceil(n*bits/8) bytes."""
    check_int(bits, "bits", 1, 16)
    if not isinstance(codes, torch.Tensor) or codes.is_floating_point() or codes.dtype == torch.bool:
        raise TypeError("codes must be an integer torch.Tensor")
    c = codes.reshape(-1).to(torch.int64)
    if c.numel() and (int(c.min()) < 0 or int(c.max()) >= 2 ** bits):
        raise ValueError(f"codes must lie in [0, {2 ** bits - 1}] for {bits} bits")
    if bits == 8:
        return c.to(torch.uint8)
    bitplanes = ((c[:, None] >> torch.arange(bits)) & 1).to(torch.uint8).numpy()    # (n, bits)
    return torch.from_numpy(np.packbits(bitplanes.reshape(-1), bitorder="little").copy())


def unpack_bits(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Inverse of `pack_bits`: the first `n` codes (int64) of a packed uint8 tensor."""
    check_int(bits, "bits", 1, 16)
    if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8:
        raise TypeError("packed must be a uint8 torch.Tensor")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0 or n * bits > 8 * packed.numel():
        raise ValueError(f"n must be an int in [0, {8 * packed.numel() // bits}], got {n!r}")
    if bits == 8:
        return packed[:n].to(torch.int64)
    flat = np.unpackbits(packed.numpy(), count=n * bits, bitorder="little").reshape(n, bits)
    return torch.from_numpy(flat.astype(np.int64) @ (1 << np.arange(bits, dtype=np.int64)))


# ---------------------------------------------------------------------------------------------
# canonical Huffman coding (written here: the code lengths go into the file, nothing else)

def huffman_lengths(counts: Sequence[int]) -> np.ndarray:
    """Code length (bits) of every symbol 0..len(counts)-1 of an optimal prefix code for `counts`;
    symbols with count 0 get length 0 (no code). A single used symbol gets 1 bit."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 1 or len(counts) == 0 or (counts < 0).any():
        raise ValueError("counts must be a non-empty 1-D sequence of ints >= 0")
    used = np.flatnonzero(counts)
    lengths = np.zeros(len(counts), dtype=np.int64)
    if len(used) == 0:
        return lengths
    if len(used) == 1:
        lengths[used[0]] = 1
        return lengths
    heap = [(int(counts[s]), int(s), [int(s)]) for s in used]   # (weight, tie-break, symbols)
    heapq.heapify(heap)
    while len(heap) > 1:
        w1, t1, s1 = heapq.heappop(heap)
        w2, t2, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(heap, (w1 + w2, min(t1, t2), s1 + s2))
    return lengths


def canonical_codes(lengths: Sequence[int]) -> dict[int, str]:
    """The canonical prefix code for code `lengths`: {symbol: bit string}; shorter codes first, ties by symbol."""
    lengths = [int(v) for v in lengths]
    code, prev, out = 0, 0, {}
    for length, s in sorted((n, s) for s, n in enumerate(lengths) if n > 0):
        code <<= length - prev
        out[s] = format(code, f"0{length}b")
        code, prev = code + 1, length
    return out


def huffman_code(symbols: np.ndarray, alphabet: int) -> tuple[np.ndarray, bytes, int]:
    """Huffman-code ints in [0, alphabet): returns (code lengths (uint8, one per symbol of the
    alphabet), the packed bit stream, its length in bits)."""
    s = np.asarray(symbols, dtype=np.int64).reshape(-1)
    check_int(alphabet, "alphabet", 1)
    if len(s) and (s.min() < 0 or s.max() >= alphabet):
        raise ValueError(f"symbols must lie in [0, {alphabet})")
    lengths = huffman_lengths(np.bincount(s, minlength=alphabet))
    if lengths.max(initial=0) > 255:
        raise ValueError("a Huffman code longer than 255 bits cannot be stored")
    codes = canonical_codes(lengths)
    table = np.array([codes.get(i, "") for i in range(alphabet)], dtype=object)
    bits = "".join(table[s].tolist())
    nbytes = (len(bits) + 7) // 8
    data = (int(bits, 2) << (8 * nbytes - len(bits))).to_bytes(nbytes, "big") if bits else b""  # left-aligned
    return lengths.astype(np.uint8), data, len(bits)


def huffman_decode(lengths: Sequence[int], data: bytes, n: int) -> np.ndarray:
    """The `n` symbols coded by `huffman_code` with these code `lengths`."""
    decode = {v: k for k, v in canonical_codes(lengths).items()}
    bits = "".join(format(b, "08b") for b in data)
    out, cur = np.empty(n, dtype=np.int64), ""
    i = 0
    for ch in bits:
        if i == n:
            break
        cur += ch
        s = decode.get(cur)
        if s is not None:
            out[i], cur, i = s, "", i + 1
    if i != n:
        raise ValueError(f"bit stream ended after {i} of {n} symbols")
    return out


# ---------------------------------------------------------------------------------------------
# positions of the nonzero weights as a gap stream (Deep Compression's relative indices)

def gaps_from_mask(mask: np.ndarray, max_gap: int) -> np.ndarray:
    """Tokens for the True positions of a flat bool `mask`: t < max_gap means 't zeros, then a kept
    weight'; t == max_gap means 'max_gap zeros, no weight' (a filler for long runs)."""
    check_int(max_gap, "max_gap", 1)
    pos = np.flatnonzero(np.asarray(mask, dtype=bool).reshape(-1))
    d = np.diff(np.concatenate([[-1], pos])) - 1                   # zeros before each kept weight
    fill, rem = d // max_gap, d % max_gap
    tokens = np.full(int(fill.sum() + len(d)), max_gap, dtype=np.int64)
    ends = np.cumsum(fill + 1) - 1                                 # each kept weight ends its group
    tokens[ends] = rem
    return tokens


def mask_from_gaps(tokens: np.ndarray, max_gap: int, n: int) -> np.ndarray:
    """The flat bool mask of length `n` that `gaps_from_mask` turned into `tokens`."""
    t = np.asarray(tokens, dtype=np.int64)
    adv = t + (t < max_gap)
    pos = (np.cumsum(adv) - 1)[t < max_gap]
    if len(pos) and pos.max() >= n:
        raise ValueError("gap stream points past the end of the tensor")
    m = np.zeros(n, dtype=bool)
    m[pos] = True
    return m


# ---------------------------------------------------------------------------------------------
# the packed file: the course's one model-file format

MAGIC = b"SLIMPK1\n"   # the container's mark (`files.write_container` layout); the header's "v" is the format version
FORMAT_VERSION = 2      # 1: the first save_packed files (no "v"); 2: + affine grids, exact tensors of any dtype,
                        #    a "meta" record, the data's CRC-32 after them (a version-1 file reads as it did)
POSITION_CODES = ("mask", "gaps")   # how a sparse layer's positions are stored (the cheaper one per layer)
GAP_CHOICES = (3, 7, 15, 31, 63, 255)   # max_gap of 2-, 3-, 4-, 5-, 6- and 8-bit gap tokens (tried per layer)


@dataclass
class PackReport:
    """What a packed file holds: total bytes on disk, where they went, and per weight layer how its
    positions were stored ('dense': none stored, 'mask': one bit per weight, 'gaps': the gap stream)."""
    path: str
    bytes: int
    parts: dict[str, int] = field(default_factory=dict)   # header, positions, indices, values, codebooks, grids, tables, floats, ints
    positions: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CodebookGrid:
    """A weight's values as `codebook[index]`: `codebook` (k,) floats and `index`, ints in [0, 2^bits)
    of the weight's shape (a k-means codebook, `share.Codebook`, or a uniform grid, `uniform_grid`)."""
    codebook: torch.Tensor
    index: torch.Tensor
    bits: int


@dataclass(frozen=True)
class AffineGrid:
    """A weight's values as `affine_values(codes, scale, zero_point, axis)`: integer `codes` in
    [qmin, qmin + 2^bits) of the weight's shape; float32 `scale` and integer `zero_point` (None: 0),
    scalars or one per channel along `axis` (None: per tensor)."""
    codes: torch.Tensor
    bits: int
    qmin: int
    scale: torch.Tensor
    zero_point: torch.Tensor | None = None
    axis: int | None = None


def _along(t: torch.Tensor, ndim: int, axis: int | None) -> torch.Tensor:
    if axis is None or t.dim() == 0:
        return t
    shape = [1] * ndim
    shape[axis] = -1
    return t.reshape(shape)


def affine_values(codes: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None,
                  axis: int | None) -> torch.Tensor:
    """Float32 (codes - zero_point) * scale, per channel along `axis`: `quantize.dequantize_affine`'s
    arithmetic, operation for operation, so a stored grid reads back bit for bit."""
    s = scale.to(torch.float32)
    z = zero_point.to(torch.float32) if zero_point is not None else torch.zeros_like(s)
    return (codes.float() - _along(z, codes.dim(), axis)) * _along(s, codes.dim(), axis)


def codebooks(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor, int]]:
    """{layer: (codebook, index, bits)} for every Conv2d/Linear whose weight is a codebook
    parametrization (`share.Codebook`, with or without a mask): one that has `codebook`, `index`, `bits`."""
    from torch.nn.utils import parametrize
    from .models import weight_layers
    out = {}
    for name, mod in weight_layers(model).items():
        if parametrize.is_parametrized(mod, "weight"):
            p = mod.parametrizations.weight[0]
            if all(hasattr(p, a) for a in ("codebook", "index", "bits")):
                out[name] = (p.codebook.detach().cpu().float(), p.index.detach().cpu(), int(p.bits))
    return out


def uniform_grid(values: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(grid (2^bits,) float32, index int64 per value): the values snapped to 2^bits evenly spaced
    levels between their smallest and largest (plain quantization). Values that already take at most
    2^bits distinct values (a model fine-tuned on such a grid) keep them exactly."""
    check_int(bits, "bits", 1, 16)
    v = values.detach().reshape(-1).cpu().float()
    k = 2 ** bits
    distinct = torch.unique(v)
    if len(distinct) <= k:
        grid = torch.cat([distinct, distinct[-1:].expand(k - len(distinct))])
        return grid, torch.searchsorted(distinct, v)
    grid = torch.from_numpy(np.linspace(float(v.min()), float(v.max()), k)).float()
    mid = (grid[1:] + grid[:-1]) / 2
    return grid, torch.searchsorted(mid, v)                # nearest level (a tie goes to the lower one)


def _floats(t: torch.Tensor, half: bool) -> tuple[bytes, str]:
    t = t.detach().cpu().float().contiguous()
    return (t.half().numpy().tobytes(), "f2") if half else (t.numpy().tobytes(), "f4")


def _packed(v: np.ndarray, bits: int) -> bytes:
    return pack_bits(torch.from_numpy(np.ascontiguousarray(v, dtype=np.int64)), bits).numpy().tobytes()


def _unpacked(data: bytes, bits: int, n: int) -> np.ndarray:
    return unpack_bits(torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy()), bits, n).numpy()


def _coded(v: np.ndarray, alphabet: int, bits: int, entropy: bool) -> dict:
    """A stream of ints in [0, alphabet) as {'bits'|'huff', 'data', 'n'}: packed at fixed width, or with
    `entropy` Huffman-coded — unless its code table plus stream would be larger than the fixed width
    (a short stream, or a nearly uniform one), in which case it stays at fixed width."""
    fixed = {"bits": bits, "data": _packed(v, bits), "n": len(v)}
    if entropy:
        lengths, data, _ = huffman_code(v, alphabet)
        huff = {"huff": lengths.tobytes(), "data": data, "n": len(v)}
        return huff if _stream_bytes(huff) < _stream_bytes(fixed) else fixed
    return fixed


def _stream_bytes(s: dict) -> int:
    return len(s["data"]) + len(s.get("huff", b""))


def position_code(keep: np.ndarray, max_gap: int | Sequence[int] = 32, entropy: bool = False) -> tuple[str, dict]:
    """('mask' | 'gaps', stream) for the flat bool `keep` of one layer: the cheaper of a 1-bit mask
    (ceil(n/8) bytes) and the gap stream (`gaps_from_mask`, fixed width or Huffman-coded with its table;
    with several `max_gap`s, the cheapest of them, recorded in the stream as 'max_gap').
    At high sparsity gaps win; at low sparsity a run of short gaps costs more than one bit a weight."""
    keep = np.asarray(keep, dtype=bool).reshape(-1)
    best = ("mask", {"data": np.packbits(keep, bitorder="little").tobytes(), "n": len(keep)})
    kept = int(keep.sum())
    for g in (max_gap,) if isinstance(max_gap, int) else max_gap:
        check_int(g, "max_gap", 1)
        gap_bits = max(1, math.ceil(math.log2(g + 1)))
        if not entropy and math.ceil(kept * gap_bits / 8) >= _stream_bytes(best[1]):
            continue                      # at least one token per kept weight: it cannot win
        gaps = {**_coded(gaps_from_mask(keep, g), g + 1, gap_bits, entropy), "max_gap": g}
        if _stream_bytes(gaps) < _stream_bytes(best[1]):
            best = ("gaps", gaps)
    return best


class PackWriter:
    """One packed file, built entry by entry and written atomically by `write(path)` -> `PackReport`.

    * `weight(name, w, grid=None, sparse=False, bias=None)` — the weight `w` of layer `name` (stored
      under `<name>.weight`) and its bias. Positions: with `sparse=True` those of its nonzero weights, as
      the cheaper of a 1-bit mask and the gap stream (`position_code`), and values for those only;
      `sparse=False` none (every value stored); `sparse="auto"` whichever of the two is smaller where
      `w` has zeros (none where it has none). Values: the raw floats (float16 with `half`), or a
      `CodebookGrid` / `AffineGrid` and one index per stored weight, packed at fixed width or, with
      `entropy`, Huffman-coded where that is smaller;
    * `tensor(key, t)` — any tensor exactly, in its own dtype;
    * `folded_bn(name, scale, shift)` — a batch norm folded to a per-channel scale and shift.
    `max_gap`: the gap streams' filler token, or several to try per layer (the cheapest is kept).
    `meta`: a small JSON record of the writer's own (a quantization config, say) that `read_packed` returns.
    The file: magic, header length, zlib-compressed JSON header (format version, `arch`, `meta`, the
    entries), the data, their CRC-32 (4 bytes); `PackReport.bytes` is its size on disk, every byte
    accounted for in `parts` (magic, length, header and CRC as 'header')."""

    def __init__(self, arch: dict, *, meta: dict | None = None, entropy: bool = False, half: bool = False,
                 max_gap: int | Sequence[int] = 32):
        if not isinstance(arch, dict) or "name" not in arch:
            raise TypeError("arch must be a slimlab model's .arch dict (from models.build)")
        if meta is not None and not isinstance(meta, dict):
            raise TypeError(f"meta must be a dict or None, got {type(meta).__name__}")
        for g in (max_gap,) if isinstance(max_gap, int) else max_gap:
            check_int(g, "max_gap", 1)
        self.arch, self.meta = dict(arch), dict(meta or {})
        self.entropy, self.half, self.max_gap = bool(entropy), bool(half), max_gap
        self._w, self._o, self._chunks, self._offset = [], [], [], 0
        self.parts: dict[str, int] = {}
        self.positions: dict[str, str] = {}

    def _add(self, kind: str, data: bytes) -> list[int]:
        ref = [self._offset, len(data)]
        self._chunks.append(data)
        self.parts[kind] = self.parts.get(kind, 0) + len(data)
        self._offset += len(data)
        return ref

    def _encode(self, flat: torch.Tensor, shape: list[int], keep: np.ndarray | None, grid) -> tuple[dict, list, int]:
        """(entry, pending chunks [(dict, key, kind, bytes)], their bytes) of one weight; `keep` None: dense."""
        e, pending = {"shape": shape, "kept": int(flat.numel() if keep is None else keep.sum())}, []

        def stream(s: dict, kind: str, **extra) -> dict:
            out = {**extra, **{k: v for k, v in s.items() if k not in ("data", "huff")}}
            if "huff" in s:
                pending.append((out, "huff", "tables", s["huff"]))
            pending.append((out, "data", kind, s["data"]))
            return out

        def chunk(kind: str, data: bytes, **fields) -> dict:
            d = {"ref": None, **fields}
            pending.append((d, "ref", kind, data))
            return d

        if keep is not None:
            code, s = position_code(keep, self.max_gap, self.entropy)
            first = self.max_gap if isinstance(self.max_gap, int) else self.max_gap[0]
            e["pos"] = stream(s, "positions", code=code, max_gap=s.get("max_gap", first))
        sel = torch.ones(flat.numel(), dtype=torch.bool) if keep is None else torch.from_numpy(keep)
        if grid is None:
            data, dt = _floats(flat[sel], self.half)
            e["values"] = chunk("values", data, dtype=dt)
        elif isinstance(grid, CodebookGrid):
            check_int(grid.bits, "bits", 1, 16)
            data, dt = _floats(grid.codebook.reshape(-1), self.half)
            e["codebook"] = chunk("codebooks", data, dtype=dt, bits=grid.bits)
            idx = grid.index.detach().cpu().reshape(-1)[sel].numpy()
            e["idx"] = stream(_coded(idx, 2 ** grid.bits, grid.bits, self.entropy), "indices")
        elif isinstance(grid, AffineGrid):
            check_int(grid.bits, "bits", 1, 16)
            scale = grid.scale.detach().cpu().to(torch.float32).contiguous()
            a = {"bits": grid.bits, "qmin": int(grid.qmin), "axis": grid.axis,
                 "scale": chunk("grids", scale.numpy().tobytes(), dtype="<f4", shape=list(scale.shape))}
            if grid.zero_point is not None:
                zp = grid.zero_point.detach().cpu().to(torch.int64).numpy()
                zp = zp.astype("u1" if zp.size == 0 or (zp.min() >= 0 and zp.max() <= 255) else "<i4")
                a["zp"] = chunk("grids", zp.tobytes(), dtype=zp.dtype.str, shape=list(zp.shape))
            e["affine"] = a
            codes = grid.codes.detach().cpu().reshape(-1)[sel].to(torch.int64).numpy() - int(grid.qmin)
            e["idx"] = stream(_coded(codes, 2 ** grid.bits, grid.bits, self.entropy), "indices")
        else:
            raise TypeError(f"grid must be None, a CodebookGrid or an AffineGrid, got {type(grid).__name__}")
        return e, pending, sum(len(p[3]) for p in pending)

    def weight(self, name: str, weight: torch.Tensor, *, grid: CodebookGrid | AffineGrid | None = None,
               sparse: bool | str = False, bias: torch.Tensor | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError("name must be a layer's name (a non-empty str)")
        if sparse not in (True, False, "auto"):
            raise ValueError(f"sparse must be True, False or 'auto', got {sparse!r}")
        w = weight.detach().cpu().float()
        flat, shape = w.reshape(-1), list(w.shape)
        for what, t in (("index", getattr(grid, "index", None)), ("codes", getattr(grid, "codes", None))):
            if t is not None and list(t.shape) != shape:
                raise ValueError(f"{name}: the grid's {what} has shape {list(t.shape)}, the weight {shape}")
        nonzero = (flat != 0).numpy()
        if sparse is True or (sparse == "auto" and not nonzero.all()):
            best = self._encode(flat, shape, nonzero, grid)
            if sparse == "auto" and _zero_where_zero(grid, nonzero):
                dense = self._encode(flat, shape, None, grid)
                best = dense if dense[2] <= best[2] else best
        else:
            best = self._encode(flat, shape, None, grid)
        e, pending, _ = best
        for d, key, kind, data in pending:
            d[key] = self._add(kind, data)
        self.positions[name] = e["pos"]["code"] if "pos" in e else "dense"
        if bias is not None:
            data, dt = _floats(bias, self.half)
            e["bias"] = {"ref": self._add("floats", data), "dtype": dt}
        self._w.append({"name": name, **e})

    def tensor(self, key: str, t: torch.Tensor) -> None:
        if not isinstance(key, str) or not key or not isinstance(t, torch.Tensor):
            raise TypeError("tensor(key, t) needs a non-empty str key and a torch.Tensor")
        t = t.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:            # numpy has no bfloat16: float32 holds it exactly
            t = t.float()
        arr = t.numpy()
        kind = "floats" if t.is_floating_point() else "ints"
        self._o.append({"name": key, "kind": "raw", "ref": self._add(kind, arr.tobytes()), "dtype": arr.dtype.str,
                        "shape": list(t.shape)})

    def folded_bn(self, name: str, scale: torch.Tensor, shift: torch.Tensor) -> None:
        data, dt = _floats(torch.cat([scale.reshape(-1), shift.reshape(-1)]), self.half)
        self._o.append({"name": name, "kind": "bn", "ref": self._add("floats", data), "dtype": dt, "n": scale.numel()})

    def write(self, path: str | os.PathLike) -> PackReport:
        from .files import write_container
        crc = 0
        for c in self._chunks:
            crc = zlib.crc32(c, crc)
        head = {"v": FORMAT_VERSION, "arch": self.arch, **({"meta": self.meta} if self.meta else {}),
                "w": self._w, "o": self._o}
        header = zlib.compress(json.dumps(head, separators=(",", ":")).encode(), 9)
        p = write_container(path, MAGIC, header, [*self._chunks, crc.to_bytes(4, "little")])
        parts = {**self.parts, "header": len(MAGIC) + 4 + len(header) + 4}      # + the data's CRC-32 at the end
        size = p.stat().st_size
        if size != sum(parts.values()):
            raise RuntimeError(f"{p}: {size} bytes on disk but {sum(parts.values())} accounted for")
        return PackReport(str(p), size, parts, dict(self.positions))


def _zero_where_zero(grid, nonzero: np.ndarray) -> bool:
    """Whether `grid`, stored at every position, gives 0 wherever the weight is 0 (raw floats always do)."""
    zeros = torch.from_numpy(~nonzero)
    if grid is None or not bool(zeros.any()):
        return True
    if isinstance(grid, CodebookGrid):
        return bool((grid.codebook.reshape(-1)[grid.index.reshape(-1)[zeros].long()] == 0).all())
    w = affine_values(grid.codes.detach().cpu(), grid.scale.detach().cpu(),
                      None if grid.zero_point is None else grid.zero_point.detach().cpu(), grid.axis)
    return bool((w.reshape(-1)[zeros] == 0).all())


def pack_state(path: str | os.PathLike, arch: dict, state: dict[str, torch.Tensor], *, layers: Sequence[str] = (),
               sparse: dict[str, bool | str] | None = None, grids: dict | None = None, meta: dict | None = None,
               max_gap: int | Sequence[int] = GAP_CHOICES) -> PackReport:
    """Write the state dict `state` of a model of architecture `arch` as one packed file: the weight
    (`<layer>.weight`) of each of `layers` as a weight entry (`PackWriter.weight`, with `sparse[layer]`
    and `grids[layer]`; default dense raw float32), every other tensor exactly in its own dtype."""
    sparse, grids = dict(sparse or {}), dict(grids or {})
    keys = {f"{n}.weight": n for n in layers}
    stray = sorted((set(sparse) | set(grids)) - set(keys.values()))
    missing = sorted(k for k in keys if k not in state)
    if stray:
        raise ValueError(f"sparse / grids name layers that are not in layers: {stray}")
    if missing:
        raise ValueError(f"the state has no weight for these layers: {missing}")
    w = PackWriter(arch, meta=meta, max_gap=max_gap)
    for key, t in state.items():
        if key in keys:
            w.weight(keys[key], t, grid=grids.get(keys[key]), sparse=sparse.get(keys[key], False))
        else:
            w.tensor(key, t)
    return w.write(path)


@dataclass
class Unpacked:
    """A packed file read back by `read_packed`."""
    path: str
    version: int
    arch: dict
    meta: dict
    state: dict[str, torch.Tensor]   # every tensor by its state-dict key (a folded batch norm: scale, shift as .weight, .bias)
    folded_bn: list[str]             # the batch norms stored folded
    positions: dict[str, str]        # per weight layer: 'dense', 'mask' or 'gaps'
    gap_bits: dict[str, int]         # per gap-coded layer: the tokens' fixed width (0: Huffman-coded)


def read_packed(path: str | os.PathLike, what: str = "slimlab packed model") -> Unpacked:
    """Every tensor of a packed file (any writer's: `save_packed`, `pack_state`, `PackWriter`), decoded.

    FileNotFoundError if there is no file; `files.CheckpointError` (a ValueError) naming the file and
    `what` it should be for anything else: another file (bad magic), a truncated or damaged one (CRC-32,
    zlib, JSON, chunks that do not tile the data, streams), or one of a newer format version."""
    from .files import CheckpointError, read_container
    p = Path(path)
    header, blob = read_container(p, MAGIC, what)
    try:
        head = json.loads(zlib.decompress(header))
        if not isinstance(head, dict):
            raise ValueError("its header is not a JSON object")
        version = head.get("v", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"format version {version!r}")
        if version > FORMAT_VERSION:
            raise CheckpointError(f"{p} is a {what} of format version {version}; this slimlab reads versions "
                                  f"up to {FORMAT_VERSION} (update slimlab)")
        if version >= 2:                  # the data, then their CRC-32
            if len(blob) < 4 or zlib.crc32(blob[:-4]) != int.from_bytes(blob[-4:], "little"):
                raise ValueError("its data fail their CRC-32 check (truncated, extended or altered)")
            blob = blob[:-4]
        return _decode(p, version, head, blob)
    except CheckpointError:
        raise
    except (zlib.error, ValueError, KeyError, TypeError, IndexError, RuntimeError, OverflowError) as e:
        raise CheckpointError(f"{p} is a damaged {what} ({type(e).__name__}: {e})") from None


def _decode(p: Path, version: int, head: dict, blob: memoryview) -> Unpacked:
    used = 0

    def get(ref) -> bytes:
        nonlocal used
        start, n = int(ref[0]), int(ref[1])
        if start < 0 or n < 0 or start + n > len(blob):
            raise ValueError("a chunk lies outside the data")
        used += n
        return bytes(blob[start:start + n])

    arr = lambda d: np.frombuffer(get(d["ref"]), dtype=np.dtype(d["dtype"]))
    fl = lambda d: torch.from_numpy(arr(d).astype(np.float32))

    def read_stream(s: dict) -> np.ndarray:
        if "huff" in s:
            return huffman_decode(np.frombuffer(get(s["huff"]), dtype=np.uint8), get(s["data"]), s["n"])
        return _unpacked(get(s["data"]), s["bits"], s["n"])

    def read_positions(s: dict, n: int) -> np.ndarray:
        if s["code"] == "mask":
            return np.unpackbits(np.frombuffer(get(s["data"]), dtype=np.uint8), count=n, bitorder="little").astype(bool)
        if s["code"] == "gaps":
            return mask_from_gaps(read_stream(s), s["max_gap"], n)
        raise ValueError(f"unknown position code {s['code']!r}")

    state, positions, gap_bits, folded = {}, {}, {}, []
    for e in head["w"]:
        name, shape = e["name"], [int(d) for d in e["shape"]]
        n = math.prod(shape)
        keep = read_positions(e["pos"], n) if "pos" in e else np.ones(n, bool)
        if int(keep.sum()) != e["kept"]:
            raise ValueError(f"{name}: {int(keep.sum())} positions for {e['kept']} values")
        sel = torch.from_numpy(keep)
        if "affine" in e:
            a = e["affine"]
            scale = torch.from_numpy(arr(a["scale"]).astype(np.float32).reshape(a["scale"]["shape"]))
            zp = torch.from_numpy(arr(a["zp"]).astype(np.int64).reshape(a["zp"]["shape"])) if "zp" in a else None
            codes = torch.zeros(shape, dtype=torch.int64)
            if zp is not None:
                codes += _along(zp, len(shape), a["axis"])        # unstored positions: the zero point, 0.0
            codes = codes.reshape(-1)
            codes[sel] = torch.from_numpy(read_stream(e["idx"])) + int(a["qmin"])
            w = affine_values(codes.view(shape), scale, zp, a["axis"])
        else:
            vals = fl(e["codebook"])[torch.from_numpy(read_stream(e["idx"]))] if "codebook" in e else fl(e["values"])
            w = torch.zeros(n)
            w[sel] = vals
            w = w.view(shape)
        state[f"{name}.weight"] = w
        if "bias" in e:
            state[f"{name}.bias"] = fl(e["bias"])
        positions[name] = e["pos"]["code"] if "pos" in e else "dense"
        if positions[name] == "gaps":
            gap_bits[name] = int(e["pos"].get("bits", 0))
    for o in head["o"]:
        if o["kind"] == "bn":
            v, nf = fl(o), int(o["n"])
            if len(v) != 2 * nf:
                raise ValueError(f"{o['name']}: {len(v)} floats for {nf} channels' scale and shift")
            state[f"{o['name']}.weight"], state[f"{o['name']}.bias"] = v[:nf], v[nf:]
            folded.append(o["name"])
        elif o["kind"] == "raw":
            t = torch.from_numpy(arr(o).copy()).reshape([int(d) for d in o["shape"]])
            state[o["name"]] = t.float() if t.dtype == torch.float16 else t
        else:
            raise ValueError(f"unknown entry kind {o['kind']!r}")
    if used != len(blob):                 # every chunk is read once: together they are the data
        raise ValueError(f"{len(blob)} bytes of data, {used} of them described by its header")
    return Unpacked(str(p), version, head["arch"], dict(head.get("meta") or {}), state, folded, positions, gap_bits)


def model_from(unpacked: Unpacked, what: str = "slimlab packed model") -> nn.Module:
    """`models.from_arch` of a packed file's architecture (untrained), or a `CheckpointError` naming the file."""
    from .files import CheckpointError
    from .models import from_arch
    try:
        return from_arch(unpacked.arch)
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{unpacked.path} is a damaged {what}: its architecture is unusable ({e})") from None


def save_packed(model: nn.Module, path: str | os.PathLike, *, sparse: bool = True, value_bits: int | None = None,
                entropy: bool = False, half: bool = False, max_gap: int = 32) -> PackReport:
    """Write `model` (a slimlab ResNet, possibly masked, shared or slimmed) as one real file; return a PackReport.

    Every Conv2d/Linear weight is stored as
      * positions (`sparse=True`): of its nonzero weights, as the cheaper of a 1-bit mask and the gap
        stream (`position_code`); with `sparse=False` none (every weight kept);
      * values: if the layer carries a codebook (`share.Codebook`, masked or not): the codebook and one
        index per kept weight; else if `value_bits`: a uniform grid of 2^value_bits levels between the
        layer's smallest and largest kept weight (`uniform_grid`) and one index per kept weight;
        else the raw kept values (float32, or float16 with `half`);
      * `entropy=True`: gap and index streams Huffman-coded (code lengths stored) where that is smaller
        than the fixed width, else packed at fixed width.
    Batch norm is stored folded to a per-channel scale and shift; biases, codebooks, scales and shifts in
    float16 with `half`, else float32. Written atomically by `PackWriter` (magic, header length,
    zlib-compressed JSON header, one blob); `PackReport.bytes` is the file's size on disk, every byte
    accounted for in `parts`.
    """
    from .models import baked_copy, weight_layers
    check_model(model)
    arch = getattr(model, "arch", None)
    if not isinstance(arch, dict) or "name" not in arch:
        raise TypeError("model must be a slimlab CIFAR ResNet (with an .arch dict from models.build)")
    if value_bits is not None:
        check_int(value_bits, "value_bits", 1, 16)
    check_int(max_gap, "max_gap", 1)
    shared = codebooks(model)
    plain = baked_copy(model).cpu().float().eval()
    out = PackWriter(arch, entropy=entropy, half=half, max_gap=max_gap)
    for name, layer in weight_layers(plain).items():
        w = layer.weight.detach()
        flat = w.reshape(-1)
        grid = None
        if name in shared:
            cb, idx, bits = shared[name]
            if not sparse and not bool((flat != 0).all()):
                raise ValueError(f"{name} is shared and has zero (pruned) weights: save it with sparse=True")
            grid = CodebookGrid(cb, idx, bits)
        elif value_bits is not None:
            keep = flat != 0 if sparse else torch.ones_like(flat, dtype=torch.bool)
            if bool(keep.any()):
                cb, idx = uniform_grid(flat[keep], value_bits)
                index = torch.zeros(flat.numel(), dtype=torch.int64)
                index[keep] = idx
                grid = CodebookGrid(cb, index.view(w.shape), value_bits)
        out.weight(name, w, grid=grid, sparse=sparse, bias=layer.bias)
    for name, mod in plain.named_modules():
        if isinstance(mod, nn.BatchNorm2d):
            scale = mod.weight.detach() / torch.sqrt(mod.running_var + mod.eps)
            out.folded_bn(name, scale, mod.bias.detach() - mod.running_mean * scale)
        elif not isinstance(mod, (nn.Conv2d, nn.Linear)):
            for k, t in list(mod.named_parameters(recurse=False)) + list(mod.named_buffers(recurse=False)):
                out.tensor(f"{name}.{k}" if name else k, t)
    return out.write(path)


def load_packed(path: str | os.PathLike) -> nn.Module:
    """The model saved by `save_packed`, as a plain float32 model (eval mode, CPU); needs nothing but the file.
    Any other file, or a damaged one, raises `files.CheckpointError` naming it."""
    from .files import CheckpointError, load_state
    what = "slimlab packed model"
    u = read_packed(path, what)
    model = model_from(u, what)
    state = model.state_dict()
    for name in u.folded_bn:
        bn = dict(model.named_modules()).get(name)
        if not isinstance(bn, nn.BatchNorm2d):
            raise CheckpointError(f"{path} is a damaged {what}: {name!r} is not a batch norm of {u.arch['name']}")
        state[f"{name}.running_mean"] = torch.zeros_like(bn.running_mean)
        state[f"{name}.running_var"] = torch.full_like(bn.running_var, 1.0 - bn.eps)   # (x - 0) / sqrt(1 - eps + eps) = x
    state.update(u.state)
    return load_state(model, state, path, what).eval()
