"""Inception v3 (Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision",
https://arxiv.org/abs/1512.00567), its blocks by the figures of the paper and the network as a table.

Built as torchvision builds it (same modules, same ``state_dict`` keys, same outputs), 299 px input.
Blocks A-E are the paper's Figures 5, 6 (with n = 7), 7 and the two grid reductions (Figure 10 and
torchvision's 8x8 reduction); every conv is conv (no bias) -> BN -> ReLU (:class:`BasicConv2d`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.models._paths import path_side
from cnnlab.models._registry import register_model
from cnnlab.models.googlenet import BasicConv2d, init_inception, transform_input

__all__ = ["InceptionA", "InceptionB", "InceptionC", "InceptionD", "InceptionE", "InceptionAux", "Inception3",
           "InceptionOutputs", "STEM", "BLOCKS", "inception_v3"]

PAPER = "Szegedy et al. 2016, arXiv:1512.00567"


class InceptionOutputs(NamedTuple):
    logits: torch.Tensor
    aux_logits: torch.Tensor | None


class InceptionA(nn.Module):
    """35x35 block (Figure 5): 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg-pool -> 1x1."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([branch1x1, branch5x5, branch3x3dbl, branch_pool], 1)  # (N, 224 + pool_features, H, W)


class InceptionB(nn.Module):
    """35 -> 17 grid reduction (Figure 10): 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max-pool/2."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3(x)
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([branch3x3, branch3x3dbl, branch_pool], 1)  # (N, 480 + C_in, H', W')


class InceptionC(nn.Module):
    """17x17 block (Figure 6, n = 7): 7x7 convolutions factorised into 1x7 and 7x1."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            branch7x7dbl = conv(branch7x7dbl)
        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([branch1x1, branch7x7, branch7x7dbl, branch_pool], 1)  # (N, 768, H, W)


class InceptionD(nn.Module):
    """17 -> 8 grid reduction: 1x1 -> 3x3/2 | 1x1 -> 1x7 -> 7x1 -> 3x3/2 | max-pool/2."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_1(x)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            branch7x7x3 = conv(branch7x7x3)
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([branch3x3, branch7x7x3, branch_pool], 1)  # (N, 512 + C_in, H', W')


class InceptionE(nn.Module):
    """8x8 block (Figure 7): the 3x3 outputs split into parallel 1x3 and 3x1 (expanded filter banks)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)
        b = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(b), self.branch3x3_2b(b)], 1)  # (N, 768, H, W)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b)], 1)  # (N, 768, H, W)
        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([branch1x1, branch3x3, branch3x3dbl, branch_pool], 1)  # (N, 2048, H, W)


