"""The tracer: one forward pass with hooks on every module, a :class:`LayerCall` per module call.

Receptive fields follow the tensors: a leaf's output gets its input's field stepped by the leaf's
geometry. Tensors combined outside modules (``out += identity``) are not seen, so a container's
output gets the union of the fields of the leaves run inside it whose output has the container's
output shape, and of its input's (the identity branch): exact for residual blocks with shortcut
options A, B and C.

A pass that fails (``catch=True``) keeps what a shape debugger needs: the leaf running when it
failed and its input, the last feature map produced and the last leaf that completed.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any, Collection, Sequence

import torch
import torch.nn as nn

from cnnlab.geometry import module_macs
from cnnlab.trace.fields import INPUT_RF2, RF2, ReceptiveField, rf_step, rf_union
from cnnlab.trace.records import LayerCall, LayerOutput, first_tensor, geometry_fields, sample_input

__all__ = ["Trace", "trace", "receptive_field_map"]


@dataclass
class Trace:
    """A traced forward pass: every module call, in the order the outputs were produced."""

    model: nn.Module = field(repr=False)
    input_shape: tuple[int, ...]  # per sample
    calls: list[LayerCall] = field(default_factory=list)
    output: Any = field(default=None, repr=False)  # the model's output (None where it failed)
    error: Exception | None = None  # the failure, with catch=True
    running: nn.Module | None = field(default=None, repr=False)  # the leaf running when it failed
    running_name: str | None = None
    running_input: tuple[int, ...] | None = None  # its input, per sample
    last_map: tuple[int, ...] | None = None  # the last C x H x W map a leaf produced
    previous: str | None = None  # the last leaf that completed
    maps_before: dict[str, tuple | None] = field(default_factory=dict)  # last map before each leaf's first call

    def layers(self) -> list[LayerCall]:
        """The leaf calls that took and returned a tensor: the rows of a summary table."""
        return [c for c in self.calls if c.leaf and c.input_shape is not None]

    def outputs(self) -> list[LayerOutput]:
        """Every module's output, its last call for a module called twice, in the order produced."""
        last = {c.name: c for c in self.calls}
        return [c.view() for c in sorted(last.values(), key=lambda c: c.order)]

    def receptive_fields(self) -> dict[str, ReceptiveField | None]:
        """The receptive field of every module's output by name (a module called twice: its last call)."""
        return {c.name: c.rf for c in self.calls if not c.leaf or c.input_shape is not None}

    def kept(self) -> dict[str, torch.Tensor]:
        """The outputs kept (``keep=``), by name, the last call's for a module called twice."""
        return {c.name: c.output for c in self.calls if c.output is not None}

    def kept_inputs(self) -> dict[str, torch.Tensor]:
        """The inputs kept (``keep_inputs=``), by name, the last call's for a module called twice."""
        return {c.name: c.input for c in self.calls if c.input is not None}


