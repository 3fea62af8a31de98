"""Model registry: ``register_model``, ``create_model``, ``list_models`` (after timm's).

Every builder takes the keyword arguments ``num_classes``, ``in_channels`` and
``input_size`` (the side of a square input) plus its own options. ``create_model``
fills the ones the caller leaves as ``None`` with the model's own defaults.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError, CnnlabTypeError, CnnlabValueError, ShapeError, UnknownNameError, shown

__all__ = ["ModelInfo", "register_model", "create_model", "list_models", "get_model_info", "min_input_size"]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    builder: Callable[..., nn.Module]
    num_classes: int
    in_channels: int
    input_size: int
    paper: str = ""
    description: str = ""
    options: tuple[str, ...] = field(default=())

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Default ``(C, H, W)`` of one sample."""
        return (self.in_channels, self.input_size, self.input_size)


_REGISTRY: dict[str, ModelInfo] = {}

_COMMON = ("num_classes", "in_channels", "input_size")


def register_model(
    name: str,
    *,
    family: str,
    num_classes: int,
    in_channels: int,
    input_size: int,
    paper: str = "",
    description: str = "",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder under ``name`` with its default input."""

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        params = inspect.signature(builder).parameters
        missing = [p for p in _COMMON if p not in params]
        if missing:
            raise TypeError(f"builder for {name!r} must accept {missing}")
        named = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        options = tuple(p for p, prm in params.items() if p not in _COMMON and prm.kind in named)
        doc = description or (inspect.getdoc(builder) or "").split("\n")[0]
        _REGISTRY[name] = ModelInfo(
            name=name,
            family=family,
            builder=builder,
            num_classes=num_classes,
            in_channels=in_channels,
            input_size=input_size,
            paper=paper,
            description=doc,
            options=options,
        )
        return builder

    return decorator


def list_models(family: str | None = None) -> list[str]:
    """Names of all registered models (optionally of one family), sorted."""
    return sorted(n for n, info in _REGISTRY.items() if family is None or info.family == family)


def get_model_info(name: str) -> ModelInfo:
    if not isinstance(name, str):
        raise CnnlabTypeError(f"a model is named by a string (one of list_models()), got {shown(name)}")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("model", name, _REGISTRY) from None


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    input_size: int | None = None,
    **options: Any,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from :func:`list_models`.
        num_classes: output classes; ``None`` keeps the model's default.
        in_channels: input channels; ``None`` keeps the model's default.
        input_size: side of a square input in pixels; ``None`` keeps the model's default.
            Models size their classifier from it with :mod:`cnnlab.arithmetic`.
        **options: model-specific options (e.g. ``dropout2d=0.2``).
    """
    info = get_model_info(name)
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        known = ", ".join(info.options) or "none"
        raise CnnlabValueError(f"model {name!r} has no option {unknown[0]!r}; its options are: {known}")
    for key, value in (("num_classes", num_classes), ("in_channels", in_channels), ("input_size", input_size)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise CnnlabValueError(f"{key} must be a positive integer, got {value!r}")
    _check_option_types(info, options)
    try:
        return info.builder(
            num_classes=info.num_classes if num_classes is None else num_classes,
            in_channels=info.in_channels if in_channels is None else in_channels,
            input_size=info.input_size if input_size is None else input_size,
            **options,
        )
    except CnnlabError:  # e.g. ShapeError: an input size the architecture cannot take
        raise
    except ValueError as exc:  # a builder's own check of an option's value, e.g. dropout2d=5 or shortcut="Z"
        raise CnnlabError(f"model {name!r}: {str(exc).splitlines()[0]}") from None


def _check_option_types(info: ModelInfo, options: dict[str, Any]) -> None:
    """Each option's value must have the type of its default (``-o dropout2d=abc`` is a mistake)."""
    params = inspect.signature(info.builder).parameters
    for key, value in options.items():
        default = params[key].default
        if default is None or default is inspect.Parameter.empty:
            continue
        kind = type(default)
        ok = isinstance(value, bool) if kind is bool else (
            isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else
            isinstance(value, kind) and not isinstance(value, bool))
        if not ok:
            raise CnnlabValueError(f"model {info.name!r}: option {key} takes a {kind.__name__} "
                                   f"(default {default!r}), got {value!r}")


def min_input_size(name: str, **options: Any) -> int:
    """The smallest square input side the architecture accepts (found on the ``meta`` device,
    so no memory or arithmetic is spent)."""
    info = get_model_info(name)

    def ok(side: int) -> bool:
        try:
            with torch.device("meta"):
                model = create_model(name, input_size=side, **options)
                model.eval()(torch.empty(1, info.in_channels, side, side))
            return True
        except (ShapeError, RuntimeError):
            return False

    lo, hi = 1, info.input_size
    if not ok(hi):
        raise ValueError(f"{name} does not accept its own default input size {hi}")
    while lo < hi:  # the smallest side that works (output sizes grow with the input)
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo
