"""AlexNet (Krizhevsky, Sutskever & Hinton 2012, "ImageNet Classification with Deep Convolutional
Neural Networks", https://papers.nips.cc/paper/4824) and BN-AlexNet, the five convolutions as data.

Both are the single-tower AlexNet of "One weird trick for parallelizing convolutional neural
networks" (Krizhevsky 2014, https://arxiv.org/abs/1404.5997): 64-192-384-256-256 filters, as
torchvision and Torch7's ImageNet trainers build it. ``state_dict`` keys equal torchvision's
(``features.N``, ``classifier.N``), so its AlexNet weights load.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from cnnlab.arithmetic import feature_side
from cnnlab.geometry import spatial_geometry
from cnnlab.models._registry import register_model

__all__ = ["AlexNet", "cfg", "make_features", "alexnet", "alexnet_bn"]

PAPER = "Krizhevsky et al. 2012, NeurIPS; single tower as in Krizhevsky 2014, arXiv:1404.5997"
BN_SOURCE = ("BN-AlexNet of Torch7's imagenet-multiGPU.torch (models/alexnetowtbn.lua; Canziani et al. 2016, "
             "arXiv:1605.07678)")

# (out_channels, kernel, stride, padding) of each conv; "M" a 3x3 max-pool with stride 2 (overlapping pooling).
cfg: list[tuple[int, int, int, int] | str] = [
    (64, 11, 4, 2), "M",   # 224 -> 55 -> 27
    (192, 5, 1, 2), "M",   # 27 -> 27 -> 13
    (384, 3, 1, 1),
    (256, 3, 1, 1),
    (256, 3, 1, 1), "M",   # 13 -> 13 -> 6
]


def make_features(in_channels: int, batch_norm: bool = False) -> nn.Sequential:
    """Interpret :data:`cfg`: conv -> [BN] -> ReLU, "M" -> 3x3/2 max-pool."""
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
            continue
        out_channels, k, s, p = v
        layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=k, stride=s, padding=p))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels, eps=1e-3))  # Torch7's eps, as in alexnetowtbn.lua
        layers.append(nn.ReLU(inplace=True))
        in_channels = out_channels
    return nn.Sequential(*layers)


def _fc(in_features: int, out_features: int, dropout: float, batch_norm: bool) -> list[nn.Module]:
    """Dropout -> Linear -> [BN] -> ReLU: one FC-4096 layer of the classifier."""
    layers: list[nn.Module] = [nn.Dropout(p=dropout), nn.Linear(in_features, out_features)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(out_features, eps=1e-3))
    return layers + [nn.ReLU(inplace=True)]


class AlexNet(nn.Module):
    """``features`` (five convs, three max-pools) -> ``avgpool`` -> ``classifier`` (two FC-4096, FC-classes).

    The classifier's width comes from the side of the last feature map at ``input_size``
    (224 -> 6x6x256 = 9,216, torchvision's layout); ``avgpool`` is adaptive to that side, so it
    is the identity at ``input_size`` and lets other sizes through, as in torchvision.
    """

    def __init__(self, features: nn.Sequential, num_classes: int = 1000, feature_side: int = 6,
                 dropout: float = 0.5, batch_norm: bool = False) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((feature_side, feature_side))
        flat = 256 * feature_side * feature_side  # 9,216 at 224 px
        self.classifier = nn.Sequential(
            *_fc(flat, 4096, dropout, batch_norm),
            *_fc(4096, 4096, dropout, batch_norm),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (N, 256, 6, 6) at 224 px
        x = self.avgpool(x)
        x = torch.flatten(x, 1)  # (N, 256*6*6)
        return self.classifier(x)


def _alexnet(name: str, batch_norm: bool, *, num_classes: int, in_channels: int, input_size: int,
             dropout: float, avgpool_size: int | None) -> AlexNet:
    features = make_features(in_channels, batch_norm=batch_norm)
    side = feature_side(input_size, spatial_geometry(features, "features"), model=name)
    if avgpool_size is not None:
        side = avgpool_size  # e.g. 6: torchvision's 9,216-wide head at any input size (to load its weights)
    return AlexNet(features, num_classes=num_classes, feature_side=side, dropout=dropout, batch_norm=batch_norm)


@register_model("alexnet", family="alexnet", num_classes=1000, in_channels=3, input_size=224, paper=PAPER)
def alexnet(*, num_classes: int, in_channels: int, input_size: int, dropout: float = 0.5,
            avgpool_size: int | None = None) -> AlexNet:
    """AlexNet, single tower (61,100,840 parameters at 1000 classes; torchvision's keys).

    From "ImageNet Classification with Deep Convolutional Neural Networks",
    https://papers.nips.cc/paper/4824, in the one-tower form of https://arxiv.org/abs/1404.5997.

    Args:
        num_classes: output classes (1000 for ImageNet).
        in_channels: input channels (3 for RGB).
        input_size: side of the square input; the classifier's width is computed from it.
        dropout: dropout probability before each FC-4096 layer.
        avgpool_size: fix the pooled side (6 keeps torchvision's 9,216-wide head at any input size).
    """
    return _alexnet("alexnet", False, num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                    dropout=dropout, avgpool_size=avgpool_size)


@register_model("alexnet_bn", family="alexnet", num_classes=1000, in_channels=3, input_size=224, paper=BN_SOURCE)
def alexnet_bn(*, num_classes: int, in_channels: int, input_size: int, dropout: float = 0.5,
               avgpool_size: int | None = None) -> AlexNet:
    """BN-AlexNet: batch norm after every conv and FC-4096 (61,119,528 parameters at 1000 classes).

    The BN-AlexNet of Canziani et al. 2016 (https://arxiv.org/abs/1605.07678), which measured
    Torch7 models: Torch7's ImageNet trainer (soumith/imagenet-multiGPU.torch, also the fork of
    the authors' lab e-lab/imagenet-multiGPU.torch) defines it in ``models/alexnetowtbn.lua``:
    the one-tower AlexNet (https://arxiv.org/abs/1404.5997) with ``SpatialBatchNormalization(eps=1e-3)``
    after each conv and ``BatchNormalization(4096, 1e-3)`` after each FC-4096, dropout before each
    FC-4096. The paper does not name the file; this is the BN-AlexNet of the trainer it used.
    The BN layers shift the ``features.N`` / ``classifier.N`` indices against torchvision's AlexNet.

    Args:
        num_classes: output classes (1000 for ImageNet).
        in_channels: input channels (3 for RGB).
        input_size: side of the square input; the classifier's width is computed from it.
        dropout: dropout probability before each FC-4096 layer.
        avgpool_size: fix the pooled side (6 gives the 9,216-wide head at any input size).
    """
    return _alexnet("alexnet_bn", True, num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                    dropout=dropout, avgpool_size=avgpool_size)
