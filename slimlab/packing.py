"""Packing integers into bytes: the course's one bit packer, one entropy coder, one position code.

* `pack_bits` / `unpack_bits` — unsigned codes of any width 1..16 packed densely, little-endian bit
  order (4-bit: two per byte). Every slimlab file that stores codes or indices uses it.
* `huffman_lengths`, `canonical_codes`, `huffman_code`, `huffman_decode` — a canonical Huffman coder
  written here: only the code lengths go into a file. It is the course's one entropy coder because it
  is exact at small alphabets: a two-symbol stream costs 1 bit per symbol (dahuffman's end-of-file
  symbol makes a three-symbol code of the same stream, about 1.5 bits per symbol).
* `gaps_from_mask` / `mask_from_gaps` — positions of the kept weights as a stream of gaps (Deep
  Compression's relative indices), with a filler token for long runs of zeros.
"""
from __future__ import annotations

import heapq
from typing import Sequence

import numpy as np
import torch

from .checks import check_int


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
