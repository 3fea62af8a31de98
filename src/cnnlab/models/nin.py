"""Network in Network with batch norm (Lin, Chen & Yan 2013, "Network In Network",
https://arxiv.org/abs/1312.4400), the ImageNet BN-NIN that Canziani et al. 2016 measured.

Each "mlpconv" block is a spatial conv followed by two 1x1 convs (the paper's micro network,
a small MLP slid over the map), each conv -> BN -> ReLU. The blocks are data: :data:`cfg`.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from cnnlab.arithmetic import feature_side
from cnnlab.geometry import spatial_geometry
from cnnlab.models._registry import register_model

__all__ = ["NIN", "cfg", "make_features", "nin_bn"]

SOURCE = ("Lin et al. 2013, arXiv:1312.4400; BN-NIN of Torch7's imagenet-multiGPU.torch (models/ninbn.lua), "
          "as measured by Canziani et al. 2016, arXiv:1605.07678")

# (out_channels, kernel, stride, padding) of each mlpconv block's first conv (two 1x1 convs follow);
# "M" a 3x3 max-pool with stride 2 and padding 1.
cfg: list[tuple[int, int, int, int] | str] = [
    (96, 11, 4, 5), "M",    # 224 -> 56 -> 28
    (256, 5, 1, 2), "M",    # 28 -> 28 -> 14
    (384, 3, 1, 1), "M",    # 14 -> 14 -> 7
    (1024, 3, 1, 1),        # 7 -> 7, then global average pooling
]


def _conv_bn_relu(in_channels: int, out_channels: int, k: int, s: int, p: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, kernel_size=k, stride=s, padding=p),
            nn.BatchNorm2d(out_channels, eps=1e-3),  # Torch7's eps, as in ninbn.lua
            nn.ReLU(inplace=True)]


def make_features(in_channels: int) -> nn.Sequential:
    """Interpret :data:`cfg`: a block is conv(k) -> 1x1 -> 1x1, each with BN and ReLU."""
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
            continue
        out_channels, k, s, p = v
        layers += _conv_bn_relu(in_channels, out_channels, k, s, p)
        layers += _conv_bn_relu(out_channels, out_channels, 1, 1, 0)
        layers += _conv_bn_relu(out_channels, out_channels, 1, 1, 0)
        in_channels = out_channels
    return nn.Sequential(*layers)


class NIN(nn.Module):
    """``features`` (four mlpconv blocks) -> global average pool -> ``fc``.

    Torch7's file pools 7x7 (the map at 224 px); a global pool is the same there and takes
    any input size. The ImageNet BN-NIN ends in a linear layer, not in a class-wide mlpconv.
    """

    def __init__(self, features: nn.Sequential, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (N, 1024, 7, 7) at 224 px
        x = self.avgpool(x)
        x = torch.flatten(x, 1)  # (N, 1024)
        return self.fc(x)


@register_model("nin_bn", family="nin", num_classes=1000, in_channels=3, input_size=224, paper=SOURCE)
def nin_bn(*, num_classes: int, in_channels: int, input_size: int) -> NIN:
    """BN-NIN: Network in Network with batch norm, for ImageNet (8,655,336 parameters at 1000 classes).

    "Network In Network", https://arxiv.org/abs/1312.4400, in the batch-normalised ImageNet form
    of Torch7's ImageNet trainer (soumith/imagenet-multiGPU.torch and its fork in the authors' lab,
    e-lab/imagenet-multiGPU.torch, ``models/ninbn.lua``; 62.6% top-1 noted there), which is the
    BN-NIN of Canziani et al. 2016 (https://arxiv.org/abs/1605.07678; the paper names Torch7, not
    the file). Blocks of 96, 256, 384 and 1024 channels, 3x3/2 max-pools with padding 1.

    Args:
        num_classes: output classes (1000 for ImageNet).
        in_channels: input channels (3 for RGB).
        input_size: side of the square input; checked against the convs and pools.
    """
    features = make_features(in_channels)
    feature_side(input_size, spatial_geometry(features, "features"), model="nin_bn")  # raises if too small
    return NIN(features, num_classes=num_classes)
