"""slimlab.share: low-rank factorization, k-means sharing (+ export, Huffman), HashedNets.

The C9/C10 verdict rules are tested in test_claims_04.py."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

from slimlab import measure, models, packing
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


@pytest.mark.parametrize("energy", [0.3, 0.6, 0.9, 0.99])
def test_low_rank_keeps_at_least_the_requested_energy_in_every_layer(energy):
    """From the singular values of the original layer, and from the factored product itself."""
    torch.manual_seed(5)
    m = models.build("resnet8", width=0.5).eval()
    small, rep = S.low_rank(m, energy=energy)
    assert len(rep) == len(models.weight_layers(m))
    for r in rep:
        w = m.get_submodule(r.name).weight.detach().double().reshape(r.shape[0], -1)
        s = torch.linalg.svdvals(w)
        kept = float((s[:r.rank] ** 2).sum() / (s ** 2).sum())
        assert kept >= energy - 1e-12 and r.energy == pytest.approx(kept, rel=1e-9)
        if r.rank > 1:                                      # the smallest such rank: one fewer is not enough
            assert float((s[:r.rank - 1] ** 2).sum() / (s ** 2).sum()) < energy
        if r.factorized:
            first, second = small.get_submodule(r.name)
            prod = second.weight.detach().double().reshape(r.shape[0], -1) @ first.weight.detach().double().reshape(r.rank, -1)
            assert float(prod.pow(2).sum() / w.pow(2).sum()) >= energy - 1e-6
    assert any(r.factorized for r in rep) or energy > 0.9


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


def _objective(w: torch.Tensor, c: torch.Tensor, idx: torch.Tensor) -> float:
    return float(((w.double().reshape(-1) - c.double()[idx.reshape(-1)]) ** 2).sum())


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("init", S.INITS)
def test_kmeans_1d_objective_matches_scikit_learn_from_the_same_start(bits, init):
    """Lloyd's algorithm from the same initial codebook: the same within-cluster sum of squares as
    scikit-learn's KMeans(n_init=1, init=<that codebook>, algorithm='lloyd'), after a few iterations
    and converged (on data where no cluster goes empty, so both run exactly Lloyd's steps)."""
    from sklearn.cluster import KMeans
    g = torch.Generator().manual_seed(bits)
    w = 0.05 * torch.randn(5000, generator=g)
    x = w.double().numpy().reshape(-1, 1)
    start, _ = S.kmeans_1d(w, bits, init, iters=0, seed=3)
    for iters in (3, S.LLOYD_ITERS):
        c, idx = S.kmeans_1d(w, bits, init, iters=iters, seed=3)
        km = KMeans(2 ** bits, init=np.sort(start.double().numpy()).reshape(-1, 1), n_init=1, max_iter=iters,
                    tol=0.0, algorithm="lloyd").fit(x)
        assert np.bincount(km.labels_, minlength=2 ** bits).min() > 0     # the precondition: no empty cluster
        ours = _objective(w, c, idx)
        assert ours <= km.inertia_ * (1 + 1e-5)
        assert ours == pytest.approx(km.inertia_, rel=1e-5)
        assert_close(torch.sort(c).values.double(), torch.from_numpy(np.sort(km.cluster_centers_[:, 0])),
                     atol=1e-6, rtol=1e-5)


def test_kmeans_1d_refills_empty_clusters():
    """Linear init on a peaked, heavy-tailed layer leaves tail centroids without weights; like
    scikit-learn, an empty cluster is moved to split the worst cluster, so every entry is used."""
    g = torch.Generator().manual_seed(0)
    w = torch.cat([0.05 * torch.randn(3000, generator=g), 0.2 * torch.randn(300, generator=g)])
    start, idx0 = S.kmeans_1d(w, 4, "linear", iters=0)
    assert torch.unique(idx0).numel() < 16                           # the start does waste entries
    c, idx = S.kmeans_1d(w, 4, "linear")
    assert torch.unique(idx).numel() == 16
    assert _objective(w, c, idx) < _objective(w, start, idx0)
    few = torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0])                     # two distinct values, four entries
    c, idx = S.kmeans_1d(few, 2, "linear")
    assert torch.equal(c[idx], few)


