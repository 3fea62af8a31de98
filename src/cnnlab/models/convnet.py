"""The lecture's simple ConvNet for MNIST (STAT 479 L13, "A Simple CNN in PyTorch").

Two "same" 3x3 convolutions, each followed by ReLU and a 2x2 max-pool, then one
linear layer. Layer names are the lecture's, so its notebook's weights load as they are.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.arithmetic import feature_side
from cnnlab.errors import check_type
from cnnlab.models._registry import register_model

__all__ = ["ConvNet", "ConvNetAllConv", "convnet", "convnet_allconv", "WithProbas", "with_probas"]


class ConvNet(nn.Module):
    """conv3x3(4)-ReLU-maxpool2 -> conv3x3(8)-ReLU-maxpool2 -> linear.

    Args:
        num_classes: number of output classes.
        in_channels: input channels (1 for MNIST).
        input_size: side of the square input; ``linear_1``'s width is computed from it.
        dropout2d: if > 0, spatial dropout (whole channels, Tompson et al. 2015) before
            each max-pool, as in the course homework.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28, dropout2d: float = 0.0):
        super().__init__()
        if not 0.0 <= dropout2d < 1.0:
            raise ValueError(f"dropout2d must be in [0, 1), got {dropout2d}")
        # "same" padding: p = (s(o-1) - i + k)/2 = (1*(28-1) - 28 + 3)/2 = 1
        self.conv_1 = nn.Conv2d(in_channels, 4, kernel_size=3, stride=1, padding=1)  # 28x28x1 => 28x28x4
        self.pool_1 = nn.MaxPool2d(kernel_size=2, stride=2, padding=0)  # 28x28x4 => 14x14x4
        self.conv_2 = nn.Conv2d(4, 8, kernel_size=3, stride=1, padding=1)  # 14x14x4 => 14x14x8
        self.pool_2 = nn.MaxPool2d(kernel_size=2, stride=2, padding=0)  # 14x14x8 => 7x7x8
        side = feature_side(
            input_size,
            [("conv_1", 3, 1, 1), ("pool_1", 2, 2, 0), ("conv_2", 3, 1, 1), ("pool_2", 2, 2, 0)],
            model="convnet",
        )
        self.flat_features = 8 * side * side  # 7*7*8 = 392 for 28x28 input
        self.linear_1 = nn.Linear(self.flat_features, num_classes)
        self.dropout2d = nn.Dropout2d(dropout2d) if dropout2d > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv_1(x))  # (N, 4, 28, 28)
        if self.dropout2d is not None:
            out = self.dropout2d(out)
        out = self.pool_1(out)  # (N, 4, 14, 14)
        out = F.relu(self.conv_2(out))  # (N, 8, 14, 14)
        if self.dropout2d is not None:
            out = self.dropout2d(out)
        out = self.pool_2(out)  # (N, 8, 7, 7)
        return self.linear_1(torch.flatten(out, 1))  # (N, 7*7*8) -> (N, num_classes)


class WithProbas(nn.Module):
    """Wraps a logits model so ``forward`` returns ``(logits, probas)`` like the lecture's."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = check_type(model, nn.Module, "model", "an nn.Module that returns logits")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(x)
        return logits, F.softmax(logits, dim=1)


def with_probas(model: nn.Module) -> WithProbas:
    """``(logits, probas)`` view of a model that returns logits (shares its parameters)."""
    return WithProbas(model)


@register_model(
    "convnet",
    family="convnet",
    num_classes=10,
    in_channels=1,
    input_size=28,
    paper="Raschka, STAT 479 Lecture 13 (2019)",
)
def convnet(*, num_classes: int, in_channels: int, input_size: int, dropout2d: float = 0.0) -> ConvNet:
    """The lecture's simple ConvNet (4,266 parameters for 1x28x28, 10 classes)."""
    return ConvNet(num_classes=num_classes, in_channels=in_channels, input_size=input_size, dropout2d=dropout2d)


class ConvNetAllConv(nn.Module):
    """The lecture's all-convolutional net (convnet-allconv notebook; Springenberg et al. 2015):
    seven 3x3 convs, the stride-2 ones replacing max-pooling, ReLU after each, then global
    average pooling over the last conv's ``num_classes`` maps -- no linear layer.

    ``final_relu=True`` is the notebook's forward (ReLU on the class maps too). It can kill a
    class for good: once a class's map is negative everywhere its logit is stuck at 0 and gets
    no gradient (seen here: class 9 never predicted, 87% test). ``final_relu=False`` leaves the
    class maps linear, as Springenberg et al. do before the softmax."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28, final_relu: bool = True):
        super().__init__()
        self.final_relu = final_relu
        spec = [(in_channels, 4, 1), (4, 4, 2), (4, 8, 1), (8, 8, 2), (8, 16, 1), (16, 16, 2), (16, num_classes, 1)]
        for i, (c_in, c_out, stride) in enumerate(spec, start=1):
            setattr(self, f"conv_{i}", nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1))
        feature_side(input_size, [(f"conv_{i}", 3, s, 1) for i, (_, _, s) in enumerate(spec, start=1)],
                     model="convnet_allconv")  # 28 -> 28 -> 14 -> 14 -> 7 -> 7 -> 4 -> 4
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, 8):
            x = getattr(self, f"conv_{i}")(x)
            if i < 7 or self.final_relu:
                x = F.relu(x)
        x = self.pool(x)  # (N, num_classes, 1, 1)
        return torch.flatten(x, 1)  # (N, num_classes)


@register_model(
    "convnet_allconv",
    family="convnet",
    num_classes=10,
    in_channels=1,
    input_size=28,
    paper="Springenberg et al. 2015, arXiv:1412.6806 (lecture notebook convnet-allconv)",
)
def convnet_allconv(*, num_classes: int, in_channels: int, input_size: int, final_relu: bool = True) -> ConvNetAllConv:
    """All-convolutional ConvNet with global average pooling (MNIST test 96.42% in its notebook)."""
    return ConvNetAllConv(num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                          final_relu=final_relu)
