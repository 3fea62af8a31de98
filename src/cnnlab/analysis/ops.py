"""Operation counts for one image, by intercepting every ATen op (on the ``meta`` device: free).

MACs of convolutions and matrix products (FLOPs = 2 x MACs) come from :mod:`cnnlab.arithmetic`'s
formulas; the element operations of pooling, activations, normalisation and residual adds are
counted apart. Ops it does not know are listed by name (with the module that ran them), never
silently counted as zero.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from cnnlab import arithmetic

__all__ = ["count_ops", "device_of"]

# ATen ops that move or view memory but compute nothing
_FREE = {
    "aten.empty", "aten.empty_like", "aten.empty_strided", "aten.zeros", "aten.zeros_like", "aten.ones", "aten.ones_like",
    "aten.view", "aten._unsafe_view", "aten.reshape", "aten.t", "aten.transpose", "aten.permute", "aten.expand",
    "aten.detach", "aten.clone", "aten.contiguous", "aten.flatten", "aten.squeeze", "aten.unsqueeze", "aten.slice",
    "aten.select", "aten.cat", "aten.stack", "aten.constant_pad_nd", "aten._to_copy", "aten.copy_", "aten.alias",
    "aten.lift_fresh", "aten.split", "aten.chunk", "aten.as_strided", "aten.new_empty", "aten.new_zeros", "aten.fill_",
    "aten.zero_", "aten.as_strided_", "aten.roll", "aten.scalar_tensor", "aten.dropout", "aten.native_dropout", "aten.feature_dropout", "aten.unbind", "aten.index",
}
_ELEMENTWISE = {  # category, ops per output element
    "aten.relu": ("activation", 1), "aten.relu_": ("activation", 1), "aten.threshold": ("activation", 1),
    "aten.hardtanh": ("activation", 1), "aten.hardtanh_": ("activation", 1), "aten.sigmoid": ("activation", 1),
    "aten.tanh": ("activation", 1), "aten.gelu": ("activation", 1), "aten.silu": ("activation", 1),
    "aten.silu_": ("activation", 1), "aten.leaky_relu": ("activation", 1), "aten.leaky_relu_": ("activation", 1),
    "aten._prelu_kernel": ("activation", 1),  # PReLU (ENet)
    "aten.add": ("add", 1), "aten.add_": ("add", 1), "aten.sub": ("add", 1), "aten.mul": ("elementwise", 1),
    "aten.mul_": ("elementwise", 1), "aten.div": ("elementwise", 1), "aten.div_": ("elementwise", 1),
    "aten.pow": ("elementwise", 1), "aten._softmax": ("activation", 3), "aten._log_softmax": ("activation", 3),
    "aten.hardsigmoid": ("activation", 1), "aten.hardsigmoid_": ("activation", 1),
    "aten.hardswish": ("activation", 1), "aten.hardswish_": ("activation", 1), "aten._safe_softmax": ("activation", 3),
    "aten.clamp": ("elementwise", 1), "aten.clamp_min": ("elementwise", 1), "aten.masked_fill": ("elementwise", 1),
    "aten.eq": ("elementwise", 1), "aten.ne": ("elementwise", 1), "aten.exp": ("elementwise", 1),
    "aten.native_batch_norm": ("norm", 2), "aten._native_batch_norm_legit_no_training": ("norm", 2),
    "aten._native_batch_norm_legit": ("norm", 2), "aten.native_layer_norm": ("norm", 5),
}


def _numel(shape: Sequence[int]) -> int:
    return math.prod(int(s) for s in shape)


def _convolution_macs(args: tuple, out: torch.Tensor) -> int:
    """MACs of one ``aten.convolution`` call (any dimension, transposed or not, whole batch)."""
    x, w = args[0], args[1]
    transposed = bool(args[6]) if len(args) > 6 else False
    groups = int(args[8]) if len(args) > 8 else 1
    kernel = tuple(w.shape[2:])
    if transposed:  # weight (C_in, C_out/groups, *k); every input element is scattered
        positions = _numel(x.shape) // x.shape[1]
        return arithmetic.conv_transpose_macs(positions, x.shape[1], w.shape[1] * groups, kernel, groups)
    positions = _numel(out.shape) // out.shape[1]  # weight (C_out, C_in/groups, *k)
    return arithmetic.conv_macs(positions, x.shape[1], w.shape[0], kernel, groups)


class _OpCounter(TorchDispatchMode):
    """Counts MACs and element ops of every ATen op run under it (batch of one image)."""

    def __init__(self, module_stack: list[str]):
        super().__init__()
        self.stack = module_stack
        self.macs = 0
        self.other: dict[str, int] = {}
        self.unsupported: set[str] = set()
        self.macs_by_module: dict[str, int] = {}

    def _add(self, category: str, n: int) -> None:
        self.other[category] = self.other.get(category, 0) + int(n)

    def _add_macs(self, where: str, macs: int) -> None:
        self.macs += macs
        self.macs_by_module[where] = self.macs_by_module.get(where, 0) + macs

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = str(func.overloadpacket)
        where = self.stack[-1] if self.stack else "model"
        first = out[0] if isinstance(out, (tuple, list)) else out
        if name == "aten.convolution":
            self._add_macs(where, _convolution_macs(args, first))
        elif name in ("aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm"):
            a, b = (args[1], args[2]) if name in ("aten.addmm", "aten.baddbmm") else (args[0], args[1])
            m, n = first.shape[-2], first.shape[-1]
            self._add_macs(where, arithmetic.matmul_macs(m, a.shape[-1], n, batch=_numel(first.shape[:-2])))
        elif name in ("aten.max_pool2d_with_indices", "aten.max_pool2d", "aten.avg_pool2d", "aten.avg_pool3d"):
            kernel = args[1]
            self._add("pool", _numel(first.shape) * _numel(kernel if isinstance(kernel, (list, tuple)) else [kernel]))
        elif name in ("aten._adaptive_avg_pool2d", "aten.adaptive_max_pool2d", "aten.mean", "aten.sum"):
            self._add("pool", _numel(args[0].shape))
        elif name == "aten.linalg_vector_norm":  # a square and an add per input element (Swin V2's cosine attention)
            self._add("norm", 2 * _numel(args[0].shape))
        elif name in _ELEMENTWISE:
            category, per = _ELEMENTWISE[name]
            self._add(category, per * _numel(first.shape))
        elif name not in _FREE:
            self.unsupported.add(f"{where} ({name})")
        return out


def count_ops(model: nn.Module, input_shape: Sequence[int]) -> _OpCounter:
    """Run one image of ``input_shape`` (C, H, W) through ``model`` under the op counter.

    The model should live on the ``meta`` device (no memory, no arithmetic); it runs in eval mode.
    """
    device = device_of(model)
    stack: list[str] = []
    counter = _OpCounter(stack)
    handles = []

    def enter(m: nn.Module, inputs: Any) -> None:
        stack.append(type(m).__name__)

    def leave(m: nn.Module, inputs: Any, output: Any) -> None:  # returns None: the output is kept
        stack.pop()

    for mod in model.modules():
        handles.append(mod.register_forward_pre_hook(enter))
        handles.append(mod.register_forward_hook(leave))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(torch.empty((1, *input_shape), device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return counter


def device_of(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")
