"""The lecture's resnet-blocks notebook: its residual block and two small residual networks
for 1x28x28 MNIST (Raschka, STAT 479 L13), one with identity and one with projection shortcuts."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.arithmetic import feature_side
from cnnlab.models._registry import register_model

__all__ = ["ResidualBlock", "ResBlocksIdentity", "ResBlocksProjection", "resblocks_identity", "resblocks_projection"]


class ResidualBlock(nn.Module):
    """The lecture's resnet-blocks notebook block: ``relu(block(x) + shortcut(x))``.

    Args:
        channels: ``[in, mid, out]`` channels of the two convs.
        kernels: kernel sizes of the two convs ("same" padding for odd kernels).
        stride: stride of the first conv (and of the projection).
        projection: 1x1 conv + BN on the shortcut (needed when the shape changes); else identity.
    """

    def __init__(self, channels: tuple[int, int, int] | list[int], kernels: tuple[int, int] = (3, 1),
                 stride: int = 1, projection: bool = True) -> None:
        super().__init__()
        c_in, c_mid, c_out = channels
        k1, k2 = kernels
        self.block = nn.Sequential(
            nn.Conv2d(c_in, c_mid, kernel_size=k1, stride=stride, padding=(k1 - 1) // 2),
            nn.BatchNorm2d(c_mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_mid, c_out, kernel_size=k2, stride=1, padding=(k2 - 1) // 2),
            nn.BatchNorm2d(c_out),
        )
        if projection:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, padding=0),  # no ReLU on the shortcut
                nn.BatchNorm2d(c_out),
            )
        else:
            if stride != 1 or c_in != c_out:
                raise ValueError(f"an identity shortcut needs the same shape: {c_in}->{c_out}, stride {stride}")
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.block(x) + self.shortcut(x))


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
