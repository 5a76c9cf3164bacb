"""slimlab.packing: bit packing, canonical Huffman, gap streams, and the packed file — the course's one
model-file format (round trips bit for bit, zeros stay zero, the cheaper position code per layer, size =
bytes on disk = what the format should cost, damaged / truncated / foreign / newer files refused with one
CheckpointError naming the file, version-1 files still read)."""
import json
import math
import struct
import zlib

import numpy as np
import pytest
import torch
import torch.nn as nn

from hypothesis import given, settings
from hypothesis import strategies as st

from slimlab import models
from slimlab import packing as K
from slimlab.files import CheckpointError, write_container
from slimlab.prune import prune_magnitude, remove_masks_
from slimlab.train import predict


# ------------------------------------------------------------------------------------ coding

def test_pack_bits_round_trip_and_layout():
    for bits in (1, 2, 3, 4, 5, 8, 12, 16):
        c = torch.randint(0, 2 ** bits, (1001,))
        p = K.pack_bits(c, bits)
        assert p.numel() == (1001 * bits + 7) // 8
        assert torch.equal(K.unpack_bits(p, bits, 1001), c)
    assert K.pack_bits(torch.tensor([1, 2]), 4).tolist() == [0x21]      # little-endian: first code low nibble
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 3\]"):
        K.pack_bits(torch.tensor([4]), 2)


def test_huffman_lengths_are_optimal_and_round_trip():
    counts = [45, 13, 12, 16, 9, 5]               # the textbook example: lengths 1,3,3,3,4,4
    assert K.huffman_lengths(counts).tolist() == [1, 3, 3, 3, 4, 4]
    assert K.huffman_lengths([0, 7, 0]).tolist() == [0, 1, 0]
    rng = np.random.default_rng(0)
    s = rng.choice(8, size=5000, p=[.5, .2, .1, .08, .05, .04, .02, .01])
    lengths, data, nbits = K.huffman_code(s, 8)
    assert nbits == int(lengths.astype(np.int64)[s].sum()) and len(data) == (nbits + 7) // 8
    p = np.bincount(s, minlength=8) / len(s)
    entropy = -(p[p > 0] * np.log2(p[p > 0])).sum() * len(s)
    assert entropy <= nbits < entropy + len(s)      # within one bit per symbol of the bound
    assert np.array_equal(K.huffman_decode(lengths, data, len(s)), s)
    two = rng.integers(0, 2, 999)
    assert K.huffman_code(two, 2)[2] == 999          # two symbols: exactly one bit each
    with pytest.raises(ValueError, match=r"symbols must lie in \[0, 8\)"):
        K.huffman_code(np.array([8]), 8)
    with pytest.raises(ValueError, match="ended after"):
        K.huffman_decode(lengths, data[:10], len(s))


def test_gap_stream_round_trip_with_fillers():
    mask = np.zeros(100, dtype=bool)
    mask[[0, 3, 4, 50, 99]] = True
    t = K.gaps_from_mask(mask, max_gap=8)
    # 0 zeros; 2 zeros; 0 zeros; 45 zeros = 5 fillers + 5; 48 zeros = 6 fillers + 0
    assert t.tolist() == [0, 2, 0, 8, 8, 8, 8, 8, 5, 8, 8, 8, 8, 8, 8, 0]
    assert np.array_equal(K.mask_from_gaps(t, 8, 100), mask)
    rng = np.random.default_rng(1)
    m = rng.random(1000) < 0.1
    assert np.array_equal(K.mask_from_gaps(K.gaps_from_mask(m, 5), 5, 1000), m)
    with pytest.raises(ValueError, match="max_gap must be >= 1"):
        K.gaps_from_mask(m, 0)


