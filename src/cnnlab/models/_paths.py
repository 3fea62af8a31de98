"""The main path of a multi-branch network, checked against an input size.

:func:`cnnlab.arithmetic.feature_side` walks ``(name, k, s, p)`` tuples; networks whose pools
round up (GoogLeNet's ``ceil_mode=True``) or whose stride sits inside one branch of a block
(Inception, ENet) name the modules of their main path instead, and :func:`path_side` walks them
with each module's own :class:`cnnlab.geometry.Geometry` (ceil mode included).
"""

from __future__ import annotations

from typing import Iterable

import torch.nn as nn

from cnnlab.errors import ShapeError
from cnnlab.geometry import layer_geometry

__all__ = ["path_side"]


def path_side(model: nn.Module, names: Iterable[str], input_size: int, *, label: str) -> int:
    """Side of the feature map after the named conv/pool modules of ``model``, in order.

    Raises :class:`cnnlab.errors.ShapeError` naming the module where the map vanishes.
    """
    modules = dict(model.named_modules())
    side = input_size
    for name in names:
        geometry = layer_geometry(modules[name])
        try:
            side = geometry.output_size((side, side))[0]
        except ValueError as exc:
            raise ShapeError(f"{label}: input size {input_size} is too small, "
                             f"the feature map vanishes at {name}: {exc}") from None
    return side
