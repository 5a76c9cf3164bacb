"""The CIFAR ResNet family of He et al. (2015), with a width multiplier.

`build("resnet20", width=1.0)` gives ResNet-20 (0.27 M parameters). Depth 6n+2 with n
BasicBlocks in each of three stages of 16w, 32w, 64w channels.

Shortcuts use He et al.'s *option A*: identity, and where a stage halves the resolution and
doubles the channels, a parameter-free shortcut that subsamples by 2 and pads the new
channels with zeros. It is what the paper used for CIFAR-10, so our parameter counts match
the published ones (ResNet-20 0.27 M … ResNet-110 1.7 M) and the comparison is fair.

Input normalisation is the first layer (`Normalize`), so every model takes images in
[0, 1] and a checkpoint carries everything needed to use it.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
DEPTHS = {"resnet8": 1, "resnet14": 2, "resnet20": 3, "resnet32": 5, "resnet44": 7,
          "resnet56": 9, "resnet110": 18}


class Normalize(nn.Module):
    """(x - mean) / std per channel; buffers travel with the state dict."""

    def __init__(self, mean=CIFAR_MEAN, std=CIFAR_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):  # (B, 3, H, W) in [0, 1]
        return (x - self.mean) / self.std


class ShortcutA(nn.Module):
    """Option-A shortcut: subsample by `stride`, zero-pad channels from `cin` to `cout`."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.cin, self.cout, self.stride = cin, cout, stride

    def forward(self, x):
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        extra = self.cout - self.cin
        if extra > 0:
            x = F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))
        return x


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus shortcut, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = ShortcutA(cin, cout, stride) if (stride != 1 or cin != cout) else nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 images: stem, three stages, global pool, linear head."""

    def __init__(self, n: int, width: float = 1.0, num_classes: int = 10):
        super().__init__()
        c1, c2, c3 = (max(1, round(c * width)) for c in (16, 32, 64))
        self.arch = {"n": n, "width": width, "num_classes": num_classes}
        self.normalize = Normalize()
        self.conv1 = nn.Conv2d(3, c1, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.layer1 = self._stage(c1, c1, n, 1)
        self.layer2 = self._stage(c1, c2, n, 2)
        self.layer3 = self._stage(c2, c3, n, 2)
        self.fc = nn.Linear(c3, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out" if isinstance(m, nn.Conv2d) else "fan_in",
                                        nonlinearity="relu")

    @staticmethod
    def _stage(cin, cout, n, stride):
        blocks = [BasicBlock(cin, cout, stride)] + [BasicBlock(cout, cout, 1) for _ in range(n - 1)]
        return nn.Sequential(*blocks)

    def features(self, x):  # (B, 3, 32, 32) -> (B, C3, 8, 8)
        x = F.relu(self.bn1(self.conv1(self.normalize(x))))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward(self, x):  # (B, 3, 32, 32) in [0, 1] -> (B, num_classes) logits
        x = self.features(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build(name: str, width: float = 1.0, num_classes: int = 10) -> CifarResNet:
    """A CIFAR ResNet by name ('resnet8' … 'resnet110') with channel width multiplier `width`."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in DEPTHS:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(DEPTHS)}")
    if isinstance(width, bool) or not isinstance(width, (int, float)):
        raise TypeError(f"width must be a number, got {type(width).__name__}")
    if not (0 < width <= 16):
        raise ValueError(f"width must be in (0, 16], got {width}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    model = CifarResNet(DEPTHS[key], float(width), num_classes)
    model.arch["name"] = key
    return model


# ---------------------------------------------------------------------------------------------
# the base tools every method module uses: its weight layers, a model from its .arch, baked copies

def weight_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The Conv2d and Linear modules of `model` by qualified name, in module order: the layers that
    the course's methods prune, quantize and share."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def resize_block(block: BasicBlock, k: int) -> None:
    """Give `block` k inner channels (fresh conv1/bn1/conv2 of the right shapes, same device/dtype)."""
    c1, c2 = block.conv1, block.conv2
    kw = {"device": c1.weight.device, "dtype": c1.weight.dtype}
    block.conv1 = nn.Conv2d(c1.in_channels, k, c1.kernel_size, c1.stride, c1.padding, bias=False, **kw)
    block.bn1 = nn.BatchNorm2d(k, eps=block.bn1.eps, momentum=block.bn1.momentum, **kw)
    block.conv2 = nn.Conv2d(k, c2.out_channels, c2.kernel_size, c2.stride, c2.padding, bias=False, **kw)


def from_arch(arch: dict) -> CifarResNet:
    """An untrained model of the architecture `arch` (a model's .arch, `inner_channels` of slimmed
    blocks included)."""
    if not isinstance(arch, dict) or "name" not in arch:
        raise ValueError("arch must be a slimlab model's .arch dict (with 'name', 'width', 'num_classes')")
    model = build(arch["name"], width=arch.get("width", 1.0), num_classes=arch.get("num_classes", 10))
    blocks = {n: m for n, m in model.named_modules() if isinstance(m, BasicBlock)}
    for n, k in arch.get("inner_channels", {}).items():
        if n not in blocks:
            raise ValueError(f"arch names a block {n!r} that {arch['name']} does not have")
        resize_block(blocks[n], int(k))
    model.arch = dict(arch)
    return model


def _is_parametrization_key(key: str) -> bool:
    return key.startswith("parametrizations.") or ".parametrizations." in key


def baked_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with every parametrization (masks, codebooks, fake-quantizers) evaluated into a
    plain tensor under the plain key (`conv.weight`), contiguous, on the CPU."""
    from torch.nn.utils import parametrize
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    out = {k: v for k, v in model.state_dict().items() if not _is_parametrization_key(k)}
    for n, m in model.named_modules():
        if parametrize.is_parametrized(m):
            for t in m.parametrizations.keys():
                out[f"{n}.{t}" if n else t] = getattr(m, t)
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}


def baked_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` with every parametrization baked into plain weights; the original is untouched.
    A parametrized model must be a slimlab ResNet (with .arch) so that its plain twin can be built."""
    import copy
    from torch.nn.utils import parametrize
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not any(parametrize.is_parametrized(m) for m in model.modules()):
        return copy.deepcopy(model)
    arch = getattr(model, "arch", None)
    if not isinstance(arch, dict) or "name" not in arch:
        raise ValueError("baking a parametrized model needs a slimlab ResNet (with .arch)")
    p = next(model.parameters())
    out = from_arch(arch).to(device=p.device, dtype=p.dtype)
    out.load_state_dict(baked_state_dict(model))
    return out.train(model.training)
