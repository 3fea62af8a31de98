"""Layer-by-layer shape trace of any model, in the lecture's comment style.

``summarize(model, (1, 28, 28))`` runs one forward pass with hooks on every module and
records, per leaf-layer call: ``28x28x1 => 28x28x4`` (HxWxC, as the lecture writes it),
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

from cnnlab import arithmetic
from cnnlab.analysis.modelspec import parse_int_list, parse_shape  # (they lived here; re-exported)
from cnnlab.errors import CnnlabError, CnnlabTypeError, check_shape, check_type
from cnnlab.geometry import Geometry, layer_geometry, module_macs
from cnnlab.models import create_model

__all__ = ["LayerRow", "ModelSummary", "ReceptiveField", "summarize", "summarize_model", "receptive_field_map",
           "parse_shape", "parse_int_list"]


def _chw(shape: Sequence[int]) -> str:
    """Lecture style ``HxWxC`` for a 4-D shape; ``F`` for a flat one (batch dim dropped)."""
    dims = list(shape[1:])
    if len(dims) == 3:
        c, h, w = dims
        return f"{h}x{w}x{c}"
    return "x".join(str(d) for d in dims)


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
    fit: Any = None  # cnnlab.analysis.training.FitResult (run_summary with fit_memory)
    note: str | None = None  # how the input shape was chosen, where the user gave none
    module: Any = field(default=None, repr=False)  # the traced model (not serialised)

    @property
    def total_flops(self) -> int:
        """FLOPs = 2 x MACs (conv and linear layers), the convention of DESIGN.md."""
        return 2 * self.total_macs

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


def _formula(geometry: Geometry, in_hw: tuple[int, int]) -> str:
    """The output-size formula with its numbers (height axis; width too where it differs)."""
    formulas = []
    for a in range(2):
        k, s, p, d = geometry.axis(a)
        i = in_hw[a]
        if geometry.transposed:
            formulas.append(arithmetic.conv_transpose_output_formula(i, k, s, p, geometry.output_padding[a], d))
        elif geometry.padding_text is not None:
            total = p + geometry.padding_after[a]
            o = (i + total - d * (k - 1) - 1) // s + 1
            formulas.append(f"({i} + {total} - {k})/{s} + 1 = {o}")
        else:
            formulas.append(arithmetic.conv_output_formula(i, k, s, p, d, geometry.ceil_mode))
    return formulas[0] if formulas[0] == formulas[1] else f"H: {formulas[0]} | W: {formulas[1]}"


def _layer_geometry(module: nn.Module, in_hw: tuple[int, int]) -> dict[str, Any]:
    """Kernel/stride/padding/dilation and the formula string for conv and pool layers."""
    g = layer_geometry(module, in_hw)
    if g is not None:
        pads: list[int] | str = g.padding_text if g.padding_text is not None else list(g.padding)
        return {"kernel": list(g.kernel), "stride": list(g.stride), "padding": pads, "dilation": list(g.dilation),
                "formula": _formula(g, in_hw)}
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return {"formula": f"adaptive -> {module.output_size}"}
    return {}


# ---------------------------------------------------------------------------------------
# Receptive fields


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one layer's output units in the model's input, per axis.

    ``height`` and ``width`` are :class:`cnnlab.arithmetic.RFLayer` (rf size, jump, start: the
    input coordinate of the centre of the first unit's field, pixel ``i`` spanning ``[i, i+1)``).
    """

    height: arithmetic.RFLayer
    width: arithmetic.RFLayer
    input_size: tuple[int, int]  # (H, W) of the model's input, for clipping

    @property
    def size(self) -> tuple[int, int]:
        return self.height.rf, self.width.rf

    @property
    def jump(self) -> tuple[int, int]:
        return self.height.jump, self.width.jump

    @property
    def start(self) -> tuple[float, float]:
        return self.height.start, self.width.start

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` in input pixels of output cell ``(y, x)``, clipped to the
        input; half-open like slices: the cell sees ``image[..., top:bottom, left:right]``."""
        top, bottom = self.height.interval(y, self.input_size[0])
        left, right = self.width.interval(x, self.input_size[1])
        return top, left, bottom, right


RF2 = tuple[arithmetic.RFLayer, arithmetic.RFLayer]  # (height, width); None: the whole input


def _rf_step(module: nn.Module, rf: RF2 | None, inp: torch.Tensor, out: torch.Tensor) -> RF2 | None:
    """Receptive field after ``module`` given the one of its input (:mod:`cnnlab.arithmetic`)."""
    if rf is None or isinstance(module, (nn.Linear, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten)):
        return None  # sees the whole input from here on
    g = layer_geometry(module, tuple(inp.shape[-2:])) if inp.dim() == 4 else None
    if g is None:
        if inp.dim() == 4 and (out.dim() != 4 or out.shape[-2:] != inp.shape[-2:]):
            return None  # resamples in a way we cannot read (e.g. Upsample): assume the whole input
        return rf  # element-wise or channel-wise (ReLU, BN, LRN, dropout)
    if g.transposed:
        return None  # fractional strides: not a box of fixed size
    return (arithmetic.receptive_field_step(rf[0], *g.axis(0)),
            arithmetic.receptive_field_step(rf[1], *g.axis(1)))


def _rf_union(rfs: list[RF2 | None]) -> RF2 | None:
    if any(r is None for r in rfs):
        return None
    return (arithmetic.receptive_field_union(r[0] for r in rfs),
            arithmetic.receptive_field_union(r[1] for r in rfs))


def first_tensor(obj: Any) -> torch.Tensor | None:
    """The tensor a module took or returned: ``obj`` itself, or the first of a (nested) tuple/list."""
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)) and obj:
        return first_tensor(obj[0])
    return None


class _Tracer:
    """One forward pass with hooks on every module: a row per leaf call, and the receptive field
    of every module's output.

    Receptive fields follow the tensors: a leaf's output gets its input's field stepped by the
    leaf's geometry. Tensors combined outside modules (``out += identity``) are not seen, so a
    container's output gets the union of the fields of the leaves run inside it whose output has
    the container's output shape, and of its input's (the identity branch): exact for residual
    blocks with shortcut options A, B and C.
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int]):
        self.model = model
        self.input_hw = (int(input_shape[-2]), int(input_shape[-1]))
        self.rows: list[LayerRow] = []
        self.rf_by_name: dict[str, RF2 | None] = {}
        self.rf_of: dict[int, RF2 | None] = {}
        self.alive: list[torch.Tensor] = []  # keep tensors alive so their ids stay unique
        self.last: RF2 | None = (arithmetic.INPUT_RF, arithmetic.INPUT_RF)
        self.frames: list[list[tuple[torch.Size, RF2 | None]]] = []  # leaf outputs inside each open container
        self.counted: set[int] = set()
        self.names = {m: n for n, m in model.named_modules()}

    def _remember(self, tensor: torch.Tensor, rf: RF2 | None) -> None:
        self.rf_of[id(tensor)] = rf
        self.alive.append(tensor)
        self.last = rf
        if self.frames:
            self.frames[-1].append((tensor.shape, rf))

    def _rf_in(self, inputs: Any) -> RF2 | None:
        t = first_tensor(inputs)
        return self.rf_of.get(id(t), self.last) if t is not None else self.last

    def _name(self, module: nn.Module) -> str:
        return self.names.get(module, type(module).__name__) or type(module).__name__

    def container_pre(self, module: nn.Module, inputs: tuple) -> None:
        t = first_tensor(inputs)
        self.frames.append([(t.shape, self._rf_in(inputs))] if t is not None else [])

    def container_post(self, module: nn.Module, inputs: tuple, output: Any) -> None:
        seen = self.frames.pop()
        out = first_tensor(output)
        if out is None:
            return
        same = [rf for shape, rf in seen if shape[-2:] == out.shape[-2:]] if out.dim() == 4 else []
        result = _rf_union(same) if same else self.rf_of.get(id(out), self.last)
        self.rf_by_name[self._name(module)] = result
        self._remember(out, result)

    def leaf_post(self, module: nn.Module, inputs: tuple, output: Any) -> None:
        inp, out = first_tensor(inputs), first_tensor(output)
        if inp is None or out is None:
            return
        rf = _rf_step(module, self._rf_in(inputs), inp, out)
        self._remember(out, rf)
        name = self._name(module)
        self.rf_by_name[name] = rf
        own = 0
        if id(module) not in self.counted:
            self.counted.add(id(module))
            own = sum(p.numel() for p in module.parameters(recurse=False))
        geometry = _layer_geometry(module, tuple(inp.shape[-2:])) if inp.dim() == 4 else {}
        self.rows.append(LayerRow(
            name=name, type=type(module).__name__, input_shape=list(inp.shape[1:]), output_shape=list(out.shape[1:]),
            params=own, macs=module_macs(module, inp.shape, out.shape),
            receptive_field=None if rf is None else rf[0].rf, jump=None if rf is None else rf[0].jump,
            rf_start=None if rf is None else rf[0].start, **geometry,
        ))

    def run(self, x: torch.Tensor) -> Any:
        """The forward pass, in eval mode and without gradients; hooks removed afterwards."""
        self.rf_of[id(x)] = self.last
        self.alive.append(x)
        handles = []
        for module in self.model.modules():
            if module is self.model:
                continue
            if next(module.children(), None) is None:
                handles.append(module.register_forward_hook(self.leaf_post))
            else:
                handles.append(module.register_forward_pre_hook(self.container_pre))
                handles.append(module.register_forward_hook(self.container_post))
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                return self.model(x)
        finally:
            for h in handles:
                h.remove()
            self.model.train(was_training)


def _sample_input(model: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    """A batch of one zero image on the model's device, in its floating dtype."""
    for t in model.parameters():
        dtype = t.dtype if t.is_floating_point() else None
        return torch.zeros((1, *input_shape), device=t.device, dtype=dtype)
    return torch.zeros((1, *input_shape))


def _trace(model: nn.Module, input_shape: Sequence[int], name: str | None, smallest: int | None = None) -> ModelSummary:
    """The shape trace; a model that cannot take the input raises :class:`ShapeError` explaining why
    (:mod:`cnnlab.analysis.shapes`), with the table up to the failing layer as ``.summary``."""
    tracer = _Tracer(model, input_shape)
    try:
        out = first_tensor(tracer.run(_sample_input(model, input_shape)))
    except CnnlabError:
        raise
    except Exception:  # noqa: BLE001 -- explained in one line by the shape debugger, never a traceback
        from cnnlab.analysis.shapes import shape_error

        partial = ModelSummary(name or type(model).__name__, list(input_shape), [], tracer.rows)
        raise shape_error(model, input_shape, smallest=smallest, partial=partial) from None
    return ModelSummary(
        model=name or type(model).__name__,
        input_shape=list(input_shape),
        output_shape=list(out.shape[1:]) if out is not None else [],
        layers=tracer.rows,
        total_params=sum(p.numel() for p in model.parameters()),
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        total_macs=sum(r.macs for r in tracer.rows),
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
        from cnnlab.analysis.training import attach_training

        attach_training(result, model, input_shape, batch_size, settings, measure=measure, **step)
    return result


def receptive_field_map(model: nn.Module, input_shape: Sequence[int]) -> dict[str, ReceptiveField | None]:
    """The receptive field of every module's output, by module name, for one input of
    ``input_shape`` = (C, H, W): ``rf["features.10"].box(y, x)`` is the input region that output
    cell ``(y, x)`` of ``features.10`` sees. None after global pooling or a linear layer (the whole
    input). Containers (a residual block, a stage) get the union over their branches; a module
    called more than once keeps its last call's field.

    The forward pass runs on the model's own device; build the model on ``meta`` to spend nothing.
    """
    tracer = _Tracer(model, input_shape)
    tracer.run(_sample_input(model, input_shape))
    hw = tracer.input_hw
    return {name: None if rf is None else ReceptiveField(rf[0], rf[1], hw) for name, rf in tracer.rf_by_name.items()}


def summarize_model(name: str, input_shape: Sequence[int] | None = None, *, num_classes: int | None = None,
                    train: bool = False, batch_size: int = 1, measure: bool = False, settings: Any = None,
                    **options: Any) -> ModelSummary:
    """Summarize a registry model, built on the ``meta`` device (no memory, no arithmetic).
    ``options`` are the model's options (``dropout2d=0.2``) and, with ``train=True``, the step's
    (``optimizer="adam"``, ``amp=True``, ``freeze=("features",)``; see :func:`summarize`)."""
    from cnnlab.analysis.estimate import StepSettings
    from cnnlab.models import get_model_info

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
        from cnnlab.analysis.shapes import registry_fallback

        model, smallest = registry_fallback(name, (c, h, w), exc, num_classes, options)
        _trace(model, (c, h, w), name, smallest=smallest)
        raise exc from None  # the default-size model took it after all: the builder's own message
    return summarize(model, (c, h, w), name=name, train=train, batch_size=batch_size, measure=measure,
                     settings=settings, **step)