def test_kmeans_1d_default_runs_lloyd_to_convergence():
    """30 iterations (the old default) are far from converged at 4 bits on a peaked distribution."""
    g = torch.Generator().manual_seed(0)
    w = torch.cat([0.02 * torch.randn(20000, generator=g), 0.3 * torch.randn(200, generator=g)])
    c30, i30 = S.kmeans_1d(w, 4, "linear", iters=30)
    c, idx = S.kmeans_1d(w, 4, "linear")
    again, _ = S.kmeans_1d(w, 4, "linear", iters=S.LLOYD_ITERS * 3)
    assert torch.equal(c, again)                                     # a fixed point
    assert _objective(w, c, idx) < _objective(w, c30, i30)


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
    shared = S.unshare_(S.kmeans_share(model, S.KMeansConfig(bits=2)))
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


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_after_a_codebook_fine_tune_every_layer_holds_at_most_2b_values(bits):
    """The weights the forward pass uses (not the codebook tensor) stay shared through training."""
    torch.manual_seed(9)
    m = models.build("resnet8", width=0.25)
    sm = S.kmeans_share(m, S.KMeansConfig(bits=bits, grad="mean"))
    before = {n: p.codebook.detach().clone() for n, p in S.shared_layers(sm).items()}
    orig = sm.conv1.parametrizations.weight.original.detach().clone()
    x = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (32,))
    fit(sm, x, y, TrainConfig(steps=3, batch_size=16, lr=0.1, weight_decay=5e-4), progress=False, device="cpu")
    sm = sm.cpu().eval()
    after = S.shared_layers(sm)
    assert all(not torch.equal(before[n], p.codebook) for n, p in after.items())   # every codebook trained
    assert_close(sm.conv1.parametrizations.weight.original, orig, atol=0, rtol=0)  # the original is not
    baked = models.baked_copy(sm)
    for name, p in after.items():
        w = baked.get_submodule(name).weight.detach()
        assert torch.unique(w).numel() <= 2 ** bits
        assert torch.equal(w, p.codebook.detach()[p.index])          # every weight is its centroid
    probe = torch.rand(4, 3, 32, 32)
    assert_close(baked(probe), sm(probe), atol=1e-5, rtol=1e-5)
    S.unshare_(sm)
    assert not S.shared_layers(sm)
    for name in after:
        assert torch.equal(sm.get_submodule(name).weight, baked.get_submodule(name).weight)


def test_masked_codebook_values_and_gradients_by_hand():
    """weight = mask * codebook[index]; a centroid's gradient sums (or averages) its kept weights only."""
    from torch.nn.utils import parametrize
    cb = torch.tensor([-1.0, 0.5, 2.0])
    index = torch.tensor([[0, 1, 2], [1, 1, 0]])
    mask = torch.tensor([[True, True, False], [True, False, True]])
    x = torch.tensor([[1.0, 2.0, 3.0]])
    for grad, scale in (("sum", torch.ones(3)), ("mean", torch.tensor([1 / 2, 1 / 2, 1.0]))):
        lin = nn.Linear(3, 2, bias=False)
        parametrize.register_parametrization(lin, "weight", S.Codebook(cb, index, 2, grad=grad, mask=mask))
        want_w = torch.tensor([[-1.0, 0.5, 0.0], [0.5, 0.0, -1.0]])
        assert torch.equal(lin.weight, want_w)
        assert not torch.signbit(lin.weight[~mask]).any()             # +0.0, not -0.0
        lin(x).sum().backward()                                       # dL/dW[i, j] = x[j]
        # kept members: c0 <- W[0,0] (x0=1), W[1,2] (x2=3); c1 <- W[0,1] (x1=2), W[1,0] (x0=1); c2 <- none
        want = torch.tensor([1.0 + 3.0, 2.0 + 1.0, 0.0])
        assert_close(lin.parametrizations.weight[0].codebook.grad, want * scale, atol=0, rtol=0)
        with torch.no_grad():
            lin.parametrizations.weight[0].codebook.add_(5.0)          # training moves the centroids ...
        assert torch.equal(lin.weight[~mask], torch.zeros(2))          # ... pruned weights stay exactly zero


