"""GoogLeNet, Inception v1 (Szegedy et al. 2015, "Going Deeper with Convolutions",
https://arxiv.org/abs/1409.4842), Table 1 of the paper as data.

Built as torchvision builds it, so its ``state_dict`` keys and outputs equal torchvision's:
every conv is a :class:`BasicConv2d` (conv without bias -> BN -> ReLU; the paper predates batch
norm), and the "5x5" branch uses a 3x3 kernel (torchvision's weights were trained so; see
pytorch/vision#906). The two auxiliary classifiers are optional (``aux_logits``) and off by default.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.models._paths import path_side
from cnnlab.models._registry import register_model

__all__ = ["BasicConv2d", "Inception", "InceptionAux", "GoogLeNet", "GoogLeNetOutputs", "INCEPTIONS", "googlenet",
           "init_inception", "transform_input"]

PAPER = "Szegedy et al. 2015, arXiv:1409.4842"

# Table 1 of the paper: in_channels, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
INCEPTIONS: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),     # 28x28
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),    # 14x14
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),  # 7x7
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}

# torchvision's ImageNet normalisation undone and Inception's (x - 0.5) / 0.5 applied (transform_input)
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def transform_input(x: torch.Tensor) -> torch.Tensor:
    """Re-normalise an ImageNet-normalised RGB batch to Inception's [-1, 1] scaling (torchvision's rule)."""
    channels = [x[:, c : c + 1] * (_STD[c] / 0.5) + (_MEAN[c] - 0.5) / 0.5 for c in range(3)]
    return torch.cat(channels, 1)


def init_inception(model: nn.Module, std: float) -> None:
    """torchvision's initialisation of GoogLeNet and Inception-v3: conv and linear weights from a normal
    truncated to [-2, 2] with ``std`` (or the layer's own ``stddev`` where it sets one), batch norm 1 and 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, mean=0.0, std=float(getattr(m, "stddev", std)), a=-2, b=2)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


class GoogLeNetOutputs(NamedTuple):
    logits: torch.Tensor
    aux_logits2: torch.Tensor | None
    aux_logits1: torch.Tensor | None


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BN (eps 1e-3) -> ReLU: every convolution of torchvision's GoogLeNet and Inception v3."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = self.bn(x)
        return F.relu(x, inplace=True)


class Inception(nn.Module):
    """Four parallel branches concatenated on channels: 1x1 | 1x1 -> 3x3 | 1x1 -> "5x5" | max-pool -> 1x1."""

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, kernel_size=1),
                                     BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))
        # the paper's 5x5; 3x3 as in torchvision, whose weights were trained with it
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5red, kernel_size=1),
                                     BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(in_channels, pool_proj, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(outputs, 1)  # (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)


class InceptionAux(nn.Module):
    """Auxiliary classifier on 4a and 4d: 4x4 average pool -> 1x1 conv (128) -> FC-1024 -> dropout -> FC."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(x, (4, 4))  # (N, C, 4, 4)
        x = self.conv(x)  # (N, 128, 4, 4)
        x = torch.flatten(x, 1)  # (N, 2048)
        x = F.relu(self.fc1(x), inplace=True)
        x = self.dropout(x)
        return self.fc2(x)


class GoogLeNet(nn.Module):
    """Stem (7x7/2 conv, pool, 1x1, 3x3, pool) -> inception 3a-3b, pool, 4a-4e, pool, 5a-5b -> global pool -> fc.

    In training mode with ``aux_logits`` the forward returns :class:`GoogLeNetOutputs`
    ``(logits, aux_logits2, aux_logits1)`` as torchvision's does; otherwise the logits.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = False,
                 transform_input: bool = False, dropout: float = 0.2, dropout_aux: float = 0.7) -> None:
        super().__init__()
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.conv1 = BasicConv2d(in_channels, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(*INCEPTIONS["inception3a"])
        self.inception3b = Inception(*INCEPTIONS["inception3b"])
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        for name in ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e"):
            setattr(self, name, Inception(*INCEPTIONS[name]))
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(*INCEPTIONS["inception5a"])
        self.inception5b = Inception(*INCEPTIONS["inception5b"])
        self.aux1 = InceptionAux(512, num_classes, dropout=dropout_aux) if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes, dropout=dropout_aux) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)
        init_inception(self, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:
        if self.transform_input:
            x = transform_input(x)
        x = self.maxpool1(self.conv1(x))  # (N, 64, 56, 56) at 224 px
        x = self.conv3(self.conv2(x))  # (N, 192, 56, 56)
        x = self.maxpool2(x)  # (N, 192, 28, 28)
        x = self.inception3b(self.inception3a(x))  # (N, 480, 28, 28)
        x = self.maxpool3(x)  # (N, 480, 14, 14)
        x = self.inception4a(x)  # (N, 512, 14, 14)
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))  # (N, 528, 14, 14)
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.inception4e(x)  # (N, 832, 14, 14)
        x = self.maxpool4(x)  # (N, 832, 7, 7)
        x = self.inception5b(self.inception5a(x))  # (N, 1024, 7, 7)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)  # (N, 1024)
        x = self.fc(self.dropout(x))
        if self.training and self.aux_logits:
            return GoogLeNetOutputs(x, aux2, aux1)
        return x


# the stem and pools: every inception block keeps the side (stride 1, "same" padding)
MAIN_PATH = ("conv1.conv", "maxpool1", "conv3.conv", "maxpool2", "maxpool3", "maxpool4")


@register_model("googlenet", family="inception", num_classes=1000, in_channels=3, input_size=224, paper=PAPER)
def googlenet(*, num_classes: int, in_channels: int, input_size: int, aux_logits: bool = False,
              transform_input: bool = False, dropout: float = 0.2, dropout_aux: float = 0.7) -> GoogLeNet:
    """GoogLeNet (Inception v1), torchvision's layout (6,624,904 parameters at 1000 classes without aux heads).

    From "Going Deeper with Convolutions", https://arxiv.org/abs/1409.4842.

    Args:
        num_classes: output classes (1000 for ImageNet).
        in_channels: input channels (3 for RGB; ``transform_input`` needs 3).
        input_size: side of the square input; checked against the stem and pools.
        aux_logits: add the two auxiliary classifiers (on 4a and 4d; used in training mode only).
        transform_input: re-normalise ImageNet-normalised input to [-1, 1] (torchvision's pretrained weights want it).
        dropout: dropout before the final fc.
        dropout_aux: dropout in the auxiliary classifiers.
    """
    if transform_input and in_channels != 3:
        raise ValueError(f"transform_input re-normalises RGB input and needs in_channels=3, got {in_channels}")
    model = GoogLeNet(num_classes=num_classes, in_channels=in_channels, aux_logits=aux_logits,
                      transform_input=transform_input, dropout=dropout, dropout_aux=dropout_aux)
    path_side(model, MAIN_PATH, input_size, label="googlenet")  # raises, naming the layer, if too small
    return model
