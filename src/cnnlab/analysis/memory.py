"""Activation memory: bytes a forward pass writes and bytes autograd saves for backward,
computed on the ``meta`` device; on CUDA also the measured peak."""

from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn as nn

from cnnlab.analysis.ops import device_of

__all__ = ["activation_bytes", "activation_memory", "cuda_peaks", "to_meta"]


def activation_bytes(model: nn.Module, input_shape: Sequence[int], batch: int) -> tuple[int, int]:
    """(forward-only, training) activation bytes for one batch, computed on the ``meta`` device.

    Forward-only: every distinct tensor the leaf modules produce (what a forward pass writes if
    nothing were freed; in-place outputs counted once). Training: the tensors autograd saves for
    backward, parameters excluded.
    """
    meta = to_meta(model)
    produced: dict[int, int] = {}
    alive: list[torch.Tensor] = []  # keep outputs alive so ids stay unique

    def on_output(m, i, o):
        if next(m.children(), None) is None:
            for t in (o if isinstance(o, (tuple, list)) else (o,)):
                if isinstance(t, torch.Tensor):
                    produced[id(t)] = t.numel() * t.element_size()
                    alive.append(t)

    handles = [m.register_forward_hook(on_output) for m in meta.modules()]
    x = torch.empty((batch, *input_shape), device="meta")
    was_training = meta.training
    try:
        meta.eval()
        with torch.no_grad():
            meta(x)
    finally:
        for h in handles:
            h.remove()
    params = {id(p) for p in meta.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor):
        base = t._base if t._base is not None else t
        if id(base) not in params and id(t) not in params:
            saved[id(base)] = base.numel() * base.element_size()
            alive.append(base)
        return t

    meta.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            meta(x)
    finally:
        meta.train(was_training)
    return sum(produced.values()), sum(saved.values())


def activation_memory(model: nn.Module, input_shape: Sequence[int], batch_sizes: Sequence[int]) -> list[dict]:
    """:func:`activation_bytes` per batch size. Activations grow linearly with the batch, so two
    meta passes (batch 2 and 3) give every size: bytes(b) = bytes(2) + (b - 2) * (bytes(3) - bytes(2)).
    Not batch 1: batch norm in training mode refuses one value per channel (BN-AlexNet after a linear layer,
    Inception-v3's auxiliary head at 1x1), and the line through 2 and 3 is the same line."""
    f2, t2 = activation_bytes(model, input_shape, 2)
    f3, t3 = activation_bytes(model, input_shape, 3)
    return [{"batch": b, "forward_bytes": f2 + (b - 2) * (f3 - f2), "training_bytes": t2 + (b - 2) * (t3 - t2)}
            for b in batch_sizes]


def to_meta(model: nn.Module) -> nn.Module:
    if device_of(model).type == "meta":
        return model
    meta = copy.deepcopy(model).to("meta")  # deepcopy of a small module; registry models come on meta
    return meta


def cuda_peaks(model: nn.Module, input_shape: Sequence[int], batch: int, device: torch.device) -> dict[str, int]:
    x = torch.randn((batch, *input_shape), device=device)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    with torch.inference_mode():
        model.eval()(x)
    torch.cuda.synchronize(device)
    fwd = torch.cuda.max_memory_allocated(device) - base
    torch.cuda.reset_peak_memory_stats(device)
    model.train()
    model(x).sum().backward()
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize(device)
    train = torch.cuda.max_memory_allocated(device) - base
    model.eval()
    return {"cuda_peak_forward_bytes": fwd, "cuda_peak_training_bytes": train}
