"""The modules :func:`cnnlab.optimize` returns: each computes its model's function, faster.

Every one is an ``nn.Module`` taking the model's input (N, C, H, W) and returning its output in
the input's dtype, under ``torch.no_grad``; ``mode``, ``precision`` and ``setup_s`` (seconds
spent compiling or calibrating) say what it is.
"""

from __future__ import annotations

import contextlib
import copy
import logging

import torch
import torch.nn as nn
from torch.fx.experimental.optimization import fuse
from torch.utils._pytree import tree_map

__all__ = ["InferenceModule", "EagerModule", "ChannelsLastModule", "CompiledModule", "fold_batchnorm"]


class InferenceModule(nn.Module):
    """What every optimized module carries (``mode``, ``precision``, ``setup_s``)."""

    mode: str = "eager"
    precision: str = "fp32"
    setup_s: float = 0.0

    def extra_repr(self) -> str:
        return f"mode={self.mode}, precision={self.precision}"


def _to_dtype(out, dtype: torch.dtype):
    return tree_map(lambda t: t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t, out)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


class EagerModule(InferenceModule):
    """The model as it is, in eval mode and without autograd: the reference every mode is checked against."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor):
        return self.model(x)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval) with every BatchNorm that follows a conv folded into the conv's
    weights and bias (torch.fx); the model itself where it cannot be traced."""
    try:
        return fuse(model.eval(), inplace=False)
    except Exception:  # noqa: BLE001 - data-dependent control flow: keep the unfused copy
        return copy.deepcopy(model).eval()


class ChannelsLastModule(InferenceModule):
    """Conv/BN folded, weights and inputs in NHWC (channels-last), which oneDNN runs faster."""

    mode = "channels_last"

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = fold_batchnorm(model).to(memory_format=torch.channels_last)

    @torch.no_grad()
    def forward(self, x: torch.Tensor):
        return self.model(_channels_last(x))


class CompiledModule(InferenceModule):
    """``torch.compile`` (Inductor) with frozen weights (BN folded, weights pre-packed as
    constants), channels-last, optionally under autocast (``bf16``/``fp16``).

    Each new batch size compiles once more (static shapes run fastest); a batch smaller than one
    already compiled, and at least half its size, is zero-padded to it instead (an evaluation's last
    partial batch costs no second compile).
    """

    def __init__(self, model: nn.Module, device: torch.device, autocast: torch.dtype | None = None):
        super().__init__()
        # inductor's C++ toolchain probe logs "No CUDA runtime is found" on CPU-only machines (as in
        # training/compile.py): stderr carries nothing but errors
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        eager = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
        self.model = torch.compile(eager, dynamic=False)
        # torch.compile has loaded torch._dynamo and torch._inductor (torch's lazily loaded submodules,
        # 1-2 s to import: importing them here at the top would slow every eager or ONNX Runtime user).
        # Every batch size and every compiled copy of the same forward counts against this limit;
        # beyond it dynamo silently falls back to eager
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        self.device_type = device.type
        self.autocast = autocast
        self.mode = "compile" if autocast is None else {torch.bfloat16: "bf16", torch.float16: "fp16"}[autocast]
        self.precision = "fp32" if autocast is None else self.mode
        self.batch_sizes: set[int] = set()

    def _call(self, x: torch.Tensor):
        ctx = (torch.autocast(self.device_type, dtype=self.autocast) if self.autocast is not None
               else contextlib.nullcontext())
        # freezing as a config patch around every call, so that any compile (a new batch size) freezes:
        # measured, torch.compile(options={"freezing": True}) ran resnet18 1.8x slower than this
        with ctx, torch._inductor.config.patch(freezing=True):
            return self.model(x)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor):
        n, dtype = x.shape[0], x.dtype
        padded_to = min((m for m in self.batch_sizes if n < m <= 2 * n), default=None)
        if padded_to is None:
            self.batch_sizes.add(n)
        else:
            x = torch.cat([x, x.new_zeros((padded_to - n, *x.shape[1:]))])
        # always a fresh NHWC tensor made in inference mode: whatever the caller passes (a normal or
        # an inference tensor, NCHW or NHWC), the compiled graph's guards see the same kind of input
        x = torch.empty_like(x, memory_format=torch.channels_last).copy_(x) if x.dim() == 4 else x.clone()
        out = self._call(x)
        if padded_to is not None:
            out = tree_map(lambda t: t[:n] if isinstance(t, torch.Tensor) else t, out)
        return _to_dtype(out, dtype) if self.autocast is not None else out
