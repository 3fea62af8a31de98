"""ResNets (He, Zhang, Ren & Sun 2016, "Deep Residual Learning for Image Recognition",
https://arxiv.org/abs/1512.03385) as ``(block, layers)``, with their blocks and shortcuts.

``state_dict`` keys equal torchvision's for the ImageNet stem and shortcut option B, so
``load_state_dict(torchvision.models.resnet50().state_dict())`` just works. The lecture's two
small residual networks for MNIST live in :mod:`cnnlab.models.resblocks`.
"""

from __future__ import annotations

from typing import Callable, Type

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.arithmetic import feature_side
from cnnlab.geometry import Geometry, spatial_geometry
from cnnlab.models._registry import register_model

__all__ = [
    "conv3x3",
    "conv1x1",
    "ZeroPadShortcut",
    "SHORTCUTS",
    "make_shortcut",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
]

PAPER = "He et al. 2016, arXiv:1512.03385"
STEMS = ("imagenet", "cifar")


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 convolution with "same" padding (for stride 1), no bias (a BN follows)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation, groups=groups,
                     bias=False, dilation=dilation)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


# ---------------------------------------------------------------------------------------
# Blocks and shortcuts (He et al. 2016, Sec. 3.3 and 4.1)


class ZeroPadShortcut(nn.Module):
    """Option A of He et al. 2016, Sec. 3.3: identity with stride subsampling and zero-padded
    extra channels. Adds no parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"zero-padding shortcut cannot shrink channels ({in_channels} -> {out_channels})")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]  # (N, C, ceil(H/s), ceil(W/s))
        extra = self.out_channels - self.in_channels
        if extra:
            x = F.pad(x, (0, 0, 0, 0, 0, extra))  # (N, C_out, H, W), new channels all zero
        return x

    def geometry(self) -> Geometry:
        """For :mod:`cnnlab.geometry`: ``x[:, :, ::s, ::s]`` is a 1x1 window with stride s, no padding."""
        return Geometry(kernel=(1, 1), stride=(self.stride, self.stride), padding=(0, 0), padding_after=(0, 0))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


SHORTCUTS = ("A", "B", "C")


def make_shortcut(option: str, in_channels: int, out_channels: int, stride: int,
                  norm_layer: Callable[[int], nn.Module]) -> nn.Module | None:
    """The ``downsample`` branch of a residual block for shortcut option A, B or C.

    A: zero-padding identity where the shape changes (no parameters).
    B: 1x1 conv + BN projection only where the shape changes (torchvision's default).
    C: 1x1 conv + BN projection on every block.
    Returns None where the shortcut is the plain identity.
    """
    changes = stride != 1 or in_channels != out_channels
    if option == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride) if changes else None
    if option == "B" and not changes:
        return None
    if option in ("B", "C"):
        return nn.Sequential(conv1x1(in_channels, out_channels, stride), norm_layer(out_channels))
    raise ValueError(f"shortcut must be one of {', '.join(SHORTCUTS)}, got {option!r}")


class BasicBlock(nn.Module):
    """Two 3x3 convs; ``a(l+2) = relu(z(l+2) + a(l))`` (the lecture's residual block)."""

    expansion: int = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 norm_layer: Callable[[int], nn.Module] | None = None) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 -> 1x1 (expand x4). The stride sits on the 3x3 conv, as in
    torchvision ("ResNet V1.5"); the paper put it on the first 1x1."""

    expansion: int = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 norm_layer: Callable[[int], nn.Module] | None = None) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        width = planes
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class ResNet(nn.Module):
    """Stem -> layer1..layer4 -> global average pool -> fc.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage, e.g. ``[3, 4, 6, 3]`` for ResNet-34.
        num_classes: output classes.
        in_channels: input channels.
        shortcut: "A" (zero-padding identity, no parameters), "B" (projection where the shape
            changes; torchvision's) or "C" (projection on every block).
        stem: "imagenet" (7x7 stride 2 + 3x3 max-pool) or "cifar" (3x3 stride 1, no max-pool).
        zero_init_residual: start each block's last BN at zero (Goyal et al. 2017).
    """

    def __init__(self, block: Type[BasicBlock | Bottleneck], layers: list[int], num_classes: int = 1000,
                 in_channels: int = 3, shortcut: str = "B", stem: str = "imagenet",
                 zero_init_residual: bool = False) -> None:
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {', '.join(SHORTCUTS)}, got {shortcut!r}")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {', '.join(STEMS)}, got {stem!r}")
        self.shortcut = shortcut
        self.inplanes = 64
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block: Type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = []
        for i in range(blocks):
            s = stride if i == 0 else 1
            downsample = make_shortcut(self.shortcut, self.inplanes, planes * block.expansion, s, nn.BatchNorm2d)
            layers.append(block(self.inplanes, planes, s, downsample))
            self.inplanes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)  # (N, 64, H/2, W/2) with the ImageNet stem
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)  # (N, 64, H/4, W/4)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)  # (N, 512*expansion, H/32, W/32)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)  # (N, 512*expansion)
        return self.fc(x)


def _main_path_geometry(model: ResNet) -> list[tuple]:
    """Stem and each block's main-path convs, for checking that ``input_size`` survives."""
    return [layer for layer in spatial_geometry(model) if ".downsample" not in layer[0]]


def _resnet(name: str, block: Type[BasicBlock | Bottleneck], layers: list[int], *, num_classes: int,
            in_channels: int, input_size: int, shortcut: str, stem: str, zero_init_residual: bool) -> ResNet:
    model = ResNet(block, layers, num_classes=num_classes, in_channels=in_channels, shortcut=shortcut, stem=stem,
                   zero_init_residual=zero_init_residual)
    feature_side(input_size, _main_path_geometry(model), model=name)  # raises, naming the layer, if too small
    return model


@register_model("resnet18", family="resnet", num_classes=1000, in_channels=3, input_size=224, paper=PAPER)
def resnet18(*, num_classes: int, in_channels: int, input_size: int, shortcut: str = "B", stem: str = "imagenet",
             zero_init_residual: bool = False) -> ResNet:
    """ResNet-18: BasicBlock x [2, 2, 2, 2].

    From "Deep Residual Learning for Image Recognition", https://arxiv.org/abs/1512.03385.

    Args:
        num_classes: output classes (1000 for ImageNet).
        in_channels: input channels (3 for RGB).
        input_size: side of the square input; checked against the stem and strides.
        shortcut: "A" zero-padding identity, "B" projection where the shape changes, "C" projection everywhere.
        stem: "imagenet" (7x7/2 conv + 3x3/2 max-pool) or "cifar" (3x3/1 conv, no max-pool).
        zero_init_residual: start each block's last BN at zero.
    """
    return _resnet("resnet18", BasicBlock, [2, 2, 2, 2], num_classes=num_classes, in_channels=in_channels,
                   input_size=input_size, shortcut=shortcut, stem=stem, zero_init_residual=zero_init_residual)


@register_model("resnet34", family="resnet", num_classes=1000, in_channels=3, input_size=224, paper=PAPER)
def resnet34(*, num_classes: int, in_channels: int, input_size: int, shortcut: str = "B", stem: str = "imagenet",
             zero_init_residual: bool = False) -> ResNet:
    """ResNet-34: BasicBlock x [3, 4, 6, 3].

    From "Deep Residual Learning for Image Recognition", https://arxiv.org/abs/1512.03385.

    Args:
        num_classes: output classes (1000 for ImageNet).
        in_channels: input channels (3 for RGB).
        input_size: side of the square input; checked against the stem and strides.
        shortcut: "A" zero-padding identity, "B" projection where the shape changes, "C" projection everywhere.
        stem: "imagenet" (7x7/2 conv + 3x3/2 max-pool) or "cifar" (3x3/1 conv, no max-pool).
        zero_init_residual: start each block's last BN at zero.
    """
    return _resnet("resnet34", BasicBlock, [3, 4, 6, 3], num_classes=num_classes, in_channels=in_channels,
                   input_size=input_size, shortcut=shortcut, stem=stem, zero_init_residual=zero_init_residual)


@register_model("resnet50", family="resnet", num_classes=1000, in_channels=3, input_size=224, paper=PAPER)
def resnet50(*, num_classes: int, in_channels: int, input_size: int, shortcut: str = "B", stem: str = "imagenet",
             zero_init_residual: bool = False) -> ResNet:
    """ResNet-50: Bottleneck x [3, 4, 6, 3].

    From "Deep Residual Learning for Image Recognition", https://arxiv.org/abs/1512.03385.

    Args:
        num_classes: output classes (1000 for ImageNet).
        in_channels: input channels (3 for RGB).
        input_size: side of the square input; checked against the stem and strides.
        shortcut: "A" zero-padding identity, "B" projection where the shape changes, "C" projection everywhere.
        stem: "imagenet" (7x7/2 conv + 3x3/2 max-pool) or "cifar" (3x3/1 conv, no max-pool).
        zero_init_residual: start each block's last BN at zero.
    """
    return _resnet("resnet50", Bottleneck, [3, 4, 6, 3], num_classes=num_classes, in_channels=in_channels,
                   input_size=input_size, shortcut=shortcut, stem=stem, zero_init_residual=zero_init_residual)


@register_model("resnet101", family="resnet", num_classes=1000, in_channels=3, input_size=224, paper=PAPER)
def resnet101(*, num_classes: int, in_channels: int, input_size: int, shortcut: str = "B", stem: str = "imagenet",
              zero_init_residual: bool = False) -> ResNet:
    """ResNet-101: Bottleneck x [3, 4, 23, 3].

    From "Deep Residual Learning for Image Recognition", https://arxiv.org/abs/1512.03385.

    Args:
        num_classes: output classes (1000 for ImageNet).
        in_channels: input channels (3 for RGB).
        input_size: side of the square input; checked against the stem and strides.
        shortcut: "A" zero-padding identity, "B" projection where the shape changes, "C" projection everywhere.
        stem: "imagenet" (7x7/2 conv + 3x3/2 max-pool) or "cifar" (3x3/1 conv, no max-pool).
        zero_init_residual: start each block's last BN at zero.
    """
    return _resnet("resnet101", Bottleneck, [3, 4, 23, 3], num_classes=num_classes, in_channels=in_channels,
                   input_size=input_size, shortcut=shortcut, stem=stem, zero_init_residual=zero_init_residual)


@register_model("resnet152", family="resnet", num_classes=1000, in_channels=3, input_size=224, paper=PAPER)
def resnet152(*, num_classes: int, in_channels: int, input_size: int, shortcut: str = "B", stem: str = "imagenet",
              zero_init_residual: bool = False) -> ResNet:
    """ResNet-152: Bottleneck x [3, 8, 36, 3].

    From "Deep Residual Learning for Image Recognition", https://arxiv.org/abs/1512.03385.

    Args:
        num_classes: output classes (1000 for ImageNet).
        in_channels: input channels (3 for RGB).
        input_size: side of the square input; checked against the stem and strides.
        shortcut: "A" zero-padding identity, "B" projection where the shape changes, "C" projection everywhere.
        stem: "imagenet" (7x7/2 conv + 3x3/2 max-pool) or "cifar" (3x3/1 conv, no max-pool).
        zero_init_residual: start each block's last BN at zero.
    """
    return _resnet("resnet152", Bottleneck, [3, 8, 36, 3], num_classes=num_classes, in_channels=in_channels,
                   input_size=input_size, shortcut=shortcut, stem=stem, zero_init_residual=zero_init_residual)
