import pytest
import torch

from slimlab.models import DEPTHS, ShortcutA, build

# He et al. (2015), Table 6: parameters of the CIFAR ResNets (option A)
PUBLISHED_M = {"resnet20": 0.27, "resnet32": 0.46, "resnet44": 0.66, "resnet56": 0.85, "resnet110": 1.7}


@pytest.mark.parametrize("name,millions", PUBLISHED_M.items())
def test_param_counts_match_he_et_al(name, millions):
    n = sum(p.numel() for p in build(name).parameters())
    assert abs(n / 1e6 - millions) < 0.01 * max(1, millions / 0.5)


def test_forward_shapes_and_width():
    x = torch.rand(2, 3, 32, 32)
    for name in ("resnet8", "resnet14"):
        for w in (0.25, 1.0, 1.5):
            m = build(name, width=w).eval()
            assert m(x).shape == (2, 10)
    small, big = build("resnet8", width=0.5), build("resnet8", width=2.0)
    n = lambda m: sum(p.numel() for p in m.parameters())
    assert 10 < n(big) / n(small) < 20  # params grow ~ width^2


def test_normalization_is_inside_the_model():
    m = build("resnet8")
    assert "normalize.mean" in m.state_dict() and "normalize.std" in m.state_dict()
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(m.normalize(x)[0, 0], (x[0, 0] - 0.4914) / 0.2470)


def test_shortcut_a_subsamples_and_zero_pads():
    x = torch.randn(2, 4, 8, 8)
    y = ShortcutA(4, 8, 2)(x)
    assert y.shape == (2, 8, 4, 4)
    torch.testing.assert_close(y[:, 2:6], x[:, :, ::2, ::2], atol=0, rtol=0)
    assert y[:, :2].abs().sum() == 0 and y[:, 6:].abs().sum() == 0


def test_same_seed_same_model():
    torch.manual_seed(0)
    a = build("resnet8")
    torch.manual_seed(0)
    b = build("resnet8")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(va, vb, atol=0, rtol=0)


def test_build_errors():
    with pytest.raises(ValueError, match="unknown model 'resnet9'.*allowed: resnet8"):
        build("resnet9")
    with pytest.raises(TypeError, match="model name must be a str"):
        build(20)
    with pytest.raises(ValueError, match="width must be in"):
        build("resnet8", width=0)
    with pytest.raises(TypeError, match="width must be a number"):
        build("resnet8", width="wide")
    with pytest.raises(ValueError, match="num_classes"):
        build("resnet8", num_classes=1)
    assert set(DEPTHS) >= {"resnet8", "resnet20", "resnet110"}
