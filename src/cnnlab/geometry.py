"""The one place that reads a layer's geometry -- kernel, stride, padding, dilation -- from a module.

Everything else takes numbers from here and formulas from :mod:`cnnlab.arithmetic`: the models
size their heads with :func:`spatial_geometry` + ``arithmetic.feature_side``, the shape trace
(:mod:`cnnlab.summary`) writes each layer's formula and receptive field from
:func:`layer_geometry`, and counts MACs with :func:`module_macs`.

Modules of cnnlab's own that subsample like a convolution declare it with a ``geometry()``
method returning a :class:`Geometry` (the option-A shortcut: k=1, stride s), so this module
needs to know no model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch.nn as nn

from cnnlab import arithmetic

__all__ = ["Geometry", "layer_geometry", "spatial_geometry", "module_macs"]


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1]))
    return (int(v), int(v))


@dataclass(frozen=True)
class Geometry:
    """Geometry of one conv / pooling layer, per axis ``(H, W)``.

    ``padding`` is the zero padding before (top, left) and ``padding_after`` after (bottom,
    right); they differ only where ``padding="same"`` needs an odd total (the extra pixel goes
    after). ``padding_text`` keeps ``"same"`` / ``"valid"`` when the module was built with one.
    """

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    padding_after: tuple[int, int]
    dilation: tuple[int, int] = (1, 1)
    ceil_mode: bool = False
    transposed: bool = False
    output_padding: tuple[int, int] = (0, 0)
    padding_text: str | None = None

    def axis(self, a: int) -> tuple[int, int, int, int]:
        """``(k, s, p_before, d)`` along axis ``a`` (0: height, 1: width)."""
        return self.kernel[a], self.stride[a], self.padding[a], self.dilation[a]

    @property
    def symmetric(self) -> bool:
        return self.padding == self.padding_after

    def output_size(self, in_hw: Sequence[int]) -> tuple[int, int]:
        """Output ``(H, W)`` for an input of ``in_hw``, by :mod:`cnnlab.arithmetic`."""
        out = []
        for a in range(2):
            k, s, p, d = self.axis(a)
            if self.transposed:
                out.append(arithmetic.conv_transpose_output_size(int(in_hw[a]), k, s, p, self.output_padding[a], d))
            elif self.symmetric:
                out.append(arithmetic.conv_output_size(int(in_hw[a]), k, s, p, d, self.ceil_mode))
            else:
                padded = int(in_hw[a]) + p + self.padding_after[a]
                out.append(arithmetic.conv_output_size(padded, k, s, 0, d, self.ceil_mode))
        return out[0], out[1]


def _padding(module: nn.Module, k: tuple[int, int], s: tuple[int, int], d: tuple[int, int],
             in_hw: Sequence[int] | None) -> tuple[tuple[int, int], tuple[int, int], str | None]:
    """(before, after, text) of a module's padding; strings resolved by ``arithmetic.resolve_padding``.

    PyTorch allows ``padding="same"`` only at stride 1, where the total ``d(k-1)`` does not depend
    on the input size, so ``in_hw`` may be left out.
    """
    pad = module.padding
    if not isinstance(pad, str):
        p = _pair(pad)
        return p, p, None
    hw = in_hw if in_hw is not None else (1, 1)
    before, after = zip(*(arithmetic.resolve_padding(pad, int(hw[a]), k[a], s[a], d[a]) for a in range(2)))
    return (before[0], before[1]), (after[0], after[1]), pad


def layer_geometry(module: nn.Module, in_hw: Sequence[int] | None = None) -> Geometry | None:
    """Kernel, stride, padding, dilation and ceil mode of a Conv2d, ConvTranspose2d, MaxPool2d,
    AvgPool2d or of a module with a ``geometry()`` method; None for any other module.

    ``in_hw``: the input's ``(H, W)``, to resolve ``padding="same"`` (optional, see above).
    """
    own = getattr(type(module), "geometry", None)  # a method of the class, not a submodule named so
    if callable(own):
        return own(module)
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        k, s, d = _pair(module.kernel_size), _pair(module.stride), _pair(module.dilation)
        before, after, text = _padding(module, k, s, d, in_hw)
        transposed = isinstance(module, nn.ConvTranspose2d)
        output_padding = _pair(module.output_padding) if transposed else (0, 0)
        return Geometry(k, s, before, after, d, transposed=transposed, output_padding=output_padding,
                        padding_text=text)
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        k = _pair(module.kernel_size)
        s = _pair(module.stride if module.stride is not None else module.kernel_size)
        d = _pair(getattr(module, "dilation", 1))
        p = _pair(module.padding)
        return Geometry(k, s, p, p, d, ceil_mode=bool(module.ceil_mode))
    return None


def spatial_geometry(module: nn.Module, prefix: str = "") -> list[tuple]:
    """``(name, k, s, p, d)`` of every conv, pooling and subsampling layer of a *sequential*
    stack, in order, for :func:`cnnlab.arithmetic.feature_side` (height axis). ``p`` is an int,
    or a ``(before, after)`` pair where "same" padding is asymmetric."""
    out = []
    for name, m in module.named_modules(prefix=prefix):
        g = layer_geometry(m)
        if g is None or g.transposed:
            continue
        k, s, p, d = g.axis(0)
        out.append((name, k, s, p if g.padding_after[0] == p else (p, g.padding_after[0]), d))
    return out


def module_macs(module: nn.Module, input_shape: Sequence[int], output_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one call of a Conv2d, ConvTranspose2d or Linear layer (0 for
    any other), from its input and output shapes (batch included), by :mod:`cnnlab.arithmetic`."""
    if isinstance(module, nn.Conv2d):
        positions = math.prod(output_shape) // module.out_channels  # N * H_out * W_out
        return arithmetic.conv_macs(positions, module.in_channels, module.out_channels, module.kernel_size,
                                    module.groups)
    if isinstance(module, nn.ConvTranspose2d):
        positions = math.prod(input_shape) // module.in_channels  # N * H_in * W_in
        return arithmetic.conv_transpose_macs(positions, module.in_channels, module.out_channels, module.kernel_size,
                                              module.groups)
    if isinstance(module, nn.Linear):
        rows = math.prod(output_shape) // module.out_features
        return arithmetic.linear_macs(module.in_features, module.out_features, rows)
    return 0