@pytest.mark.parametrize("entropy", [False, True])
def test_position_code_is_the_cheaper_one(entropy):
    rng = np.random.default_rng(2)
    n = 20_000
    # density 0.3: 6-bit gap tokens cost 1.8 bits a weight (mask wins), Huffman-coded ~0.9 (gaps win)
    for density, expect in ((0.5, "mask"), (0.3, "gaps" if entropy else "mask"), (0.02, "gaps")):
        keep = rng.random(n) < density
        gap_bits = 6                                     # max_gap 32 -> 6-bit tokens
        tokens = K.gaps_from_mask(keep, 32)
        if entropy:
            lengths, data, _ = K.huffman_code(tokens, 33)
            gap_bytes = len(data) + len(lengths)
        else:
            gap_bytes = (len(tokens) * gap_bits + 7) // 8
        mask_bytes = (n + 7) // 8
        code, s = K.position_code(keep, 32, entropy)
        assert code == expect == ("gaps" if gap_bytes < mask_bytes else "mask")
        assert len(s["data"]) + len(s.get("huff", b"")) == min(gap_bytes, mask_bytes)


# ------------------------------------------------------------------------------------ the file

def _tiny(seed=0):
    torch.manual_seed(seed)
    m = models.build("resnet8", width=0.25)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):     # non-trivial folded scale and shift
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


@pytest.mark.parametrize("kw", [dict(sparse=False), dict(sparse=True), dict(sparse=True, entropy=True)])
@pytest.mark.parametrize("sparsity", [0.3, 0.9])
def test_packed_file_round_trips_values_exactly(tmp_path, kw, sparsity):
    m = remove_masks_(prune_magnitude(_tiny(), sparsity))
    rep = K.save_packed(m, tmp_path / "m.slpk", **kw)
    assert rep.bytes == (tmp_path / "m.slpk").stat().st_size == sum(rep.parts.values())
    back = K.load_packed(tmp_path / "m.slpk")
    for name, layer in models.weight_layers(m).items():      # weights exact, zeros stay zero
        torch.testing.assert_close(models.weight_layers(back)[name].weight, layer.weight, atol=0, rtol=0)
    x = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(predict(back, x), predict(m, x), atol=1e-5, rtol=1e-5)   # BN folded
    assert ("positions" in rep.parts) == kw["sparse"]
    if kw["sparse"]:   # low sparsity: masks are cheaper; high sparsity: most layers take gaps
        codes = set(rep.positions.values())
        assert codes == {"mask"} if sparsity == 0.3 else "gaps" in codes
    else:
        assert set(rep.positions.values()) == {"dense"}


def test_each_layer_takes_the_cheaper_position_code(tmp_path):
    m = remove_masks_(prune_magnitude(_tiny(), 0.7))
    rep = K.save_packed(m, tmp_path / "m.slpk")
    total = 0
    for name, layer in models.weight_layers(m).items():
        keep = (layer.weight.detach().reshape(-1) != 0).numpy()
        mask_bytes = (keep.size + 7) // 8
        gap_bytes = (len(K.gaps_from_mask(keep, 32)) * 6 + 7) // 8
        assert rep.positions[name] == ("gaps" if gap_bytes < mask_bytes else "mask")
        total += min(mask_bytes, gap_bytes)
    assert rep.parts["positions"] == total


def test_codebooks_and_grids_in_the_file(tmp_path):
    from slimlab.combine import share_sparse
    pruned = remove_masks_(prune_magnitude(_tiny(), 0.8))
    shared = share_sparse(pruned, 3)
    rep = K.save_packed(shared, tmp_path / "s.slpk")
    back = K.load_packed(tmp_path / "s.slpk")
    for name, b in models.weight_layers(back).items():
        a = models.weight_layers(shared)[name].weight.detach()
        torch.testing.assert_close(b.weight, a, atol=0, rtol=0)       # codebook values exact
        assert torch.equal(b.weight == 0, models.weight_layers(pruned)[name].weight == 0)
        assert len(torch.unique(b.weight[b.weight != 0])) <= 8
    assert rep.bytes < K.save_packed(pruned, tmp_path / "p.slpk").bytes
    with pytest.raises(ValueError, match="save it with sparse=True"):
        K.save_packed(shared, tmp_path / "x.slpk", sparse=False)
    m = _tiny()                                                        # a uniform grid: within half a step
    K.save_packed(m, tmp_path / "q.slpk", sparse=False, value_bits=3)
    back = K.load_packed(tmp_path / "q.slpk")
    for name, a in models.weight_layers(back).items():
        b = models.weight_layers(m)[name].weight
        assert len(torch.unique(a.weight)) <= 8
        step = (b.max() - b.min()) / 7
        assert (a.weight - b).abs().max() <= step / 2 + 1e-6


