"""slimlab.packing: bit packing, canonical Huffman, gap streams, and the packed file (round trips,
zeros stay zero, the cheaper position code per layer, size = bytes on disk)."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from slimlab import models
from slimlab import packing as K
from slimlab.prune import prune_magnitude, remove_masks
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
    m = remove_masks(prune_magnitude(_tiny(), sparsity))
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
    m = remove_masks(prune_magnitude(_tiny(), 0.7))
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
    pruned = remove_masks(prune_magnitude(_tiny(), 0.8))
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
    with pytest.raises(ValueError, match="bad magic"):
        K.load_packed(tmp_path / "bad")
    with pytest.raises(FileNotFoundError):
        K.load_packed(tmp_path / "missing")
