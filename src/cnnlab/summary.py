"""Layer-by-layer shape trace of any model, in the lecture's comment style.

``summarize(model, (1, 28, 28))`` presents the trace of :func:`cnnlab.trace.trace` (one
forward pass with hooks on every module), a row per leaf-layer call: ``28x28x1 => 28x28x4`` (HxWxC, as the lecture writes it),
kernel/stride/padding, the output-size formula with its numbers (from
:mod:`cnnlab.arithmetic`), parameters, MACs and the receptive field. Registry models are
traced on the ``meta`` device (:func:`summarize_model`), so VGG at 224 px costs no
arithmetic at all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
import torch.nn as nn

from cnnlab.analysis.estimate import StepSettings
from cnnlab.analysis.shapes import registry_fallback, shape_error
from cnnlab.analysis.training import attach_training
from cnnlab.display import summary_html
from cnnlab.errors import CnnlabError, CnnlabTypeError, check_shape, check_type
from cnnlab.models import create_model, get_model_info
from cnnlab.trace import LayerCall, trace
from cnnlab.trace import chw as _chw
from cnnlab.trace import ReceptiveField, first_tensor, receptive_field_map  # noqa: F401 -- (they lived here)

__all__ = ["LayerRow", "ModelSummary", "ReceptiveField", "summarize", "summarize_model", "receptive_field_map"]


@dataclass
class LayerRow:
    name: str
    type: str
    input_shape: list[int]  # per sample, without the batch dimension
    output_shape: list[int]
    kernel: list[int] | None = None
    stride: list[int] | None = None
    padding: list[int] | str | None = None
    dilation: list[int] | None = None
    formula: str | None = None  # output-size formula with numbers (height axis; width too if it differs)
    params: int = 0  # parameters owned by this layer (counted on its first call only)
    macs: int = 0  # multiply-accumulates for one sample (conv and linear layers)
    receptive_field: int | None = None  # height axis; None: the whole input (after a linear / global pool)
    jump: int | None = None  # height axis, input pixels between adjacent output units
    rf_start: float | None = None  # height axis, input coordinate of the first unit's field centre
    # with train=True, for the whole batch (cnnlab.analysis.training): forward and backward FLOPs, bytes saved
    forward_macs: int | None = None
    forward_flops: int | None = None
    grad_input_flops: int | None = None
    grad_weight_flops: int | None = None
    saved_bytes: int | None = None

    @property
    def transition(self) -> str:
        return f"{_chw([0, *self.input_shape])} => {_chw([0, *self.output_shape])}"


@dataclass
class ModelSummary:
    model: str
    input_shape: list[int]
    output_shape: list[int]
    layers: list[LayerRow] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    total_macs: int = 0
    training: Any = None  # cnnlab.analysis.training.TrainingCost (train=True)
    fit: Any = None  # cnnlab.analysis.training.FitResult (cnnlab summary --fit-memory)
    note: str | None = None  # how the input shape was chosen, where the user gave none
    module: Any = field(default=None, repr=False)  # the traced model (not serialised)

    @property
    def total_flops(self) -> int:
        """FLOPs = 2 x MACs (conv and linear layers), the convention of DESIGN.md."""
        return 2 * self.total_macs

    def _repr_html_(self) -> str:
        """In a notebook: the layer table (and the training step's tables) as HTML (:mod:`cnnlab.display`)."""
        return summary_html(self)

    def to_dict(self) -> dict[str, Any]:
        layers = []
        for row in self.layers:
            d = {k: v for k, v in asdict(row).items() if self.training is not None or k not in _TRAIN_KEYS}
            d["transition"] = row.transition
            layers.append(d)
        out = {"model": self.model, "input_shape": self.input_shape, "output_shape": self.output_shape,
               "total_params": self.total_params, "trainable_params": self.trainable_params,
               "total_macs": self.total_macs, "total_flops": self.total_flops, "layers": layers}
        if self.training is not None:
            out["training"] = self.training.totals()
            out["memory"] = self.training.memory.to_dict()
        if self.fit is not None:
            out["fit"] = self.fit.to_dict()
        return out


_TRAIN_KEYS = ("forward_macs", "forward_flops", "grad_input_flops", "grad_weight_flops", "saved_bytes")


def _row(call: LayerCall) -> LayerRow:
    """A table row from the tracer's record of one leaf call."""
    return LayerRow(call.name, call.type, list(call.input_shape), list(call.output_shape), call.kernel, call.stride,
                    call.padding, call.dilation, call.formula, call.params, call.macs, call.receptive_field,
                    call.jump, call.rf_start)


def _trace(model: nn.Module, input_shape: Sequence[int], name: str | None, smallest: int | None = None) -> ModelSummary:
    """The shape trace; a model that cannot take the input raises :class:`ShapeError` explaining why
    (:mod:`cnnlab.analysis.shapes`), with the table up to the failing layer as ``.summary``."""
    result = trace(model, input_shape, catch=True)
    rows = [_row(c) for c in result.layers()]
    if isinstance(result.error, CnnlabError):
        raise result.error
    if result.error is not None:  # explained in one line by the shape debugger, never a traceback
        partial = ModelSummary(name or type(model).__name__, list(input_shape), [], rows)
        raise shape_error(model, input_shape, smallest=smallest, partial=partial) from None
    out = first_tensor(result.output)
    return ModelSummary(
        model=name or type(model).__name__,
        input_shape=list(input_shape),
        output_shape=list(out.shape[1:]) if out is not None else [],
        layers=rows,
        total_params=sum(p.numel() for p in model.parameters()),
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        total_macs=sum(r.macs for r in rows),
        module=model,
    )


def summarize(model: nn.Module, input_shape: Sequence[int], *, name: str | None = None, train: bool = False,
              batch_size: int = 1, measure: bool = False, settings: Any = None, **step: Any) -> ModelSummary:
    """Trace ``model`` (any ``nn.Module``) on one input of ``input_shape`` = (C, H, W) and explain every layer.

    ``train=True`` adds the cost of one training step of ``batch_size`` (per layer ``forward_macs``,
    ``forward_flops``, ``grad_input_flops``, ``grad_weight_flops``, ``saved_bytes`` for the batch;
    ``.training`` with the memory), as ``cnnlab train`` runs it: ``settings`` is a
    :class:`cnnlab.analysis.estimate.StepSettings`, or give its fields (``optimizer``, ``momentum``,
    ``amp``, ``device``, ``channels_last``, ``freeze``); ``measure=True`` also runs two real steps.
    A model that cannot take the input raises :class:`ShapeError` naming the failing layer, with the
    arithmetic and the smallest square input that fits. The forward pass runs on the model's own device.
    """
    check_type(model, nn.Module, "model", "an nn.Module (for a registry name use summarize_model)")
    input_shape = check_shape(input_shape, "input_shape", (1, 2, 3))
    result = _trace(model, input_shape, name)
    if train or measure:
        attach_training(result, model, input_shape, batch_size, settings, measure=measure, **step)
    return result


def summarize_model(name: str, input_shape: Sequence[int] | None = None, *, num_classes: int | None = None,
                    train: bool = False, batch_size: int = 1, measure: bool = False, settings: Any = None,
                    **options: Any) -> ModelSummary:
    """Summarize a registry model, built on the ``meta`` device (no memory, no arithmetic).
    ``options`` are the model's options (``dropout2d=0.2``) and, with ``train=True``, the step's
    (``optimizer="adam"``, ``amp=True``, ``freeze=("features",)``; see :func:`summarize`)."""
    if isinstance(name, nn.Module):
        raise CnnlabTypeError("summarize_model takes a registry model's name; for a model object use "
                              "summarize(model, input_shape)")
    info = get_model_info(name)
    step = {k: options.pop(k) for k in list(options) if k in StepSettings.__dataclass_fields__}
    c, h, w = check_shape(input_shape, "input_shape") if input_shape is not None else info.input_shape
    if h != w:
        raise CnnlabError(f"registry models take square inputs; got {h}x{w}")
    try:
        with torch.device("meta"):
            model = create_model(name, num_classes=num_classes, in_channels=c, input_size=h, **options)
    except CnnlabError as exc:  # too small for the architecture? the table up to the layer where it vanishes
        model, smallest = registry_fallback(name, (c, h, w), exc, num_classes, options)
        _trace(model, (c, h, w), name, smallest=smallest)
        raise exc from None  # the default-size model took it after all: the builder's own message
    return summarize(model, (c, h, w), name=name, train=train, batch_size=batch_size, measure=measure,
                     settings=settings, **step)