class InceptionAux(nn.Module):
    """Auxiliary classifier on the 17x17 grid: 5x5/3 average pool -> 1x1 (128) -> 5x5 (768) -> fc."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = BasicConv2d(in_channels, 128, kernel_size=1)
        self.conv1 = BasicConv2d(128, 768, kernel_size=5)
        self.conv1.stddev = 0.01  # type: ignore[assignment]  # torchvision's init reads these
        self.fc = nn.Linear(768, num_classes)
        self.fc.stddev = 0.001  # type: ignore[assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, kernel_size=5, stride=3)  # (N, 768, 5, 5) at 299 px
        x = self.conv1(self.conv0(x))  # (N, 768, 1, 1)
        x = F.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)  # (N, 768)
        return self.fc(x)


# The stem, Table 1 of the paper: (name, out_channels, kernel, stride, padding); "pool" a 3x3/2 max-pool.
STEM: list[tuple] = [
    ("Conv2d_1a_3x3", 32, 3, 2, 0),  # 299 -> 149
    ("Conv2d_2a_3x3", 32, 3, 1, 0),  # 149 -> 147
    ("Conv2d_2b_3x3", 64, 3, 1, 1),  # 147 -> 147
    ("maxpool1",),                   # 147 -> 73
    ("Conv2d_3b_1x1", 80, 1, 1, 0),
    ("Conv2d_4a_3x3", 192, 3, 1, 0),  # 73 -> 71
    ("maxpool2",),                    # 71 -> 35
]
# The inception blocks: (name, block, in_channels, extra argument or None).
BLOCKS: list[tuple] = [
    ("Mixed_5b", InceptionA, 192, 32), ("Mixed_5c", InceptionA, 256, 64), ("Mixed_5d", InceptionA, 288, 64),  # 35x35
    ("Mixed_6a", InceptionB, 288, None),  # 35 -> 17
    ("Mixed_6b", InceptionC, 768, 128), ("Mixed_6c", InceptionC, 768, 160), ("Mixed_6d", InceptionC, 768, 160),
    ("Mixed_6e", InceptionC, 768, 192),
    ("Mixed_7a", InceptionD, 768, None),  # 17 -> 8
    ("Mixed_7b", InceptionE, 1280, None), ("Mixed_7c", InceptionE, 2048, None),
]
AUX_AFTER = "Mixed_6e"


class Inception3(nn.Module):
    """:data:`STEM` -> :data:`BLOCKS` (auxiliary head after Mixed_6e) -> global pool -> dropout -> fc.

    In training mode with ``aux_logits`` the forward returns :class:`InceptionOutputs`
    ``(logits, aux_logits)`` as torchvision's does; otherwise the logits.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = False,
                 transform_input: bool = False, dropout: float = 0.5) -> None:
        super().__init__()
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        for name, *spec in STEM:
            if not spec:
                setattr(self, name, nn.MaxPool2d(kernel_size=3, stride=2))
                continue
            out_channels, k, s, p = spec
            setattr(self, name, BasicConv2d(in_channels, out_channels, kernel_size=k, stride=s, padding=p))
            in_channels = out_channels
        for name, block, block_in, extra in BLOCKS:
            setattr(self, name, block(block_in) if extra is None else block(block_in, extra))
            if name == AUX_AFTER:
                self.AuxLogits = InceptionAux(768, num_classes) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(2048, num_classes)
        init_inception(self, std=0.1)  # torchvision's; the aux head's conv1 and fc set their own stddev

    def forward(self, x: torch.Tensor) -> torch.Tensor | InceptionOutputs:
        if self.transform_input:
            x = transform_input(x)
        for name, *_ in STEM:
            x = getattr(self, name)(x)  # (N, 192, 35, 35) at 299 px after the stem
        aux = None
        for name, *_ in BLOCKS:
            x = getattr(self, name)(x)  # 35x35x288 -> 17x17x768 -> 8x8x2048
            if name == AUX_AFTER and self.AuxLogits is not None and self.training:
                aux = self.AuxLogits(x)
        x = self.avgpool(x)
        x = self.dropout(x)
        x = torch.flatten(x, 1)  # (N, 2048)
        x = self.fc(x)
        if self.training and self.aux_logits:
            return InceptionOutputs(x, aux)
        return x


# the stem and the strided branch of each grid reduction (the other branches give the same side)
MAIN_PATH = ("Conv2d_1a_3x3.conv", "Conv2d_2a_3x3.conv", "Conv2d_2b_3x3.conv", "maxpool1", "Conv2d_3b_1x1.conv",
             "Conv2d_4a_3x3.conv", "maxpool2", "Mixed_6a.branch3x3.conv", "Mixed_7a.branch3x3_2.conv")


@register_model("inception_v3", family="inception", num_classes=1000, in_channels=3, input_size=299, paper=PAPER)
def inception_v3(*, num_classes: int, in_channels: int, input_size: int, aux_logits: bool = False,
                 transform_input: bool = False, dropout: float = 0.5) -> Inception3:
    """Inception v3, torchvision's layout (23,834,568 parameters at 1000 classes; 27,161,264 with ``aux_logits``).

    From "Rethinking the Inception Architecture for Computer Vision", https://arxiv.org/abs/1512.00567.
    torchvision builds it with the auxiliary head by default (its documented 27,161,264);
    here it is an option, off by default, since it only acts in training.

    Args:
        num_classes: output classes (1000 for ImageNet).
        in_channels: input channels (3 for RGB; ``transform_input`` needs 3).
        input_size: side of the square input (299 in the paper); checked against the stem and reductions.
        aux_logits: add the auxiliary classifier after Mixed_6e (used in training mode only).
        transform_input: re-normalise ImageNet-normalised input to [-1, 1] (torchvision's pretrained weights want it).
        dropout: dropout before the final fc.
    """
    if transform_input and in_channels != 3:
        raise ValueError(f"transform_input re-normalises RGB input and needs in_channels=3, got {in_channels}")
    model = Inception3(num_classes=num_classes, in_channels=in_channels, aux_logits=aux_logits,
                       transform_input=transform_input, dropout=dropout)
    path_side(model, MAIN_PATH, input_size, label="inception_v3")  # raises, naming the layer, if too small
    return model
