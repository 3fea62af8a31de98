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
from cnnlab.models import create_model

__all__ = ["LayerRow", "ModelSummary", "summarize", "summarize_model", "parse_shape"]


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1]))
    return (int(v), int(v))


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
    receptive_field: int | None = None  # None: the whole input (after a linear / global pool)
    jump: int | None = None

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

    @property
    def total_flops(self) -> int:
        """FLOPs = 2 x MACs (conv and linear layers), the convention of DESIGN.md."""
        return 2 * self.total_macs

    def to_dict(self) -> dict[str, Any]:
        layers = []
        for row in self.layers:
            d = asdict(row)
            d["transition"] = row.transition
            layers.append(d)
        return {
            "model": self.model,
            "input_shape": self.input_shape,
            "output_shape": self.output_shape,
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "total_macs": self.total_macs,
            "total_flops": self.total_flops,
            "layers": layers,
        }


def _layer_geometry(module: nn.Module, in_hw: tuple[int, int]) -> dict[str, Any]:
    """Kernel/stride/padding/dilation and the formula string for conv and pool layers."""
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        k = _pair(module.kernel_size)
        s = _pair(module.stride if module.stride is not None else module.kernel_size)
        d = _pair(getattr(module, "dilation", 1))
        ceil = bool(getattr(module, "ceil_mode", False))
        pad_attr = module.padding
        formulas = []
        pads: list[int] | str
        if isinstance(pad_attr, str):
            pads = pad_attr
            for axis in range(2):
                before, after = arithmetic.resolve_padding(pad_attr, in_hw[axis], k[axis], s[axis], d[axis])
                total = before + after
                o = (in_hw[axis] + total - d[axis] * (k[axis] - 1) - 1) // s[axis] + 1
                formulas.append(f"({in_hw[axis]} + {total} - {k[axis]})/{s[axis]} + 1 = {o}")
        else:
            p = _pair(pad_attr)
            pads = list(p)
            for axis in range(2):
                formulas.append(arithmetic.conv_output_formula(in_hw[axis], k[axis], s[axis], p[axis], d[axis], ceil))
        formula = formulas[0] if formulas[0] == formulas[1] else f"H: {formulas[0]} | W: {formulas[1]}"
        return {"kernel": list(k), "stride": list(s), "padding": pads, "dilation": list(d), "formula": formula}
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return {"formula": f"adaptive -> {module.output_size}"}
    return {}