def test_masked_codebook_counts_only_kept_weights_against_torch_autograd():
    torch.manual_seed(3)
    w = torch.randn(6, 10)
    mask = torch.rand(6, 10) > 0.4
    cb, idx = S.kmeans_1d(w[mask], 2)
    index = torch.zeros(w.shape, dtype=torch.long)
    index[mask] = idx
    p = S.Codebook(cb, index, 2, grad="mean", mask=mask)
    out = p(w)
    g = torch.randn_like(out)
    out.backward(g)
    counts = torch.bincount(index[mask], minlength=4).clamp(min=1).float()
    want = torch.zeros(4).index_add_(0, index[mask], g[mask]) / counts
    assert_close(p.codebook.grad, want)
    assert torch.equal(out, torch.where(mask, cb[index], torch.zeros(())))


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"codebook": torch.zeros(5)}, ValueError, "at most 2\\^bits = 4"),
    ({"index": torch.tensor([[0, 4]])}, ValueError, "index entries must lie in 0..3"),
    ({"index": torch.tensor([[0.0, 1.0]])}, TypeError, "index must be an integer tensor"),
    ({"mask": torch.tensor([[1, 0]])}, ValueError, "mask must be a bool tensor"),
    ({"mask": torch.tensor([True, False, True])}, ValueError, "mask must be a bool tensor"),
    ({"grad": "max"}, ValueError, "grad must be one of"),
    ({"bits": 0}, ValueError, "bits must be in 1..16"),
    ({"codebook": [0.0, 1.0]}, TypeError, "codebook must be a torch.Tensor"),
])
def test_codebook_rejects_bad_arguments(kwargs, exc, match):
    args = {"codebook": torch.zeros(4), "index": torch.tensor([[0, 3]]), "bits": 2, **kwargs}
    with pytest.raises(exc, match=match):
        S.Codebook(**args)


def test_masked_index_outside_the_mask_is_ignored():
    p = S.Codebook(torch.zeros(2), torch.tensor([[0, 7]]), 1, mask=torch.tensor([[True, False]]))
    assert p.index.tolist() == [[0, 0]]


@pytest.mark.parametrize("bits", list(range(1, 17)))
def test_pack_unpack_round_trip(bits):
    g = torch.Generator().manual_seed(bits)
    for n in (0, 1, 7, 1001):
        idx = torch.randint(0, 2 ** bits, (n,), generator=g)
        packed = S.pack_bits(idx, bits)
        assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(n * bits / 8)
        assert_close(packing.unpack_bits(packed, bits, n), idx, atol=0, rtol=0)


def test_pack_bits_by_hand():
    # 1 -> bits (1,0), 2 -> (0,1), 3 -> (1,1): stream 1,0,0,1,1,1 = 1 + 8 + 16 + 32
    assert S.pack_bits(torch.tensor([1, 2, 3]), 2).tolist() == [57]
    assert S.pack_bits(torch.tensor([0x1FF]), 9).tolist() == [0xFF, 0x01]


def _header_bytes(path) -> int:
    """8 B magic + 4 B header length + the header a packed file announces + its 4 B CRC-32."""
    return 12 + int.from_bytes(path.read_bytes()[8:12], "little") + 4


