"""VGG (Simonyan & Zisserman 2014, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", https://arxiv.org/abs/1409.1556), Table 1 as data.

Every configuration of the paper, A to E, including the two that torchvision and timm leave
out: A-LRN (local response normalisation after the first conv) and C (1x1 convs as the
third conv of the last three blocks). ``state_dict`` keys equal torchvision's
(``features.N``, ``classifier.N``), so weights move both ways.
"""

from __future__ import annotations

from typing import Any, Union

import torch
import torch.nn as nn

from cnnlab.arithmetic import feature_side
from cnnlab.geometry import spatial_geometry
from cnnlab.models._registry import register_model

__all__ = [
    "VGG",
    "cfgs",
    "make_layers",
    "vgg11",
    "vgg11_bn",
    "vgg11_lrn",
    "vgg13",
    "vgg13_bn",
    "vgg16_c",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
]

PAPER = "Simonyan & Zisserman 2014, arXiv:1409.1556"

# Table 1 of the paper. An int is a conv3-N (3x3, stride 1, "same" padding 1), ("conv1", N) a
# conv1-N (1x1, padding 0), "M" a 2x2 max-pool with stride 2, "LRN" local response normalisation.
Layer = Union[int, str, tuple]
cfgs: dict[str, list[Layer]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, ("conv1", 256), "M",
          512, 512, ("conv1", 512), "M", 512, 512, ("conv1", 512), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def _conv_spec(v: Layer) -> tuple[int, int, int]:
    """(out_channels, kernel, padding) of a conv entry."""
    if isinstance(v, tuple):
        return v[1], 1, 0
    return int(v), 3, 1


def make_layers(cfg: list[Layer], batch_norm: bool = False, in_channels: int = 3, dropout2d: float = 0.0) -> nn.Sequential:
    """Interpret one column of Table 1: conv -> [BN] -> ReLU, "M" -> max-pool, "LRN" -> LRN.

    ``dropout2d > 0`` inserts spatial dropout (whole channels) before each max-pool; it holds
    no parameters, but it shifts the ``features.N`` indices, so such a model's keys no longer
    line up with torchvision's.
    """
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            if dropout2d > 0:
                layers.append(nn.Dropout2d(dropout2d))
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        elif v == "LRN":
            # Krizhevsky et al. 2012's constants, as the VGG paper says (k=2, n=5, alpha=1e-4, beta=0.75).
            # PyTorch divides alpha by n inside (Caffe's convention).
            layers.append(nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0))
        else:
            out_channels, k, p = _conv_spec(v)
            layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=k, padding=p))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
            in_channels = out_channels
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """Convolutional ``features`` -> ``avgpool`` -> ``classifier`` (FC-4096, FC-4096, FC-classes).

    The classifier's input width comes from :mod:`cnnlab.arithmetic`: the side of the last
    feature map for ``input_size`` (224 -> 7x7x512 = 25,088, torchvision's layout; 32 -> 1x1x512
    = 512, the lecture's CIFAR-10 notebook). ``avgpool`` is adaptive to that side, so it is the
    identity at ``input_size`` and lets other sizes through, as in torchvision.
    """

    def __init__(
        self,
        features: nn.Sequential,
        num_classes: int = 1000,
        feature_side: int = 7,
        dropout: float = 0.5,
        init_weights: bool = True,
    ) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((feature_side, feature_side))
        flat = 512 * feature_side * feature_side  # 25,088 at 224 px
        self.classifier = nn.Sequential(
            nn.Linear(flat, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        if init_weights:
            # torchvision's initialisation
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (N, 512, 7, 7) at 224 px
        x = self.avgpool(x)
        x = torch.flatten(x, 1)  # (N, 512*7*7)
        return self.classifier(x)


def _vgg(cfg: str, batch_norm: bool, name: str, *, num_classes: int, in_channels: int, input_size: int,
         dropout: float = 0.5, dropout2d: float = 0.0, avgpool_size: int | None = None, **kwargs: Any) -> VGG:
    features = make_layers(cfgs[cfg], batch_norm=batch_norm, in_channels=in_channels, dropout2d=dropout2d)
    side = feature_side(input_size, spatial_geometry(features, "features"), model=name)
    if avgpool_size is not None:
        side = avgpool_size  # e.g. 7: torchvision's 25,088-wide head at any input size (to load its weights)
    return VGG(features, num_classes=num_classes, feature_side=side, dropout=dropout, **kwargs)


@register_model("vgg11", family="vgg", num_classes=1000, in_channels=3, input_size=224, paper=PAPER)
def vgg11(*, num_classes: int, in_channels: int, input_size: int, dropout: float = 0.5, dropout2d: float = 0.0,
          avgpool_size: int | None = None, init_weights: bool = True) -> VGG:
    """VGG-11, configuration A (8 conv + 3 FC weight layers).

    Column "A" of Table 1; "Very Deep Convolutional Networks for Large-Scale Image
    Recognition", https://arxiv.org/abs/1409.1556.

    Args:
        num_classes: output classes (1000 for ImageNet).
        in_channels: input channels (3 for RGB).
        input_size: side of the square input; the classifier's width is computed from it.
        dropout: dropout probability of the two FC-4096 layers.
        dropout2d: spatial dropout before each max-pool (0: none; shifts the ``features.N`` keys).
        avgpool_size: fix the pooled side (7 keeps torchvision's 25,088-wide head at any input size).
        init_weights: torchvision's initialisation (else PyTorch's defaults).
    """
    return _vgg("A", False, "vgg11", num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                dropout=dropout, dropout2d=dropout2d, avgpool_size=avgpool_size, init_weights=init_weights)


@register_model("vgg11_bn", family="vgg", num_classes=1000, in_channels=3, input_size=224, paper=PAPER)
def vgg11_bn(*, num_classes: int, in_channels: int, input_size: int, dropout: float = 0.5, dropout2d: float = 0.0,
             avgpool_size: int | None = None, init_weights: bool = True) -> VGG:
    """VGG-11 (A) with batch normalisation after every conv.

    Column "A" of Table 1 with BN; "Very Deep Convolutional Networks for Large-Scale Image
    Recognition", https://arxiv.org/abs/1409.1556.

    Args:
        num_classes: output classes (1000 for ImageNet).
        in_channels: input channels (3 for RGB).
        input_size: side of the square input; the classifier's width is computed from it.
        dropout: dropout probability of the two FC-4096 layers.
        dropout2d: spatial dropout before each max-pool (0: none; shifts the ``features.N`` keys).
        avgpool_size: fix the pooled side (7 keeps torchvision's 25,088-wide head at any input size).
        init_weights: torchvision's initialisation (else PyTorch's defaults).
    """
    return _vgg("A", True, "vgg11_bn", num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                dropout=dropout, dropout2d=dropout2d, avgpool_size=avgpool_size, init_weights=init_weights)


@register_model("vgg11_lrn", family="vgg", num_classes=1000, in_channels=3, input_size=224, paper=PAPER)
def vgg11_lrn(*, num_classes: int, in_channels: int, input_size: int, dropout: float = 0.5, dropout2d: float = 0.0,
              avgpool_size: int | None = None, init_weights: bool = True) -> VGG:
    """VGG-11 A-LRN: A with local response normalisation after the first conv.

    Column "A-LRN" of Table 1; "Very Deep Convolutional Networks for Large-Scale Image
    Recognition", https://arxiv.org/abs/1409.1556.

    Args:
        num_classes: output classes (1000 for ImageNet).
        in_channels: input channels (3 for RGB).
        input_size: side of the square input; the classifier's width is computed from it.
        dropout: dropout probability of the two FC-4096 layers.
        dropout2d: spatial dropout before each max-pool (0: none; shifts the ``features.N`` keys).
        avgpool_size: fix the pooled side (7 keeps torchvision's 25,088-wide head at any input size).
        init_weights: torchvision's initialisation (else PyTorch's defaults).
    """
    return _vgg("A-LRN", False, "vgg11_lrn", num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                dropout=dropout, dropout2d=dropout2d, avgpool_size=avgpool_size, init_weights=init_weights)


@register_model("vgg13", family="vgg", num_classes=1000, in_channels=3, input_size=224, paper=PAPER)
def vgg13(*, num_classes: int, in_channels: int, input_size: int, dropout: float = 0.5, dropout2d: float = 0.0,
          avgpool_size: int | None = None, init_weights: bool = True) -> VGG:
    """VGG-13, configuration B.

    Column "B" of Table 1; "Very Deep Convolutional Networks for Large-Scale Image
    Recognition", https://arxiv.org/abs/1409.1556.

    Args:
        num_classes: output classes (1000 for ImageNet).
        in_channels: input channels (3 for RGB).
        input_size: side of the square input; the classifier's width is computed from it.
        dropout: dropout probability of the two FC-4096 layers.
        dropout2d: spatial dropout before each max-pool (0: none; shifts the ``features.N`` keys).
        avgpool_size: fix the pooled side (7 keeps torchvision's 25,088-wide head at any input size).
        init_weights: torchvision's initialisation (else PyTorch's defaults).
    """
    return _vgg("B", False, "vgg13", num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                dropout=dropout, dropout2d=dropout2d, avgpool_size=avgpool_size, init_weights=init_weights)


@register_model("vgg13_bn", family="vgg", num_classes=1000, in_channels=3, input_size=224, paper=PAPER)
def vgg13_bn(*, num_classes: int, in_channels: int, input_size: int, dropout: float = 0.5, dropout2d: float = 0.0,
             avgpool_size: int | None = None, init_weights: bool = True) -> VGG:
    """VGG-13 (B) with batch normalisation.

    Column "B" of Table 1 with BN; "Very Deep Convolutional Networks for Large-Scale Image
    Recognition", https://arxiv.org/abs/1409.1556.

    Args:
        num_classes: output classes (1000 for ImageNet).
        in_channels: input channels (3 for RGB).
        input_size: side of the square input; the classifier's width is computed from it.
        dropout: dropout probability of the two FC-4096 layers.
        dropout2d: spatial dropout before each max-pool (0: none; shifts the ``features.N`` keys).
        avgpool_size: fix the pooled side (7 keeps torchvision's 25,088-wide head at any input size).
        init_weights: torchvision's initialisation (else PyTorch's defaults).
    """
    return _vgg("B", True, "vgg13_bn", num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                dropout=dropout, dropout2d=dropout2d, avgpool_size=avgpool_size, init_weights=init_weights)


@register_model("vgg16_c", family="vgg", num_classes=1000, in_channels=3, input_size=224, paper=PAPER)
def vgg16_c(*, num_classes: int, in_channels: int, input_size: int, dropout: float = 0.5, dropout2d: float = 0.0,
            avgpool_size: int | None = None, init_weights: bool = True) -> VGG:
    """VGG-16 configuration C: 1x1 convs as the third conv of blocks 3-5.

    Column "C" of Table 1; "Very Deep Convolutional Networks for Large-Scale Image
    Recognition", https://arxiv.org/abs/1409.1556.

    Args:
        num_classes: output classes (1000 for ImageNet).
        in_channels: input channels (3 for RGB).
        input_size: side of the square input; the classifier's width is computed from it.
        dropout: dropout probability of the two FC-4096 layers.
        dropout2d: spatial dropout before each max-pool (0: none; shifts the ``features.N`` keys).
        avgpool_size: fix the pooled side (7 keeps torchvision's 25,088-wide head at any input size).
        init_weights: torchvision's initialisation (else PyTorch's defaults).
    """
    return _vgg("C", False, "vgg16_c", num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                dropout=dropout, dropout2d=dropout2d, avgpool_size=avgpool_size, init_weights=init_weights)


@register_model("vgg16", family="vgg", num_classes=1000, in_channels=3, input_size=224, paper=PAPER)
def vgg16(*, num_classes: int, in_channels: int, input_size: int, dropout: float = 0.5, dropout2d: float = 0.0,
          avgpool_size: int | None = None, init_weights: bool = True) -> VGG:
    """VGG-16, configuration D (the lecture's VGG-16).

    Column "D" of Table 1; "Very Deep Convolutional Networks for Large-Scale Image
    Recognition", https://arxiv.org/abs/1409.1556.

    Args:
        num_classes: output classes (1000 for ImageNet).
        in_channels: input channels (3 for RGB).
        input_size: side of the square input; the classifier's width is computed from it.
        dropout: dropout probability of the two FC-4096 layers.
        dropout2d: spatial dropout before each max-pool (0: none; shifts the ``features.N`` keys).
        avgpool_size: fix the pooled side (7 keeps torchvision's 25,088-wide head at any input size).
        init_weights: torchvision's initialisation (else PyTorch's defaults).
    """
    return _vgg("D", False, "vgg16", num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                dropout=dropout, dropout2d=dropout2d, avgpool_size=avgpool_size, init_weights=init_weights)


@register_model("vgg16_bn", family="vgg", num_classes=1000, in_channels=3, input_size=224, paper=PAPER)
def vgg16_bn(*, num_classes: int, in_channels: int, input_size: int, dropout: float = 0.5, dropout2d: float = 0.0,
             avgpool_size: int | None = None, init_weights: bool = True) -> VGG:
    """VGG-16 (D) with batch normalisation.

    Column "D" of Table 1 with BN; "Very Deep Convolutional Networks for Large-Scale Image
    Recognition", https://arxiv.org/abs/1409.1556.

    Args:
        num_classes: output classes (1000 for ImageNet).
        in_channels: input channels (3 for RGB).
        input_size: side of the square input; the classifier's width is computed from it.
        dropout: dropout probability of the two FC-4096 layers.
        dropout2d: spatial dropout before each max-pool (0: none; shifts the ``features.N`` keys).
        avgpool_size: fix the pooled side (7 keeps torchvision's 25,088-wide head at any input size).
        init_weights: torchvision's initialisation (else PyTorch's defaults).
    """
    return _vgg("D", True, "vgg16_bn", num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                dropout=dropout, dropout2d=dropout2d, avgpool_size=avgpool_size, init_weights=init_weights)


@register_model("vgg19", family="vgg", num_classes=1000, in_channels=3, input_size=224, paper=PAPER)
def vgg19(*, num_classes: int, in_channels: int, input_size: int, dropout: float = 0.5, dropout2d: float = 0.0,
          avgpool_size: int | None = None, init_weights: bool = True) -> VGG:
    """VGG-19, configuration E.

    Column "E" of Table 1; "Very Deep Convolutional Networks for Large-Scale Image
    Recognition", https://arxiv.org/abs/1409.1556.

    Args:
        num_classes: output classes (1000 for ImageNet).
        in_channels: input channels (3 for RGB).
        input_size: side of the square input; the classifier's width is computed from it.
        dropout: dropout probability of the two FC-4096 layers.
        dropout2d: spatial dropout before each max-pool (0: none; shifts the ``features.N`` keys).
        avgpool_size: fix the pooled side (7 keeps torchvision's 25,088-wide head at any input size).
        init_weights: torchvision's initialisation (else PyTorch's defaults).
    """
    return _vgg("E", False, "vgg19", num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                dropout=dropout, dropout2d=dropout2d, avgpool_size=avgpool_size, init_weights=init_weights)


@register_model("vgg19_bn", family="vgg", num_classes=1000, in_channels=3, input_size=224, paper=PAPER)
def vgg19_bn(*, num_classes: int, in_channels: int, input_size: int, dropout: float = 0.5, dropout2d: float = 0.0,
             avgpool_size: int | None = None, init_weights: bool = True) -> VGG:
    """VGG-19 (E) with batch normalisation.

    Column "E" of Table 1 with BN; "Very Deep Convolutional Networks for Large-Scale Image
    Recognition", https://arxiv.org/abs/1409.1556.

    Args:
        num_classes: output classes (1000 for ImageNet).
        in_channels: input channels (3 for RGB).
        input_size: side of the square input; the classifier's width is computed from it.
        dropout: dropout probability of the two FC-4096 layers.
        dropout2d: spatial dropout before each max-pool (0: none; shifts the ``features.N`` keys).
        avgpool_size: fix the pooled side (7 keeps torchvision's 25,088-wide head at any input size).
        init_weights: torchvision's initialisation (else PyTorch's defaults).
    """
    return _vgg("E", True, "vgg19_bn", num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                dropout=dropout, dropout2d=dropout2d, avgpool_size=avgpool_size, init_weights=init_weights)
