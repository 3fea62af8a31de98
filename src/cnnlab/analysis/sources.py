"""What ``cnnlab analyze`` can be given as a model, resolved before any work: a registry name, any
torchvision classifier (``torchvision:NAME``, built with ``weights=None``, with torchvision's documented
top-1 and input size) or a model file (``path/to/file.py:Class``, executed, as ``cnnlab summary`` reads it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
import torch.nn as nn

from cnnlab.analysis.memory import to_meta
from cnnlab.analysis.report import IMAGENET_SOURCE, IMAGENET_TOP1
from cnnlab.analysis.shapes import MAX_SIDE, probe, square_input_search
from cnnlab.external import (is_model_file, is_torchvision, load_model_file, torchvision_info, torchvision_model,
                             torchvision_names)
from cnnlab.models import create_model, get_model_info
from cnnlab.paths import check_file

__all__ = ["ModelSource", "resolve_model", "guess_input_shape", "check_model_specs"]


@dataclass
class ModelSource:
    """One model to analyse: its name, input, how to build it (``build(meta)``) and its accuracy."""

    name: str
    input_shape: list[int]
    build: Callable[[bool], nn.Module]
    accuracy: float | None = None
    accuracy_source: str | None = None


def guess_input_shape(model) -> tuple[tuple[int, ...], str]:
    """An input for a model that names none: the first layer's channels (or features) and, for
    images, 28 px for one channel (MNIST) and 32 px otherwise (CIFAR), or the smallest square
    input that fits where those do not. Returns (shape, how it was chosen)."""
    first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
    if isinstance(first, nn.Linear):
        return (first.in_features,), f"the first layer takes {first.in_features} features"
    c = first.in_channels if first is not None else 3
    side = 28 if c == 1 else 32
    if probe(model, (c, side, side)) is None:
        return (c, side, side), f"guessed from the first layer's {c} channel(s); give --input CxHxW"
    smallest, capped = square_input_search(model, c)
    if smallest is None:
        why = f"no square input up to {MAX_SIDE} px (the search's limit) fits" if capped else "no square input fits"
        return (c, side, side), f"guessed, {why}; give --input CxHxW"
    return (c, smallest, smallest), "the smallest square input that fits"


def check_model_specs(specs: Sequence[str]) -> None:
    """Every name known (one line with the closest names otherwise), before any work; a model file
    is only checked to exist here (it is executed once, when it is analysed)."""
    for spec in specs:
        if is_torchvision(spec):
            torchvision_info(spec)
        elif is_model_file(spec):
            check_file(spec.partition(":")[0], "model file")
        else:
            get_model_info(spec)


def _params_with_aux_heads(name: str) -> int | None:
    """Parameters of the zoo network built with its auxiliary classifiers (``aux_logits=True``, as torchvision
    documents Inception-v3's count: the heads train, inference never runs them); None: it has none."""
    try:
        with torch.device("meta"):
            model = create_model(name, aux_logits=True)
    except (TypeError, ValueError):
        return None
    return sum(p.numel() for p in model.parameters())


def _registry_accuracy(name: str, params: int) -> tuple[float | None, str | None]:
    """torchvision's documented top-1 for a zoo network of the same name and parameter count."""
    if name in IMAGENET_TOP1:
        return IMAGENET_TOP1[name], IMAGENET_SOURCE
    if name not in torchvision_names():
        return None, None
    info = torchvision_info(name)
    if info.top1 is None or (info.params != params and info.params != _params_with_aux_heads(name)):
        return None, None
    return info.top1, info.source if not info.weights.endswith("IMAGENET1K_V1") else IMAGENET_SOURCE


def _registry(name: str, input_shape: Sequence[int] | None) -> ModelSource:
    info = get_model_info(name)
    shape = list(input_shape) if input_shape is not None else list(info.input_shape)

    def build(meta: bool) -> nn.Module:
        with torch.device("meta") if meta else torch.device("cpu"):
            return create_model(name, in_channels=shape[0], input_size=shape[1])

    params = sum(p.numel() for p in build(True).parameters())
    acc, source = _registry_accuracy(name, params) if input_shape is None or shape == list(info.input_shape) \
        else (None, None)
    return ModelSource(name, shape, build, acc, source)


def _torchvision(spec: str, input_shape: Sequence[int] | None) -> ModelSource:
    info = torchvision_info(spec)
    shape = list(input_shape) if input_shape is not None else [3, info.input_size, info.input_size]
    return ModelSource(spec, shape, lambda meta: torchvision_model(spec, meta=meta)[0], info.top1,
                       info.source if info.top1 is not None else None)


def _model_file(spec: str, input_shape: Sequence[int] | None) -> ModelSource:
    model, name = load_model_file(spec)
    shape = list(input_shape) if input_shape is not None else list(guess_input_shape(model)[0])
    return ModelSource(name, shape, lambda meta: to_meta(model) if meta else model)


def resolve_model(spec: str, input_shape: Sequence[int] | None = None,
                  accuracies: Mapping[str, tuple[float, str]] | None = None,
                  fallback: Mapping[str, tuple[float, str]] | None = None) -> ModelSource:
    """A registry name, ``torchvision:NAME`` or ``path/file.py[:Class]`` as a :class:`ModelSource`;
    ``accuracies`` ({name: (top-1, source)}, e.g. from run directories) take precedence over the
    documented ones, ``fallback`` (e.g. the paper's) serves where none is known."""
    if is_torchvision(spec):
        source = _torchvision(spec, input_shape)
    elif is_model_file(spec):
        source = _model_file(spec, input_shape)
    else:
        source = _registry(spec, input_shape)
    if accuracies and source.name in accuracies:
        source.accuracy, source.accuracy_source = accuracies[source.name]
    elif source.accuracy is None and fallback and source.name in fallback:
        source.accuracy, source.accuracy_source = fallback[source.name]
    return source
