"""What the tracer records: one :class:`LayerCall` per module call, the per-module view
:class:`LayerOutput` (a module's last call), and the per-layer geometry (kernel, stride, padding,
dilation and the output-size formula with its numbers, from :mod:`cnnlab.arithmetic`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn as nn

from cnnlab import arithmetic
from cnnlab.geometry import Geometry, layer_geometry
from cnnlab.trace.fields import ReceptiveField

__all__ = ["LayerCall", "LayerOutput", "PASS_THROUGH", "chw", "first_tensor", "geometry_fields", "sample_input"]

PASS_THROUGH = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def chw(shape: Sequence[int]) -> str:
    """Lecture style ``HxWxC`` for a 4-D shape; ``F`` for a flat one (batch dim dropped)."""
    dims = list(shape[1:])
    if len(dims) == 3:
        c, h, w = dims
        return f"{h}x{w}x{c}"
    return "x".join(str(d) for d in dims)


def first_tensor(obj: Any) -> torch.Tensor | None:
    """The tensor a module took or returned: ``obj`` itself, or the first of a (nested) tuple/list."""
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)) and obj:
        return first_tensor(obj[0])
    return None


def sample_input(model: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    """A batch of one zero image on the model's device, in its floating dtype."""
    for t in model.parameters():
        dtype = t.dtype if t.is_floating_point() else None
        return torch.zeros((1, *input_shape), device=t.device, dtype=dtype)
    return torch.zeros((1, *input_shape))


def _formula(geometry: Geometry, in_hw: tuple[int, int]) -> str:
    """The output-size formula with its numbers (height axis; width too where it differs)."""
    formulas = []
    for a in range(2):
        k, s, p, d = geometry.axis(a)
        i = in_hw[a]
        if geometry.transposed:
            formulas.append(arithmetic.conv_transpose_output_formula(i, k, s, p, geometry.output_padding[a], d))
        elif geometry.padding_text is not None:
            total = p + geometry.padding_after[a]
            o = (i + total - d * (k - 1) - 1) // s + 1
            formulas.append(f"({i} + {total} - {k})/{s} + 1 = {o}")
        else:
            formulas.append(arithmetic.conv_output_formula(i, k, s, p, d, geometry.ceil_mode))
    return formulas[0] if formulas[0] == formulas[1] else f"H: {formulas[0]} | W: {formulas[1]}"


def geometry_fields(module: nn.Module, in_hw: tuple[int, int]) -> dict[str, Any]:
    """Kernel/stride/padding/dilation and the formula string for conv and pool layers."""
    g = layer_geometry(module, in_hw)
    if g is not None:
        pads: list[int] | str = g.padding_text if g.padding_text is not None else list(g.padding)
        return {"kernel": list(g.kernel), "stride": list(g.stride), "padding": pads, "dilation": list(g.dilation),
                "formula": _formula(g, in_hw)}
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return {"formula": f"adaptive -> {module.output_size}"}
    return {}


@dataclass
class LayerCall:
    """One module call in a traced forward pass (a leaf layer, or a container such as a residual block)."""

    name: str  # model.named_modules() name
    type: str  # the module's class name
    module: nn.Module = field(repr=False)
    leaf: bool  # a module without children (a layer); False: a container (its output is the block's)
    order: int  # position in the order outputs were produced (a container comes after its children)
    input_shape: tuple[int, ...] | None  # per sample, without the batch dimension
    output_shape: tuple[int, ...]
    kernel: list[int] | None = None
    stride: list[int] | None = None
    padding: list[int] | str | None = None
    dilation: list[int] | None = None
    formula: str | None = None  # output-size formula with numbers (height axis; width too if it differs)
    params: int = 0  # parameters owned by this leaf (counted on its first call only; 0 for containers)
    macs: int = 0  # multiply-accumulates of this call, for the batch traced (conv and linear layers)
    rf: ReceptiveField | None = None  # of the output's cells; None: the whole input (after a linear / global pool)
    output: torch.Tensor | None = field(default=None, repr=False)  # a detached copy, where the caller asked
    input: torch.Tensor | None = field(default=None, repr=False)  # a detached copy of the first tensor input, ditto

    @property
    def shape(self) -> tuple[int, ...]:
        return self.output_shape

    @property
    def transition(self) -> str:
        """``28x28x1 => 28x28x4`` (HxWxC, as the lecture writes it)."""
        return f"{chw([0, *(self.input_shape or ())])} => {chw([0, *self.output_shape])}"

    @property
    def receptive_field(self) -> int | None:
        """Field size along the height axis; None: the whole input."""
        return None if self.rf is None else self.rf.height.rf

    @property
    def jump(self) -> int | None:
        return None if self.rf is None else self.rf.height.jump

    @property
    def rf_start(self) -> float | None:
        return None if self.rf is None else self.rf.height.start

    def box(self, y: int, x: int) -> tuple[int, int, int, int] | None:
        """The input pixels ``(top, left, bottom, right)`` output cell ``(y, x)`` sees; None: all of them."""
        return None if self.rf is None else self.rf.box(y, x)

    def view(self) -> "LayerOutput":
        return LayerOutput(self.name, self.module, self.output_shape, self.input_shape, self.order)


@dataclass(frozen=True)
class LayerOutput:
    """One module's output in a forward pass (its last call, for a module called twice)."""

    name: str
    module: nn.Module
    shape: tuple[int, ...]  # per sample, without the batch dimension
    input_shape: tuple[int, ...] | None
    order: int  # position in the order outputs were produced (a container comes after its children)

    @property
    def spatial(self) -> bool:
        """A feature map with spatial extent > 1 (more than one cell)."""
        return len(self.shape) == 3 and self.shape[1] * self.shape[2] > 1

    @property
    def pass_through(self) -> bool:
        """Identity, dropout, or an adaptive pool that keeps the size: nothing new to look at."""
        return isinstance(self.module, PASS_THROUGH) and self.input_shape == self.shape
