"""slimlab.prune: exact sparsities (ties, pre-existing zeros), masks equal to torch.nn.utils.prune's,
masks that survive training and leave other parametrizations alone, APoZ by hand, channel removal
(beside Torch-Pruning), BN recalibration, sparse files, and clear errors for bad arguments.
The C6/C7/C8/C14 rules are tested in test_claims_03.py."""
import copy
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import torch
import torch.nn as nn

from slimlab import prune as P
from slimlab import models
from slimlab.models import build
from slimlab.packing import gaps_from_mask
from slimlab.train import TrainConfig, fit


def tiny(seed=0, name="resnet8", width=0.25):
    torch.manual_seed(seed)
    m = build(name, width=width).eval()
    with torch.no_grad():  # non-trivial BN statistics so slimming is really tested
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 2.0)
    return m


def images(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)


# ------------------------------------------------------------------ layers and masks

def test_prunable_layers_in_model_order():
    m = tiny()
    names = list(P.prunable_layers(m))
    assert names[0] == "conv1" and names[-1] == "fc"
    assert names[1:3] == ["layer1.0.conv1", "layer1.0.conv2"]
    assert list(P.prunable_layers(m, ["fc", "conv1"])) == ["fc", "conv1"]


def test_magnitude_masks_prune_the_smallest_by_hand():
    lin = nn.Sequential(nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        lin[0].weight.copy_(torch.tensor([[0.5, -0.1, 3.0], [-2.0, 0.05, 0.2]]))
    mask = P.magnitude_masks(lin, 0.5)["0"]
    expected = torch.tensor([[True, False, True], [True, False, False]])
    torch.testing.assert_close(mask, expected, atol=0, rtol=0)


def test_global_scope_uses_one_threshold_by_hand():
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        net[1].weight.copy_(torch.tensor([[0.5, 5.0]]))
    masks = P.magnitude_masks(net, 0.5, scope="global")  # 6 weights -> 3 smallest: 0.5, 1, 2
    torch.testing.assert_close(masks["0"], torch.tensor([[False, False], [True, True]]), atol=0, rtol=0)
    torch.testing.assert_close(masks["1"], torch.tensor([[False, True]]), atol=0, rtol=0)


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.8, 0.95])
def test_exact_sparsity_reached(scope, sparsity):
    m = P.prune_magnitude(tiny(), sparsity, scope)
    sp = P.layer_sparsity(m)
    layers = P.prunable_layers(m)
    total = sum(l.weight.numel() for l in layers.values())
    if scope == "global":
        assert sp["(all)"] == round(sparsity * total) / total
    else:
        for n, l in layers.items():
            assert sp[n] == round(sparsity * l.weight.numel()) / l.weight.numel()
        assert sp["(all)"] == sum(round(sparsity * l.weight.numel()) for l in layers.values()) / total


def distinct_net(seed=0):
    """Conv + linear layers whose weights have distinct magnitudes (no ties anywhere, across layers too)."""
    net = nn.Sequential(nn.Conv2d(2, 3, 3, bias=False), nn.Flatten(), nn.Linear(12, 5, bias=False))
    sizes = [p.numel() for p in net.parameters()]
    g = torch.Generator().manual_seed(seed)
    mags = (torch.randperm(sum(sizes), generator=g).double() + 1) / 7   # distinct |w|
    signs = torch.where(torch.rand(sum(sizes), generator=g) < 0.5, -1.0, 1.0).double()
    vals = (mags * signs).float().split(sizes)
    with torch.no_grad():
        for p, v in zip(net.parameters(), vals):
            p.copy_(v.view_as(p))
    return net


@pytest.mark.parametrize("amount", [0.0, 0.1, 0.37, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("seed", [0, 1])
def test_layer_masks_equal_torch_l1_unstructured(amount, seed):
    import torch.nn.utils.prune as tprune
    net = distinct_net(seed)
    ours = P.magnitude_masks(net, amount, "layer")
    for name, mod in P.prunable_layers(net).items():
        ref = tprune.l1_unstructured(copy_layer(mod), "weight", amount=amount).weight_mask.bool()
        torch.testing.assert_close(ours[name], ref, atol=0, rtol=0, msg=name)


@pytest.mark.parametrize("amount", [0.0, 0.25, 0.5, 0.8, 0.95])
@pytest.mark.parametrize("seed", [0, 1])
def test_global_masks_equal_torch_global_unstructured(amount, seed):
    import torch.nn.utils.prune as tprune
    net = distinct_net(seed)
    ours = P.magnitude_masks(net, amount, "global")
    ref_net = distinct_net(seed)
    mods = P.prunable_layers(ref_net)
    tprune.global_unstructured([(m, "weight") for m in mods.values()], tprune.L1Unstructured, amount=amount)
    for name, mod in mods.items():
        torch.testing.assert_close(ours[name], mod.weight_mask.bool(), atol=0, rtol=0, msg=name)


def copy_layer(mod):
    return copy.deepcopy(mod)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 2.0]), min_size=1, max_size=40),
       st.floats(0.0, 0.999))