def test_uniform_grid_keeps_values_already_on_a_grid():
    v = torch.tensor([0.1, -0.3, 0.1, 0.7, -0.3])
    grid, idx = K.uniform_grid(v, 2)
    assert torch.equal(grid[idx], v) and len(grid) == 4
    w = torch.linspace(-1, 1, 101)
    grid, idx = K.uniform_grid(w, 2)
    torch.testing.assert_close(grid, torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0]))
    assert (grid[idx] - w).abs().max() <= 1 / 3 + 1e-6


def test_packed_bad_inputs(tmp_path):
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        K.save_packed("model", tmp_path / "x")
    with pytest.raises(TypeError, match="slimlab CIFAR ResNet"):
        K.save_packed(nn.Linear(2, 2), tmp_path / "x")
    with pytest.raises(ValueError, match="value_bits must be in 1..16"):
        K.save_packed(_tiny(), tmp_path / "x", value_bits=17)
    (tmp_path / "bad").write_bytes(b"nope")
    with pytest.raises(CheckpointError, match="bad magic"):
        K.load_packed(tmp_path / "bad")
    with pytest.raises(FileNotFoundError):
        K.load_packed(tmp_path / "missing")
    w = {"a.weight": torch.ones(2, 2)}
    with pytest.raises(ValueError, match=r"not in layers: \['b'\]"):
        K.pack_state(tmp_path / "x", {"name": "resnet8"}, w, layers=["a"], sparse={"b": True})
    with pytest.raises(ValueError, match=r"no weight for these layers: \['z.weight'\]"):
        K.pack_state(tmp_path / "x", {"name": "resnet8"}, w, layers=["z"])
    with pytest.raises(ValueError, match="sparse must be True, False or 'auto'"):
        K.PackWriter({"name": "resnet8"}).weight("a", w["a.weight"], sparse="maybe")
    with pytest.raises(ValueError, match="the grid's index has shape"):
        K.PackWriter({"name": "resnet8"}).weight("a", w["a.weight"], grid=K.CodebookGrid(torch.ones(2), torch.zeros(3, dtype=torch.long), 1))
    with pytest.raises(TypeError, match="arch must be"):
        K.PackWriter({"width": 1})
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------ the one format

ARCH = {"name": "resnet8", "width": 0.25, "num_classes": 10}


def _hlen(path) -> int:
    """The header length a packed file announces (after its 8-byte magic)."""
    return struct.unpack("<I", path.read_bytes()[8:12])[0]


def test_affine_values_are_quantize_dequantize_bit_for_bit():
    from slimlab import quantize as Q
    w = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(3))
    for bits, symmetric, axis in ((8, True, 0), (4, False, 0), (3, True, None), (2, False, None)):
        lo, hi = Q.calibrate_range(w, "minmax", bits=bits, symmetric=symmetric, axis=axis)
        scale, zp = Q.qparams_from_range(lo, hi, bits, symmetric)
        q = Q.quantize_affine(w, scale, zp, bits, symmetric, axis)
        ref = Q.dequantize_affine(q, scale, zp, axis)
        assert torch.equal(K.affine_values(q, scale, zp, axis), ref)
        if symmetric:
            assert torch.equal(K.affine_values(q, scale, None, axis), ref)


