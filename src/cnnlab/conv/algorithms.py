"""Four ways to compute the same 2-D cross-correlation (what deep learning calls convolution).

Each function takes an input that is already zero-padded (see ``_common.prepare``), so it only
computes the 'valid' part: ``Z[n, k, i, j] = sum_c sum_u sum_v W[k, c, u, v] X[n, c, i*s + u*d, j*s + v*d]``.
"""

from __future__ import annotations

from fractions import Fraction

import torch
import torch.nn.functional as F

from cnnlab.conv._common import ConvArgs, output_hw, per_group

__all__ = ["direct", "im2col", "fft", "winograd", "gemm"]


def _onednn_gemm_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch._C._nn, "mkldnn_linear")


_ONEDNN = _onednn_gemm_available()


def gemm(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``a @ w.T`` for a (M, K) and w (N, K).

    The matrix engine: on the CPU, in float32 and without autograd, oneDNN's GEMM (through
    ``mkldnn_linear``): on this project's AMD machine MKL's sgemm, which ``torch.matmul``
    calls, runs at about half of oneDNN's speed (measured: 156 vs 66 ms for 25088x2304x256).
    Everywhere else -- CUDA, float64, or when gradients are needed -- ``torch.matmul``.
    """
    needs_grad = torch.is_grad_enabled() and (a.requires_grad or w.requires_grad)
    if _ONEDNN and a.device.type == "cpu" and a.dtype == torch.float32 and w.dtype == torch.float32 and not needs_grad:
        return torch._C._nn.mkldnn_linear(a.contiguous().to_mkldnn(), w.contiguous().to_mkldnn()).to_dense()
    return a @ w.t()


# ---------------------------------------------------------------------------------------
# direct: the lecture's sum, one output position at a time


def _direct(x: torch.Tensor, w: torch.Tensor, args: ConvArgs) -> torch.Tensor:
    (sh, sw), (dh, dw) = args.stride, args.dilation
    kh, kw = w.shape[-2:]
    oh, ow = output_hw(x, w, args)
    rows = []
    for i in range(oh):  # Z[i, j] = sum_u sum_v K[u, v] A[i + u, j + v], for every channel pair at once
        cols = []
        for j in range(ow):
            patch = x[:, :, i * sh : i * sh + dh * (kh - 1) + 1 : dh, j * sw : j * sw + dw * (kw - 1) + 1 : dw]
            cols.append(torch.einsum("ncuv,kcuv->nk", patch, w))  # (N, K)
        rows.append(torch.stack(cols, dim=-1))  # (N, K, ow)
    return torch.stack(rows, dim=-2)  # (N, K, oh, ow)


def direct(x: torch.Tensor, w: torch.Tensor, args: ConvArgs) -> torch.Tensor:
    return per_group(_direct, x, w, args)


# ---------------------------------------------------------------------------------------
# im2col: unfold every receptive field into a column, then one matrix multiply


def _im2col(x: torch.Tensor, w: torch.Tensor, args: ConvArgs, max_cols_bytes: int = 1 << 23) -> torch.Tensor:
    n, c = x.shape[:2]
    k, _, kh, kw = w.shape
    (sh, sw), (dh, dw) = args.stride, args.dilation
    oh, ow = output_hw(x, w, args)
    xh = x.permute(0, 2, 3, 1).contiguous()  # (N, H, W, C): free when x is channels-last; slices stay dense
    wm = w.permute(0, 2, 3, 1).reshape(k, kh * kw * c)  # (K, kh*kw*C), columns ordered (u, v, c)
    # The column matrix is kh*kw times the input: build it a few images, or a band of output
    # rows, at a time (8 MiB), so it stays in cache and its memory is reused, not page-faulted.
    row_bytes = ow * kh * kw * c * x.element_size()
    rows_per_chunk = max(1, max_cols_bytes // max(row_bytes, 1))
    images_per_chunk = max(1, rows_per_chunk // oh)
    outs = []
    for b0 in range(0, n, images_per_chunk):
        xb = xh[b0 : b0 + images_per_chunk]
        bands = []
        for r0 in range(0, oh, rows_per_chunk if images_per_chunk == 1 else oh):
            r1 = min(oh, r0 + (rows_per_chunk if images_per_chunk == 1 else oh))
            cols = torch.cat(  # every receptive field as one row: (B, rows, ow, kh*kw*C)
                [xb[:, r0 * sh + u * dh : (r1 - 1) * sh + u * dh + 1 : sh, v * dw : v * dw + sw * (ow - 1) + 1 : sw, :]
                 for u in range(kh) for v in range(kw)],
                dim=-1,
            )
            bands.append(gemm(cols.reshape(-1, kh * kw * c), wm).view(len(xb), r1 - r0, ow, k))  # one GEMM
        outs.append(bands[0] if len(bands) == 1 else torch.cat(bands, dim=1))
    out = outs[0] if len(outs) == 1 else torch.cat(outs)
    return out.permute(0, 3, 1, 2)  # (N, K, oh, ow), stored channels-last


def im2col(x: torch.Tensor, w: torch.Tensor, args: ConvArgs) -> torch.Tensor:
    return per_group(_im2col, x, w, args)


# ---------------------------------------------------------------------------------------
# FFT: correlation is a product in the frequency domain (X . conj(W))


def _dilate(w: torch.Tensor, dilation: tuple[int, int]) -> torch.Tensor:
    if dilation == (1, 1):
        return w
    k, c, kh, kw = w.shape
    dh, dw = dilation
    out = w.new_zeros(k, c, dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    out[:, :, ::dh, ::dw] = w
    return out


def _fft(x: torch.Tensor, w: torch.Tensor, args: ConvArgs) -> torch.Tensor:
    w = _dilate(w, args.dilation)
    h, wd = x.shape[-2:]
    kh, kw = w.shape[-2:]
    xf = torch.fft.rfft2(x, s=(h, wd))  # (N, C, H, W/2+1); circular size H x W: the valid part never wraps
    wf = torch.fft.rfft2(w, s=(h, wd))  # (K, C, H, W/2+1)
    # sum over input channels for every frequency: (F, N, C) @ (F, C, K) -> (F, N, K)
    yf = torch.matmul(xf.permute(2, 3, 0, 1), wf.conj().permute(2, 3, 1, 0)).permute(2, 3, 0, 1)
    y = torch.fft.irfft2(yf, s=(h, wd))  # (N, K, H, W) circular cross-correlation
    y = y[:, :, : h - kh + 1 : args.stride[0], : wd - kw + 1 : args.stride[1]]
    return y.contiguous()


def fft(x: torch.Tensor, w: torch.Tensor, args: ConvArgs) -> torch.Tensor:
    return per_group(_fft, x, w, args)


# ---------------------------------------------------------------------------------------
# Winograd minimal filtering F(m x m, 3 x 3) (Lavin & Gray 2016): Y = A^T [(G g G^T) . (B^T d B)] A


def _matrices(m: int) -> tuple[list[list[Fraction]], list[list[Fraction]], list[list[Fraction]]]:
    """B^T, G, A^T of F(m, 3) from Lavin & Gray's Table/appendix (interpolation points 0, +-1, +-2...)."""
    if m == 2:
        bt = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
        g = [[1, 0, 0], [Fraction(1, 2), Fraction(1, 2), Fraction(1, 2)], [Fraction(1, 2), Fraction(-1, 2), Fraction(1, 2)],
             [0, 0, 1]]
        at = [[1, 1, 1, 0], [0, 1, -1, -1]]
    elif m == 4:
        bt = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
              [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
        g = [[Fraction(1, 4), 0, 0], [Fraction(-1, 6), Fraction(-1, 6), Fraction(-1, 6)],
             [Fraction(-1, 6), Fraction(1, 6), Fraction(-1, 6)], [Fraction(1, 24), Fraction(1, 12), Fraction(1, 6)],
             [Fraction(1, 24), Fraction(-1, 12), Fraction(1, 6)], [0, 0, 1]]
        at = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
    else:
        raise ValueError(f"Winograd tiles F({m}x{m}, 3x3) are implemented for m = 2 and 4 only")
    return bt, g, at


def winograd_matrices(m: int, dtype: torch.dtype = torch.float32, device=None) -> tuple[torch.Tensor, ...]:
    bt, g, at = _matrices(m)
    as_t = lambda rows: torch.tensor([[float(v) for v in r] for r in rows], dtype=dtype, device=device)  # noqa: E731
    return as_t(bt), as_t(g), as_t(at)


def _combine(coeffs: list, terms: list[torch.Tensor]) -> torch.Tensor:
    """sum_j coeffs[j] * terms[j], skipping zeros and multiplying only where |c| != 1."""
    out = None
    for c, t in zip(coeffs, terms):
        c = float(c)
        if c == 0:
            continue
        if out is None:
            out = t if c == 1 else (-t if c == -1 else t * c)
        elif c == 1:
            out = out + t
        elif c == -1:
            out = out - t
        else:
            out = out + t * c
    assert out is not None
    return out


def _transform(terms: list[torch.Tensor], matrix: list[list]) -> list[torch.Tensor]:
    return [_combine(row, terms) for row in matrix]


def _winograd(x: torch.Tensor, w: torch.Tensor, args: ConvArgs, m: int) -> torch.Tensor:
    n, c, h, wd = x.shape
    k = w.shape[0]
    a = m + 2  # input tile side (alpha); tiles overlap by 2
    bt, g_rows, at = _matrices(m)
    oh, ow = h - 2, wd - 2
    th, tw = -(-oh // m), -(-ow // m)  # tiles per axis
    x = F.pad(x, (0, tw * m + 2 - wd, 0, th * m + 2 - h))  # whole tiles only
    # Work channels-last (N, H, W, C): every tile slice below is then dense in its last dimension.
    xh = x.permute(0, 2, 3, 1).contiguous()
    # V = B^T d B for every tile at once: strided slices pick row j of every tile, then adds/subs
    rows = _transform([xh[:, j : j + m * th : m] for j in range(a)], bt)  # a x (N, th, W', C)
    v = [t for r in rows for t in _transform([r[:, :, j : j + m * tw : m] for j in range(a)], bt)]
    v = torch.stack(v).view(a * a, n * th * tw, c)  # (a*a, P, C), P = tiles in the batch
    g = torch.tensor([[float(e) for e in r] for r in g_rows], dtype=w.dtype, device=w.device)
    u = (g @ w @ g.T).permute(2, 3, 0, 1).reshape(a * a, k, c)  # G g G^T: (a*a, K, C)
    mm = torch.stack([gemm(v[i], u[i]) for i in range(a * a)])  # a*a GEMMs summing over C: (a*a, P, K)
    mm = mm.view(a, a, n, th, tw, k)
    # Y = A^T M A: combine along the first tile axis, then the second
    first = _transform([mm[i] for i in range(a)], at)  # m x (a, N, th, tw, K)
    y = [out for f in first for out in _transform([f[j] for j in range(a)], at)]  # m*m x (N, th, tw, K)
    y = torch.stack(y).view(m, m, n, th, tw, k).permute(2, 3, 0, 4, 1, 5).reshape(n, th * m, tw * m, k)
    return y[:, :oh, :ow].permute(0, 3, 1, 2)  # (N, K, oh, ow), stored channels-last


def winograd(x: torch.Tensor, w: torch.Tensor, args: ConvArgs, m: int = 2) -> torch.Tensor:
    if tuple(w.shape[-2:]) != (3, 3) or args.stride != (1, 1) or args.dilation != (1, 1):
        raise ValueError(
            f"winograd F({m}x{m},3x3) needs 3x3 kernels with stride 1 and dilation 1; got kernel "
            f"{tuple(w.shape[-2:])}, stride {args.stride}, dilation {args.dilation} (use algorithm='im2col')"
        )
    return per_group(lambda xi, wi, a: _winograd(xi, wi, a, m), x, w, args)
