"""Packing integers into bytes: the course's one bit packer, one entropy coder, one position code.

* `pack_bits` / `unpack_bits` — unsigned codes of any width 1..16 packed densely, little-endian bit
  order (4-bit: two per byte). Every slimlab file that stores codes or indices uses it.
* `huffman_lengths`, `canonical_codes`, `huffman_code`, `huffman_decode` — a canonical Huffman coder
  written here: only the code lengths go into a file. It is the course's one entropy coder because it
  is exact at small alphabets: a two-symbol stream costs 1 bit per symbol (dahuffman's end-of-file
  symbol makes a three-symbol code of the same stream, about 1.5 bits per symbol).
* `gaps_from_mask` / `mask_from_gaps` — positions of the kept weights as a stream of gaps (Deep
  Compression's relative indices), with a filler token for long runs of zeros.
* `save_packed` / `load_packed` / `PackReport` — the course's one packed-file format for a slimmed
  model (notebook 06): per weight layer the positions of its nonzero weights (the cheaper, per layer,
  of a 1-bit mask and the gap stream), their values (raw floats, or a codebook — k-means or a uniform
  grid — and one index per kept weight), optional canonical Huffman coding of the streams, batch norm
  folded to a per-channel scale and shift. The size reported is the size of the file on disk.
"""
from __future__ import annotations

import heapq
import json
import math
import os
import zlib
from dataclasses import asdict, dataclass, field
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
# the packed file: one format for every slimmed model

MAGIC = b"SLIMPK1\n"
POSITION_CODES = ("mask", "gaps")   # how a sparse layer's positions are stored (the cheaper one per layer)


@dataclass
class PackReport:
    """What `save_packed` wrote: total bytes on disk, where they went, and per layer how its positions
    were stored ('dense': none stored, 'mask': one bit per weight, 'gaps': the gap stream)."""
    path: str
    bytes: int
    parts: dict[str, int] = field(default_factory=dict)   # header, positions, indices, values, codebooks, tables, floats
    positions: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


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


