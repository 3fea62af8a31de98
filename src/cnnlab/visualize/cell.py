"""What made one cell of a feature map -- the lecture's ``Z[i,j] = sum_u,v K[u,v] A[i+u, j+v]`` on
the learner's own network: for a convolution, the window of the (padded) input each kernel slice
touches, their products and sums, the bias and the total; for a pooling layer, its window (the
maximum's place, or the divisor); for an element-wise layer, the input cell; for a block, the value.

Everything comes from one traced forward pass (:func:`cnnlab.trace.trace`, the layer's input and
output kept) and a few tensor operations on the one window: no loop over the map. ``value`` is the
layer's own output (a convolution's before any activation); ``total`` is recomputed in float64
from the window and the weights, so the two agree to float tolerance -- the check a learner can see.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError, CnnlabTypeError, CnnlabValueError, shown
from cnnlab.geometry import layer_geometry
from cnnlab.trace import LayerCall, trace
from cnnlab.visualize.layers import get_layer

__all__ = ["CellExplanation", "explain_cell"]

_ADAPTIVE = (nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, *_ADAPTIVE)


@dataclass
class CellExplanation:
    """The arithmetic behind output cell ``[channel, y, x]`` of ``layer``; :meth:`to_dict` is the JSON
    of ``cnnlab explore``'s ``/cell``. Tensors are float64 on the CPU; a ``window`` cell is padding
    where ``padding`` is true (zero padding counts 0, a max pool's padding never wins)."""

    kind: str  # "conv" | "pool" | "elementwise" | "block" | "other" (a leaf of no arithmetic shown here)
    layer: str
    type: str  # the module's class name
    channel: int
    y: int
    x: int
    value: float  # the layer's own output at [0, channel, y, x], from the trace
    rf_box: tuple[int, int, int, int] | None  # (top, left, bottom, right) input pixels, half-open; None: all
    geometry: dict[str, Any] | None = None  # kernel, stride, padding, dilation as the trace reads them
    # convolution: one row per input channel ci of the output channel's group
    total: float | None = None  # sum of the sums + bias
    bias: float | None = None  # None: the layer has no bias
    group: int | None = None
    groups: int | None = None
    in_channels: list[int] | None = None  # ci per row
    windows: torch.Tensor | None = None  # (rows, kh, kw) the input the kernel touches
    kernels: torch.Tensor | None = None  # (rows, kh, kw) weight[channel, ci - group * rows]
    products: torch.Tensor | None = None  # windows * kernels
    sums: torch.Tensor | None = None  # (rows,)
    # pooling (and the padding mask of a convolution's window)
    padding: torch.Tensor | None = None  # (kh, kw) bool: the window cell lies outside the input
    op: str | None = None  # "max" | "avg"
    window: torch.Tensor | None = None  # (kh, kw) of channel ``channel``
    argmax: tuple[int, int] | None = None  # [u, v] in the window (max)
    divisor: float | None = None  # (avg)
    input: float | None = None  # element-wise: the input at the same cell

    @property
    def inputs(self) -> list[dict[str, Any]]:
        """A convolution's rows as ``{"channel", "window", "kernel", "products", "sum", "padding"}``."""
        if self.windows is None:
            return []
        mask = self.padding.tolist()
        rows = zip(self.in_channels, _nested(self.windows), _nested(self.kernels), _nested(self.products),
                   self.sums.tolist())
        return [{"channel": ci, "window": w, "kernel": k, "products": p, "sum": _num(s), "padding": mask}
                for ci, w, k, p, s in rows]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (Python floats, nested lists; a non-finite number is None)."""
        out: dict[str, Any] = {"kind": self.kind, "layer": self.layer, "type": self.type, "channel": self.channel,
                               "y": self.y, "x": self.x, "value": _num(self.value)}
        geometry = dict(self.geometry or {})
        if self.kind == "conv":
            out.update(total=_num(self.total), bias=_num(self.bias), inputs=self.inputs, group=self.group,
                       groups=self.groups, **geometry)
        elif self.kind == "pool":
            out.update(op=self.op, window=_nested(self.window), padding=self.padding.tolist())
            out.update(kernel=geometry.get("kernel"), stride=geometry.get("stride"),
                       dilation=geometry.get("dilation"), layer_padding=geometry.get("padding"))
            out.update({"argmax": list(self.argmax)} if self.op == "max" else {"divisor": _num(self.divisor)})
            out["total"] = _num(self.total)  # the window's max, or its sum over the divisor: = value
        elif self.kind == "elementwise":
            out["input"] = _num(self.input)
        out["rf_box"] = None if self.rf_box is None else list(self.rf_box)
        return out


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _nested(t: torch.Tensor) -> list:
    """``t.tolist()`` with every non-finite number None (JSON has no inf or NaN)."""
    if bool(torch.isfinite(t).all()):
        return t.tolist()
    return _nested_slow(t.tolist())


def _nested_slow(rows: Any) -> Any:
    if isinstance(rows, list):
        return [_nested_slow(r) for r in rows]
    return _num(rows)


def _index(value: Any, what: str) -> int:
    """An int argument (numpy and 0-d torch integers too, not a bool), else a CnnlabTypeError."""
    if not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise CnnlabTypeError(f"{what} must be an integer, got {shown(value)}")


def _check_image(model: nn.Module, image: Any) -> torch.Tensor:
    """``image`` as a float (1, C, H, W) batch on the model's device and in its dtype."""
    if not isinstance(image, torch.Tensor):
        raise CnnlabTypeError(f"image must be a torch.Tensor of shape (1, C, H, W), got {shown(image)}")
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4 or image.shape[0] != 1:
        raise CnnlabValueError(f"image must be one image as a batch of shape (1, C, H, W), got shape "
                               f"{tuple(image.shape)}")
    if not image.is_floating_point():
        raise CnnlabTypeError(f"image must be a float tensor, normalised as in training, got {image.dtype}")
    p = next(model.parameters(), None)
    return image if p is None else image.to(device=p.device, dtype=p.dtype)


def _check_cell(call: LayerCall, channel: int, y: int, x: int) -> None:
    if len(call.output_shape) != 3:
        raise CnnlabValueError(f"{call.name} ({call.type}) gives a flat output of shape {list(call.output_shape)}; "
                               f"cells are for feature maps (C x H x W): choose a conv, pool or activation layer")
    c, h, w = call.output_shape
    for what, v, n, unit in (("channel", channel, c, "channels"), ("y", y, h, "rows"), ("x", x, w, "columns")):
        if not 0 <= v < n:
            raise CnnlabValueError(f"{what}={v} is outside {call.name}'s {c}x{h}x{w} map (C x H x W): "
                                   f"{unit} run 0..{n - 1}")


def _taps(start: int, k: int, d: int, size: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The input indices one window axis reads (``start + u*d``, mapped into the input by the padding
    ``mode`` as ``F.pad`` does) and which of its taps are padding (outside the input)."""
    idx = start + torch.arange(k) * d
    pad = (idx < 0) | (idx >= size)
    if mode == "reflect":
        src = idx.abs()
        src = torch.where(src >= size, 2 * (size - 1) - src, src)
    elif mode == "circular":
        src = idx % size
    else:  # zeros (masked by the caller) and replicate
        src = idx
    return src.clamp(0, size - 1), pad


def _window(inp: torch.Tensor, channels: slice, corner: tuple[int, int], kernel: tuple[int, int],
            dilation: tuple[int, int], mode: str = "zeros", fill: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The (channels, kh, kw) window of ``inp`` (1, C, H, W) whose top-left tap is at ``corner`` (input
    coordinates, negative in the padding) in float64, and its (kh, kw) padding mask; padding cells
    hold ``fill`` unless ``mode`` is reflect/replicate/circular."""
    rows, pad_r = _taps(corner[0], kernel[0], dilation[0], inp.shape[-2], mode)
    cols, pad_c = _taps(corner[1], kernel[1], dilation[1], inp.shape[-1], mode)
    device = inp.device
    win = inp[0, channels].index_select(1, rows.to(device)).index_select(2, cols.to(device))
    win = win.detach().to("cpu", torch.float64)
    mask = pad_r[:, None] | pad_c[None, :]
    if mode == "zeros":
        win = win.masked_fill(mask, fill)
    return win, mask


def _conv(call: LayerCall, conv: nn.Conv2d, inp: torch.Tensor, out: CellExplanation) -> None:
    g = layer_geometry(conv, tuple(inp.shape[-2:]))
    per_group_out, per_group_in = conv.out_channels // conv.groups, conv.in_channels // conv.groups
    group = out.channel // per_group_out
    first = group * per_group_in
    corner = (out.y * g.stride[0] - g.padding[0], out.x * g.stride[1] - g.padding[1])
    windows, mask = _window(inp, slice(first, first + per_group_in), corner, g.kernel, g.dilation,
                            conv.padding_mode)
    kernels = conv.weight[out.channel].detach().to("cpu", torch.float64)
    products = windows * kernels
    sums = products.sum(dim=(1, 2))
    bias = None if conv.bias is None else float(conv.bias.detach()[out.channel])
    out.kind, out.group, out.groups, out.bias = "conv", group, conv.groups, bias
    out.in_channels = list(range(first, first + per_group_in))
    out.windows, out.kernels, out.products, out.sums, out.padding = windows, kernels, products, sums, mask
    out.total = float(sums.sum()) + (bias or 0.0)


def _adaptive_window(inp: torch.Tensor, out_hw: tuple[int, int], out: CellExplanation) -> torch.Tensor:
    """PyTorch's adaptive window: rows floor(y*H/oh) .. ceil((y+1)*H/oh), columns alike."""
    (h, w), (oh, ow) = inp.shape[-2:], out_hw
    top, bottom = (out.y * h) // oh, -((-(out.y + 1) * h) // oh)
    left, right = (out.x * w) // ow, -((-(out.x + 1) * w) // ow)
    return inp[0, out.channel, top:bottom, left:right].detach().to("cpu", torch.float64)


def _avg_divisor(pool: nn.AvgPool2d, g, in_hw: tuple[int, int], out: CellExplanation) -> float:
    """``avg_pool2d``'s divisor: divisor_override, else the window clipped to input + padding
    (count_include_pad) or to the input."""
    if pool.divisor_override:
        return float(pool.divisor_override)
    sizes = []
    for a, i in enumerate((out.y, out.x)):
        k, s, p, _ = g.axis(a)
        start = i * s - p
        end = min(start + k, in_hw[a] + p)
        sizes.append((end - start) if pool.count_include_pad else (min(end, in_hw[a]) - max(start, 0)))
    return float(sizes[0] * sizes[1])


def _pool(call: LayerCall, pool: nn.Module, inp: torch.Tensor, out: CellExplanation) -> None:
    is_max = isinstance(pool, (nn.MaxPool2d, nn.AdaptiveMaxPool2d))
    if isinstance(pool, _ADAPTIVE):
        window = _adaptive_window(inp, tuple(call.output_shape[-2:]), out)
        mask = torch.zeros(window.shape, dtype=torch.bool)
    else:
        g = layer_geometry(pool, tuple(inp.shape[-2:]))
        corner = (out.y * g.stride[0] - g.padding[0], out.x * g.stride[1] - g.padding[1])
        channels = slice(out.channel, out.channel + 1)
        window, mask = _window(inp, channels, corner, g.kernel, g.dilation, fill=-math.inf if is_max else 0.0)
        window = window[0]
    out.kind, out.op, out.window, out.padding = "pool", "max" if is_max else "avg", window, mask
    if is_max:
        flat = int(torch.argmax(window))
        out.argmax = (flat // window.shape[1], flat % window.shape[1])
        out.total = float(window.max())  # the winner
        return
    if isinstance(pool, nn.AvgPool2d):
        out.divisor = _avg_divisor(pool, g, tuple(inp.shape[-2:]), out)
    else:
        out.divisor = float(window.numel())
    out.total = float(window.sum()) / out.divisor  # padding counts as 0 where count_include_pad says so


def _traced(model: nn.Module, image: torch.Tensor, layer: str):
    """The forward pass keeping ``layer``'s input and output; an image the model cannot take is one line."""
    result = trace(model, image, keep={layer}, keep_inputs={layer}, catch=True)
    if isinstance(result.error, CnnlabError):
        raise result.error
    if isinstance(result.error, (RuntimeError, ValueError)):
        where = f" in {result.running_name}" if result.running_name else ""
        first = (str(result.error).strip().splitlines() or [type(result.error).__name__])[0]
        raise CnnlabValueError(f"the image of shape {tuple(image.shape)} does not go through "
                               f"{type(model).__name__}{where}: {first}") from result.error
    if result.error is not None:
        raise result.error
    return result


def _kept(result, name: str) -> LayerCall | None:
    """The last call of ``name`` (the one whose output and input were kept)."""
    calls = [c for c in result.calls if c.name == name and c.output is not None]
    return calls[-1] if calls else None


def explain_cell(model: nn.Module, image: torch.Tensor, layer: str, channel: int, y: int, x: int) -> CellExplanation:
    """The arithmetic behind cell ``[channel, y, x]`` of ``layer``'s output for ``image`` (one image
    as a (1, C, H, W) batch, normalised as the model was trained), from one forward pass in eval mode.

    A ``Conv2d`` (any padding, padding mode, stride, dilation, groups; bias or none) gives a row per
    input channel of the output channel's group: window, kernel slice, products, sum; ``total`` =
    sum of the sums + bias equals ``value``, the layer's own output. Max/avg (also adaptive) pools
    give their window; element-wise layers (ReLU, BatchNorm, dropout, ...) the input at the cell;
    a container (a residual block) its value. A layer with a flat output (Linear), an unknown or
    unused layer, or a cell outside the map is a one-line :class:`cnnlab.errors.CnnlabError`.
    """
    if not isinstance(model, nn.Module):
        raise CnnlabTypeError(f"model must be an nn.Module, got {shown(model)}")
    if not isinstance(layer, str):
        raise CnnlabTypeError(f"layer must be a layer's name (a string such as 'features.0'), got {shown(layer)}")
    channel, y, x = _index(channel, "channel"), _index(y, "y"), _index(x, "x")
    module = get_layer(model, layer)
    call = _kept(_traced(model, _check_image(model, image), layer), layer)
    if call is None:
        raise CnnlabValueError(f"layer {layer!r} ({type(module).__name__}) does not run in "
                               f"{type(model).__name__}'s forward pass; choose one that does")
    _check_cell(call, channel, y, x)
    box = call.box(y, x)
    out = CellExplanation("other", layer, call.type, channel, y, x, float(call.output[0, channel, y, x]),
                          None if box is None else tuple(int(v) for v in box),
                          {k: getattr(call, k) for k in ("kernel", "stride", "padding", "dilation")})
    inp = call.input
    spatial = inp is not None and inp.dim() == 4
    if isinstance(module, nn.Conv2d) and spatial:
        _conv(call, module, inp, out)
    elif isinstance(module, _POOLS) and spatial:
        _pool(call, module, inp, out)
    elif not call.leaf:
        out.kind = "block"
    elif spatial and tuple(inp.shape[1:]) == tuple(call.output_shape):
        out.kind, out.input = "elementwise", float(inp[0, channel, y, x])
    return out