def _every_kind(seed=0):
    """A state dict with one weight of every value kind and raw tensors of several dtypes, and its grids."""
    g = torch.Generator().manual_seed(seed)
    w_raw = torch.randn(8, 4, 3, 3, generator=g) * (torch.rand(8, 4, 3, 3, generator=g) > 0.8)   # 80% zeros
    cb = torch.tensor([-0.5, -0.1, 0.2, 0.7])
    idx = torch.randint(0, 4, (16, 8), generator=g)
    mask = torch.rand(16, 8, generator=g) > 0.5
    w_cb = cb[idx] * mask
    codes = torch.randint(0, 16, (12, 6), generator=g)
    zp = torch.randint(3, 12, (12,), generator=g)
    codes[:, :2] = zp[:, None]                                        # a third of the weights are exactly 0
    scale = torch.rand(12, generator=g) * 0.1 + 0.01
    aff = K.AffineGrid(codes, 4, 0, scale, zp, 0)
    state = {"a.weight": w_raw, "a.bias": torch.randn(8, generator=g),
             "b.weight": w_cb, "c.weight": K.affine_values(codes, scale, zp, 0),
             "bn.running_mean": torch.randn(5, generator=g), "bn.num_batches_tracked": torch.tensor(7),
             "act.calibrated": torch.tensor(True), "act.zero_point": torch.tensor(-3, dtype=torch.int32),
             "x.u8": torch.arange(5, dtype=torch.uint8), "x.f64": torch.randn(3, dtype=torch.float64, generator=g)}
    return state, {"b": K.CodebookGrid(cb, idx, 2), "c": aff}


@pytest.mark.parametrize("sparse", [{}, {"a": True, "b": True, "c": "auto"}])
def test_pack_state_round_trips_every_kind_bit_for_bit(tmp_path, sparse):
    state, grids = _every_kind()
    if not sparse:                  # no positions: the masked codebook layer goes as raw floats
        grids = {"c": grids["c"]}
    rep = K.pack_state(tmp_path / "s.slpk", ARCH, state, layers=["a", "b", "c"], sparse=sparse, grids=grids,
                       meta={"kind": "test", "n": 1})
    assert rep.bytes == (tmp_path / "s.slpk").stat().st_size == sum(rep.parts.values())
    u = K.read_packed(tmp_path / "s.slpk")
    assert (u.version, u.arch, u.meta) == (K.FORMAT_VERSION, ARCH, {"kind": "test", "n": 1})
    assert set(u.state) == set(state) and not u.folded_bn
    for k, v in state.items():
        assert u.state[k].dtype == v.dtype and torch.equal(u.state[k], v), k
    assert u.positions == rep.positions
    if sparse:
        assert rep.positions["a"] in ("mask", "gaps") and rep.positions["b"] in ("mask", "gaps")
        assert rep.positions["c"] == "mask"         # a third zeros: 1 bit a weight beats 4 bits a zero code