def _macs(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        n_out = out[0].numel()  # C_out * H_out * W_out for one sample
        kh, kw = _pair(module.kernel_size)
        return n_out * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.ConvTranspose2d):
        kh, kw = _pair(module.kernel_size)
        return inp[0].numel() * (module.out_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return (out[0].numel() // module.out_features) * module.in_features * module.out_features
    return 0


def _rf_step(module: nn.Module, rf: tuple[int, int] | None) -> tuple[int, int] | None:
    """(receptive field, jump) after ``module`` given the one before it (height axis)."""
    if rf is None:
        return None
    r, j = rf
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        k = _pair(module.kernel_size)[0]
        s = _pair(module.stride if module.stride is not None else module.kernel_size)[0]
        d = _pair(getattr(module, "dilation", 1))[0]
        return r + d * (k - 1) * j, j * s
    if isinstance(module, (nn.Linear, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten)):
        return None  # sees the whole input from here on
    return r, j


def summarize(model: nn.Module, input_shape: Sequence[int], *, name: str | None = None) -> ModelSummary:
    """Trace ``model`` on one input of ``input_shape`` = (C, H, W) and explain every layer.

    The forward pass runs on the model's own device (``meta`` for :func:`summarize_model`).
    """
    try:
        param = next(model.parameters())
        device = param.device
    except StopIteration:
        device = torch.device("cpu")
    x = torch.zeros((1, *input_shape), device=device)

    rows: list[LayerRow] = []
    rf_of: dict[int, tuple[int, int] | None] = {id(x): (1, 1)}
    alive: list[torch.Tensor] = [x]  # keep tensors alive so their ids stay unique
    state: dict[str, Any] = {"last": (1, 1)}
    frames: list[list[tuple[int, int] | None]] = []  # leaf RFs seen inside each open container
    counted: set[int] = set()
    names = {m: n for n, m in model.named_modules()}
    handles = []

    def first_tensor(obj: Any) -> torch.Tensor | None:
        if isinstance(obj, torch.Tensor):
            return obj
        if isinstance(obj, (tuple, list)) and obj:
            return first_tensor(obj[0])
        return None

    def rf_in(inputs: tuple) -> tuple[int, int] | None:
        t = first_tensor(inputs)
        return rf_of.get(id(t), state["last"]) if t is not None else state["last"]

    def container_pre(module: nn.Module, inputs: tuple) -> None:
        frames.append([])

    def container_post(module: nn.Module, inputs: tuple, output: Any) -> None:
        seen = frames.pop()
        result = None if any(r is None for r in seen) else max(seen, default=rf_in(inputs))
        out = first_tensor(output)
        if out is not None:
            rf_of[id(out)] = result
            alive.append(out)
        state["last"] = result
        if frames:
            frames[-1].append(result)

    def leaf_post(module: nn.Module, inputs: tuple, output: Any) -> None:
        inp, out = first_tensor(inputs), first_tensor(output)
        if inp is None or out is None:
            return
        rf = _rf_step(module, rf_in(inputs))
        rf_of[id(out)] = rf
        alive.append(out)
        state["last"] = rf
        if frames:
            frames[-1].append(rf)
        own = 0
        if id(module) not in counted:
            counted.add(id(module))
            own = sum(p.numel() for p in module.parameters(recurse=False))
        geometry = _layer_geometry(module, tuple(inp.shape[-2:])) if inp.dim() == 4 else {}
        rows.append(
            LayerRow(
                name=names.get(module, type(module).__name__) or type(module).__name__,
                type=type(module).__name__,
                input_shape=list(inp.shape[1:]),
                output_shape=list(out.shape[1:]),
                params=own,
                macs=_macs(module, inp, out),
                receptive_field=None if rf is None else rf[0],
                jump=None if rf is None else rf[1],
                **geometry,
            )
        )

    for module in model.modules():
        if module is model:
            continue
        if next(module.children(), None) is None:
            handles.append(module.register_forward_hook(leaf_post))
        else:
            handles.append(module.register_forward_pre_hook(container_pre))
            handles.append(module.register_forward_hook(container_post))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    out = first_tensor(output)
    return ModelSummary(
        model=name or type(model).__name__,
        input_shape=list(input_shape),
        output_shape=list(out.shape[1:]) if out is not None else [],
        layers=rows,
        total_params=sum(p.numel() for p in model.parameters()),
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        total_macs=sum(r.macs for r in rows),
    )


def summarize_model(name: str, input_shape: Sequence[int] | None = None, *, num_classes: int | None = None,
                    **options: Any) -> ModelSummary:
    """Summarize a registry model, built on the ``meta`` device (no memory, no arithmetic)."""
    from cnnlab.models import get_model_info

    info = get_model_info(name)
    c, h, w = input_shape if input_shape is not None else info.input_shape
    if h != w:
        from cnnlab.errors import CnnlabError

        raise CnnlabError(f"registry models take square inputs; got {h}x{w}")
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, in_channels=c, input_size=h, **options)
    return summarize(model, (c, h, w), name=name)


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"1x28x28"`` -> (1, 28, 28)."""
    from cnnlab.errors import CnnlabError

    parts = text.lower().replace("×", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise CnnlabError(f"--input must look like CxHxW with positive integers (e.g. 1x28x28), got {text!r}")
    return dims  # type: ignore[return-value]
