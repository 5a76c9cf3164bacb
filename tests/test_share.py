"""slimlab.share: low-rank factorization, k-means sharing (+ export, Huffman), HashedNets, C9/C10 rules."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

from slimlab import ledger, measure, models
from slimlab import share as S
from slimlab.train import TrainConfig, fit


def _conv(cin=6, cout=8, k=3, stride=1, padding=1, bias=True, seed=0):
    torch.manual_seed(seed)
    return nn.Conv2d(cin, cout, k, stride, padding, bias=bias)


# ---------------------------------------------------------------------------------- low-rank

@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 0)])
def test_full_rank_conv_factorization_reproduces_output(stride, padding):
    conv = _conv(stride=stride, padding=padding).double()
    x = torch.randn(2, 6, 9, 9, dtype=torch.float64)
    full = min(8, 6 * 9)
    f = S.factorize_conv(conv, full)
    assert [m.kernel_size for m in f] == [(3, 3), (1, 1)]
    assert f[0].out_channels == full and f[0].stride == (stride, stride)
    assert_close(f(x), conv(x), atol=1e-10, rtol=1e-10)


def test_full_rank_linear_factorization_reproduces_output():
    torch.manual_seed(1)
    lin = nn.Linear(7, 5).double()
    x = torch.randn(3, 7, dtype=torch.float64)
    f = S.factorize_linear(lin, 5)
    assert f[0].bias is None and f[1].bias is not None
    assert_close(f(x), lin(x), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("rank", [1, 2, 4, 7])
def test_eckart_young_error_equals_dropped_energy(rank):
    torch.manual_seed(2)
    w = torch.randn(9, 4, 2, 1, dtype=torch.float64)  # a (9, 8) matrix
    s = torch.linalg.svdvals(w.reshape(9, -1))
    err2 = ((w - S.reconstruct(w, rank)) ** 2).sum()
    assert_close(err2, (s[rank:] ** 2).sum(), atol=1e-10, rtol=1e-10)
    assert_close(S.reconstruction_error(w, rank), math.sqrt((s[rank:] ** 2).sum() / (s ** 2).sum()),
                 atol=1e-12, rtol=1e-10)
    assert_close(S.singular_values(w), s)


def test_rank_for_energy_by_hand():
    s = torch.tensor([3.0, 2.0, 1.0])          # energies 9/14, 13/14, 14/14
    assert S.rank_for_energy(s, 0.5) == 1
    assert S.rank_for_energy(s, 9 / 14) == 1
    assert S.rank_for_energy(s, 0.7) == 2
    assert S.rank_for_energy(s, 13 / 14) == 2
    assert S.rank_for_energy(s, 0.93) == 3
    assert S.rank_for_energy(s, 1.0) == 3


def test_low_rank_model_counts_and_outputs():
    torch.manual_seed(3)
    m = models.build("resnet8", width=0.5).eval()
    x = torch.rand(2, 3, 32, 32)
    same, rep = S.low_rank(m, energy=1.0)
    assert not any(r.factorized for r in rep)
    assert_close(same(x), m(x), atol=0, rtol=0)
    small, rep = S.low_rank(m, rank=2)
    done = [r for r in rep if r.factorized]
    assert done and all(r.rank == 2 and r.params_after == 2 * (r.shape[0] + math.prod(r.shape[1:]))
                        for r in done)
    saved = sum(r.params_before - r.params_after for r in rep)
    assert measure.count_params(m).total - measure.count_params(small).total == saved
    assert isinstance(small.layer1[0].conv1, nn.Sequential)
    assert small(x).shape == (2, 10)
    # the input model is untouched
    assert isinstance(m.layer1[0].conv1, nn.Conv2d)


def test_layer_spectra_names_every_layer():
    m = models.build("resnet8", width=0.25)
    spec = S.layer_spectra(m)
    assert set(spec) == {n for n, mod in m.named_modules() if isinstance(mod, (nn.Conv2d, nn.Linear))}
    assert all(torch.all(v[:-1] >= v[1:]) for v in spec.values())


# ---------------------------------------------------------------------------------- k-means

@pytest.mark.parametrize("bits", [1, 2, 3, 5])
@pytest.mark.parametrize("init", S.INITS)
def test_kmeans_at_most_2b_values_and_nearest(bits, init):
    torch.manual_seed(4)
    w = torch.randn(40, 30)
    c, idx = S.kmeans_1d(w, bits, init)
    assert c.shape == (2 ** bits,) and idx.shape == w.shape
    assert torch.unique(c[idx]).numel() <= 2 ** bits
    d = (w.reshape(-1, 1) - c.reshape(1, -1)).abs()
    assert_close(d.gather(1, idx.reshape(-1, 1)).squeeze(1), d.min(1).values, atol=0, rtol=0)


def test_kmeans_inits_without_iterations():
    w = torch.tensor([0.0, 1.0, 2.0, 3.0, 10.0, 4.0, 5.0, 6.0])
    c, _ = S.kmeans_1d(w, 2, "linear", iters=0)
    assert_close(c, torch.tensor([0.0, 10 / 3, 20 / 3, 10.0]))
    c, _ = S.kmeans_1d(w, 2, "density", iters=0)
    assert_close(c, torch.quantile(w, torch.tensor([0.125, 0.375, 0.625, 0.875])))
    c1, _ = S.kmeans_1d(w, 2, "random", iters=0, seed=5)
    c2, _ = S.kmeans_1d(w, 2, "random", iters=0, seed=5)
    assert_close(c1, c2, atol=0, rtol=0)
    assert all(v in w.tolist() for v in c1.tolist())


def test_kmeans_recovers_separated_clusters_and_is_a_fixed_point():
    g = torch.Generator().manual_seed(6)
    centres = torch.tensor([-3.0, -1.0, 0.5, 2.0])
    w = centres[torch.randint(4, (500,), generator=g)]
    c, idx = S.kmeans_1d(w, 2, "linear")
    assert_close(torch.sort(c).values, centres, atol=0, rtol=0)
    assert_close(c[idx], w, atol=0, rtol=0)
    torch.manual_seed(7)
    v = torch.randn(1000)
    c, idx = S.kmeans_1d(v, 3, "density", iters=200)
    for j in range(8):  # converged Lloyd: every centroid is the mean of its cluster
        if (idx == j).any():
            assert_close(c[j], v[idx == j].double().mean().float(), atol=1e-6, rtol=0)


# ------------------------------------------------------------ Deep k-Means penalty

def test_kmeans_penalty_is_the_within_cluster_sum_of_squares_and_its_gradient():
    torch.manual_seed(11)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    pen = S.KMeansPenalty(bits=1, strength=0.5)
    pen.reassign(model)
    want = 0.0
    for name in ("0", "2"):
        w, idx = model.get_submodule(name).weight.detach().reshape(-1), pen.assign[name]
        _, ref_idx = S.kmeans_1d(model.get_submodule(name).weight, 1)
        assert torch.equal(idx, ref_idx.reshape(-1))
        for k in (0, 1):
            if (idx == k).any():
                want += float(((w[idx == k] - w[idx == k].mean()) ** 2).sum())
    assert float(pen.penalty(model).detach()) == pytest.approx(want, rel=1e-5)
    loss = pen(model)                         # strength * penalty, assignments kept (step 0 re-assigns)
    assert float(loss) == pytest.approx(0.5 * want, rel=1e-5)
    loss.backward()
    w, idx = model[0].weight.detach().reshape(-1), pen.assign["0"]
    mu = torch.stack([w[idx == k].mean() if (idx == k).any() else torch.tensor(0.0) for k in (0, 1)])
    assert_close(model[0].weight.grad.reshape(-1), 2 * 0.5 * (w - mu[idx]), atol=1e-6, rtol=1e-5)
    assert model[0].bias.grad is None          # biases are not regularised


def test_kmeans_penalty_is_zero_on_a_shared_model_and_kmeans_error_too():
    torch.manual_seed(12)
    model = models.build("resnet8", width=0.25)
    assert S.kmeans_error(model, 2) > 0.01
    shared = S.unshare(S.kmeans_share(model, S.KMeansConfig(bits=2)))
    assert S.kmeans_error(shared, 2) == pytest.approx(0.0, abs=1e-10)
    assert float(S.KMeansPenalty(bits=2)(shared).detach()) == pytest.approx(0.0, abs=1e-8)
    assert S.kmeans_error(model, 8) < S.kmeans_error(model, 2)   # more centroids, less error


def test_kmeans_penalty_in_fit_pulls_weights_to_their_centroids():
    torch.manual_seed(13)
    model = models.build("resnet8", width=0.25)
    before = S.kmeans_error(model, 2)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (64,))
    pen = S.KMeansPenalty(bits=2, strength=2.0, refresh=5)
    cfg = TrainConfig(steps=20, batch_size=32, lr=0.05, weight_decay=0.0, augment=False, seed=0)
    fit(model, x, y, cfg, extra_loss=pen, progress=False, device="cpu")
    assert pen.steps == 20
    assert S.kmeans_error(model, 2) < 0.5 * before
    torch.manual_seed(13)
    plain = models.build("resnet8", width=0.25)
    fit(plain, x, y, cfg, progress=False, device="cpu")
    assert S.kmeans_error(plain, 2) > S.kmeans_error(model, 2)


@pytest.mark.parametrize("kwargs, err", [
    ({"bits": 0}, ValueError), ({"bits": 17}, ValueError), ({"bits": 2.0}, TypeError),
    ({"strength": -1.0}, ValueError), ({"strength": float("nan")}, ValueError), ({"strength": "1"}, TypeError),
    ({"refresh": 0}, ValueError), ({"refresh": 1.5}, ValueError), ({"init": "kmeans++"}, ValueError),
])
def test_kmeans_penalty_rejects_bad_settings(kwargs, err):
    with pytest.raises(err):
        S.KMeansPenalty(**kwargs)


def test_kmeans_penalty_and_error_reject_bad_models():
    with pytest.raises(TypeError):
        S.KMeansPenalty()("not a model")
    with pytest.raises(TypeError):
        S.kmeans_error("not a model", 2)
    with pytest.raises(ValueError):
        S.KMeansPenalty().reassign(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError):
        S.kmeans_error(nn.Linear(3, 2), 0)


def test_codebook_gradient_is_the_sum_per_centroid():
    torch.manual_seed(8)
    lin = nn.Linear(6, 4)
    model = nn.Sequential(lin)
    model.arch = {}
    shared = S.kmeans_share(model, S.KMeansConfig(bits=2))
    p = S.shared_layers(shared)["0"]
    x = torch.randn(5, 6)
    shared(x).pow(2).sum().backward()
    w = p.codebook.detach()[p.index].clone().requires_grad_()
    F.linear(x, w, shared[0].bias.detach()).pow(2).sum().backward()
    expected = torch.zeros(4).index_add_(0, p.index.reshape(-1), w.grad.reshape(-1))
    assert_close(p.codebook.grad, expected)


def test_codebook_mean_gradient_divides_by_cluster_size():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(6, 4))
    x = torch.randn(5, 6)
    grads = {}
    for g in S.GRADS:
        sm = S.kmeans_share(model, S.KMeansConfig(bits=2, grad=g))
        p = S.shared_layers(sm)["0"]
        assert_close(sm[0].weight, p.codebook[p.index], atol=0, rtol=0)
        sm(x).pow(2).sum().backward()
        grads[g] = p.codebook.grad
    counts = torch.bincount(p.index.reshape(-1), minlength=4).clamp(min=1).float()
    assert_close(grads["mean"], grads["sum"] / counts)


def test_fit_trains_codebooks_only_and_unshare_keeps_values():
    torch.manual_seed(9)
    m = models.build("resnet8", width=0.25)
    sm = S.kmeans_share(m, S.KMeansConfig(bits=2))
    before = {n: p.codebook.detach().clone() for n, p in S.shared_layers(sm).items()}
    orig = sm.conv1.parametrizations.weight.original.detach().clone()
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (16,))
    fit(sm, x, y, TrainConfig(steps=2, batch_size=8, lr=0.1), progress=False)
    after = S.shared_layers(sm)
    assert any(not torch.equal(before[n], p.codebook) for n, p in after.items())
    assert_close(sm.conv1.parametrizations.weight.original, orig, atol=0, rtol=0)
    for p in after.values():
        assert torch.unique(p.codebook[p.index]).numel() <= 4
    w = sm.layer1[0].conv1.weight.detach().clone()
    S.unshare(sm)
    assert not S.shared_layers(sm)
    assert_close(sm.layer1[0].conv1.weight, w, atol=0, rtol=0)


@pytest.mark.parametrize("bits", list(range(1, 17)))
def test_pack_unpack_round_trip(bits):
    g = torch.Generator().manual_seed(bits)
    for n in (0, 1, 7, 1001):
        idx = torch.randint(0, 2 ** bits, (n,), generator=g)
        packed = S.pack_bits(idx, bits)
        assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(n * bits / 8)
        assert_close(S.unpack_bits(packed, bits, n), idx, atol=0, rtol=0)


def test_pack_bits_by_hand():
    # 1 -> bits (1,0), 2 -> (0,1), 3 -> (1,1): stream 1,0,0,1,1,1 = 1 + 8 + 16 + 32
    assert S.pack_bits(torch.tensor([1, 2, 3]), 2).tolist() == [57]
    assert S.pack_bits(torch.tensor([0x1FF]), 9).tolist() == [0xFF, 0x01]


def test_export_round_trip_and_sizes(tmp_path):
    torch.manual_seed(10)
    m = models.build("resnet8", width=0.5).eval()
    sm = S.kmeans_share(m, S.KMeansConfig(bits=3))
    n_shared = S.export_shared(sm, tmp_path / "s.bin")
    n_plain = S.export_shared(m, tmp_path / "p.bin")
    assert n_shared == measure.file_bytes(tmp_path / "s.bin")
    back = S.load_shared(tmp_path / "s.bin")
    for name, p in S.shared_layers(sm).items():
        assert_close(back.get_submodule(name).weight, p.codebook[p.index], atol=0, rtol=0)
    x = torch.rand(2, 3, 32, 32)
    assert_close(back(x), sm(x), atol=0, rtol=0)
    plain = S.load_shared(tmp_path / "p.bin")
    for k, v in m.state_dict().items():
        assert_close(plain.state_dict()[k], v, atol=0, rtol=0)
    weights = sum(p.index.numel() for p in S.shared_layers(sm).values())
    assert n_plain - n_shared > weights * 4 * 0.8 - weights * 3 / 8  # fp32 -> 3-bit indices
    assert not list(tmp_path.glob("*.tmp"))


def test_low_rank_file_rebuilds_the_factored_model(tmp_path):
    torch.manual_seed(12)
    m = models.build("resnet8", width=0.5).eval()
    small, rep = S.low_rank(m, rank=3)
    assert small.arch["low_rank"] == {r.name: 3 for r in rep if r.factorized} and small.arch["low_rank"]
    assert "low_rank" not in m.arch                                    # the input's record is untouched
    n = S.export_shared(small, tmp_path / "lr.shr")
    n_plain = S.export_shared(m, tmp_path / "p.shr")
    back = S.load_shared(tmp_path / "lr.shr")
    assert isinstance(back.layer1[0].conv1, nn.Sequential) and back.layer1[0].conv1[0].out_channels == 3
    x = torch.rand(2, 3, 32, 32)
    assert_close(back(x), small(x), atol=0, rtol=0)
    saved = measure.count_params(m).total - measure.count_params(small).total
    assert n_plain - n == pytest.approx(4 * saved, abs=2000)           # fp32 bytes of the saved parameters (+ header)


def test_entropy_and_huffman():
    assert S.entropy_bits(torch.tensor([0, 0, 1, 1])) == pytest.approx(4.0)
    assert S.entropy_bits(torch.tensor([3, 3, 3])) == pytest.approx(0.0)
    g = torch.Generator().manual_seed(11)
    idx = torch.multinomial(torch.tensor([0.6, 0.2, 0.1, 0.05, 0.05]), 3000, True, generator=g)
    enc, codec = S.huffman_encode(idx)
    assert codec.decode(enc) == idx.tolist()
    h = S.entropy_bits(idx)
    assert h <= 8 * len(enc) <= h + len(idx) + 8 + 16  # within 1 bit/symbol (+EOF, padding)


def test_huffman_size_of_a_shared_model():
    torch.manual_seed(12)
    sm = S.kmeans_share(models.build("resnet8", width=0.25), S.KMeansConfig(bits=4))
    hs = S.huffman_size(sm)
    n = sum(p.index.numel() for p in S.shared_layers(sm).values())
    assert hs.n_weights == n
    assert hs.fixed_bytes == sum(math.ceil(p.index.numel() * 4 / 8) for p in S.shared_layers(sm).values())
    assert hs.entropy_bytes <= hs.huffman_bytes <= hs.fixed_bytes + len(S.shared_layers(sm)) * 2
    with pytest.raises(ValueError, match="no k-means-shared layers"):
        S.huffman_size(models.build("resnet8", width=0.25))


# ---------------------------------------------------------------------------------- HashedNets

def test_hashed_layers_are_deterministic_for_a_seed():
    a = S.HashedConv2d(4, 6, 3, compression=4, padding=1, seed=3)
    b = S.HashedConv2d(4, 6, 3, compression=4, padding=1, seed=3)
    c = S.HashedConv2d(4, 6, 3, compression=4, padding=1, seed=4)
    assert_close(a.virtual_weight(), b.virtual_weight(), atol=0, rtol=0)
    assert not torch.equal(a.index, c.index)
    assert a.weight_real.numel() == math.ceil(6 * 4 * 9 / 4)
    assert set(a.sign.unique().tolist()) == {-1.0, 1.0}
    assert int(a.index.max()) < a.weight_real.numel()
    x = torch.randn(2, 4, 5, 5)
    assert_close(a(x), F.conv2d(x, a.weight_real[a.index] * a.sign, None, 1, 1), atol=0, rtol=0)
    assert "index" not in a.state_dict() and "weight_real" in a.state_dict()


def test_hashed_gradients_reach_the_shared_parameters():
    lin = S.HashedLinear(8, 5, compression=3.0, seed=1)
    x = torch.randn(4, 8)
    lin(x).pow(2).sum().backward()
    v = lin.virtual_weight().detach().requires_grad_()
    F.linear(x, v, lin.bias.detach()).pow(2).sum().backward()
    expected = torch.zeros(lin.weight_real.numel()).index_add_(0, lin.index.reshape(-1),
                                                                (v.grad * lin.sign).reshape(-1))
    assert_close(lin.weight_real.grad, expected)
    assert lin.weight_real.grad.abs().sum() > 0


def test_hashed_resnet_and_equal_size_width():
    h = S.hashed_resnet("resnet8", 4.0)
    dense = models.build("resnet8")
    assert not any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in h.modules())
    assert S.real_params(h) < S.real_params(dense) / 3
    assert h(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert measure.count_macs(h) == measure.count_macs(dense)
    w = S.width_for_params("resnet8", S.real_params(h))
    got = S.real_params(models.build("resnet8", width=w))
    for k in range(1, 129):  # no other multiple of 1/64 is closer (in log ratio)
        other = S.real_params(models.build("resnet8", width=k / 64))
        assert abs(math.log(got / S.real_params(h))) <= abs(math.log(other / S.real_params(h))) + 1e-12


def test_hash_indices_spread_over_buckets():
    idx, sign = S.hash_indices(40000, 100, seed=0)
    counts = torch.bincount(idx, minlength=100)
    assert counts.min() > 300 and counts.max() < 500      # ~400 each
    assert abs(sign.mean().item()) < 0.03


# ---------------------------------------------------------------------------------- validation

@pytest.mark.parametrize("fn,args,exc,match", [
    (S.factorize_conv, (_conv(), 0), ValueError, "rank must be in 1..8"),
    (S.factorize_conv, (_conv(), 9), ValueError, "rank must be in 1..8"),
    (S.factorize_conv, (_conv(), 2.0), TypeError, "rank must be an int"),
    (S.factorize_conv, (nn.Linear(3, 3), 1), TypeError, "conv must be an nn.Conv2d"),
    (S.factorize_conv, (nn.Conv2d(4, 4, 3, groups=2), 1), ValueError, "groups=1"),
    (S.factorize_linear, (nn.Linear(4, 3), 0), ValueError, "rank must be in 1..3"),
    (S.factorize_linear, (nn.Linear(4, 3), 4), ValueError, "rank must be in 1..3"),
    (S.factorize_linear, (_conv(), 1), TypeError, "layer must be an nn.Linear"),
    (S.svd_factors, (torch.ones(3), 1), ValueError, ">= 2 dims"),
    (S.svd_factors, ([[1.0]], 1), TypeError, "weight must be a torch.Tensor"),
    (S.reconstruct, (torch.ones(3, 2), 3), ValueError, "rank must be in 1..2"),
    (S.rank_for_energy, (torch.ones(3), 0.0), ValueError, "energy must be a fraction"),
    (S.rank_for_energy, (torch.ones(3), 1.5), ValueError, "energy must be a fraction"),
    (S.rank_for_energy, (torch.ones(0), 0.5), TypeError, "non-empty 1-D"),
    (S.kmeans_1d, (torch.ones(4), 0), ValueError, "bits must be in 1..16"),
    (S.kmeans_1d, (torch.ones(4), 17), ValueError, "bits must be in 1..16"),
    (S.kmeans_1d, (torch.ones(4), 2.0), TypeError, "bits must be an int"),
    (S.kmeans_1d, (torch.ones(4), 2, "kmeans++"), ValueError, "init must be one of"),
    (S.kmeans_1d, (torch.ones(4), 2, "linear", -1), ValueError, "iters must be an int >= 0"),
    (S.kmeans_1d, (torch.ones(0), 2), TypeError, "non-empty"),
    (S.pack_bits, (torch.tensor([4]), 2), ValueError, r"codes must lie in \[0, 3\]"),
    (S.pack_bits, (torch.tensor([1]), 0), ValueError, "bits must be in 1..16"),
    (S.pack_bits, (torch.tensor([1.0]), 2), TypeError, "integer"),
    (S.unpack_bits, (torch.zeros(1, dtype=torch.uint8), 17, 1), ValueError, "bits must be in 1..16"),
    (S.unpack_bits, (torch.zeros(1, dtype=torch.uint8), 3, 3), ValueError, r"n must be an int in \[0, 2\]"),
    (S.unpack_bits, (torch.zeros(1), 3, 1), TypeError, "uint8"),
    (S.entropy_bits, (torch.ones(3),), TypeError, "integer"),
    (S.HashedLinear, (4, 4, 1.0), ValueError, "compression factor must be > 1"),
    (S.HashedLinear, (4, 4, 0.5), ValueError, "compression factor must be > 1"),
    (S.HashedLinear, (4, 4, "2"), TypeError, "compression must be a number"),
    (S.HashedConv2d, (4, 4, 3, 1), ValueError, "compression factor must be > 1"),
    (S.hashed_resnet, ("resnet8", 1.0), ValueError, "compression factor must be > 1"),
    (S.width_for_params, ("resnet8", 0), ValueError, "target must be a positive int"),
    (S.real_params, ("model",), TypeError, "model must be an nn.Module"),
])
def test_bad_inputs_raise_clear_errors(fn, args, exc, match):
    with pytest.raises(exc, match=match):
        fn(*args)


def test_bad_model_level_inputs():
    m = models.build("resnet8", width=0.25)
    with pytest.raises(ValueError, match="exactly one of energy"):
        S.low_rank(m)
    with pytest.raises(ValueError, match="exactly one of energy"):
        S.low_rank(m, energy=0.9, rank=2)
    with pytest.raises(ValueError, match="rank must be an int >= 1"):
        S.low_rank(m, rank=0)
    with pytest.raises(ValueError, match="energy must be a fraction"):
        S.low_rank(m, energy=1.2)
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        S.low_rank("resnet8", rank=2)
    with pytest.raises(ValueError, match="bits must be in 1..16"):
        S.kmeans_share(m, S.KMeansConfig(bits=17))
    with pytest.raises(ValueError, match="init must be one of"):
        S.kmeans_share(m, S.KMeansConfig(init="uniform"))
    with pytest.raises(ValueError, match="grad must be one of"):
        S.kmeans_share(m, S.KMeansConfig(grad="median"))
    with pytest.raises(ValueError, match="grad must be one of"):
        S.Codebook(torch.zeros(2), torch.zeros(3, dtype=torch.long), 1, grad="max")
    with pytest.raises(TypeError, match="config must be a KMeansConfig"):
        S.kmeans_share(m, {"bits": 4})
    with pytest.raises(ValueError, match="already has parametrized weights"):
        S.kmeans_share(S.kmeans_share(m))
    with pytest.raises(TypeError, match="slimlab CIFAR ResNet"):
        S.export_shared(nn.Linear(2, 2), "/nonexistent/x.bin")


def test_load_shared_rejects_other_files(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bad magic"):
        S.load_shared(p)


# ---------------------------------------------------------------------------------- rules

@pytest.mark.parametrize("metrics,verdict", [
    ({"ref_acc": 90.0, "acc": 89.5, "param_saving": 0.40}, "supported"),
    ({"ref_acc": 90.0, "acc": 88.0, "param_saving": 0.40}, "qualified"),
    ({"ref_acc": 90.0, "acc": 89.9, "param_saving": 0.15}, "qualified"),
    ({"ref_acc": 90.0, "acc": 85.0, "param_saving": 0.60}, "refuted"),
    ({"ref_acc": 90.0, "acc": 90.0, "param_saving": 0.05}, "refuted"),
])
def test_c9_rule(metrics, verdict):
    assert ledger.judge("C9", metrics).verdict == verdict


@pytest.mark.parametrize("metrics,verdict", [
    ({"ref_acc": 90.0, "acc": 89.8, "bytes_ratio": 0.14}, "supported"),
    ({"ref_acc": 90.0, "acc": 88.0, "bytes_ratio": 0.14}, "qualified"),
    ({"ref_acc": 90.0, "acc": 89.9, "bytes_ratio": 0.30}, "qualified"),
    ({"ref_acc": 90.0, "acc": 80.0, "bytes_ratio": 0.07}, "refuted"),
    ({"ref_acc": 90.0, "acc": 90.0, "bytes_ratio": 1.01}, "refuted"),
])
def test_c10_kmeans_rule(metrics, verdict):
    assert ledger.judge("C10", metrics, name="kmeans").verdict == verdict


@pytest.mark.parametrize("margins,verdict", [
    ([1.0, 0.2, -0.4], "supported"),
    ([1.0, -2.0], "qualified"),
    ([-0.6, -3.0], "refuted"),
])
def test_c10_hashing_rule(margins, verdict):
    assert ledger.judge("C10", {"margins": margins}, name="hashing").verdict == verdict
    with pytest.raises(ValueError, match="at least one margin"):
        ledger.judge("C10", {"margins": []}, name="hashing")
