"""Which layers to look at: names, every module's output in the order the outputs are produced (the
trace of :mod:`cnnlab.trace`, seen per module), Grad-CAM's automatic layer, and the default
feature-map layers.

Layer names are ``model.named_modules()`` names (``conv_1``, ``features.28``, ``layer4.1``); a
container (a residual block, a stage) is a layer too: its output is the block's output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.trace import PASS_THROUGH, LayerOutput, trace  # noqa: F401 -- (LayerOutput, PASS_THROUGH lived here)

__all__ = ["LayerOutput", "LayerChoice", "get_layer", "layer_name", "layer_names", "trace_forward", "trace_outputs",
           "choose_gradcam_layer", "choice_from_trace",
           "default_layers", "layers_from_trace", "is_block", "check_image", "first_conv", "hw_c", "MAX_DEFAULT_LAYERS"]

CONV_POOL = (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.AvgPool2d)
MAX_DEFAULT_LAYERS = 16  # more conv/pool layers than this: show one layer per stage instead


@dataclass(frozen=True)
class LayerChoice:
    """Grad-CAM's layer, and why."""

    name: str
    shape: tuple[int, ...]
    next_name: str | None  # the first module after it that leaves no spatial extent
    next_shape: tuple[int, ...] | None

    @property
    def reason(self) -> str:
        after = (f"; after it {self.next_name} gives {hw_c(self.next_shape)}" if self.next_name is not None else "")
        return f"the last layer whose output still has spatial extent > 1 ({hw_c(self.shape)}){after}"


def hw_c(shape: Sequence[int] | None) -> str:
    """The lecture's ``HxWxC`` for a (C, H, W) shape; ``F`` for a flat one."""
    if shape is None:
        return "?"
    if len(shape) == 3:
        c, h, w = shape
        return f"{h}x{w}x{c}"
    return "x".join(str(d) for d in shape)


def layer_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The module called ``name``; an unknown name is one line with the closest names."""
    modules = dict(model.named_modules())
    if not name or name not in modules:
        raise UnknownNameError("layer", name, layer_names(model))
    return modules[name]


def layer_name(model: nn.Module, layer: "str | nn.Module") -> str:
    """The name of ``layer`` (a name, checked, or one of the model's modules)."""
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer and name:
                return name
        raise CnnlabError(f"the layer {type(layer).__name__} given is not a module of this model")
    get_layer(model, layer)
    return layer


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The first ``nn.Conv2d`` registered in the model; a model without one is the user's error."""
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            return name, m
    raise CnnlabError(f"{type(model).__name__} has no convolutional layer: it has no feature maps, filters or "
                      f"Grad-CAM to show")


def check_image(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` as (N, C, H, W), its channels checked against the first convolution's."""
    if x.dim() == 2:
        x = x.unsqueeze(0)  # (H, W): one gray image
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise CnnlabError(f"an image must be C x H x W (or N x C x H x W), got shape {tuple(x.shape)}")
    name, conv = first_conv(model)
    if x.shape[1] != conv.in_channels:
        raise CnnlabError(f"the image has {x.shape[1]} channel{'s' * (x.shape[1] > 1)} but {name} takes "
                          f"{conv.in_channels}; convert it to {conv.in_channels} channel(s) first")
    return x


def trace_forward(model: nn.Module, x: torch.Tensor, *, eval_mode: bool = True) -> tuple[list[LayerOutput], Any]:
    """One forward pass without gradients that lists every module's output shape in the order the
    outputs are produced (a module called twice keeps its last call), and returns the model's output.
    ``eval_mode``: run in eval mode (nothing in the model changes), else in its current mode.
    (:func:`cnnlab.trace.trace`, seen per module.)"""
    result = trace(model, x, eval_mode=eval_mode)
    return result.outputs(), result.output


def trace_outputs(model: nn.Module, x: torch.Tensor) -> list[LayerOutput]:
    """Every module's output, in the order produced (see :func:`trace_forward`), in eval mode."""
    return trace_forward(model, x)[0]


def _probe(model: nn.Module, x_or_shape: torch.Tensor | Sequence[int]) -> torch.Tensor:
    if isinstance(x_or_shape, torch.Tensor):
        return check_image(model, x_or_shape)[:1]
    p = next(model.parameters(), None)
    return check_image(model, torch.zeros((1, *x_or_shape), device=p.device if p is not None else "cpu",
                                          dtype=p.dtype if p is not None and p.is_floating_point() else None))


def choose_gradcam_layer(model: nn.Module, x_or_shape: torch.Tensor | Sequence[int]) -> LayerChoice:
    """The last layer whose output still has spatial extent > 1 (Selvaraju et al. 2017 use the last
    convolutional feature maps: the most semantic ones that still say *where*).

    Pass-through modules that only repeat a map (identity, dropout, an adaptive pool that keeps the
    size) are skipped in favour of the layer that made the map. Works on any device, ``meta`` included.
    """
    x = _probe(model, x_or_shape)
    return choice_from_trace(model, trace_outputs(model, x), tuple(x.shape[1:]))


def choice_from_trace(model: nn.Module, outputs: list[LayerOutput], input_shape: tuple[int, ...]) -> LayerChoice:
    """:func:`choose_gradcam_layer` from a trace already made."""
    candidates = [o for o in outputs if o.spatial and not o.pass_through]
    if not candidates:
        first_conv(model)  # no conv at all: say so
        raise CnnlabError(f"no layer of {type(model).__name__} has an output with spatial extent > 1 for an input "
                          f"of {hw_c(input_shape)}; use a larger input")
    best = candidates[-1]
    later = [o for o in outputs if o.order > best.order and not o.spatial]
    nxt = later[0] if later else None
    return LayerChoice(best.name, best.shape, nxt.name if nxt else None, nxt.shape if nxt else None)


def is_block(module: nn.Module) -> bool:
    """A container that is a building block (a residual block), not a plain Sequential of layers."""
    return next(module.children(), None) is not None and not isinstance(module, (nn.Sequential, nn.ModuleList))


def default_layers(model: nn.Module, x_or_shape: torch.Tensor | Sequence[int]) -> list[str]:
    """The layers shown by default: every conv and pooling layer, in forward order; for deeper nets
    (more than 16 of them) one layer per stage: of the blocks and the conv/pool layers outside blocks,
    the last before each change of the feature-map shape (ResNet-18 at 224 px: conv1, layer1.1, layer2.1,
    layer3.1, layer4.1)."""
    return layers_from_trace(model, trace_outputs(model, _probe(model, x_or_shape)))


def layers_from_trace(model: nn.Module, outputs: list[LayerOutput]) -> list[str]:
    """:func:`default_layers` from a trace already made."""
    outputs = [o for o in outputs if len(o.shape) == 3]
    leaves = [o for o in outputs if isinstance(o.module, CONV_POOL)]
    if not leaves:
        first_conv(model)
        return []
    if len(leaves) <= MAX_DEFAULT_LAYERS:
        return [o.name for o in leaves]
    blocks = [o.name for o in outputs if is_block(o.module)]
    candidates = [o for o in outputs if o.name in blocks or (
        isinstance(o.module, CONV_POOL) and not any(o.name.startswith(b + ".") for b in blocks))]
    return [o.name for o, nxt in zip(candidates, [*candidates[1:], None]) if nxt is None or nxt.shape != o.shape]
