"""The shape debugger: when a model cannot take an input, say which layer fails and why, with
the arithmetic, and the smallest square input that works.

The model runs on the ``meta`` device (no memory, no arithmetic) through :func:`cnnlab.trace.trace`,
which keeps where a failing pass stopped; the failing layer is the one whose forward raised. A linear layer that gets the wrong
number of features is explained by the last feature map before it ("linear_1 expects 392 =
8x7x7 inputs; the layers before it give 8x5x5 = 200 for a 20x20 input"); a convolution or
pooling whose window no longer fits by the output-size formula of :mod:`cnnlab.arithmetic`.
Output sizes never shrink as the input grows, so the smallest square input that fits is found by
a doubling search and a bisection over the input side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn as nn

from cnnlab import arithmetic
from cnnlab.analysis.simulate import meta_copy
from cnnlab.errors import CnnlabError, ShapeError
from cnnlab.geometry import layer_geometry
from cnnlab.models import create_model, get_model_info
from cnnlab.trace import trace

__all__ = ["Failure", "probe", "smallest_square_input", "square_input_search", "explain", "shape_error", "registry_fallback"]

MAX_SIDE = 4096


@dataclass
class Failure:
    """Where and how a forward pass failed."""

    layer: str | None  # the leaf module running when it failed (None: in a container's own code)
    module: nn.Module | None
    input_shape: tuple[int, ...] | None  # the failing layer's input, per sample
    last_map: tuple[int, ...] | None  # the last C x H x W map a layer produced before the failure
    previous: str | None  # the last layer that completed
    message: str  # the exception's first line
    kind: str = "other"  # small | big | channels | other


def _dims(shape: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in shape)


def probe(model: nn.Module, input_shape: Sequence[int]) -> Failure | None:
    """Run one input of ``input_shape`` through ``model`` (a meta copy, eval mode, no gradients);
    None if it passes, else the :class:`Failure`."""
    return _run(model, input_shape)[0]


def _run(model: nn.Module, input_shape: Sequence[int]) -> tuple[Failure | None, dict[str, tuple]]:
    """:func:`probe`, and the last C x H x W map produced before each leaf layer's first call
    (one :func:`cnnlab.trace.trace` that records the failure)."""
    meta = meta_copy(model)
    result = trace(meta, torch.empty((1, *input_shape), device="meta"), catch=True)
    if result.error is None:
        return None, result.maps_before
    module = result.running
    failure = Failure(result.running_name if module is not None else None, module,
                      result.running_input if module is not None else None, result.last_map, result.previous,
                      (str(result.error).strip().splitlines() or [type(result.error).__name__])[0])
    if module is None:  # in the forward's own code, e.g. x.view(-1, 392): blame the head it feeds
        names = {m: n for n, m in meta.named_modules()}
        leaves = [m for m in meta.modules() if next(m.children(), None) is None]
        _adopt_next_linear(failure, [(names[m], m) for m in leaves if names.get(m) not in result.maps_before])
    failure.kind = _classify(failure)
    return failure, result.maps_before


def _adopt_next_linear(failure: Failure, not_run: list[tuple[str, nn.Module]]) -> None:
    """A failure between layers whose next layer is a linear one that the last map does not fit
    (a ``view``/``reshape`` to its width): report it as that layer's."""
    if not not_run or failure.last_map is None:
        return
    name, module = not_run[0]
    if isinstance(module, nn.Linear) and math.prod(failure.last_map) != module.in_features:
        failure.layer, failure.module, failure.input_shape = name, module, (math.prod(failure.last_map),)


def _classify(f: Failure) -> str:
    m, shape = f.module, f.input_shape
    if m is None or shape is None:
        return "other"
    if isinstance(m, nn.Linear) and shape and shape[-1] != m.in_features:
        return "small" if shape[-1] < m.in_features else "big"
    if isinstance(m, nn.Conv2d) and len(shape) == 3 and shape[0] != m.in_channels:
        return "channels"
    if len(shape) == 3 and _vanishing_axis(m, shape) is not None:
        return "small"
    return "other"


def _vanishing_axis(module: nn.Module, shape: Sequence[int]) -> tuple[int, str] | None:
    """(axis, formula) where ``module``'s output size on a C x H x W input is below 1."""
    g = layer_geometry(module, tuple(shape[-2:]))
    if g is None or g.transposed:
        return None
    for axis in range(2):
        k, s, p, d = g.axis(axis)
        i = shape[1 + axis] + (g.padding_after[axis] - p)  # asymmetric "same" padding: the extra pixel
        try:
            arithmetic.conv_output_size(i, k, s, p, d, g.ceil_mode)
        except ValueError:
            return axis, arithmetic.conv_output_formula(i, k, s, p, d, g.ceil_mode)
    return None


def smallest_square_input(model: nn.Module, channels: int, max_side: int = MAX_SIDE) -> int | None:
    """The smallest side s such that a channels x s x s input passes (None if none up to ``max_side``,
    e.g. a fixed-size head that one side undershoots and the next overshoots)."""
    return square_input_search(model, channels, max_side)[0]


