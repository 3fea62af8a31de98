"""Bytes a kernel holds beyond its inputs and outputs, per ATen op: what a fake-tensor
simulation of the allocator cannot see (:mod:`cnnlab.analysis.simulate`).

CPU rules, measured with ``torch.profiler``'s memory events on torch 2.14 / oneDNN (AVX-512) by
probing each op alone (see docs/BENCHMARKS.md, "Training memory: estimate vs measured"):

- convolution forward: oneDNN reorders the weight into its blocked layout (one weight-sized
  copy); with NCHW tensors it also reorders the input into ``nChw16c`` (channels padded to 16).
  Where PyTorch picks its own im2col kernel instead (one small image, kernels up to 3x3), the
  unfolded input: (C x kh x kw) x (H_out x W_out) per image, forward and backward.
- convolution backward: the weight reorder, plus the weight gradient's when it is computed
  (channels-last); NCHW: weight + blocked input.
- batch-norm backward: one input-sized temporary.
- max-pool backward: when the gradient arrives in another memory format than the input (a
  ``view`` after a channels-last map), contiguous copies of the gradient and of the indices.

CUDA: the caching allocator rounds each block up to 512 bytes (:data:`CUDA_ROUNDING`); cuBLAS keeps
its workspace (:data:`CUBLAS_WORKSPACE`, 8 x 4 MiB as the trainer configures it) from the first
matrix product on. cuDNN's workspaces come from the same allocator but depend on the algorithms
chosen at run time, so they are not modelled (``benchmarks/gpu_costs.py`` measures the difference).
"""

from __future__ import annotations

import torch
from torch._prims_common import suggest_memory_format

__all__ = ["cpu_workspace", "CUDA_ROUNDING", "CUBLAS_WORKSPACE", "workspace_rule"]

aten = torch.ops.aten
CUDA_ROUNDING = 512
CUBLAS_WORKSPACE = 8 * 4096 * 1024  # CUBLAS_WORKSPACE_CONFIG=:4096:8, which cnnlab's deterministic mode sets


def _nbytes(t) -> int:
    return t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0


def _channels_last(t) -> bool:
    return isinstance(t, torch.Tensor) and t.dim() == 4 and suggest_memory_format(t) == torch.channels_last


def _blocked_input(x: torch.Tensor) -> int:
    """Bytes of ``x`` reordered to oneDNN's ``nChw16c`` (channels padded up to a multiple of 16)."""
    c = max(1, x.shape[1])
    return _nbytes(x) * (-(-c // 16) * 16) // c


def _uses_onednn(x: torch.Tensor, w: torch.Tensor, stride, dilation, groups: int) -> bool:
    """PyTorch's choice between oneDNN and its own im2col kernel (``slow_conv2d``) for a float32 CPU
    convolution (``ConvParams::use_mkldnn``): small single images with kernels up to 3x3 take im2col."""
    if x.dtype != torch.float32:
        return True  # bfloat16 (autocast) runs on oneDNN where the CPU supports it
    n, c, h, wd = x.shape
    kh, kw = w.shape[-2:]
    strided, dilated = any(s != 1 for s in stride), any(d != 1 for d in dilation)
    pointwise_ok = strided or dilated or n >= 16 or (kh, kw) != (1, 1) or torch.get_num_threads() > 1
    return pointwise_ok and (groups > 1 or (kh > 3 and kw > 3) or n > 1 or n * c * h * wd > 20480)


def _columns(x: torch.Tensor, w: torch.Tensor, out_hw) -> int:
    """The im2col buffer of ``slow_conv2d``: (C x kh x kw) rows by H_out x W_out columns per image."""
    return x.shape[0] * x.shape[1] * w.shape[-2] * w.shape[-1] * out_hw[0] * out_hw[1] * x.element_size()


def _conv_backward(grad: torch.Tensor, x: torch.Tensor, w: torch.Tensor, mask) -> int:
    """oneDNN's reorders in a convolution's backward: only the weight's (and the weight gradient's)
    when the convolution (input or weight) and the incoming gradient are channels-last; the weight and
    the input (with an input gradient) or the gradient (weight gradient only) when all are NCHW; the
    input and the gradient into ``nChw16c`` when their formats disagree."""
    nhwc = (_channels_last(x) and x.shape[1] > 1) or _channels_last(w)  # one channel: NCHW and NHWC coincide
    if nhwc and _channels_last(grad):
        return 2 * _nbytes(w) if mask[1] else _nbytes(w)
    if not nhwc and not _channels_last(grad):
        return _nbytes(w) + (_blocked_input(x) if mask[0] else _blocked_input(grad))
    return _nbytes(w) + _blocked_input(x) + _blocked_input(grad)


def cpu_workspace(func, args, out) -> int:
    """Bytes the CPU kernel of ``func`` allocates internally beyond its outputs."""
    if func is aten.convolution.default:
        x, w = args[0], args[1]
        if x.dim() != 4 or args[6]:
            return 0
        if not _uses_onednn(x, w, args[3], args[5], args[8]):
            return _columns(x, w, out.shape[-2:])
        return _nbytes(w) if _channels_last(x) or _channels_last(w) else _nbytes(w) + _blocked_input(x)
    if func is aten.convolution_backward.default:
        x, w, mask = args[1], args[2], args[10]
        if x.dim() != 4 or args[7]:
            return 0
        if not _uses_onednn(x, w, args[4], args[6], args[9]):
            return _columns(x, w, args[0].shape[-2:])
        return _conv_backward(args[0], x, w, mask)
    if func is aten.native_batch_norm_backward.default:
        return _nbytes(args[1])  # one input-sized temporary
    if func is aten.max_pool2d_with_indices_backward.default:
        grad, x, indices = args[0], args[1], args[7]
        if suggest_memory_format(grad) != suggest_memory_format(x):  # the kernel works in the gradient's format
            return _nbytes(x) + _nbytes(indices)
    return 0


def workspace_rule(device_type: str):
    """The per-op workspace function for a target device (None where nothing is modelled)."""
    return cpu_workspace if device_type == "cpu" else None
