"""The views of ``cnnlab explore`` (and of the notebook widgets) as data: numbers, text and PNG data URLs,
made by the same library calls the commands use -- the tracer for shapes, formulas, receptive fields and
MACs, :mod:`cnnlab.visualize.attribution` for Grad-CAM, :mod:`cnnlab.visualize.animate` for the
playground. Nothing here draws with matplotlib's pyplot or knows about HTTP.

- :func:`prediction`: the class probabilities of one image
- :func:`layer_overview`: every layer's feature maps with its shapes, k/s/p/d, formula, RF and MACs (CNN
  Explainer's overview); deep nets grouped into stages (one layer each shown unless a stage is expanded)
- :func:`attribution_view`: Grad-CAM (saliency, integrated gradients) for a class and a layer
- :func:`filters_view`, :func:`erf_view`, :func:`playground`
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError, CnnlabValueError
from cnnlab.figures import array_to_png, colorize, heat_overlay, png_data_url, uint8_image
from cnnlab.trace import LayerCall, Trace, trace
from cnnlab.visualize.animate import conv_animation
from cnnlab.visualize.attribution import METHODS, grad_cam, integrated_gradients, minmax_per_image, saliency
from cnnlab.visualize.filters import conv_layers, filters_figure
from cnnlab.visualize.layers import CONV_POOL, MAX_DEFAULT_LAYERS, choice_from_trace, check_image, get_layer, \
    is_block, layers_from_trace
from cnnlab.visualize.receptive import effective_receptive_field, theoretical_receptive_field

__all__ = ["ACTIVATIONS", "NORMS", "MAX_CHANNELS", "layer_kind", "picture", "prediction", "layer_overview",
           "feature_map_layers",
           "attribution_view", "filters_view", "erf_view", "playground", "METHODS"]

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
               nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus)
NORMS = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm, nn.LocalResponseNorm)
MAX_CHANNELS = 64  # maps per layer one answer may carry
PICTURE_SIDE = 168  # small images are scaled up (nearest) to about this side


def picture(pixels: torch.Tensor) -> str:
    """The image (C, H, W) in [0, 1] as a PNG data URL, scaled up (nearest) when small."""
    return png_data_url(array_to_png(uint8_image(pixels), max(1, PICTURE_SIDE // pixels.shape[-1]), fast=True))


@torch.inference_mode()
def prediction(model: nn.Module, x: torch.Tensor, classes: Sequence[str]) -> dict[str, Any]:
    """``{"predicted", "probs", "classes"}`` for one image ``x`` (1, C, H, W) as the model takes it."""
    probs = torch.softmax(model(x).float(), dim=1)[0].cpu()
    if probs.numel() != len(classes):
        raise CnnlabError(f"the model gives {probs.numel()} classes but {len(classes)} class names are known")
    return {"predicted": int(probs.argmax()), "probs": [float(p) for p in probs], "classes": list(classes)}


def layer_kind(module: nn.Module, leaf: bool) -> str:
    if not leaf:
        return "block"
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        return "conv"
    if isinstance(module, CONV_POOL + (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return "pool"
    if isinstance(module, ACTIVATIONS):
        return "activation"
    return "norm" if isinstance(module, NORMS) else "other"


def _pair(value: Any) -> list[int] | None:
    return None if value is None else [int(v) for v in value]


def _record(call: LayerCall, stage: str | None) -> dict[str, Any]:
    """What the overview says of one layer, from the trace."""
    rf = call.rf
    return {"name": call.name, "type": call.type, "kind": layer_kind(call.module, call.leaf), "stage": stage,
            "input_shape": list(call.input_shape or ()), "output_shape": list(call.output_shape),
            "transition": call.transition, "kernel": _pair(call.kernel), "stride": _pair(call.stride),
            "padding": call.padding if isinstance(call.padding, str) else _pair(call.padding),
            "dilation": _pair(call.dilation), "formula": call.formula,
            "rf": None if rf is None else list(rf.size), "jump": None if rf is None else list(rf.jump),
            "macs": int(call.macs), "params": int(call.params), "channels": int(call.output_shape[0]),
            "shown": False, "maps": [], "range": None}


def _maps(output: torch.Tensor, channels: int) -> tuple[list[str], list[float]]:
    """The first ``channels`` maps of one layer's output (1, C, H, W) as PNGs on one viridis scale."""
    shown = output[0, :channels].float().cpu()
    lo, hi = float(shown.min()), float(shown.max())
    colours = colorize(shown, "viridis", lo, hi)  # (C, H, W, 3), one scale for the layer
    return [png_data_url(array_to_png(c, fast=True)) for c in colours], [lo, hi]