def test_pack_state_costs_what_the_format_says(tmp_path):
    """Every byte of a packed file, computed from the format's definition: 8 magic + 4 header length
    + the header + 4 CRC-32 + per layer ceil(n·bits/8) codes (or 4 B a float), 4 B per scale, 1 B per zero point,
    ceil(n/8) for a 1-bit mask, and every raw tensor at its own item size."""
    g = torch.Generator().manual_seed(5)
    w = torch.randn(10, 7, generator=g)
    lo, hi = w.amin(1), w.amax(1)
    scale = (hi - lo) / 15
    zp = torch.round(-lo / scale).clamp(0, 15).to(torch.int64)
    codes = torch.clamp(torch.round(w / scale[:, None]) + zp[:, None], 0, 15).to(torch.int64)
    cb = torch.linspace(-1, 1, 8)
    idx = torch.randint(0, 8, (33,), generator=g).reshape(3, 11)
    keep = torch.rand(3, 11, generator=g) > 0.3
    state = {"q.weight": K.affine_values(codes, scale, zp, 0), "q.bias": torch.randn(10, generator=g),
             "k.weight": cb[idx] * keep, "raw.weight": torch.randn(5, 5, generator=g),
             "n": torch.tensor(3), "flag": torch.tensor([True, False])}
    path = tmp_path / "c.slpk"
    rep = K.pack_state(path, ARCH, state, layers=["q", "k", "raw"], sparse={"k": True},
                       grids={"q": K.AffineGrid(codes, 4, 0, scale, zp, 0), "k": K.CodebookGrid(cb, idx, 3)})
    kept = int((cb[idx] * keep != 0).sum())
    payload = (math.ceil(70 * 4 / 8) + 4 * 10 + 1 * 10            # q: 4-bit codes, float32 scales, uint8 zero points
               + 4 * 10                                             # q.bias
               + math.ceil(33 / 8) + 4 * 8 + math.ceil(kept * 3 / 8)   # k: 1-bit mask, codebook, 3-bit indices
               + 4 * 25 + 8 + 2)                                    # raw float32 weight, int64, two bools
    assert rep.positions == {"q": "dense", "k": "mask", "raw": "dense"}
    assert path.stat().st_size == rep.bytes == 12 + _hlen(path) + 4 + payload
    assert _hlen(path) < 700                                        # the compressed header stays small


@settings(max_examples=40, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=400), st.sampled_from([32, K.GAP_CHOICES]), st.booleans())
def test_positions_round_trip_through_a_file(tmp_path_factory, keep, max_gap, entropy):
    keep = torch.tensor(keep)
    w = (torch.arange(1, keep.numel() + 1, dtype=torch.float32) * keep).reshape(1, -1)
    path = tmp_path_factory.mktemp("pos") / "p.slpk"
    out = K.PackWriter(ARCH, entropy=entropy, max_gap=max_gap)
    out.weight("fc", w, sparse=True)
    rep = out.write(path)
    assert torch.equal(K.read_packed(path).state["fc.weight"], w)
    code, s = K.position_code(keep.numpy(), max_gap, entropy)
    assert rep.positions["fc"] == code and rep.parts["positions"] == len(s["data"]) + len(s.get("huff", b""))
    assert rep.parts["positions"] <= math.ceil(keep.numel() / 8)     # never worse than the 1-bit mask


def test_several_gap_widths_keep_the_cheapest():
    rng = np.random.default_rng(4)
    keep = rng.random(30_000) < 0.01
    code, s = K.position_code(keep, K.GAP_CHOICES)
    widths = {g: math.ceil(len(K.gaps_from_mask(keep, g)) * math.ceil(math.log2(g + 1)) / 8) for g in K.GAP_CHOICES}
    assert code == "gaps" and len(s["data"]) == min(widths.values()) and widths[s["max_gap"]] == len(s["data"])


