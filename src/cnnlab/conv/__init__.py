"""The convolution lab: cross-correlation vs convolution, and the algorithms behind conv layers.

``conv2d(x, weight, bias, stride, padding, dilation, groups, algorithm=...)`` has the semantics
of ``torch.nn.functional.conv2d`` (NCHW in, NCHW out; padding may be "same" or "valid") and
computes it one of five ways:

- ``direct``: loops over output positions, the lecture's Z[i,j] = sum K[u,v] A[i+u, j+v] (slow; teaching)
- ``im2col``: unfold receptive fields into columns, one matrix multiply
- ``fft``: products in the frequency domain (``torch.fft``)
- ``winograd``: Winograd F(2x2,3x3) (Lavin & Gray 2016); ``winograd4``: F(4x4,3x3)

Autograd works through all of them (they are built from differentiable torch ops).
``correlate2d`` and ``convolve2d`` are the lecture's two definitions on 2-D tensors.
"""

from __future__ import annotations

from typing import Callable

import torch

from cnnlab.conv import algorithms as _alg
from cnnlab.conv._common import prepare

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
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
    xp, args = prepare(x, weight, stride, padding, dilation, groups)
    out = ALGORITHMS[algorithm](xp, weight, args)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def _modes(a: torch.Tensor, k: torch.Tensor, mode: str) -> tuple[torch.Tensor, tuple[int, int]]:
    if a.dim() != 2 or k.dim() != 2:
        raise ValueError(f"correlate2d/convolve2d take 2-D tensors, got {tuple(a.shape)} and {tuple(k.shape)}")
    if mode not in ("valid", "same", "full"):
        raise ValueError(f"mode must be 'valid', 'same' or 'full', got {mode!r}")
    kh, kw = k.shape
    if mode == "valid" and (a.shape[0] < kh or a.shape[1] < kw):
        raise ValueError(f"'valid' needs the array ({tuple(a.shape)}) at least as large as the kernel ({tuple(k.shape)})")
    return a, (kh, kw)


def _correlate_full(a: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Full cross-correlation, Z[i, j] = sum_u sum_v K[u, v] A[i + u, j + v] over a zero-padded A."""
    kh, kw = k.shape
    ap = torch.nn.functional.pad(a[None, None], (kw - 1, kw - 1, kh - 1, kh - 1))[0, 0]
    oh, ow = ap.shape[0] - kh + 1, ap.shape[1] - kw + 1
    z = a.new_zeros(oh, ow)
    for u in range(kh):  # loop over kernel positions, vectorised over output positions
        for v in range(kw):
            z = z + k[u, v] * ap[u : u + oh, v : v + ow]
    return z


def _crop(full: torch.Tensor, a_shape: tuple[int, int], k_shape: tuple[int, int], mode: str) -> torch.Tensor:
    (h, w), (kh, kw) = a_shape, k_shape
    if mode == "full":
        return full
    if mode == "valid":
        return full[kh - 1 : h, kw - 1 : w]
    # 'same': the centre of 'full', the size of A (scipy.signal's convention)
    top, left = (kh - 1) // 2, (kw - 1) // 2
    return full[top : top + h, left : left + w]


def correlate2d(a: torch.Tensor, k: torch.Tensor, mode: str = "valid") -> torch.Tensor:
    """Cross-correlation of 2-D ``a`` with kernel ``k`` (what DL layers compute), like
    ``scipy.signal.correlate2d``; the kernel slides without flipping."""
    _modes(a, k, mode)
    full = _correlate_full(a, k)
    if mode == "same":
        # scipy centres correlation on the flipped (convolution) grid
        kh, kw = k.shape
        h, w = a.shape
        top, left = kh // 2, kw // 2
        return full[top : top + h, left : left + w]
    return _crop(full, tuple(a.shape), tuple(k.shape), mode)


def convolve2d(a: torch.Tensor, k: torch.Tensor, mode: str = "valid") -> torch.Tensor:
    """True convolution: cross-correlation with the kernel flipped on both axes,
    Z[i, j] = sum_u sum_v K[u, v] A[i - u, j - v]. Associative and commutative (in 'full' mode)."""
    _modes(a, k, mode)
    full = _correlate_full(a, torch.flip(k, dims=(0, 1)))
    return _crop(full, tuple(a.shape), tuple(k.shape), mode)