def square_input_search(model: nn.Module, channels: int, max_side: int = MAX_SIDE) -> tuple[int | None, bool]:
    """``(smallest side, capped)``: as :func:`smallest_square_input`; ``capped`` is True where the
    search stopped at ``max_side`` with the map still too small (a larger input may fit)."""
    def status(side: int) -> str:
        failure = probe(model, (channels, side, side))
        return "ok" if failure is None else failure.kind

    side = 1
    while (first := status(side)) == "small":
        if side >= max_side:
            return None, True
        side = min(2 * side, max_side)
    if side == 1:
        return (1 if first == "ok" else None), False
    lo, hi = side // 2, side  # status(lo) is "small", status(hi) is not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if status(mid) == "small":
            lo = mid
        else:
            hi = mid
    return (hi if status(hi) == "ok" else None), False


def explain(model: nn.Module, failure: Failure, input_shape: Sequence[int], smallest: int | None,
            capped: bool = False) -> str:
    """One line: the failing layer, the arithmetic, the smallest square input that fits."""
    hw = _dims(input_shape[-2:]) if len(input_shape) == 3 else _dims(input_shape)
    m, name = failure.module, failure.layer
    if failure.kind in ("small", "big") and isinstance(m, nn.Linear):
        got = failure.input_shape[-1]
        before = f"{_dims(failure.last_map)} = {got}" if failure.last_map and math.prod(failure.last_map) == got \
            else str(got)
        text = f"{name} expects {_expected(model, failure, smallest, input_shape)} inputs; the layers before it give {before} " \
               f"for a {hw} input"
    elif failure.kind == "small" and m is not None:
        axis, formula = _vanishing_axis(m, failure.input_shape)
        size = failure.input_shape[1 + axis]
        along = "" if len(set(failure.input_shape[1:])) == 1 else f" along {'HW'[axis]} (size {size})"
        text = f"the feature map vanishes at {name} ({type(m).__name__}): a {_dims(failure.input_shape)} map " \
               f"(from a {hw} input) gives{along} o = {formula}"
    elif failure.kind == "channels":
        plural = "s" if m.in_channels != 1 else ""
        return f"{name} (Conv2d) expects {m.in_channels} input channel{plural} but gets {failure.input_shape[0]}; " \
               f"give --input {m.in_channels}x{hw}"
    else:
        where = f"{name} ({type(m).__name__}) on its {_dims(failure.input_shape or ())} input" if name else \
            f"the model's forward after {failure.previous or 'its input'}"
        text = f"{where} fails for a {hw} input: {failure.message}"
    if smallest is not None:
        return f"{text}; the smallest square input that fits is {smallest}"
    if capped:
        return f"{text}; no square input up to {MAX_SIDE} (the search's limit) fits it"
    return text + ("; no square input fits it" if failure.kind in ("small", "big") else "")


def _expected(model: nn.Module, failure: Failure, smallest: int | None, input_shape: Sequence[int]) -> str:
    """``392 = 8x7x7``: the head's width, factored by the map it gets at the smallest input that fits."""
    n = failure.module.in_features
    if smallest is not None and len(input_shape) == 3:
        fits = _run(model, (input_shape[0], smallest, smallest))[1].get(failure.layer)
        if fits and math.prod(fits) == n:
            return f"{n} = {_dims(fits)}"
    return str(n)


def shape_error(model: nn.Module, input_shape: Sequence[int], *, smallest: int | None = None,
                search: bool = True, partial: Any = None) -> ShapeError:
    """The :class:`ShapeError` for a model that cannot take ``input_shape`` (its message from
    :func:`explain`); ``partial`` (the table up to the failing layer) rides along as ``.summary``."""
    model = meta_copy(model)  # once, for every probe below
    failure = probe(model, input_shape)
    if failure is None:
        err = ShapeError(f"the model takes a {_dims(input_shape)} input on the meta device but failed on its own device")
    else:
        capped = False
        if smallest is None and search and failure.kind in ("small", "big") and len(input_shape) == 3:
            smallest, capped = square_input_search(model, input_shape[0])
        err = ShapeError(explain(model, failure, input_shape, smallest, capped))
        err.failure = failure
    err.summary = partial
    return err


def registry_fallback(name: str, input_shape: Sequence[int], error: Exception, num_classes: int | None,
                      options: dict[str, Any]) -> tuple[nn.Module, int]:
    """A registry model refused ``input_shape`` when built: if the input is below the smallest side
    the architecture takes, return the model at its default size (to trace up to the layer where the
    map vanishes) and that smallest side; otherwise re-raise ``error``."""
    c, h = input_shape[0], input_shape[1]

    def ok(side: int) -> bool:
        try:
            with torch.device("meta"):
                create_model(name, num_classes=num_classes, in_channels=c, input_size=side, **options)
            return True
        except CnnlabError:
            return False

    lo, hi = h + 1, max(h + 1, get_model_info(name).input_size)
    if not ok(hi):
        raise error
    while lo < hi:  # output sizes never shrink as the input grows
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid + 1, hi)
    with torch.device("meta"):
        return create_model(name, num_classes=num_classes, in_channels=c, **options), lo
