"""Building blocks shared by the models: conv helpers, residual blocks, init schemes."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "conv3x3",
    "conv1x1",
    "spatial_geometry",
    "BasicBlock",
    "Bottleneck",
    "ResidualBlock",
    "ZeroPadShortcut",
    "INITS",
    "init_weights",
]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 convolution with "same" padding (for stride 1), no bias (a BN follows)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation, groups=groups,
                     bias=False, dilation=dilation)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def _pair0(v) -> int:
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


def spatial_geometry(module: nn.Module, prefix: str = "") -> list[tuple[str, int, int, int, int]]:
    """``(name, k, s, p, d)`` of every conv and pooling layer of a *sequential* stack, in order,
    for :func:`cnnlab.arithmetic.feature_side` (height axis)."""
    out = []
    for name, m in module.named_modules(prefix=prefix):
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            stride = m.stride if m.stride is not None else m.kernel_size
            pad = m.padding if not isinstance(m.padding, str) else (_pair0(m.kernel_size) - 1) // 2
            out.append((name, _pair0(m.kernel_size), _pair0(stride), _pair0(pad), _pair0(getattr(m, "dilation", 1))))
    return out


# ---------------------------------------------------------------------------------------
# Residual blocks (He et al. 2016, https://arxiv.org/abs/1512.03385)


class ZeroPadShortcut(nn.Module):
    """Option A of He et al. 2016, Sec. 3.3: identity with stride subsampling and zero-padded
    extra channels. Adds no parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"zero-padding shortcut cannot shrink channels ({in_channels} -> {out_channels})")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]  # (N, C, ceil(H/s), ceil(W/s))
        extra = self.out_channels - self.in_channels
        if extra:
            x = F.pad(x, (0, 0, 0, 0, 0, extra))  # (N, C_out, H, W), new channels all zero
        return x

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


SHORTCUTS = ("A", "B", "C")


def make_shortcut(option: str, in_channels: int, out_channels: int, stride: int,
                  norm_layer: Callable[[int], nn.Module]) -> nn.Module | None:
    """The ``downsample`` branch of a residual block for shortcut option A, B or C.

    A: zero-padding identity where the shape changes (no parameters).
    B: 1x1 conv + BN projection only where the shape changes (torchvision's default).
    C: 1x1 conv + BN projection on every block.
    Returns None where the shortcut is the plain identity.
    """
    changes = stride != 1 or in_channels != out_channels
    if option == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride) if changes else None
    if option == "B" and not changes:
        return None
    if option in ("B", "C"):
        return nn.Sequential(conv1x1(in_channels, out_channels, stride), norm_layer(out_channels))
    raise ValueError(f"shortcut must be one of {', '.join(SHORTCUTS)}, got {option!r}")


class BasicBlock(nn.Module):
    """Two 3x3 convs; ``a(l+2) = relu(z(l+2) + a(l))`` (the lecture's residual block)."""

    expansion: int = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 norm_layer: Callable[[int], nn.Module] | None = None) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 -> 1x1 (expand x4). The stride sits on the 3x3 conv, as in
    torchvision ("ResNet V1.5"); the paper put it on the first 1x1."""

    expansion: int = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 norm_layer: Callable[[int], nn.Module] | None = None) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        width = planes
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


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


# ---------------------------------------------------------------------------------------
# Weight initialisation schemes of the lecture's cnn-with-diff-init notebooks


def _normal(w: torch.Tensor) -> None:
    nn.init.normal_(w, mean=0.0, std=0.1)


def _uniform(w: torch.Tensor) -> None:
    nn.init.uniform_(w, -0.1, 0.1)


INITS: dict[str, Callable[[torch.Tensor], None] | None] = {
    "default": None,  # PyTorch's own (kaiming_uniform_ with a=sqrt(5))
    "normal": _normal,  # N(0, 0.1)
    "uniform": _uniform,  # U(-0.1, 0.1)
    "xavier_normal": nn.init.xavier_normal_,
    "xavier_uniform": nn.init.xavier_uniform_,
    "kaiming_normal": nn.init.kaiming_normal_,
    "kaiming_uniform": nn.init.kaiming_uniform_,
}


@torch.no_grad()
def init_weights(model: nn.Module, scheme: str = "default") -> nn.Module:
    """Re-initialise every Conv2d and Linear weight with ``scheme`` and zero their biases,
    as the notebooks' ``weights_init`` does. ``default`` leaves the model as built."""
    from cnnlab.errors import UnknownNameError

    if scheme not in INITS:
        raise UnknownNameError("init", scheme, INITS)
    fn = INITS[scheme]
    if fn is None:
        return model
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fn(m.weight)
            if m.bias is not None:
                m.bias.zero_()
    return model