def _damaged_copies(path, tmp_path) -> dict[str, "Path"]:
    raw = path.read_bytes()
    hlen = _hlen(path)
    flipped = bytearray(raw)
    flipped[-3] ^= 0x10
    cases = {"empty": b"", "magic-only": raw[:8], "cut-in-header": raw[:12 + hlen // 2],
             "cut-in-data": raw[:len(raw) - 5], "extended": raw + b"\0", "bit-flip": bytes(flipped),
             "foreign": b"PK\x03\x04 a zip, say a torch.save file",
             "old-shared": b"SLIMSHR1" + raw[8:], "old-quantized": b"SLQ1" + raw[8:]}
    out = {}
    for name, data in cases.items():
        out[name] = tmp_path / f"{name}.slpk"
        out[name].write_bytes(data)
    return out


def test_damaged_truncated_or_foreign_files_raise_one_error_naming_them(tmp_path):
    m = remove_masks_(prune_magnitude(_tiny(), 0.5))
    K.save_packed(m, tmp_path / "ok.slpk")
    for name, p in _damaged_copies(tmp_path / "ok.slpk", tmp_path).items():
        with pytest.raises(CheckpointError, match=rf"{p.name} .*(not a|damaged|truncated)"):
            K.load_packed(p)
    torch.save(m.state_dict(), tmp_path / "torch.pt")
    with pytest.raises(CheckpointError, match="torch.pt is not a slimlab packed model .bad magic"):
        K.load_packed(tmp_path / "torch.pt")


def _rewrite_header(src, dst, change):
    raw = src.read_bytes()
    hlen = _hlen(src)
    head = json.loads(zlib.decompress(raw[12:12 + hlen]))
    change(head)
    data = raw[12 + hlen:-4] if "v" not in head else raw[12 + hlen:]      # a version-1 file ends with its data
    write_container(dst, K.MAGIC, zlib.compress(json.dumps(head).encode()), [data])


def test_version_one_files_still_read_and_newer_ones_are_refused(tmp_path):
    m = remove_masks_(prune_magnitude(_tiny(), 0.6))
    K.save_packed(m, tmp_path / "v2.slpk", value_bits=4)
    ref = K.load_packed(tmp_path / "v2.slpk")

    def as_v1(head):                      # the first format: no version, no meta, no CRC-32
        head.pop("v")
        head.pop("meta", None)
    _rewrite_header(tmp_path / "v2.slpk", tmp_path / "v1.slpk", as_v1)
    back = K.load_packed(tmp_path / "v1.slpk")
    for k, v in ref.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    _rewrite_header(tmp_path / "v2.slpk", tmp_path / "v9.slpk", lambda h: h.update(v=9))
    with pytest.raises(CheckpointError, match=r"v9.slpk is a slimlab packed model of format version 9.*update slimlab"):
        K.load_packed(tmp_path / "v9.slpk")
    _rewrite_header(tmp_path / "v2.slpk", tmp_path / "arch.slpk", lambda h: h["arch"].update(name="resnet9000"))
    with pytest.raises(CheckpointError, match="arch.slpk is a damaged slimlab packed model: its architecture"):
        K.load_packed(tmp_path / "arch.slpk")
    _rewrite_header(tmp_path / "v2.slpk", tmp_path / "shape.slpk", lambda h: h["w"][0].update(shape=[1, 2]))
    with pytest.raises(CheckpointError, match="shape.slpk is a damaged slimlab packed model"):
        K.load_packed(tmp_path / "shape.slpk")
    _rewrite_header(tmp_path / "v2.slpk", tmp_path / "drop.slpk", lambda h: h["o"].pop())
    with pytest.raises(CheckpointError, match="drop.slpk is a damaged slimlab packed model .*described by its header"):
        K.load_packed(tmp_path / "drop.slpk")


def test_files_are_written_atomically(tmp_path, monkeypatch):
    m = _tiny()
    K.save_packed(m, tmp_path / "m.slpk")
    before = (tmp_path / "m.slpk").read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(K.zlib, "crc32", boom)          # fails before a byte is written: the old file stays
    with pytest.raises(KeyboardInterrupt):
        K.save_packed(_tiny(1), tmp_path / "m.slpk")
    assert (tmp_path / "m.slpk").read_bytes() == before
    monkeypatch.undo()
    import slimlab.files as F
    real = F.atomic_write_bytes

    def half_then_fail(path, chunks):                   # fails mid-write: the old file stays, no temporary left
        with F.atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(b"SLIMPK1\n partial")
            raise OSError("disk full")
    monkeypatch.setattr(F, "atomic_write_bytes", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        K.save_packed(_tiny(1), tmp_path / "m.slpk")
    monkeypatch.setattr(F, "atomic_write_bytes", real)
    assert (tmp_path / "m.slpk").read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.slpk"]
