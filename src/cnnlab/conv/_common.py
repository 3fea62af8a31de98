"""Argument handling shared by the convolution algorithms (F.conv2d's semantics)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cnnlab.arithmetic import conv_output_size
from cnnlab.errors import CnnlabTypeError, CnnlabValueError


def pair(v: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    if isinstance(v, int):
        v = (v, v)
    v = tuple(int(e) for e in v)
    if len(v) != 2:
        raise CnnlabValueError(f"{name} must be an int or a pair, got {v!r}")
    return v  # type: ignore[return-value]


@dataclass(frozen=True)
class ConvArgs:
    stride: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    pad: tuple[int, int, int, int]  # left, right, top, bottom (F.pad order)


def prepare(x: torch.Tensor, weight: torch.Tensor, stride, padding, dilation, groups) -> tuple[torch.Tensor, ConvArgs]:
    """Validate like ``F.conv2d`` and zero-pad the input explicitly; algorithms then run 'valid'."""
    for what, t in (("x", x), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise CnnlabTypeError(f"conv2d takes tensors; {what} is a {type(t).__name__} (wrap it: torch.tensor(...))")
    if x.dim() != 4 or weight.dim() != 4:
        raise CnnlabValueError(f"expected NCHW input and KCkk weight, got {tuple(x.shape)} and {tuple(weight.shape)}")
    stride, dilation = pair(stride, "stride"), pair(dilation, "dilation")
    if min(stride) < 1 or min(dilation) < 1 or groups < 1:
        raise CnnlabValueError("stride, dilation and groups must be positive")
    n, c, h, w = x.shape
    k, cg, kh, kw = weight.shape
    if c % groups or k % groups or cg != c // groups:
        raise CnnlabValueError(f"input has {c} channels, weight {tuple(weight.shape)}, groups {groups}: "
                               f"need weight.shape[1] * groups == channels and out_channels divisible by groups")
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            pads = (0, 0, 0, 0)
        elif mode == "same":
            if stride != (1, 1):
                raise CnnlabValueError("padding='same' is not supported for strided convolutions (as in F.conv2d)")
            th, tw = dilation[0] * (kh - 1), dilation[1] * (kw - 1)
            pads = (tw // 2, tw - tw // 2, th // 2, th - th // 2)
        else:
            raise CnnlabValueError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    else:
        ph, pw = pair(padding, "padding")
        if min(ph, pw) < 0:
            raise CnnlabValueError("padding must be >= 0")
        pads = (pw, pw, ph, ph)
    # raises ValueError with the worked formula if the output would vanish
    conv_output_size(h + pads[2] + pads[3], kh, stride[0], 0, dilation[0])
    conv_output_size(w + pads[0] + pads[1], kw, stride[1], 0, dilation[1])
    if any(pads):
        x = F.pad(x, pads)
    return x, ConvArgs(stride, dilation, groups, pads)


def output_hw(x: torch.Tensor, weight: torch.Tensor, args: ConvArgs) -> tuple[int, int]:
    """Output size for an already padded input."""
    kh, kw = weight.shape[-2:]
    oh = (x.shape[-2] - args.dilation[0] * (kh - 1) - 1) // args.stride[0] + 1
    ow = (x.shape[-1] - args.dilation[1] * (kw - 1) - 1) // args.stride[1] + 1
    return oh, ow


def per_group(fn, x: torch.Tensor, weight: torch.Tensor, args: ConvArgs) -> torch.Tensor:
    """Run a groups=1 algorithm on each group and concatenate the output channels."""
    if args.groups == 1:
        return fn(x, weight, args)
    xs = x.chunk(args.groups, dim=1)
    ws = weight.chunk(args.groups, dim=0)
    return torch.cat([fn(xi, wi, args) for xi, wi in zip(xs, ws)], dim=1)