def position_code(keep: np.ndarray, max_gap: int = 32, entropy: bool = False) -> tuple[str, dict]:
    """('mask' | 'gaps', stream) for the flat bool `keep` of one layer: the cheaper of a 1-bit mask
    (ceil(n/8) bytes) and the gap stream (`gaps_from_mask`, fixed width or Huffman-coded with its table).
    At high sparsity gaps win; at low sparsity a run of short gaps costs more than one bit a weight."""
    keep = np.asarray(keep, dtype=bool).reshape(-1)
    check_int(max_gap, "max_gap", 1)
    gap_bits = max(1, math.ceil(math.log2(max_gap + 1)))
    gaps = _coded(gaps_from_mask(keep, max_gap), max_gap + 1, gap_bits, entropy)
    mask = {"data": np.packbits(keep, bitorder="little").tobytes(), "n": len(keep)}
    return ("gaps", gaps) if _stream_bytes(gaps) < _stream_bytes(mask) else ("mask", mask)


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
    float16 with `half`, else float32. Written atomically (magic, header length, zlib-compressed JSON
    header, one blob); `PackReport.bytes` is the file's size on disk, every byte accounted for in `parts`.
    """
    from .files import write_container
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
    entries, chunks, parts, positions, offset = [], [], {}, {}, 0

    def add(kind: str, data: bytes) -> list[int]:
        nonlocal offset
        ref = [offset, len(data)]
        chunks.append(data)
        parts[kind] = parts.get(kind, 0) + len(data)
        offset += len(data)
        return ref

    def put(s: dict, kind: str) -> dict:
        out = {k: v for k, v in s.items() if k not in ("data", "huff")}
        if "huff" in s:
            out["huff"] = add("tables", s["huff"])
        out["data"] = add(kind, s["data"])
        return out

    for name, layer in weight_layers(plain).items():
        w = layer.weight.detach()
        flat = w.reshape(-1)
        keep = (flat != 0).numpy() if sparse else np.ones(flat.numel(), dtype=bool)
        e = {"name": name, "shape": list(w.shape), "kept": int(keep.sum())}
        if sparse:
            code, s = position_code(keep, max_gap, entropy)
            e["pos"] = {"code": code, "max_gap": max_gap, **put(s, "positions")}
            positions[name] = code
        else:
            positions[name] = "dense"
        kept = flat[torch.from_numpy(keep)]
        if name in shared:
            cb, idx, bits = shared[name]
            if not sparse and not bool((flat != 0).all()):
                raise ValueError(f"{name} is shared and has zero (pruned) weights: save it with sparse=True")
            idx = idx.reshape(-1)[torch.from_numpy(keep)].numpy()
        elif value_bits is not None and len(kept):
            cb, idx = uniform_grid(kept, value_bits)
            bits, idx = value_bits, idx.numpy()
        else:
            cb = None
        if cb is not None:
            data, dt = _floats(cb, half)
            e["codebook"] = {"ref": add("codebooks", data), "dtype": dt, "bits": bits}
            e["idx"] = put(_coded(idx.reshape(-1), 2 ** bits, bits, entropy), "indices")
        else:
            data, dt = _floats(kept, half)
            e["values"] = {"ref": add("values", data), "dtype": dt}
        if layer.bias is not None:
            data, dt = _floats(layer.bias, half)
            e["bias"] = {"ref": add("floats", data), "dtype": dt}
        entries.append(e)
    others = []
    for name, mod in plain.named_modules():
        if isinstance(mod, nn.BatchNorm2d):
            scale = mod.weight.detach() / torch.sqrt(mod.running_var + mod.eps)
            shift = mod.bias.detach() - mod.running_mean * scale
            data, dt = _floats(torch.cat([scale, shift]), half)
            others.append({"name": name, "kind": "bn", "ref": add("floats", data), "dtype": dt,
                           "n": mod.num_features})
        elif not isinstance(mod, (nn.Conv2d, nn.Linear)):
            for k, t in list(mod.named_parameters(recurse=False)) + list(mod.named_buffers(recurse=False)):
                data, dt = _floats(t, False)
                others.append({"name": f"{name}.{k}" if name else k, "kind": "raw", "ref": add("floats", data),
                               "dtype": dt, "shape": list(t.shape)})
    header = zlib.compress(json.dumps({"arch": arch, "w": entries, "o": others}, separators=(",", ":")).encode(), 9)
    p = write_container(path, MAGIC, header, chunks)
    parts["header"] = len(MAGIC) + 4 + len(header)
    size = p.stat().st_size
    if size != sum(parts.values()):
        raise RuntimeError(f"{p}: {size} bytes on disk but {sum(parts.values())} accounted for")
    return PackReport(str(p), size, parts, positions)


def load_packed(path: str | os.PathLike) -> nn.Module:
    """The model saved by `save_packed`, as a plain float32 model (eval mode, CPU); needs nothing but the file."""
    from .files import read_container
    from .models import from_arch
    header, blob = read_container(path, MAGIC, "slimlab packed model")
    try:
        head = json.loads(zlib.decompress(header))
    except (zlib.error, ValueError) as e:
        raise ValueError(f"{path}: damaged header of a slimlab packed model ({e})") from None
    get = lambda ref: bytes(blob[ref[0]:ref[0] + ref[1]])
    fl = lambda d: torch.from_numpy(np.frombuffer(get(d["ref"]), dtype=np.dtype(d["dtype"])).astype(np.float32))

    def read_stream(s: dict) -> np.ndarray:
        if "huff" in s:
            return huffman_decode(np.frombuffer(get(s["huff"]), dtype=np.uint8), get(s["data"]), s["n"])
        return _unpacked(get(s["data"]), s["bits"], s["n"])

    def read_positions(s: dict, n: int) -> np.ndarray:
        if s["code"] == "mask":
            return np.unpackbits(np.frombuffer(get(s["data"]), dtype=np.uint8), count=n, bitorder="little").astype(bool)
        return mask_from_gaps(read_stream(s), s["max_gap"], n)

    model = from_arch(head["arch"])
    mods = dict(model.named_modules())
    with torch.no_grad():
        for e in head["w"]:
            n = math.prod(e["shape"])
            keep = read_positions(e["pos"], n) if "pos" in e else np.ones(n, bool)
            vals = fl(e["codebook"])[torch.from_numpy(read_stream(e["idx"]))] if "codebook" in e else fl(e["values"])
            w = torch.zeros(n)
            w[torch.from_numpy(keep)] = vals
            layer = mods[e["name"]]
            layer.weight.copy_(w.view(e["shape"]))
            if "bias" in e:
                layer.bias.copy_(fl(e["bias"]))
        for o in head["o"]:
            if o["kind"] == "bn":
                bn, v = mods[o["name"]], fl(o)
                bn.weight.copy_(v[:o["n"]])
                bn.bias.copy_(v[o["n"]:])
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)       # (x - 0) / sqrt(1 - eps + eps) = x
            else:
                mod_name, _, k = o["name"].rpartition(".")
                getattr(mods[mod_name], k).copy_(fl(o).view(o["shape"]))
    return model.eval()
