"""The lecture's "Cross-Correlation vs Convolution" slide as two functions on 2-D tensors.

Cross-correlation (what deep-learning layers compute): ``Z[i, j] = sum_u sum_v K[u, v] A[i + u, j + v]``.
Convolution: the same with the kernel flipped on both axes, ``Z[i, j] = sum_u sum_v K[u, v] A[i - u, j - v]``.
Modes ``valid``, ``same`` and ``full`` follow ``scipy.signal.correlate2d`` / ``convolve2d``.
"""

from __future__ import annotations

import torch

from cnnlab.errors import CnnlabTypeError, CnnlabValueError

__all__ = ["correlate2d", "convolve2d"]


def _modes(a: torch.Tensor, k: torch.Tensor, mode: str) -> tuple[torch.Tensor, tuple[int, int]]:
    for what, t in (("the array", a), ("the kernel", k)):
        if not isinstance(t, torch.Tensor):
            raise CnnlabTypeError(f"correlate2d/convolve2d take 2-D tensors; {what} is a {type(t).__name__} "
                                  f"(wrap it: torch.tensor(...))")
    if a.dim() != 2 or k.dim() != 2:
        raise CnnlabValueError(f"correlate2d/convolve2d take 2-D tensors, got {tuple(a.shape)} and {tuple(k.shape)}")
    if mode not in ("valid", "same", "full"):
        raise CnnlabValueError(f"mode must be 'valid', 'same' or 'full', got {mode!r}")
    kh, kw = k.shape
    if mode == "valid" and (a.shape[0] < kh or a.shape[1] < kw):
        raise CnnlabValueError(f"'valid' needs the array ({tuple(a.shape)}) at least as large as the kernel "
                               f"({tuple(k.shape)})")
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