def _stages(calls: list[LayerCall]) -> list[dict[str, Any]]:
    """Consecutive layers with the same map size form a stage (a resolution of the network)."""
    stages: list[dict[str, Any]] = []
    for call in calls:
        size = tuple(call.output_shape[1:])
        if not stages or stages[-1]["size"] != size:
            stages.append({"name": f"stage {len(stages) + 1}", "size": size, "layers": [], "first": call})
        stages[-1]["layers"].append(call.name)
        stages[-1]["last"] = call
    return [{"name": s["name"], "layers": s["layers"],
             "transition": f"{s['first'].transition.split(' => ')[0]} => {s['last'].transition.split(' => ')[1]}"}
            for s in stages]


def _overview_calls(traced: Trace) -> tuple[list[LayerCall], bool]:
    """(the layers the overview lists, in forward order; whether the net is deep): every leaf with a
    C x H x W output; for a deep net also its blocks (not plain Sequential containers)."""
    spatial = [c for c in traced.calls if len(c.output_shape) == 3 and c.input_shape is not None]
    leaves = [c for c in spatial if c.leaf]
    deep = sum(isinstance(c.module, CONV_POOL) for c in leaves) > MAX_DEFAULT_LAYERS
    last = {c.name: c for c in (spatial if deep else leaves)}  # a module called twice: its last call, as /cell
    calls = sorted(last.values(), key=lambda c: c.order)
    return [c for c in calls if c.leaf or is_block(c.module)], deep


def feature_map_layers(traced: Trace) -> list[str]:
    """The names of the layers :func:`layer_overview` lists, from a trace of the model (e.g. on a zero image)."""
    return [c.name for c in _overview_calls(traced)[0]]


def layer_overview(model: nn.Module, x: torch.Tensor, *, channels: int = 8, expand: str | None = None
                   ) -> dict[str, Any]:
    """Every layer with a feature map (C x H x W output), in forward order, for one image ``x``: its record
    (:func:`_record`) and, for the layers shown, its first ``channels`` maps as PNGs. A net with more than
    :data:`MAX_DEFAULT_LAYERS` conv/pool layers is ``deep``: its residual blocks are layers too, grouped
    into stages by map size, and only one layer per stage is shown (the layers of ``cnnlab show
    featuremaps``) unless ``expand`` names the stage."""
    if not isinstance(channels, int) or isinstance(channels, bool) or not 1 <= channels <= MAX_CHANNELS:
        raise CnnlabValueError(f"channels must be an integer from 1 to {MAX_CHANNELS}, got {channels!r}")
    x = check_image(model, x)[:1]
    traced = trace(model, x, keep=True)
    calls, deep = _overview_calls(traced)
    stages = _stages(calls)
    stage_of = {name: s["name"] for s in stages for name in s["layers"]}
    if expand is not None and expand not in {s["name"] for s in stages}:
        raise CnnlabValueError(f"no stage {expand!r}; the stages are {', '.join(s['name'] for s in stages)}")
    headline = set(layers_from_trace(model, traced.outputs())) if deep else {c.name for c in calls}
    layers = []
    for call in calls:
        record = _record(call, stage_of[call.name] if deep else None)
        if call.name in headline or (expand is not None and stage_of[call.name] == expand):
            record["maps"], record["range"] = _maps(call.output, channels)
            record["shown"] = True
        layers.append(record)
    return {"input_shape": list(x.shape[1:]), "deep": deep, "stages": stages if deep else [], "layers": layers}


def _classes_target(probs: torch.Tensor, target: int | None) -> int:
    if target is None:
        return int(probs.argmax())
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < probs.numel():
        raise CnnlabValueError(f"target must be a class index from 0 to {probs.numel() - 1}, got {target!r}")
    return target