def _other_bytes(model, skip) -> int:
    """Bytes of every tensor of `model`'s state dict but the weights of `skip`, each at its own item size."""
    keys = {f"{n}.weight" for n in skip}
    return sum(v.numel() * v.element_size() for k, v in models.baked_state_dict(model).items() if k not in keys)


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
    # what the format costs: per shared layer a float32 codebook and 3-bit indices; the rest at item size
    shared = S.shared_layers(sm)
    cost = sum(4 * p.codebook.numel() + math.ceil(p.index.numel() * 3 / 8) for p in shared.values())
    assert n_shared == _header_bytes(tmp_path / "s.bin") + cost + _other_bytes(sm, shared)
    assert n_plain == _header_bytes(tmp_path / "p.bin") + _other_bytes(m, ())
    weights = sum(p.index.numel() for p in shared.values())
    assert n_plain - n_shared > weights * 4 * 0.8 - weights * 3 / 8  # fp32 -> 3-bit indices
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("keep_frac", [0.5, 0.1])
def test_masked_codebook_file_round_trip(tmp_path, keep_frac):
    from torch.nn.utils import parametrize
    torch.manual_seed(14)
    m = models.build("resnet8", width=0.25).eval()
    for name, layer in models.weight_layers(m).items():
        w = layer.weight.detach()
        mask = w.abs() > w.abs().quantile(1 - keep_frac)
        cb, idx = S.kmeans_1d(w[mask], 2)
        index = torch.zeros(w.shape, dtype=torch.long)
        index[mask] = idx
        parametrize.register_parametrization(layer, "weight", S.Codebook(cb, index, 2, grad="mean", mask=mask))
    n_masked = S.export_shared(m, tmp_path / "m.shr")
    back = S.load_shared(tmp_path / "m.shr")
    x = torch.rand(2, 3, 32, 32)
    assert_close(back(x), m(x), atol=0, rtol=0)
    shared = S.shared_layers(m)
    for name, p in shared.items():
        w = back.get_submodule(name).weight
        assert torch.equal(w, m.get_submodule(name).weight.detach())
        assert int((w == 0).sum()) == int((~p.mask).sum())
    assert n_masked == measure.file_bytes(tmp_path / "m.shr")
    # the positions of the kept weights (the cheaper of a 1-bit mask and a gap stream), 2-bit indices
    # for those only, a float32 codebook
    u = packing.read_packed(tmp_path / "m.shr")
    cost = 0
    for name, p in shared.items():
        keep = p.mask.reshape(-1).numpy()
        mask_bytes = math.ceil(keep.size / 8)
        if u.positions[name] == "mask":
            pos = mask_bytes
        else:
            b = u.gap_bits[name]
            pos = math.ceil(len(packing.gaps_from_mask(keep, 2 ** b - 1)) * b / 8)
            assert pos < mask_bytes
        cost += pos + math.ceil(int(keep.sum()) * 2 / 8) + 4 * p.codebook.numel()
    assert n_masked == _header_bytes(tmp_path / "m.shr") + cost + _other_bytes(m, shared)
    assert ("gaps" in u.positions.values()) == (keep_frac == 0.1)      # sparse enough: gaps beat the mask
    weights = sum(p.index.numel() for p in shared.values())
    for name in shared:
        parametrize.remove_parametrizations(m.get_submodule(name), "weight", leave_parametrized=True)
    assert n_masked < S.export_shared(m, tmp_path / "plain.shr") - weights * 3 * keep_frac   # vs 32 bits per kept weight


def test_load_shared_names_a_damaged_truncated_or_foreign_file(tmp_path):
    from slimlab.files import CheckpointError, write_container
    write_container(tmp_path / "bad.shr", packing.MAGIC, b"{not json")
    torch.manual_seed(3)
    S.export_shared(S.kmeans_share(models.build("resnet8", width=0.25), S.KMeansConfig(bits=2)), tmp_path / "ok.shr")
    raw = (tmp_path / "ok.shr").read_bytes()
    (tmp_path / "cut.shr").write_bytes(raw[:-7])
    (tmp_path / "old.shr").write_bytes(b"SLIMSHR1" + raw[8:])      # the retired shared-weights container
    for name in ("bad.shr", "cut.shr"):
        with pytest.raises(CheckpointError, match=rf"{name} is a damaged slimlab shared-weights file"):
            S.load_shared(tmp_path / name)
    with pytest.raises(CheckpointError, match="old.shr is not a slimlab shared-weights file .bad magic"):
        S.load_shared(tmp_path / "old.shr")
    with pytest.raises(FileNotFoundError):
        S.load_shared(tmp_path / "none.shr")


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


def test_entropy_by_hand():
    assert S.entropy_bits(torch.tensor([0, 0, 1, 1])) == pytest.approx(4.0)
    assert S.entropy_bits(torch.tensor([3, 3, 3])) == pytest.approx(0.0)
    assert S.entropy_bits(torch.tensor([0, 0, 0, 1])) == pytest.approx(-3 * math.log2(0.75) - math.log2(0.25))


def _one_layer_shared(index: torch.Tensor, bits: int) -> nn.Module:
    """A Linear whose weight is a Codebook with this index (for huffman_size on a hand-made stream)."""
    from torch.nn.utils import parametrize
    lin = nn.Linear(index.shape[1], index.shape[0], bias=False)
    parametrize.register_parametrization(lin, "weight", S.Codebook(torch.arange(2.0 ** bits), index, bits))
    return nn.Sequential(lin)


