"""ENet for ImageNet: the ENet bottleneck (Paszke, Chaurasia, Kim & Culurciello 2016, "ENet: A Deep
Neural Network Architecture for Real-Time Semantic Segmentation", https://arxiv.org/abs/1606.02147)
stacked into a classifier, the "ENet" of Canziani, Paszke & Culurciello 2016 (arXiv:1605.07678 v3+).

Source: ``models/enet.lua`` ("ENet version 14 == for ImageNet", E. Culurciello and A. Paszke) of
e-lab/imagenet-multiGPU.torch, the Torch7 ImageNet trainer of the authors' lab, as of February
2017, when the paper's v3 added "ENet for ImageNet". It is not the segmentation encoder: it keeps
the initial block and the bottleneck, but has four stages of three bottlenecks (64 -> 1024 channels,
ReLU-free: every activation a PReLU), then a global average pool and one linear layer.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from cnnlab.models._paths import path_side
from cnnlab.models._registry import register_model
from cnnlab.models.resnet import ZeroPadShortcut

__all__ = ["InitialBlock", "ENetBottleneck", "ENet", "STAGES", "enet"]

SOURCE = ("Paszke et al. 2016, arXiv:1606.02147; ENet for ImageNet of e-lab/imagenet-multiGPU.torch "
          "(models/enet.lua), as measured by Canziani et al. 2016, arXiv:1605.07678")

# The bottlenecks of enet.lua, by stage: (out_channels, internal_scale, downsample). The inner
# width is out_channels / internal_scale; the first ("ibottleneck") widens 16 -> 64 without reducing.
STAGES: list[list[tuple[int, int, bool]]] = [
    [(64, 1, True), (128, 4, False), (128, 4, False)],      # 112 -> 56 at 224 px
    [(256, 4, True), (256, 4, False), (256, 4, False)],     # 56 -> 28
    [(512, 4, True), (512, 4, False), (512, 4, False)],     # 28 -> 14
    [(1024, 4, True), (1024, 4, False), (1024, 4, False)],  # 14 -> 7
]


class InitialBlock(nn.Module):
    """3x3/2 conv (13 filters) beside a 2x2/2 max-pool of the input, concatenated -> BN -> PReLU.

    The pool rounds up (``ceil_mode``) so that an odd side gives the conv's ``ceil(H/2)`` too;
    at even sides (224) it is Torch7's floor pool.
    """

    def __init__(self, in_channels: int, conv_channels: int = 13) -> None:
        super().__init__()
        out_channels = conv_channels + in_channels  # 16 for RGB
        self.conv = nn.Conv2d(in_channels, conv_channels, kernel_size=3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3)
        self.prelu = nn.PReLU(out_channels)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.conv(x), self.pool(x)], 1)  # (N, 13 + C_in, H/2, W/2)
        return self.prelu(self.bn(x))


class ENetBottleneck(nn.Module):
    """ENet's bottleneck: main branch 1x1 (2x2/2 when downsampling) -> 3x3 -> 1x1 -> spatial dropout,
    each conv with BN and PReLU; the other branch max-pools (when downsampling) and zero-pads the
    channels; ``prelu(main + other)``."""

    def __init__(self, in_channels: int, out_channels: int, internal_scale: int = 4, downsample: bool = False,
                 dropout: float = 0.1) -> None:
        super().__init__()
        internal = out_channels // internal_scale
        s = 2 if downsample else 1
        self.reduce = nn.Conv2d(in_channels, internal, kernel_size=s, stride=s, bias=False)
        self.bn1 = nn.BatchNorm2d(internal, eps=1e-3)
        self.prelu1 = nn.PReLU(internal)
        self.conv = nn.Conv2d(internal, internal, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(internal, eps=1e-3)
        self.prelu2 = nn.PReLU(internal)
        self.expand = nn.Conv2d(internal, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels, eps=1e-3)
        self.dropout = nn.Dropout2d(dropout)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2) if downsample else None
        self.pad = ZeroPadShortcut(in_channels, out_channels) if in_channels != out_channels else None
        self.prelu = nn.PReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.prelu1(self.bn1(self.reduce(x)))  # (N, internal, H/s, W/s)
        out = self.prelu2(self.bn2(self.conv(out)))
        out = self.dropout(self.bn3(self.expand(out)))  # (N, out, H/s, W/s)
        if self.pool is not None:
            identity = self.pool(identity)
        if self.pad is not None:
            identity = self.pad(identity)  # extra channels all zero
        out += identity
        return self.prelu(out)


class ENet(nn.Module):
    """``initial`` -> ``stage1`` ... ``stage4`` (:data:`STAGES`) -> global average pool -> ``fc``."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        self.initial = InitialBlock(in_channels)
        width, count = self.initial.out_channels, 0
        for i, stage in enumerate(STAGES, start=1):
            blocks = []
            for out_channels, scale, downsample in stage:
                dropout = 0.01 if count < 5 else 0.1  # enet.lua: 0.01 for the first five bottlenecks
                blocks.append(ENetBottleneck(width, out_channels, scale, downsample=downsample, dropout=dropout))
                width, count = out_channels, count + 1
            setattr(self, f"stage{i}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))  # enet.lua: a 7x7 average pool, the whole map at 224 px
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.initial(x)  # (N, 16, 112, 112) at 224 px
        x = self.stage1(x)  # (N, 128, 56, 56)
        x = self.stage2(x)  # (N, 256, 28, 28)
        x = self.stage3(x)  # (N, 512, 14, 14)
        x = self.stage4(x)  # (N, 1024, 7, 7)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)  # (N, 1024)
        return self.fc(x)


MAIN_PATH = ("initial.conv",) + tuple(f"stage{i}.0.reduce" for i in range(1, len(STAGES) + 1))


@register_model("enet", family="enet", num_classes=1000, in_channels=3, input_size=224, paper=SOURCE)
def enet(*, num_classes: int, in_channels: int, input_size: int) -> ENet:
    """ENet for ImageNet, as Canziani et al. 2016 measured it (see the module's docstring for the source).

    The bottleneck of "ENet: A Deep Neural Network Architecture for Real-Time Semantic
    Segmentation", https://arxiv.org/abs/1606.02147, in the classifier of e-lab's ``models/enet.lua``.

    Args:
        num_classes: output classes (1000 for ImageNet).
        in_channels: input channels (3 for RGB; the initial block concatenates them to its 13 filters).
        input_size: side of the square input; checked against the five stride-2 stages.
    """
    model = ENet(num_classes=num_classes, in_channels=in_channels)
    path_side(model, MAIN_PATH, input_size, label="enet")  # raises, naming the layer, if too small
    return model