def attribution_view(model: nn.Module, x: torch.Tensor, pixels: torch.Tensor, classes: Sequence[str], *,
                     layer: str | None = None, target: int | None = None,
                     methods: Sequence[str] = ("gradcam", "saliency"), ig_steps: int = 16,
                     baseline: torch.Tensor | float = 0.0) -> dict[str, Any]:
    """Where the model looks for class ``target`` (default: the predicted one): Grad-CAM at ``layer``
    (default: the automatic layer, with the reason) on the image, and saliency / integrated gradients
    (from ``baseline``, in the model's input space: pass a black image as the model takes it)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise CnnlabValueError(f"unknown method {unknown[0]!r}; the methods are {', '.join(METHODS)}")
    x = check_image(model, x)[:1]
    traced = trace(model, x)
    choice = choice_from_trace(model, traced.outputs(), tuple(x.shape[1:])) if layer is None else None
    name = choice.name if choice is not None else layer
    get_layer(model, name)
    shape = next((list(c.output_shape) for c in reversed(traced.calls) if c.name == name), [])
    if len(shape) != 3:
        raise CnnlabValueError(f"layer {name!r} gives {shape or 'no output'}, not a feature map; Grad-CAM needs a "
                               f"layer with a C x H x W output")
    probs = torch.softmax(traced.output.float(), dim=1)[0].cpu()
    cls = _classes_target(probs, target)
    scale = max(1, PICTURE_SIDE // pixels.shape[-1])
    pictures = {}
    if "gradcam" in methods:
        pictures["gradcam"] = png_data_url(array_to_png(heat_overlay(pixels, grad_cam(model, x, name, cls)[0]),
                                                        scale, fast=True))
    heats = {}
    if "saliency" in methods:
        heats["saliency"] = saliency(model, x, cls)[0]
    if "ig" in methods:
        heats["ig"] = integrated_gradients(model, x, cls, baseline=baseline, steps=ig_steps)[0].abs().sum(0)
    for key, heat in heats.items():
        heat = minmax_per_image(heat.detach().float().cpu()[None])[0]
        pictures[key] = png_data_url(array_to_png(colorize(heat, "inferno", 0.0, 1.0), scale, fast=True))
    name_of = (lambda i: classes[i] if i < len(classes) else str(i))
    return {"layer": name, "auto": choice is not None, "reason": choice.reason if choice is not None else None,
            "target": cls, "target_name": name_of(cls), "probability": float(probs[cls]),
            "predicted": int(probs.argmax()), "pictures": pictures, "shape": shape}


def filters_view(model: nn.Module, layer: str | None = None) -> dict[str, Any]:
    """A convolution's kernels as one picture (:func:`cnnlab.visualize.filters.filters_figure`)."""
    name, figure = filters_figure(model, layer)
    weight = get_layer(model, name).weight
    return {"layer": name, "conv_layers": conv_layers(model), "shape": list(weight.shape),
            "picture": png_data_url(figure, tight=True)}


def erf_view(model: nn.Module, x: torch.Tensor, pixels: torch.Tensor, layer: str, cell: tuple[int, int]
             ) -> dict[str, Any]:
    """One cell's theoretical receptive-field box and its effective receptive field on this image
    (|d cell / d input|, Luo et al. 2016) as a heat map."""
    x = check_image(model, x)[:1]
    get_layer(model, layer)
    erf = effective_receptive_field(model, layer, tuple(x.shape[1:]), images=x, cell=cell)
    rf = theoretical_receptive_field(model, layer, tuple(x.shape[1:]))
    box = None if rf is None else list(rf.box(*cell))
    scale = max(1, PICTURE_SIDE // pixels.shape[-1])
    return {"layer": layer, "y": cell[0], "x": cell[1], "rf_box": box,
            "erf": png_data_url(array_to_png(heat_overlay(pixels, minmax_per_image(erf[None])[0], "inferno", 0.6),
                                             scale, fast=True))}


PLAYGROUND_NAMES = {"i": "input", "k": "kernel", "s": "stride", "p": "padding", "d": "dilation",
                    "output_padding": "output padding"}


def playground(i: int, k: int, s: int = 1, p: int | str = 0, d: int = 1, *, transposed: bool = False,
               output_padding: int = 0, seed: int = 0) -> dict[str, Any]:
    """The arithmetic playground: the output size with its worked formula and the animation of ``cnnlab
    animate conv`` (a dict the page's player draws); an impossible layer is a :class:`CnnlabError`."""
    anim = conv_animation(i, k, s, p, d, transposed=transposed, output_padding=output_padding, seed=seed,
                          names=PLAYGROUND_NAMES)
    return {"output": anim.output_size[0], "formula": list(anim.caption), "animation": anim.to_dict()}

