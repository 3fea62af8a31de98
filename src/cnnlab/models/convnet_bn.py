"""A small BatchNorm ConvNet for time-to-accuracy on MNIST (the ``mnist-fast`` / ``mnist-best`` recipes).

The lecture's ConvNet (two 3x3 convs, max-pools, a linear head) grown by the tricks of the speed-run
literature (airbench, Keller Jordan 2024; Page's DAWNBench ResNet): BatchNorm after every conv,
widths doubling per stage, pooling *before* BatchNorm and ReLU (4x fewer elements to normalise),
a global max-pool, no biases where BatchNorm follows.

    conv_1  6x6 stride 2, padding 2   28x28x1  => 14x14xw    o = floor((28 + 2*2 - 6)/2) + 1 = 14
    conv_2  3x3, padding 1, pool 2    14x14xw  => 7x7x2w
    conv_3  3x3, padding 1, pool 2    7x7x2w   => 3x3x4w     (floor(7/2) = 3)
    max over 3x3, linear              4w       => classes

The 6x6 stride-2 stem sees the same pixels as a 3x3 conv over ``pixel_unshuffle(x, 2)`` (each output
covers input rows 2i-2 ... 2i+3) with the same 36 weights per filter; it halves the side before the
first wide layer, which is where a 28x28 network spends its time on a CPU.

``stem_padding=0`` drops the stem's zero ring: on the 24x24 crop its 10x10 outputs still cover every
pixel (rows 2i ... 2i+5), and every later map shrinks (10 -> 5 -> 2 instead of 12 -> 6 -> 3), 0.7x the
operations of the wide layers at the same parameters. With ``ceil_mode=True`` the 2x2 max-pools keep an
odd map's last row and column (PyTorch's ``ceil_mode``: 5 -> 3, not 2), which the global max then reads.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.arithmetic import feature_side
from cnnlab.models._registry import register_model

__all__ = ["BorderCrop", "ConvNetBN", "convnet_bn"]


class BorderCrop(nn.Module):
    """Cut ``pixels`` rows and columns from every border of an (N, C, H, W) batch: a fixed centre crop,
    e.g. MNIST's 28x28 to the 24x24 that holds its digits (they are size-normalised to 20x20 and
    centred by their centre of mass, so the outer 2 pixels are almost always blank)."""

    def __init__(self, pixels: int):
        super().__init__()
        if pixels < 1:
            raise ValueError(f"pixels must be a positive integer, got {pixels}")
        self.pixels = pixels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.pixels
        return x[:, :, c:-c, c:-c]

    def extra_repr(self) -> str:
        return f"pixels={self.pixels}"


class ConvNetBN(nn.Module):
    """conv6x6/2(w)-BN-ReLU -> conv3x3(2w)-pool-BN-ReLU -> conv3x3(4w)-pool-BN-ReLU -> global max -> linear.

    Args:
        num_classes: number of output classes.
        in_channels: input channels (1 for MNIST).
        input_size: side of the square input (checked by :func:`cnnlab.arithmetic.feature_side`;
            the global max-pool makes the head independent of it).
        width: channels of the first stage; the next two have ``2 * width`` and ``4 * width``.
        crop: pixels cut from every border first (:class:`BorderCrop`).
        stem_padding: zero padding of the 6x6 stride-2 stem (2: output side = input side / 2).
        ceil_mode: the 2x2 max-pools round up (an odd map's last row and column are pooled, not dropped).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28, width: int = 16,
                 crop: int = 0, stem_padding: int = 2, ceil_mode: bool = False):
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be a positive integer, got {width}")
        if crop < 0 or 2 * crop >= input_size:
            raise ValueError(f"crop must be between 0 and {(input_size - 1) // 2} for {input_size}-pixel inputs, got {crop}")
        if stem_padding not in (0, 1, 2):
            raise ValueError(f"stem_padding must be 0, 1 or 2, got {stem_padding}")
        w1, w2, w3 = width, 2 * width, 4 * width
        self.crop = BorderCrop(crop) if crop else nn.Identity()  # 28x28 => (28-2c)x(28-2c)
        self.conv_1 = nn.Conv2d(in_channels, w1, kernel_size=6, stride=2, padding=stem_padding,
                                bias=False)  # 28x28x1 => 14x14xw (padding 2)
        self.bn_1 = nn.BatchNorm2d(w1)
        self.conv_2 = nn.Conv2d(w1, w2, kernel_size=3, padding=1, bias=False)  # 14x14xw => 14x14x2w
        self.pool_2 = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=ceil_mode)  # 14x14x2w => 7x7x2w
        self.bn_2 = nn.BatchNorm2d(w2)
        self.conv_3 = nn.Conv2d(w2, w3, kernel_size=3, padding=1, bias=False)  # 7x7x2w => 7x7x4w
        self.pool_3 = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=ceil_mode)  # 7x7x4w => 3x3x4w (4x4 ceil)
        self.bn_3 = nn.BatchNorm2d(w3)
        self.pool = nn.AdaptiveMaxPool2d(1)  # 3x3x4w => 1x1x4w
        self.linear = nn.Linear(w3, num_classes, bias=False)
        pool = (0, 1) if ceil_mode else 0  # rounding up = one more row and column of padding after
        feature_side(input_size - 2 * crop, [("conv_1", 6, 2, stem_padding), ("conv_2", 3, 1, 1), ("pool_2", 2, 2, pool),
                                             ("conv_3", 3, 1, 1), ("pool_3", 2, 2, pool)], model="convnet_bn")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.crop(x)  # (N, C, H - 2c, W - 2c)
        x = F.relu(self.bn_1(self.conv_1(x)))  # (N, w, 14, 14)
        x = F.relu(self.bn_2(self.pool_2(self.conv_2(x))))  # (N, 2w, 7, 7)
        x = F.relu(self.bn_3(self.pool_3(self.conv_3(x))))  # (N, 4w, 3, 3)
        x = torch.flatten(self.pool(x), 1)  # (N, 4w)
        return self.linear(x)  # (N, num_classes)


@register_model(
    "convnet_bn",
    family="fast",
    num_classes=10,
    in_channels=1,
    input_size=28,
    paper="cnnlab's time-to-accuracy ConvNet (after airbench, Jordan 2024, arXiv:2404.00498)",
)
def convnet_bn(*, num_classes: int, in_channels: int, input_size: int, width: int = 16, crop: int = 0,
               stem_padding: int = 2, ceil_mode: bool = False) -> ConvNetBN:
    """Small BatchNorm ConvNet for fast MNIST (24,480 parameters at width 16; -o width=24 for mnist-best;
    -o crop=2 looks at the central 24x24 only, 0.73x the operations; -o stem_padding=0 drops the stem's
    zero ring, 0.7x again; -o ceil_mode=true pools an odd map's last row and column too)."""
    return ConvNetBN(num_classes=num_classes, in_channels=in_channels, input_size=input_size, width=width, crop=crop,
                     stem_padding=stem_padding, ceil_mode=ceil_mode)