def test_huffman_two_symbol_stream_costs_at_most_one_bit_per_symbol():
    """A 1-bit index stream: Huffman may not cost more than the packed bits (dahuffman's end-of-file
    symbol made it a three-symbol code, about 1.5 bits per symbol)."""
    g = torch.Generator().manual_seed(1)
    idx = (torch.rand(64, 125, generator=g) < 0.9).long()          # 8000 symbols, skewed 90/10
    hs = S.huffman_size(_one_layer_shared(idx, 1))
    assert hs.n_weights == 8000 and hs.fixed_bytes == 1000
    assert hs.huffman_bytes <= 8000 / 8                              # <= 1 bit per symbol
    assert hs.table_bytes == 2                                       # one code length per symbol
    lengths, data, nbits = packing.huffman_code(idx.reshape(-1).numpy(), 2)
    assert nbits == 8000 and list(lengths) == [1, 1]
    assert np.array_equal(packing.huffman_decode(lengths, data, 8000), idx.reshape(-1).numpy())


@pytest.mark.parametrize("bits,probs", [(2, [0.7, 0.2, 0.05, 0.05]), (3, [0.4, 0.2, 0.1, 0.1, 0.1, 0.05, 0.03, 0.02]),
                                        (4, [1 / 16] * 16)])
def test_huffman_size_is_within_one_bit_per_symbol_of_the_entropy(bits, probs):
    g = torch.Generator().manual_seed(bits)
    idx = torch.multinomial(torch.tensor(probs), 6000, True, generator=g).reshape(60, 100)
    hs = S.huffman_size(_one_layer_shared(idx, bits))
    h = S.entropy_bits(idx)
    assert hs.entropy_bits == pytest.approx(h)
    assert h <= 8 * hs.huffman_bytes <= h + idx.numel() + 7           # entropy <= Huffman < entropy + 1 bit/symbol
    assert hs.huffman_bytes <= hs.fixed_bytes                         # never worse than b bits each (tables apart)
    assert hs.table_bytes == 2 ** bits


def test_huffman_size_of_a_shared_model():
    torch.manual_seed(12)
    sm = S.kmeans_share(models.build("resnet8", width=0.25), S.KMeansConfig(bits=4))
    hs = S.huffman_size(sm)
    layers = S.shared_layers(sm)
    assert hs.n_weights == sum(p.index.numel() for p in layers.values())
    assert hs.fixed_bytes == sum(math.ceil(p.index.numel() * 4 / 8) for p in layers.values())
    assert hs.entropy_bytes <= hs.huffman_bytes <= hs.fixed_bytes
    assert hs.table_bytes == 16 * len(layers)
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


