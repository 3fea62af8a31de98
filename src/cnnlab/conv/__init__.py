"""The convolution lab: cross-correlation vs convolution, and the algorithms behind conv layers.

``conv2d(x, weight, bias, stride, padding, dilation, groups, algorithm=...)`` has the semantics
of ``torch.nn.functional.conv2d`` (NCHW in, NCHW out; padding may be "same" or "valid") and
computes it one of five ways:

- ``direct``: loops over output positions, the lecture's Z[i,j] = sum K[u,v] A[i+u, j+v] (slow; teaching)
- ``im2col``: unfold receptive fields into columns, one matrix multiply
- ``fft``: products in the frequency domain (``torch.fft``)
- ``winograd``: Winograd F(2x2,3x3) (Lavin & Gray 2016); ``winograd4``: F(4x4,3x3)

Autograd works through all of them (they are built from differentiable torch ops).
``correlate2d`` and ``convolve2d`` (in ``correlate.py``) are the lecture's two definitions on
2-D tensors; ``bench.py`` times the algorithms against ``F.conv2d``.
"""

from __future__ import annotations

from typing import Callable

import torch

from cnnlab.conv import algorithms as _alg
from cnnlab.conv._common import prepare
from cnnlab.conv.correlate import convolve2d, correlate2d
from cnnlab.errors import UnknownNameError

__all__ = ["ALGORITHMS", "conv2d", "correlate2d", "convolve2d"]

ALGORITHMS: dict[str, Callable] = {
    "direct": _alg.direct,
    "im2col": _alg.im2col,
    "fft": _alg.fft,
    "winograd": lambda x, w, a: _alg.winograd(x, w, a, m=2),
    "winograd4": lambda x, w, a: _alg.winograd(x, w, a, m=4),
}


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    *,
    algorithm: str = "im2col",
) -> torch.Tensor:
    """2-D cross-correlation with ``F.conv2d``'s semantics, computed by ``algorithm``."""
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise UnknownNameError("algorithm", str(algorithm), ALGORITHMS)
    xp, args = prepare(x, weight, stride, padding, dilation, groups)
    out = ALGORITHMS[algorithm](xp, weight, args)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out