class _Tracer:
    def __init__(self, model: nn.Module, x: torch.Tensor, keep: bool | Collection[str],
                 keep_inputs: bool | Collection[str] = ()):
        self.model, self.keep, self.keep_inputs = model, keep, keep_inputs
        self.inputs: dict[int, list[torch.Tensor | None]] = {}  # by module id: inputs cloned before each call
        self.result = Trace(model, tuple(x.shape[1:]))
        self.input_hw = (int(x.shape[-2]), int(x.shape[-1]))
        self.rf_of: dict[int, tuple[weakref.ref, RF2 | None]] = {}  # by tensor id, checked against the tensor
        self.last: RF2 | None = INPUT_RF2
        self.frames: list[list[tuple[torch.Size, RF2 | None]]] = []  # leaf outputs inside each open container
        self.counted: set[int] = set()
        self.names = {m: n for n, m in model.named_modules()}
        self._remember(x, self.last)

    def _remember(self, tensor: torch.Tensor, rf: RF2 | None) -> None:
        self.rf_of[id(tensor)] = (weakref.ref(tensor), rf)
        self.last = rf
        if self.frames:
            self.frames[-1].append((tensor.shape, rf))

    def _rf_of(self, tensor: torch.Tensor | None) -> RF2 | None:
        ref, rf = self.rf_of.get(id(tensor), (None, None)) if tensor is not None else (None, None)
        return rf if ref is not None and ref() is tensor else self.last

    def _name(self, module: nn.Module) -> str:
        return self.names.get(module, type(module).__name__) or type(module).__name__

    @staticmethod
    def _asked(names: bool | Collection[str], name: str) -> bool:
        return names is True or bool(names and name in names)

    def _keep_input(self, module: nn.Module, inp: torch.Tensor | None) -> None:
        """Before a call: a copy of its input where asked (an in-place layer overwrites it during the call)."""
        if self._asked(self.keep_inputs, self._name(module)):
            self.inputs.setdefault(id(module), []).append(None if inp is None else inp.detach().clone())

    def _taken_input(self, module: nn.Module) -> torch.Tensor | None:
        """After a call: the copy of its input made before it (None where not asked)."""
        stack = self.inputs.get(id(module))
        return stack.pop() if stack else None

    def _record(self, module: nn.Module, inp: torch.Tensor | None, out: torch.Tensor, rf: RF2 | None,
                **extra: Any) -> None:
        name = self._name(module)
        kept = out.detach().clone() if self._asked(self.keep, name) else None
        kept_input = self._taken_input(module)
        self.result.calls.append(LayerCall(
            name, type(module).__name__, module, next(module.children(), None) is None, len(self.result.calls),
            None if inp is None else tuple(inp.shape[1:]), tuple(out.shape[1:]),
            rf=None if rf is None else ReceptiveField(rf[0], rf[1], self.input_hw), output=kept, input=kept_input,
            **extra))

    def container_pre(self, module: nn.Module, inputs: tuple) -> None:
        t = first_tensor(inputs)
        self._keep_input(module, t)
        self.frames.append([(t.shape, self._rf_of(t))] if t is not None else [])

    def container_post(self, module: nn.Module, inputs: tuple, output: Any) -> None:
        seen = self.frames.pop()
        out = first_tensor(output)
        if out is None:
            self._taken_input(module)
            return
        same = [rf for shape, rf in seen if shape[-2:] == out.shape[-2:]] if out.dim() == 4 else []
        result = rf_union(same) if same else self._rf_of(out)
        self._record(module, first_tensor(inputs), out, result)
        self._remember(out, result)

    def leaf_pre(self, module: nn.Module, inputs: Any) -> None:
        first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        self._keep_input(module, first_tensor(inputs))
        self.result.running, self.result.running_name = module, self._name(module)
        self.result.running_input = tuple(first.shape[1:]) if first is not None else None
        self.result.maps_before.setdefault(self._name(module), self.result.last_map)

    def leaf_post(self, module: nn.Module, inputs: tuple, output: Any) -> None:
        self.result.running, self.result.running_name, self.result.previous = None, None, self._name(module)
        if isinstance(output, torch.Tensor) and output.dim() == 4:
            self.result.last_map = tuple(output.shape[1:])
        inp, out = first_tensor(inputs), first_tensor(output)
        if module is self.model or out is None:
            self._taken_input(module)
            return
        if inp is None:
            self._record(module, None, out, self.last)
            return
        rf = rf_step(module, self._rf_of(inp), inp, out)
        self._remember(out, rf)
        own = 0
        if id(module) not in self.counted:
            self.counted.add(id(module))
            own = sum(p.numel() for p in module.parameters(recurse=False))
        geometry = geometry_fields(module, tuple(inp.shape[-2:])) if inp.dim() == 4 else {}
        self._record(module, inp, out, rf, params=own, macs=module_macs(module, inp.shape, out.shape), **geometry)

    def hooks(self) -> list:
        handles = []
        for module in self.model.modules():
            if next(module.children(), None) is None:  # a leaf (the model itself, if it is one layer)
                handles.append(module.register_forward_pre_hook(self.leaf_pre))
                handles.append(module.register_forward_hook(self.leaf_post))
            elif module is not self.model:
                handles.append(module.register_forward_pre_hook(self.container_pre))
                handles.append(module.register_forward_hook(self.container_post))
        return handles


def trace(model: nn.Module, x: torch.Tensor | Sequence[int], *, eval_mode: bool = True,
          keep: bool | Collection[str] = (), keep_inputs: bool | Collection[str] = (), catch: bool = False) -> Trace:
    """One forward pass of ``x`` (a batch, or a per-sample shape (C, H, W) for one zero image on the
    model's device) through ``model``, without gradients and with hooks on every module (removed
    afterwards): a :class:`LayerCall` per module call.

    Args:
        eval_mode: run in eval mode (nothing in the model changes; its mode is restored), else in its current mode.
        keep: module names whose outputs to keep (a detached copy, ``LayerCall.output``); True: every one.
        keep_inputs: module names whose inputs to keep (a detached copy of the first tensor the module
            took, made before the call so an in-place layer does not overwrite it: ``LayerCall.input``);
            True: every one.
        catch: an exception in the forward is kept as ``.error`` (with where it happened) instead of raised.
    """
    if not isinstance(x, torch.Tensor):
        x = sample_input(model, x)
    tracer = _Tracer(model, x, keep, keep_inputs)
    handles = tracer.hooks()
    was_training = model.training
    if eval_mode:
        model.eval()
    try:
        with torch.no_grad():
            tracer.result.output = model(x)
    except Exception as exc:  # noqa: BLE001 -- with catch=True the caller explains it
        if not catch:
            raise
        tracer.result.error = exc
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return tracer.result


def receptive_field_map(model: nn.Module, input_shape: Sequence[int]) -> dict[str, ReceptiveField | None]:
    """The receptive field of every module's output, by module name, for one input of
    ``input_shape`` = (C, H, W): ``rf["features.10"].box(y, x)`` is the input region that output
    cell ``(y, x)`` of ``features.10`` sees. None after global pooling or a linear layer (the whole
    input). Containers (a residual block, a stage) get the union over their branches; a module
    called more than once keeps its last call's field.

    The forward pass runs on the model's own device; build the model on ``meta`` to spend nothing.
    """
    return trace(model, input_shape).receptive_fields()
