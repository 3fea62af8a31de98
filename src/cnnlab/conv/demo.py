"""`cnnlab demo xcorr`: the lecture's "Cross-Correlation vs Convolution" slides, computed."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnlab.conv import convolve2d, correlate2d

__all__ = ["xcorr_lines", "associativity_lines"]


def _grid(labels: dict[tuple[int, int], int]) -> list[str]:
    return ["   ".join(f"{labels[(u, v)]}) {u:2d},{v:2d}" for v in (-1, 0, 1)) for u in (-1, 0, 1)]


def _fmt(t: torch.Tensor) -> list[str]:
    return ["  [" + " ".join(f"{float(v):6.0f}" for v in row) + " ]" for row in t]


def xcorr_lines() -> list[str]:
    order = [(u, v) for u in (-1, 0, 1) for v in (-1, 0, 1)]  # the loops: u outer, v inner
    corr = {pos: n for n, pos in enumerate(order, start=1)}  # K[u,v] meets A[i+u, j+v]
    conv = {(-u, -v): n for n, (u, v) in enumerate(order, start=1)}  # K[u,v] meets A[i-u, j-v]
    a = torch.arange(1.0, 26.0).view(5, 5)
    k = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])
    z_corr = correlate2d(a, k)
    z_conv = convolve2d(a, k)
    i, j = 1, 1  # output position, centre of the receptive field at A[2, 2]
    terms_corr = " + ".join(f"{k[u + 1, v + 1]:.0f}*{a[i + 1 + u, j + 1 + v]:.0f}" for u, v in order)
    terms_conv = " + ".join(f"{k[u + 1, v + 1]:.0f}*{a[i + 1 - u, j + 1 - v]:.0f}" for u, v in order)
    assert torch.equal(z_corr, F.conv2d(a[None, None], k[None, None])[0, 0])  # what a conv layer computes
    return [
        "Cross-correlation (what deep-learning 'convolution' layers compute):",
        "  Z[i,j] = sum_u sum_v K[u,v] A[i+u, j+v]        u, v = -1, 0, 1",
        "Order in which the receptive field's positions (u,v) are visited:",
        *["  " + line for line in _grid(corr)],
        "",
        "Convolution (the kernel flipped on both axes):",
        "  Z[i,j] = sum_u sum_v K[u,v] A[i-u, j-v]",
        "Order in which the receptive field's positions are visited:",
        *["  " + line for line in _grid(conv)],
        "",
        "A =", *_fmt(a),
        "K =", *_fmt(k),
        f"Cross-correlation at Z[{i},{j}] (receptive field centred on A[2,2] = {a[2, 2]:.0f}):",
        f"  {terms_corr} = {z_corr[i, j]:.0f}",
        f"Convolution at Z[{i},{j}]:",
        f"  {terms_conv} = {z_conv[i, j]:.0f}",
        "Whole 'valid' outputs (cross-correlation equals torch.nn.functional.conv2d):",
        "correlate2d(A, K) =", *_fmt(z_corr),
        "convolve2d(A, K) =", *_fmt(z_conv),
    ]


def associativity_lines(seed: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(-3, 4, (5, 5), generator=g).double()
    b = torch.randint(-3, 4, (3, 3), generator=g).double()
    c = torch.randint(-3, 4, (2, 2), generator=g).double()
    conv_l = convolve2d(convolve2d(a, b, "full"), c, "full")
    conv_r = convolve2d(a, convolve2d(b, c, "full"), "full")
    corr_l = correlate2d(correlate2d(a, b, "full"), c, "full")
    corr_r = correlate2d(a, correlate2d(b, c, "full"), "full")
    diff = lambda x, y: float((x - y).abs().max())  # noqa: E731
    return [
        "A: 5x5, B: 3x3, C: 2x2 random integers; 'full' mode throughout.",
        f"convolution:       max |(A*B)*C - A*(B*C)| = {diff(conv_l, conv_r):g}   (associative)",
        f"                   max |A*B - B*A|         = {diff(convolve2d(a, b, 'full'), convolve2d(b, a, 'full')):g}   (commutative)",
        f"cross-correlation: max |(A.B).C - A.(B.C)| = {diff(corr_l, corr_r):g}   (not associative)",
        f"                   max |A.B - B.A|         = {diff(correlate2d(a, b, 'full'), correlate2d(b, a, 'full')):g}   "
        "(not commutative: B.A is A.B rotated by 180 degrees)",
    ]