def test_exact_count_with_ties_and_preexisting_zeros(values, sparsity):
    """Heavy ties and zeros: exactly round(s * n) pruned, none pruned larger than a kept one, zeros first."""
    w = torch.tensor(values)
    net = nn.Sequential(nn.Linear(len(values), 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(w.view(1, -1))
    keep = P.magnitude_masks(net, sparsity)["0"].flatten()
    k = round(sparsity * len(values))
    assert int((~keep).sum()) == k
    if 0 < k < len(values):
        assert float(w.abs()[~keep].max()) <= float(w.abs()[keep].min())
    zeros = w == 0
    if int(zeros.sum()) <= k:
        assert not bool(keep[zeros].any())              # every pre-existing zero is among the pruned
    else:
        assert bool(keep[~zeros].all())                 # more zeros than the count: only zeros pruned
    # ties are broken by position: the first of equal magnitudes goes first (stable)
    order = torch.argsort(w.abs(), stable=True)
    assert torch.equal(torch.sort(order[:k]).values, torch.nonzero(~keep).flatten())


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2 ** 31 - 1), st.floats(0.0, 0.99), st.sampled_from(["layer", "global"]))
def test_exact_sparsity_after_pruning_twice_with_zeros_present(seed, sparsity, scope):
    """Pruning a model that already has zeros (an earlier round) still prunes exactly the asked count."""
    net = distinct_net(seed % 1000)
    first = P.prune_magnitude(net, 0.3, scope)
    again = P.magnitude_masks(first, sparsity, scope)
    sizes = {n: l.weight.numel() for n, l in P.prunable_layers(net).items()}
    if scope == "layer":
        assert all(int((~again[n]).sum()) == round(sparsity * sizes[n]) for n in sizes)
    else:
        assert sum(int((~m).sum()) for m in again.values()) == round(sparsity * sum(sizes.values()))
    if sparsity >= 0.3 + 1e-9 and scope == "layer":      # the earlier zeros stay pruned
        old = P.get_masks(first)
        assert all(not bool(again[n][~old[n]].any()) for n in sizes)


class Round8(nn.Module):
    """A stand-in fake-quantizer: w -> round(8 w) / 8."""
    def forward(self, w):
        return torch.round(w * 8) / 8


def test_remove_masks_keeps_other_parametrizations():
    from torch.nn.utils import parametrize
    from slimlab.quantize import WeightFakeQuant
    base = tiny()
    m = P.prune_magnitude(base, 0.6)
    masks = P.get_masks(m)
    parametrize.register_parametrization(m.conv1, "weight", Round8())
    parametrize.register_parametrization(m.fc, "weight", WeightFakeQuant(4))
    before = {n: l.weight.detach().clone() for n, l in P.prunable_layers(m).items()}
    P.remove_masks_(m)
    assert P.get_masks(m) == {}
    assert [type(p) for p in m.conv1.parametrizations.weight] == [Round8]
    assert [type(p) for p in m.fc.parametrizations.weight] == [WeightFakeQuant]
    assert not parametrize.is_parametrized(m.layer1[0].conv1)          # masks only: a plain weight again
    for n, l in P.prunable_layers(m).items():                          # every effective weight unchanged
        torch.testing.assert_close(l.weight.detach(), before[n], atol=0, rtol=0, msg=n)
    torch.testing.assert_close(m.conv1.parametrizations.weight.original, base.conv1.weight * masks["conv1"],
                               atol=0, rtol=0)
    # a mask registered after another parametrization cannot be folded into the original
    q = P.baked_copy(base)
    parametrize.register_parametrization(q.conv1, "weight", Round8())
    P.apply_masks_(q, {"conv1": masks["conv1"]})
    assert torch.equal(P.get_masks(q)["conv1"], masks["conv1"])
    with pytest.raises(ValueError, match="conv1.weight has a Mask after another parametrization"):
        P.remove_masks_(q)


