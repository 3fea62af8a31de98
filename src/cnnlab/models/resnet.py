"""ResNets (He, Zhang, Ren & Sun 2016, "Deep Residual Learning for Image Recognition",
https://arxiv.org/abs/1512.03385) as ``(block, layers)``, and the lecture's two small
residual networks for MNIST.

``state_dict`` keys equal torchvision's for the ImageNet stem and shortcut option B, so
``load_state_dict(torchvision.models.resnet50().state_dict())`` just works.
"""

from __future__ import annotations

from typing import Any, Type

import torch
import torch.nn as nn

from cnnlab.arithmetic import feature_side
from cnnlab.layers import SHORTCUTS, BasicBlock, Bottleneck, ResidualBlock, make_shortcut, spatial_geometry
from cnnlab.models._registry import register_model

__all__ = ["ResNet", "ResBlocksIdentity", "ResBlocksProjection"]

PAPER = "He et al. 2016, arXiv:1512.03385"
STEMS = ("imagenet", "cifar")


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


def _main_path_geometry(model: ResNet) -> list[tuple[str, int, int, int, int]]:
    """Stem and each block's main-path convs, for checking that ``input_size`` survives."""
    keep = []
    for name, k, s, p, d in spatial_geometry(model):
        if ".downsample" not in name:
            keep.append((name, k, s, p, d))
    return keep


def _resnet(name: str, block: Type[BasicBlock | Bottleneck], layers: list[int], *, num_classes: int,
            in_channels: int, input_size: int, **options: Any) -> ResNet:
    model = ResNet(block, layers, num_classes=num_classes, in_channels=in_channels, **options)
    feature_side(input_size, _main_path_geometry(model), model=name)  # raises, naming the layer, if too small
    return model


_SPECS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
    "resnet152": (Bottleneck, [3, 8, 36, 3]),
}


def _register(name: str) -> None:
    block, layers = _SPECS[name]

    def builder(*, num_classes: int, in_channels: int, input_size: int, shortcut: str = "B",
                stem: str = "imagenet", zero_init_residual: bool = False) -> ResNet:
        return _resnet(name, block, layers, num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                       shortcut=shortcut, stem=stem, zero_init_residual=zero_init_residual)

    depth = name.removeprefix("resnet")
    builder.__name__ = name
    builder.__doc__ = f"ResNet-{depth}: {block.__name__} x {layers}."
    register_model(name, family="resnet", num_classes=1000, in_channels=3, input_size=224, paper=PAPER)(builder)


for _name in _SPECS:
    _register(_name)


# ---------------------------------------------------------------------------------------
# The lecture's resnet-blocks notebook: two small residual networks for 1x28x28


class ResBlocksIdentity(nn.Module):
    """Two identity-shortcut blocks (conv1x1 C->4, BN, ReLU, conv3x3 4->C, BN; + input; ReLU),
    then a linear layer over the whole C x H x W map (28*28*1 -> 10 for MNIST)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> None:
        super().__init__()
        self.block_1 = ResidualBlock([in_channels, 4, in_channels], kernels=(1, 3), stride=1, projection=False)
        self.block_2 = ResidualBlock([in_channels, 4, in_channels], kernels=(1, 3), stride=1, projection=False)
        self.linear_1 = nn.Linear(in_channels * input_size * input_size, num_classes)  # 28*28*1 -> 10

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block_1(x)  # (N, C, 28, 28): "same" shape, so the input can be added
        x = self.block_2(x)
        return self.linear_1(torch.flatten(x, 1))


class ResBlocksProjection(nn.Module):
    """Two projection-shortcut blocks: [C->4 (3x3 s2), 4->8 (1x1)] with a 1x1 s2 C->8 shortcut,
    then [8->16 (3x3 s2), 16->32 (1x1)] with an 8->32 shortcut; linear 7*7*32 -> 10."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> None:
        super().__init__()
        self.block_1 = ResidualBlock([in_channels, 4, 8], kernels=(3, 1), stride=2, projection=True)
        self.block_2 = ResidualBlock([8, 16, 32], kernels=(3, 1), stride=2, projection=True)
        side = feature_side(input_size, [("block_1.block.0", 3, 2, 1), ("block_2.block.0", 3, 2, 1)],
                            model="resblocks_projection")
        self.linear_1 = nn.Linear(32 * side * side, num_classes)  # 7*7*32 for 28x28

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block_1(x)  # (N, 8, 14, 14)
        x = self.block_2(x)  # (N, 32, 7, 7)
        return self.linear_1(torch.flatten(x, 1))


@register_model("resblocks_identity", family="resblocks", num_classes=10, in_channels=1, input_size=28,
                paper="Raschka, STAT 479 L13 resnet-blocks notebook")
def resblocks_identity(*, num_classes: int, in_channels: int, input_size: int) -> ResBlocksIdentity:
    """The lecture's residual network with identity shortcuts (MNIST test 92.47% in its notebook)."""
    return ResBlocksIdentity(num_classes, in_channels, input_size)


@register_model("resblocks_projection", family="resblocks", num_classes=10, in_channels=1, input_size=28,
                paper="Raschka, STAT 479 L13 resnet-blocks notebook")
def resblocks_projection(*, num_classes: int, in_channels: int, input_size: int) -> ResBlocksProjection:
    """The lecture's residual network with 1x1 projection shortcuts (MNIST test 97.68% in its notebook)."""
    return ResBlocksProjection(num_classes, in_channels, input_size)