@pytest.mark.parametrize("compression", [2.0, 3.5, 16.0])
def test_hashed_forward_equals_the_virtual_matrix_built_from_the_hash(compression):
    """Build W[i] = real[h(i)] * sign(i) element by element from `hash_indices`, then compare the layers'
    outputs with torch's own linear / conv2d on that matrix."""
    lin = S.HashedLinear(7, 5, compression, seed=11)
    h, sgn = S.hash_indices(35, lin.weight_real.numel(), 11)
    real = lin.weight_real.detach()
    v = torch.tensor([float(real[h[i]]) * float(sgn[i]) for i in range(35)]).reshape(5, 7)
    x = torch.randn(3, 7)
    assert_close(lin(x), F.linear(x, v, lin.bias), atol=1e-6, rtol=1e-6)
    conv = S.HashedConv2d(3, 4, 3, compression, stride=2, padding=1, seed=12)
    n = 4 * 3 * 3 * 3
    h, sgn = S.hash_indices(n, conv.weight_real.numel(), 12)
    real = conv.weight_real.detach()
    v = torch.tensor([float(real[h[i]]) * float(sgn[i]) for i in range(n)]).reshape(4, 3, 3, 3)
    x = torch.randn(2, 3, 8, 8)
    assert_close(conv(x), F.conv2d(x, v, None, 2, 1), atol=1e-6, rtol=1e-6)
    assert conv.weight_real.numel() == math.ceil(n / compression)


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
    (S.rank_for_energy, (torch.ones(3), 0.0), ValueError, r"energy \(fraction of Σ s² kept\) must be a finite number in \(0, 1\]"),
    (S.rank_for_energy, (torch.ones(3), 1.5), ValueError, r"energy \(fraction of Σ s² kept\) must be a finite number in \(0, 1\]"),
    (S.rank_for_energy, (torch.ones(0), 0.5), TypeError, "non-empty 1-D"),
    (S.kmeans_1d, (torch.ones(4), 0), ValueError, "bits must be in 1..16"),
    (S.kmeans_1d, (torch.ones(4), 17), ValueError, "bits must be in 1..16"),
    (S.kmeans_1d, (torch.ones(4), 2.0), TypeError, "bits must be an int"),
    (S.kmeans_1d, (torch.ones(4), 2, "kmeans++"), ValueError, "init must be one of"),
    (S.kmeans_1d, (torch.ones(4), 2, "linear", -1), ValueError, "iters must be >= 0"),
    (S.kmeans_1d, (torch.ones(0), 2), TypeError, "non-empty"),
    (S.pack_bits, (torch.tensor([4]), 2), ValueError, r"codes must lie in \[0, 3\]"),
    (S.pack_bits, (torch.tensor([1]), 0), ValueError, "bits must be in 1..16"),
    (S.pack_bits, (torch.tensor([1.0]), 2), TypeError, "integer"),
    (packing.unpack_bits, (torch.zeros(1, dtype=torch.uint8), 17, 1), ValueError, "bits must be in 1..16"),
    (packing.unpack_bits, (torch.zeros(1, dtype=torch.uint8), 3, 3), ValueError, r"n must be an int in \[0, 2\]"),
    (packing.unpack_bits, (torch.zeros(1), 3, 1), TypeError, "uint8"),
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
    with pytest.raises(ValueError, match="rank must be >= 1"):
        S.low_rank(m, rank=0)
    with pytest.raises(ValueError, match=r"energy \(fraction of Σ s² kept\) must be a finite number in \(0, 1\]"):
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
    from slimlab.files import CheckpointError
    with pytest.raises(CheckpointError, match="bad magic"):
        S.load_shared(p)


# ---------------------------------------------------------------------------------- notebook parts

def _tiny_data(n=48):
    from types import SimpleNamespace
    g = torch.Generator().manual_seed(0)
    img = lambda: torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    lab = lambda: torch.arange(n) % 10
    return SimpleNamespace(train_x=img(), train_y=lab(), val_x=img(), val_y=lab(), test_x=img(), test_y=lab())


def test_scratch_part_trains_the_named_network_reproducibly():
    from dataclasses import asdict
    data = _tiny_data()
    cfg = {"arch": "resnet8", "kind": "hashed", "compression": 4.0, "seed": 1, "train_images": 0, "eval_images": 0,
           "split_seed": 0, "train": asdict(TrainConfig(steps=2, batch_size=16, augment=False))}
    a = S.scratch_part(cfg, data=data)
    assert a["params"] == S.real_params(S.hashed_resnet("resnet8", 4.0, seed=1))
    assert 0 <= a["test_acc"] <= 100 and a["seconds"] > 0
    b = S.scratch_part(cfg, data=data)
    assert (a["val_acc"], a["test_acc"]) == (b["val_acc"], b["test_acc"])
    plain = S.scratch_part({**cfg, "kind": "plain", "width": 0.5}, data=data)
    assert plain["params"] == S.real_params(models.build("resnet8", width=0.5))
    with pytest.raises(ValueError, match="kind must be one of"):
        S.scratch_part({**cfg, "kind": "wide"}, data=data)


def test_codebook_part_fine_tunes_a_shared_copy_of_the_given_weights():
    from dataclasses import asdict
    data = _tiny_data()
    torch.manual_seed(2)
    ref = models.build("resnet8", width=0.25)
    before = {k: v.clone() for k, v in ref.state_dict().items()}
    cfg = {"arch": ref.arch, "bits": 2, "init": "linear", "grad": "mean", "iters": S.LLOYD_ITERS, "eval_images": 0,
           "split_seed": 0, "train": asdict(S.finetune_config(2, 16, seed=3))}
    rec = S.codebook_part(cfg, state=ref.state_dict(), data=data)
    assert rec["bits"] == 2 and rec["seed"] == 3 and 0 <= rec["test_acc"] <= 100
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in before.items())   # the reference is untouched