def test_recalibrate_bn_by_hand():
    m = tiny()
    x = images(12)
    before = m.layer1[0].conv1.weight.detach().clone()
    P.recalibrate_bn_(m, x, batch_size=4)
    assert not m.training and m.bn1.momentum == 0.1                    # mode and momentum restored
    with torch.no_grad():
        pre = m.conv1(m.normalize(x.float() / 255))                     # the stem BN's input, by hand
    mean = torch.stack([pre[i:i + 4].mean((0, 2, 3)) for i in (0, 4, 8)]).mean(0)
    var = torch.stack([pre[i:i + 4].var((0, 2, 3), unbiased=True) for i in (0, 4, 8)]).mean(0)
    torch.testing.assert_close(m.bn1.running_mean, mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(m.bn1.running_var, var, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(m.layer1[0].conv1.weight, before, atol=0, rtol=0)


def test_recalibrate_bn_rescues_random_one_shot_pruning():
    """Random pruning shifts every BN's input statistics; after recalibration the outputs of the BNs
    are standardised again on those images (mean ~ beta)."""
    m = P.prune_random(tiny(width=0.5), 0.7, seed=0)
    x = images(32)
    P.recalibrate_bn_(m, x, batch_size=32)
    seen = {}
    h = m.layer2[0].bn1.register_forward_hook(lambda mod, i, o: seen.setdefault("out", o.detach()))
    m(x.float() / 255)
    h.remove()
    torch.testing.assert_close(seen["out"].mean((0, 2, 3)), m.layer2[0].bn1.bias.detach(), atol=1e-3, rtol=0)


def test_training_view_is_one_seeded_draw_of_the_training_augmentation():
    from slimlab.data import augment
    x = images(16)
    v = P.training_view(x, augment=True, cutout=8, seed=5)
    assert v.dtype == torch.uint8 and v.shape == x.shape and not torch.equal(v, x)
    assert torch.equal(v, augment(x, torch.Generator().manual_seed(5), cutout=8))   # what fit's batches apply
    assert torch.equal(v, P.training_view(x, augment=True, cutout=8, seed=5))       # seeded
    assert not torch.equal(v, P.training_view(x, augment=True, cutout=8, seed=6))
    assert torch.equal(P.training_view(x, augment=False, cutout=8), x)             # fit: cutout only when augmenting
    with pytest.raises(TypeError, match="uint8"):
        P.training_view(x.float(), cutout=8)
    with pytest.raises(TypeError, match="augment must be a bool"):
        P.training_view(x, augment=1)
    with pytest.raises(ValueError, match="cutout"):
        P.training_view(x, cutout=33)


def test_part_data_gives_the_bn_images_in_their_training_view():
    from slimlab.data import subset
    from test_scaling import fake_data
    data = fake_data(n_train=60, n_eval=20)
    base = {"data": "tiny", "val_images": 20, "test_images": 20, "bn_images": 30}
    clean = P.part_data(base, data)[3]
    assert torch.equal(clean, subset(data.train_x, data.train_y, 30, seed=P.STATS_SEED)[0])
    view = P.part_data({**base, "bn_view": {"augment": True, "cutout": 16}}, data)[3]
    assert torch.equal(view, P.training_view(clean, augment=True, cutout=16))


def test_bn_statistics_belong_to_the_training_view(cifar):
    """The reference ResNet-20 trained with crop, flip and cutout 16: BN statistics re-estimated on its training
    view keep its validation accuracy; re-estimated on clean images they cost points, with no pruning at all."""
    import copy
    from slimlab import zoo
    from slimlab.data import subset
    from slimlab.train import evaluate
    ref = zoo.load("resnet20")
    recipe = zoo.card("resnet20")["recipe"]
    assert recipe["augment"] and recipe["cutout"] > 0
    val = subset(cifar.val_x, cifar.val_y, 2000)
    x = subset(cifar.train_x, cifar.train_y, 2000, seed=P.STATS_SEED)[0]
    base = evaluate(ref, *val)["acc"]
    view = evaluate(P.recalibrate_bn_(copy.deepcopy(ref), P.training_view(x, True, recipe["cutout"])), *val)["acc"]
    clean = evaluate(P.recalibrate_bn_(copy.deepcopy(ref), x), *val)["acc"]
    assert abs(view - base) <= 1.0, (base, view)
    assert clean < view - 1.5, (clean, view)


def test_random_masks_keep_the_counts_and_differ_from_magnitude():
    m = tiny()
    mag = P.magnitude_masks(m, 0.7)
    for masks in (P.random_masks(m, 0.7, seed=1), P.shuffle_masks(mag, seed=1)):
        for n in mag:
            assert int(masks[n].sum()) == int(mag[n].sum())
        assert any(not torch.equal(masks[n], mag[n]) for n in mag)
    torch.testing.assert_close(P.random_masks(m, 0.7, seed=3)["fc"], P.random_masks(m, 0.7, seed=3)["fc"],
                               atol=0, rtol=0)


def test_masks_are_parametrizations_and_remove_bakes_them_in():
    base = tiny()
    m = P.prune_magnitude(base, 0.6)
    assert torch.nn.utils.parametrize.is_parametrized(m.conv1, "weight")
    orig = m.conv1.parametrizations.weight.original
    torch.testing.assert_close(orig, base.conv1.weight, atol=0, rtol=0)  # the original stays reachable
    masks = P.get_masks(m)
    P.remove_masks_(m)
    assert not torch.nn.utils.parametrize.is_parametrized(m.conv1, "weight")
    torch.testing.assert_close(m.conv1.weight, base.conv1.weight * masks["conv1"], atol=0, rtol=0)
    assert set(m.state_dict()) == set(base.state_dict())


def test_pruned_weights_stay_zero_through_training():
    m = P.prune_magnitude(tiny(), 0.8, "global")
    masks = P.get_masks(m)
    before = {n: l.weight.detach().clone() for n, l in P.prunable_layers(m).items()}
    x, y = images(16), torch.arange(16) % 10
    fit(m, x, y, TrainConfig(steps=3, batch_size=8, lr=0.5, weight_decay=5e-4), progress=False)
    for n, l in P.prunable_layers(m).items():
        w = l.weight.detach().cpu()
        assert torch.all(w[~masks[n].cpu()] == 0), n
    assert any(not torch.equal(l.weight.detach().cpu(), before[n]) for n, l in P.prunable_layers(m).items())
    assert P.layer_sparsity(m)["(all)"] >= 0.8


def test_cubic_schedule_by_hand():
    assert P.cubic_sparsity(0, 100, 0.9) == 0.0
    assert P.cubic_sparsity(75, 100, 0.9) == pytest.approx(0.9)
    assert P.cubic_sparsity(100, 100, 0.9) == pytest.approx(0.9)
    p = 30 / 75
    assert P.cubic_sparsity(30, 100, 0.9, initial=0.1) == pytest.approx(0.9 + (0.1 - 0.9) * (1 - p) ** 3)
    assert P.cubic_sparsity(5, 100, 0.5, begin=0.1, end=0.5) == 0.0


def test_gradual_pruning_reaches_the_final_sparsity_through_fit():
    m = tiny()
    hook = P.gradual_pruning(m, 0.75, "layer", every=2)
    assert P.layer_sparsity(m)["(all)"] == 0.0
    x, y = images(16), torch.arange(16) % 10
    seen = []
    fit(m, x, y, TrainConfig(steps=4, batch_size=8, lr=0.05),
        on_step=lambda s, t, net: (hook(s, t, net), seen.append(P.layer_sparsity(net)["(all)"])), progress=False)
    assert seen == sorted(seen) and seen[0] < 0.75
    for n, l in P.prunable_layers(m).items():
        assert P.layer_sparsity(m)[n] == round(0.75 * l.weight.numel()) / l.weight.numel()


def test_sensitivity_prunes_one_layer_and_restores_it():
    m = tiny()
    ref = {k: v.clone() for k, v in m.state_dict().items()}
    x, y = images(20), torch.arange(20) % 10
    out = P.sensitivity(m, x, y, (0.0, 0.99), layers=["conv1", "fc"], progress=False)
    assert list(out) == ["conv1", "fc"] and all(len(v) == 2 for v in out.values())
    from slimlab.train import evaluate
    assert out["fc"][0] == evaluate(m, x, y)["acc"]
    for k, v in m.state_dict().items():
        torch.testing.assert_close(v, ref[k], atol=0, rtol=0)


# ------------------------------------------------------------------ weight statistics

def test_fit_weights_normal_sample_fits_and_mixture_recovers_modes():
    g = torch.Generator().manual_seed(0)
    normal = torch.randn(5000, generator=g) * 0.1
    f = P.fit_weights(normal)
    assert f.normal_ks < 0.03 and abs(f.mean) < 0.01 and f.std == pytest.approx(0.1, rel=0.05)
    assert abs(f.excess_kurtosis) < 0.3
    bimodal = torch.cat([torch.randn(3000, generator=g) * 0.05 - 1, torch.randn(3000, generator=g) * 0.05 + 1])
    b = P.fit_weights(bimodal, components=2)
    assert b.normal_ks > 0.1 and b.mixture_ks < 0.03
    assert sorted(round(m) for m in b.mixture_means) == [-1, 1]
    # share_small by hand: |w| < 0.1 * max|w|
    w = torch.tensor([0.0, 0.05, -0.05, 0.2, 1.0, -0.5, 0.09, 0.3, 0.4, 0.6, 0.7])
    assert P.fit_weights(w).share_small == pytest.approx(4 / 11)


def test_weight_stats_covers_every_layer_and_mixture_cdf_is_a_cdf():
    stats = P.weight_stats(tiny(), max_samples=500)
    assert [s.layer for s in stats] == list(P.prunable_layers(tiny()))
    x = np.linspace(-5, 5, 101)
    c = P.mixture_cdf(x, (0.3, 0.7), (-1, 1), (0.5, 1.0))
    assert np.all(np.diff(c) >= 0) and c[0] < 1e-3 and c[-1] > 1 - 1e-3
    pdf = P.mixture_pdf(x, (0.3, 0.7), (-1, 1), (0.5, 1.0))
    assert np.trapezoid(pdf, x) == pytest.approx(1.0, abs=1e-3)


# ------------------------------------------------------------------ APoZ and channels

def test_apoz_on_a_hand_built_network():
    net = nn.Sequential(nn.Conv2d(1, 2, 1, bias=True), nn.ReLU())
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
        net[0].bias.zero_()
    # one image 1x2x2 with values [-1, 2, 3, 0] -> channel 0 = x: zeros at -1 and 0 -> 2/4
    #                                            -> channel 1 = -x: zeros at 2, 3, 0 -> 3/4
    x = torch.tensor([[-1.0, 2.0], [3.0, 0.0]]).view(1, 1, 2, 2)
    a = P.apoz(net, x, layers=["1"])
    torch.testing.assert_close(a["1"], torch.tensor([0.5, 0.75]), atol=0, rtol=0)
    # the same on the module before the ReLU (relu(out) == 0 <=> out <= 0), over two batches
    x2 = torch.cat([x, -x])  # second image: [1, -2, -3, 0] -> ch0 zeros 3/4, ch1 zeros 2/4
    a2 = P.apoz(net, x2, layers=["0"], batch_size=1)
    torch.testing.assert_close(a2["0"], torch.tensor([5 / 8, 5 / 8]), atol=0, rtol=0)


def test_zero_counter_removes_its_hooks_even_on_error():
    m = tiny()
    mods = {"b": m.layer1[0].bn1}
    with pytest.raises(RuntimeError):
        with P.zero_counter(mods):
            assert len(m.layer1[0].bn1._forward_hooks) == 1
            raise RuntimeError("boom")
    assert len(m.layer1[0].bn1._forward_hooks) == 0


def test_default_apoz_covers_every_block():
    m = tiny()
    a = P.apoz(m, images(4))
    assert list(a) == [f"{n}.bn1" for n in P.blocks(m)]
    assert all(((v >= 0) & (v <= 1)).all() for v in a.values())


def test_select_channels_drops_the_lowest_scores():
    keep = P.select_channels({"b": torch.tensor([0.9, 0.1, 0.5, 0.3])}, 0.5)
    torch.testing.assert_close(keep["b"], torch.tensor([0, 2]), atol=0, rtol=0)
    assert P.select_channels({"b": torch.tensor([1.0, 2.0])}, 0.99)["b"].numel() == 1  # one always stays


def test_channel_scores_l1_by_hand_and_random_is_seeded():
    m = tiny()
    s = P.channel_scores(m, "l1")["layer1.0"]
    torch.testing.assert_close(s, m.layer1[0].conv1.weight.abs().sum((1, 2, 3)), atol=0, rtol=0)
    r1, r2 = P.channel_scores(m, "random", seed=4), P.channel_scores(m, "random", seed=4)
    torch.testing.assert_close(r1["layer2.0"], r2["layer2.0"], atol=0, rtol=0)


def integer_model(seed=0):
    """resnet8 in float64 with small integer weights, identity BNs (eps=0) and no input normalisation:
    every sum is an exact integer, so outputs do not depend on the order of accumulation."""
    g = torch.Generator().manual_seed(seed)
    m = build("resnet8", width=0.5).double().eval()
    with torch.no_grad():
        m.normalize.mean.zero_()
        m.normalize.std.fill_(1.0)
        for mod in m.modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                mod.weight.copy_(torch.randint(-1, 2, mod.weight.shape, generator=g).double())
                if mod.bias is not None:
                    mod.bias.zero_()
            if isinstance(mod, nn.BatchNorm2d):
                mod.eps = 0.0
                mod.running_mean.zero_()
                mod.running_var.fill_(1.0)
                mod.weight.fill_(1.0)
                mod.bias.copy_(torch.randint(-2, 3, mod.bias.shape, generator=g).double())
    return m


def test_removing_all_zero_channels_changes_no_output():
    m = integer_model()
    dead = {"layer1.0": [0, 3], "layer2.0": [1], "layer3.0": [5, 6, 7]}
    named = dict(m.named_modules())
    with torch.no_grad():
        for n, idx in dead.items():
            named[n].bn1.weight[idx] = 0.0   # bn1 output = bias = -1 < 0 -> ReLU output exactly 0
            named[n].bn1.bias[idx] = -1.0
    keep = {n: torch.tensor([c for c in range(named[n].conv1.out_channels) if c not in idx])
            for n, idx in dead.items()}
    slim = P.slim_channels(m, keep)
    x = torch.randint(0, 3, (6, 3, 32, 32), generator=torch.Generator().manual_seed(1)).double()
    ref = m(x)
    assert ref.abs().max() > 0
    torch.testing.assert_close(slim(x), ref, atol=0, rtol=0)
    assert slim.layer3[0].conv1.out_channels == 32 - 3 and slim.layer3[0].conv2.in_channels == 32 - 3
    assert slim.arch["inner_channels"] == {n: len(k) for n, k in keep.items()}
    a = P.apoz(m.float(), x.float())
    assert all(float(a[f"{n}.bn1"][i]) == 1.0 for n, idx in dead.items() for i in idx)


def test_removing_channels_keeps_the_kept_ones_in_float32():
    m = tiny(width=0.5)
    keep = {"layer2.0": torch.tensor([0, 2, 5, 9])}
    slim = P.slim_channels(m, keep)
    b, s = m.layer2[0], slim.layer2[0]
    torch.testing.assert_close(s.conv1.weight, b.conv1.weight[keep["layer2.0"]], atol=0, rtol=0)
    torch.testing.assert_close(s.conv2.weight, b.conv2.weight[:, keep["layer2.0"]], atol=0, rtol=0)
    torch.testing.assert_close(s.bn1.running_var, b.bn1.running_var[keep["layer2.0"]], atol=0, rtol=0)


def test_prune_channels_counts_are_equal_across_methods():
    m = tiny(width=0.5)
    x = images(8)
    shapes = []
    for method in P.CHANNEL_METHODS:
        s = P.prune_channels(m, 0.25, method, x=x)
        shapes.append([b.conv1.out_channels for b in P.blocks(s).values()])
        assert s(x.float() / 255).shape == (8, 10)
    assert shapes[0] == shapes[1] == shapes[2] == [8 - 2, 16 - 4, 32 - 8]


def test_network_trimming_two_rounds_lands_on_the_target():
    m = tiny(width=0.5)
    x, y = images(16), torch.arange(16) % 10
    out = P.network_trimming(m, 0.5, "l1", x, (x, y), TrainConfig(steps=1, batch_size=8), rounds=2, progress=False)
    assert [b.conv1.out_channels for b in P.blocks(out).values()] == [4, 8, 16]


def test_trim_rounds_one_at_a_time_equal_network_trimming(tmp_path):
    m = tiny(width=0.5)
    x, y = images(16), torch.arange(16) % 10
    cfg = TrainConfig(steps=1, batch_size=8)
    whole = P.network_trimming(m, 0.5, "l1", x, (x, y), cfg, rounds=2, progress=False)
    base = {n: b.conv1.out_channels for n, b in P.blocks(m).items()}
    first = P.trim_round(m, 0.5, "l1", x, (x, y), cfg, index=0, rounds=2, base_channels=base, progress=False)
    assert [b.conv1.out_channels for b in P.blocks(first).values()] == [6, 11, 23]   # 1 - sqrt(0.5) of each
    P.save_dense(first, tmp_path / "round1.pt")                                    # a stored round resumes
    second = P.trim_round(P.load_dense(tmp_path / "round1.pt"), 0.5, "l1", x, (x, y), cfg, index=1, rounds=2,
                          base_channels=base, progress=False)
    for (k, a), b in zip(whole.state_dict().items(), second.state_dict().values()):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=k)
    with pytest.raises(ValueError, match="index must be an int in"):
        P.trim_round(m, 0.5, "l1", x, (x, y), cfg, index=2, rounds=2, base_channels=base)
    with pytest.raises(ValueError, match="base_channels"):
        P.trim_round(m, 0.5, "l1", x, (x, y), cfg, index=0, rounds=2, base_channels={})


@pytest.mark.parametrize("variant", P.FINETUNE_VARIANTS)
def test_finetune_pruned_variants_keep_their_sparsity(variant):
    m = tiny(width=0.5)
    x, y = images(16), torch.arange(16) % 10
    out = P.finetune_pruned(m, 0.6, variant, (x, y), TrainConfig(steps=3, batch_size=8), progress=False)
    assert P.layer_sparsity(out)["(all)"] >= 0.6 - 1e-4
    mag = P.get_masks(P.prune_magnitude(m, 0.6, "global"))
    got = P.get_masks(out)
    if variant == "magnitude":        # the one-shot magnitude masks ride through the fine-tune unchanged
        assert all(torch.equal(got[n], mag[n]) for n in mag)
    elif variant == "random":         # same count per layer as the magnitude masks, other positions
        assert all(int(got[n].sum()) == int(mag[n].sum()) for n in mag)
        assert not all(torch.equal(got[n], mag[n]) for n in mag)
    with pytest.raises(ValueError, match="variant must be one of"):
        P.pruned_copy(m, 0.5, "lottery")


# ------------------------------------------------------------------ files

def _header_bytes(path) -> int:
    """8 B magic + 4 B header length + the header a packed file announces + its 4 B CRC-32."""
    return 12 + int.from_bytes(path.read_bytes()[8:12], "little") + 4


def _state_bytes(state: dict, skip=()) -> int:
    return sum(v.numel() * v.element_size() for k, v in state.items() if k not in skip)


def test_dense_file_rebuilds_a_slimmed_model_on_its_own(tmp_path):
    slim = P.prune_channels(tiny(width=0.5), 0.5, "l1")
    nbytes = P.save_dense(slim, tmp_path / "slim.pt")
    assert nbytes == (tmp_path / "slim.pt").stat().st_size
    back = P.load_dense(tmp_path / "slim.pt")
    x = images(4).float() / 255
    torch.testing.assert_close(back(x), slim(x), atol=0, rtol=0)
    for k, v in slim.state_dict().items():                      # every tensor, BN statistics and counters too
        assert back.state_dict()[k].dtype == v.dtype and torch.equal(back.state_dict()[k], v), k
    # the format's cost: every tensor at its own item size (float32 weights, int64 counters) + the header
    assert nbytes == _header_bytes(tmp_path / "slim.pt") + _state_bytes(slim.state_dict())
    masked = P.prune_magnitude(tiny(), 0.9)                     # a dense file stays dense: zeros cost 4 B each
    assert P.save_dense(masked, tmp_path / "m.pt") - _header_bytes(tmp_path / "m.pt") == \
        _state_bytes(models.baked_state_dict(masked))


def _positions_bytes(keep: np.ndarray) -> dict[str, int]:
    """What each position code costs for a flat bool `keep`: the 1-bit mask and b-bit gaps for b in GAP_BITS."""
    out = {"bitmask": math.ceil(keep.size / 8)}
    for b in P.GAP_BITS:
        out[f"{b}-bit gaps"] = math.ceil(len(gaps_from_mask(keep, 2 ** b - 1)) * b / 8)
    return out


def test_sparse_round_trip_is_exact_and_small(tmp_path):
    m = P.prune_magnitude(tiny(width=1.0), 0.9, "global")
    n_sparse = P.save_sparse(m, tmp_path / "s.pt")
    back = P.load_sparse(tmp_path / "s.pt")
    ref = models.baked_state_dict(m)
    assert set(back.state_dict()) == set(ref)
    for k, v in back.state_dict().items():
        torch.testing.assert_close(v, ref[k], atol=0, rtol=0)
    x = images(4).float() / 255
    torch.testing.assert_close(back(x), m(x), atol=0, rtol=0)
    n_dense = P.save_dense(m, tmp_path / "d.pt")
    n_int8 = P.save_sparse(m, tmp_path / "q.pt", values="int8")
    assert n_int8 < n_sparse < n_dense / 4
    q = P.load_sparse(tmp_path / "q.pt")
    for k in P.prunable_layers(m):
        w, wq = ref[k + ".weight"], q.state_dict()[k + ".weight"]
        codes, scale = P.quantize_int8(w[w != 0])
        torch.testing.assert_close(wq[w != 0], codes.float() * scale, atol=0, rtol=0)
        assert torch.all(wq[w == 0] == 0)
    # what the format costs: per layer the cheapest position code, then 4 B (fp32) or 1 B + a 4 B scale
    # (int8) per nonzero weight; every other tensor at its item size; the header
    layout = P.sparse_layout(tmp_path / "s.pt")
    assert layout == P.sparse_layout(tmp_path / "q.pt")
    pos = weights = 0
    for k in P.prunable_layers(m):
        keep = (ref[k + ".weight"] != 0).reshape(-1).numpy()
        costs = _positions_bytes(keep)
        assert costs[layout[k + ".weight"]] == min(costs.values()), k
        pos += min(costs.values())
        weights += int(keep.sum())
    others = _state_bytes(ref, {k + ".weight" for k in P.prunable_layers(m)})
    assert n_sparse == _header_bytes(tmp_path / "s.pt") + pos + 4 * weights + others
    assert n_int8 == _header_bytes(tmp_path / "q.pt") + pos + weights + 4 * len(layout) + others


@pytest.mark.parametrize("sparsity,kind", [(0.3, "bitmask"), (0.95, "gaps")])
def test_sparse_file_takes_the_cheaper_position_code_per_layer(tmp_path, sparsity, kind):
    m = P.prune_magnitude(tiny(width=1.0), sparsity, "layer")
    P.save_sparse(m, tmp_path / "s.pt")
    layout = P.sparse_layout(tmp_path / "s.pt")
    big = [k for k, l in P.prunable_layers(m).items() if l.weight.numel() > 5000]
    assert all((layout[k + ".weight"] == "bitmask") == (kind == "bitmask") for k in big), layout
    for k, layer in P.prunable_layers(m).items():     # whichever was taken is the cheapest of those tried
        costs = _positions_bytes((layer.weight.detach() != 0).reshape(-1).numpy())
        assert costs[layout[k + ".weight"]] == min(costs.values()), k
    back = P.load_sparse(tmp_path / "s.pt")
    for k, v in back.state_dict().items():
        torch.testing.assert_close(v, models.baked_state_dict(m)[k], atol=0, rtol=0)


def test_prune_then_quantize_then_save_and_load(tmp_path):
    """Prune -> quantize (QAT-ready fake quantizers over the masks) -> the file -> back: the same weights
    and predictions, the zeros still zero, and the file smaller than the unpruned quantized one."""
    from slimlab import quantize as Q
    m = tiny()
    x = images(16)
    pruned = P.prune_magnitude(m, 0.8, "global")
    qm = Q.quantize_model(pruned, Q.QuantConfig(bits=4, act_bits=8), x)
    n = Q.save_quantized(qm, tmp_path / "pq.slq")
    back = Q.load_quantized(tmp_path / "pq.slq")
    xf = x.float() / 255
    with torch.no_grad():
        torch.testing.assert_close(back(xf), qm(xf), atol=0, rtol=0)
    masks = P.get_masks(pruned)
    for name, mask in masks.items():
        w = back.get_submodule(name + ".layer").weight
        assert torch.equal(w, qm.get_submodule(name + ".layer").weight.detach()) and bool((w[~mask] == 0).all())
    assert n < Q.save_quantized(Q.quantize_model(m, Q.QuantConfig(bits=4, act_bits=8), x), tmp_path / "q.slq")


def test_torch_pruning_inner_channels_match_slimlab_shapes_and_macs():
    from slimlab import measure
    m = tiny(width=0.5)
    ours = P.prune_channels(m, 0.25, "l1")
    tp_model = P.torch_pruning_channels(m, 0.25)
    assert {n: b.conv1.out_channels for n, b in P.blocks(tp_model).items()} == \
        {n: b.conv1.out_channels for n, b in P.blocks(ours).items()}
    assert measure.count_macs(tp_model) == measure.count_macs(ours) < measure.count_macs(m)
    assert tp_model.arch["inner_channels"] == ours.arch["inner_channels"]
    assert [l.weight.shape for l in P.prunable_layers(tp_model).values()] == \
        [l.weight.shape for l in P.prunable_layers(ours).values()]
    # the kept filters are original filters (rows of conv1), and the model still runs
    b0, t0 = m.layer1[0].conv1.weight, tp_model.layer1[0].conv1.weight
    assert all(any(torch.equal(r, o) for o in b0) for r in t0)
    assert tp_model(images(2).float() / 255).shape == (2, 10)
    assert m.layer1[0].conv1.out_channels == 8                        # the original is untouched


def test_torch_prune_file_holds_orig_and_mask(tmp_path):
    m = tiny()
    masks = P.magnitude_masks(m, 0.5)
    n = P.save_torch_prune(m, masks, tmp_path / "tp.pt")
    sd = torch.load(tmp_path / "tp.pt", weights_only=True)
    assert "conv1.weight_orig" in sd and "conv1.weight_mask" in sd
    torch.testing.assert_close(sd["conv1.weight_mask"], masks["conv1"].float(), atol=0, rtol=0)
    assert n > P.save_dense(m, tmp_path / "d.pt")


def test_quantize_int8_by_hand():
    codes, scale = P.quantize_int8(torch.tensor([1.27, -0.635, 0.01]))
    assert scale == pytest.approx(0.01)
    torch.testing.assert_close(codes, torch.tensor([127, -64, 1], dtype=torch.int8), atol=0, rtol=0)


# ------------------------------------------------------------------ bad inputs

NEVER = "never-written.pt"   # every call below raises before it writes


def _with_nan(m):
    with torch.no_grad():
        m.layer1[0].conv2.weight[0, 0, 0, 0] = float("nan")
    return m


class NoPrunable(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(3)


BAD = [
    # (callable, exception, message fragment)
    (lambda m: P.magnitude_masks(m, 1.0), ValueError, r"sparsity must be a finite number in \[0, 1\)"),
    (lambda m: P.magnitude_masks(m, -0.1), ValueError, r"sparsity must be a finite number in \[0, 1\)"),
    (lambda m: P.magnitude_masks(m, "0.5"), TypeError, "sparsity must be a number"),
    (lambda m: P.magnitude_masks(m, 0.5, scope="network"), ValueError, "scope must be one of"),
    (lambda m: P.magnitude_masks(m, 0.5, layers=["nope"]), ValueError, r"unknown layer\(s\) \['nope'\]"),
    (lambda m: P.magnitude_masks(m, 0.5, layers="conv1"), TypeError, "layers must be a list"),
    (lambda m: P.magnitude_masks(m, 0.5, layers=[]), ValueError, "layers is empty"),
    (lambda m: P.magnitude_masks(NoPrunable(), 0.5), ValueError, "has no prunable layer"),
    (lambda m: P.magnitude_masks("model", 0.5), TypeError, "model must be an nn.Module"),
    (lambda m: P.random_masks(m, 1.5), ValueError, r"sparsity must be a finite number in \[0, 1\)"),
    (lambda m: P.random_masks(m, 0.5, layers=["x"]), ValueError, "unknown layer"),
    (lambda m: P.shuffle_masks({}), ValueError, "non-empty dict"),
    (lambda m: P.apply_masks_(m, {"conv1": torch.ones(3, dtype=torch.bool)}), ValueError, "has shape"),
    (lambda m: P.apply_masks_(m, {"nope": torch.ones(3, dtype=torch.bool)}), ValueError, "unknown layer"),
    (lambda m: P.prune_magnitude(m, 1.0), ValueError, r"sparsity must be a finite number in \[0, 1\)"),
    (lambda m: P.prune_random(m, 2.0), ValueError, r"sparsity must be a finite number in \[0, 1\)"),
    (lambda m: P.cubic_sparsity(1, 10, 1.0), ValueError, r"final must be a finite number in \[0, 1\)"),
    (lambda m: P.cubic_sparsity(1, 10, 0.5, initial=-1), ValueError, r"initial must be a finite number in \[0, 1\)"),
    (lambda m: P.cubic_sparsity(1, 10, 0.5, begin=0.8, end=0.5), ValueError, "begin < end"),
    (lambda m: P.cubic_sparsity(1, 0, 0.5), ValueError, "total must be an int >= 1"),
    (lambda m: P.gradual_pruning(m, 1.0), ValueError, r"final must be a finite number in \[0, 1\)"),
    (lambda m: P.gradual_pruning(m, 0.5, scope="x"), ValueError, "scope must be one of"),
    (lambda m: P.gradual_pruning(m, 0.5, every=0), ValueError, "every must be an int >= 1"),
    (lambda m: P.sensitivity(m, images(2), torch.zeros(2, dtype=torch.long), ()), ValueError, "at least one"),
    (lambda m: P.sensitivity(m, images(2), torch.zeros(2, dtype=torch.long), (1.0,)), ValueError, r"\[0, 1\)"),
    (lambda m: P.sensitivity(m, images(2), torch.zeros(2, dtype=torch.long), (0.5,), layers=["q"]), ValueError, "unknown layer"),
    (lambda m: P.sensitivity(P.prune_magnitude(m, 0.5), images(2), torch.zeros(2, dtype=torch.long), (0.5,)), ValueError, "unmasked model"),
    (lambda m: P.fit_weights([1.0, 2.0]), TypeError, "w must be a torch tensor"),
    (lambda m: P.fit_weights(torch.ones(3)), ValueError, "at least 10 weights"),
    (lambda m: P.fit_weights(torch.randn(50), components=0), ValueError, "components must be an int >= 1"),
    (lambda m: P.weight_stats(NoPrunable()), ValueError, "has no prunable layer"),
    (lambda m: P.apoz(m, torch.zeros(0, 3, 32, 32)), ValueError, "non-empty image batch"),
    (lambda m: P.apoz(m, images(2), layers=["nope"]), ValueError, r"unknown module\(s\)"),
    (lambda m: P.apoz(nn.Sequential(nn.Conv2d(3, 3, 1)), images(2)), ValueError, "has no BasicBlock"),
    (lambda m: P.zero_counter({}).__enter__(), ValueError, "non-empty dict"),
    (lambda m: P.channel_scores(m, "taylor"), ValueError, "method must be one of"),
    (lambda m: P.channel_scores(m, "apoz"), ValueError, "needs images x"),
    (lambda m: P.select_channels({"b": torch.ones(4)}, 1.0), ValueError, r"fraction must be a finite number in \[0, 1\)"),
    (lambda m: P.select_channels({"b": torch.ones(4)}, True), TypeError, "fraction must be a number"),
    (lambda m: P.select_channels({}, 0.5), ValueError, "non-empty dict"),
    (lambda m: P.slim_channels(m, {"layer9.0": torch.tensor([0])}), ValueError, r"unknown block\(s\)"),
    (lambda m: P.slim_channels(m, {"layer1.0": torch.tensor([0, 0])}), ValueError, "distinct channel indices"),
    (lambda m: P.slim_channels(m, {"layer1.0": torch.tensor([99])}), ValueError, "distinct channel indices"),
    (lambda m: P.slim_channels(P.prune_magnitude(m, 0.5), {}), ValueError, "unmasked model"),
    (lambda m: P.prune_channels(m, -0.5, "l1"), ValueError, r"fraction must be a finite number in \[0, 1\)"),
    (lambda m: P.prune_channels(m, 0.5, "nope"), ValueError, "method must be one of"),
    (lambda m: P.network_trimming(m, 0.5, "l1", images(2), (images(2), torch.zeros(2, dtype=torch.long)),
                                  TrainConfig(steps=1), rounds=0), ValueError, "rounds must be an int >= 1"),
    (lambda m: P.network_trimming(m, 1.0, "l1", images(2), (images(2), torch.zeros(2, dtype=torch.long)),
                                  TrainConfig(steps=1)), ValueError, r"fraction must be a finite number in \[0, 1\)"),
    (lambda m: P.save_sparse(m, NEVER, values="int4"), ValueError, "values must be one of"),
    (lambda m: P.save_sparse(nn.Linear(2, 2), NEVER), ValueError, "must be a slimlab ResNet"),
    (lambda m: P.save_sparse(m, NEVER, layers=["nope"]), ValueError, "unknown layer"),
    (lambda m: P.save_dense(nn.Linear(2, 2), NEVER), ValueError, "must be a slimlab ResNet"),
    (lambda m: models.from_arch({"width": 1.0}), ValueError, "arch must be a slimlab model's .arch"),
    (lambda m: P.magnitude_masks(_with_nan(m), 0.5), ValueError, r"weight of layer1.0.conv2 holds 1 NaN"),
    (lambda m: P.recalibrate_bn_(m, torch.zeros(3, 32, 32)), ValueError, "x must have 4 dims"),
    (lambda m: P.torch_pruning_channels(m, 1.0), ValueError, r"fraction must be a finite number in \[0, 1\)"),
]


@pytest.mark.parametrize("call,exc,match", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_inputs_raise_clear_errors(call, exc, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)         # a wrong call that did write would write here
    with pytest.raises(exc, match=match):
        call(tiny())


def test_loading_a_foreign_or_damaged_file_gives_one_clear_error_naming_it(tmp_path):
    from slimlab.files import CheckpointError
    torch.save({"format": "slimlab-sparse/2"}, tmp_path / "f.pt")      # a torch.save file (the retired format)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file at all")
    P.save_sparse(tiny(), tmp_path / "s.pt")
    raw = (tmp_path / "s.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "tail.pt").write_bytes(raw[:-1])
    tampered = bytearray(raw)
    tampered[-20] ^= 0x40
    (tmp_path / "tampered.pt").write_bytes(bytes(tampered))
    for load, what in ((P.load_sparse, "slimlab sparse file"), (P.load_dense, "slimlab dense file")):
        for bad in ("f.pt", "junk.pt"):
            with pytest.raises(CheckpointError, match=rf"{bad} is not a {what} \(bad magic"):
                load(tmp_path / bad)
        for bad in ("cut.pt", "tail.pt", "tampered.pt"):
            with pytest.raises(CheckpointError, match=rf"{bad} is (not a complete|a damaged) {what}"):
                load(tmp_path / bad)
        with pytest.raises(FileNotFoundError, match="nope.pt"):
            load(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="tampered.pt is a damaged slimlab sparse file .*CRC-32"):
        P.sparse_layout(tmp_path / "tampered.pt")
