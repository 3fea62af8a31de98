"""Receptive fields of layer outputs: the two-axis type (size, jump, start, ``box(y, x)``) and the
step a layer takes it through, on top of the one-axis recurrences of :mod:`cnnlab.arithmetic`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn

from cnnlab import arithmetic
from cnnlab.geometry import layer_geometry

__all__ = ["ReceptiveField", "RF2", "INPUT_RF2", "rf_step", "rf_union"]


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one layer's output units in the model's input, per axis.

    ``height`` and ``width`` are :class:`cnnlab.arithmetic.RFLayer` (rf size, jump, start: the
    input coordinate of the centre of the first unit's field, pixel ``i`` spanning ``[i, i+1)``).
    """

    height: arithmetic.RFLayer
    width: arithmetic.RFLayer
    input_size: tuple[int, int]  # (H, W) of the model's input, for clipping

    @property
    def size(self) -> tuple[int, int]:
        return self.height.rf, self.width.rf

    @property
    def jump(self) -> tuple[int, int]:
        return self.height.jump, self.width.jump

    @property
    def start(self) -> tuple[float, float]:
        return self.height.start, self.width.start

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` in input pixels of output cell ``(y, x)``, clipped to the
        input; half-open like slices: the cell sees ``image[..., top:bottom, left:right]``."""
        top, bottom = self.height.interval(y, self.input_size[0])
        left, right = self.width.interval(x, self.input_size[1])
        return top, left, bottom, right


RF2 = tuple[arithmetic.RFLayer, arithmetic.RFLayer]  # (height, width); None: the whole input
INPUT_RF2: RF2 = (arithmetic.INPUT_RF, arithmetic.INPUT_RF)  # the model's input: each pixel sees itself


def rf_step(module: nn.Module, rf: RF2 | None, inp: torch.Tensor, out: torch.Tensor) -> RF2 | None:
    """Receptive field after ``module`` given the one of its input (:mod:`cnnlab.arithmetic`)."""
    if rf is None or isinstance(module, (nn.Linear, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten)):
        return None  # sees the whole input from here on
    g = layer_geometry(module, tuple(inp.shape[-2:])) if inp.dim() == 4 else None
    if g is None:
        if inp.dim() == 4 and (out.dim() != 4 or out.shape[-2:] != inp.shape[-2:]):
            return None  # resamples in a way we cannot read (e.g. Upsample): assume the whole input
        return rf  # element-wise or channel-wise (ReLU, BN, LRN, dropout)
    if g.transposed:
        return None  # fractional strides: not a box of fixed size
    return (arithmetic.receptive_field_step(rf[0], *g.axis(0)),
            arithmetic.receptive_field_step(rf[1], *g.axis(1)))


def rf_union(rfs: Sequence[RF2 | None]) -> RF2 | None:
    """The field of a sum of branches (a residual block): the union of theirs; None if any sees everything."""
    if any(r is None for r in rfs):
        return None
    return (arithmetic.receptive_field_union(r[0] for r in rfs),
            arithmetic.receptive_field_union(r[1] for r in rfs))
