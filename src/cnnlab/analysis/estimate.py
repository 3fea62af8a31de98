"""The estimate: one simulated training step (or inference pass) of any ``nn.Module`` with its
per-layer FLOPs and saved bytes, for the settings ``cnnlab train`` would use
(:class:`StepSettings`). The simulation itself is :mod:`cnnlab.analysis.simulate`.

Per conv/linear layer, with M its forward multiply-accumulates for the batch
(:func:`cnnlab.arithmetic.training_flops`): forward 2M FLOPs; the input gradient 2M where the
layer's input requires a gradient (not for the first layer, nor after frozen ones); the weight
gradient 2M where its weight is trainable. Every convolution and matrix product is also counted
as it is dispatched, so FLOPs outside conv/linear modules (a functional matmul) show up as
``other_flops`` instead of vanishing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn as nn
from torch._subclasses.fake_tensor import FakeTensorMode

from cnnlab import arithmetic
from cnnlab.analysis.ops import _convolution_macs
from cnnlab.analysis.simulate import (OPTIMIZERS, AllocationTracker, Simulation, build_optimizer, fake_copy,
                                      training_step)
from cnnlab.analysis.workspace import CUBLAS_WORKSPACE, CUDA_ROUNDING, workspace_rule
from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.geometry import module_macs
from cnnlab.models.weights import freeze

__all__ = ["StepSettings", "LayerRecord", "simulate_training", "simulate_inference"]

aten = torch.ops.aten
_MATMULS = {aten.mm.default: (0, 1), aten.addmm.default: (1, 2), aten.bmm.default: (0, 1),
            aten.baddbmm.default: (1, 2)}


@dataclass(frozen=True)
class StepSettings:
    """How the step runs, as ``cnnlab train`` would run it."""

    optimizer: str = "sgd"  # sgd | momentum | nesterov | adam | adamw
    momentum: float = 0.0  # plain sgd with momentum > 0 keeps one buffer per parameter, like "momentum"
    amp: bool = False  # autocast: bfloat16 on the CPU, float16 on CUDA
    device: str = "cpu"  # the device the estimate is for: cpu | cuda
    channels_last: bool | None = None  # None: on for the CPU, off for CUDA (the trainer's default)
    freeze: tuple[str, ...] = ()  # module names whose parameters stay fixed

    def check(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UnknownNameError("optimizer", self.optimizer, OPTIMIZERS)
        if self.device not in ("cpu", "cuda"):
            raise CnnlabError(f"--device must be cpu or cuda, got {self.device!r}")
        if not 0 <= self.momentum < 1:
            raise CnnlabError(f"--momentum must be in [0, 1), got {self.momentum!r}")

    @property
    def memory_format(self) -> torch.memory_format:
        use = self.channels_last if self.channels_last is not None else self.device == "cpu"
        return torch.channels_last if use else torch.contiguous_format

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return (torch.bfloat16 if self.device == "cpu" else torch.float16) if self.amp else None

    def describe(self, train: bool = True) -> str:
        """``adam, float32, cpu (channels-last)``; without the optimizer for inference."""
        opt = self.optimizer if not (self.optimizer == "sgd" and self.momentum) else f"sgd, momentum {self.momentum}"
        layout = "channels-last" if self.memory_format == torch.channels_last else "NCHW"
        precision = f"autocast {str(self.amp_dtype).removeprefix('torch.')}" if self.amp else "float32"
        frozen = f", frozen: {' '.join(self.freeze)}" if self.freeze and train else ""
        return f"{opt + ', ' if train else ''}{precision}, {self.device} ({layout}){frozen}"


@dataclass
class LayerRecord:
    """One leaf-module call of the simulated step."""

    name: str
    type: str
    forward_macs: int
    forward_flops: int
    grad_input_flops: int
    grad_weight_flops: int
    saved_bytes: int = 0


class _Counts:
    """FLOPs of every convolution and matrix product as dispatched, by phase (forward, backward)."""

    def __init__(self):
        self.flops = {"forward": 0, "backward": 0}
        self.phase = "forward"

    def __call__(self, func, args, out) -> None:
        first = out[0] if isinstance(out, (tuple, list)) else out
        flops = 0
        if func is aten.convolution.default:
            flops = 2 * _convolution_macs(args, first)
        elif func is aten.convolution_backward.default:
            grad, x, w, mask = args[0], args[1], args[2], args[10]
            macs = _convolution_macs((x, w, None, None, None, None, args[7], None, args[9]), grad)  # the forward's
            flops = 2 * macs * (int(bool(mask[0])) + int(bool(mask[1])))
        elif func in _MATMULS:
            i, j = _MATMULS[func]
            flops = 2 * args[i].numel() * args[j].shape[-1]  # (..., m, k) @ (..., k, n): 2 m k n per matrix
        if flops:
            key = "backward" if self.phase == "backward" else "forward"
            self.flops[key] += flops


class _Layers:
    """Hooks on every leaf module: a :class:`LayerRecord` per call, and which call is running
    (to attribute the tensors saved for backward)."""

    def __init__(self, model: nn.Module):
        self.records: list[LayerRecord] = []
        self.current: int | None = None
        self.names = {m: n for n, m in model.named_modules()}
        self.handles = []
        for m in model.modules():
            if next(m.children(), None) is None:
                self.handles.append(m.register_forward_pre_hook(self._pre))
                self.handles.append(m.register_forward_hook(self._post))

    def _pre(self, module: nn.Module, inputs: Any) -> None:
        self.current = len(self.records)
        self.records.append(LayerRecord(self.names.get(module) or type(module).__name__, type(module).__name__,
                                        0, 0, 0, 0))

    def _post(self, module: nn.Module, inputs: Any, output: Any) -> None:
        rec = self.records[self.current]
        self.current = None
        inp = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        out = output if isinstance(output, torch.Tensor) else None
        if inp is None or out is None:
            return
        rec.forward_macs = macs = module_macs(module, inp.shape, out.shape)
        weight = getattr(module, "weight", None)
        grad = torch.is_grad_enabled()
        needs_w = grad and isinstance(weight, torch.Tensor) and weight.requires_grad
        rec.forward_flops, rec.grad_input_flops, rec.grad_weight_flops = arithmetic.training_flops(
            macs, grad and inp.requires_grad, needs_w)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@dataclass
class Estimate:
    """A simulated step: the allocator's view (``sim``), the layers, the dispatched FLOPs."""

    sim: Simulation
    layers: list[LayerRecord] = field(default_factory=list)
    dispatched_flops: dict[str, int] = field(default_factory=dict)  # forward, backward


def _fake_mode():
    return FakeTensorMode(allow_non_fake_inputs=True)


def _batch(mode, input_shape: Sequence[int], batch: int, memory_format: torch.memory_format) -> torch.Tensor:
    with mode:
        x = torch.empty((batch, *input_shape))
        return x.contiguous(memory_format=memory_format) if x.dim() == 4 else x


def _prepare(model: nn.Module, input_shape, batch: int, settings: StepSettings, train: bool):
    """The fake model (train mode, frozen as asked), its input batch and, for training, an
    optimizer in its steady state: the previous step's gradients alive, its state created."""
    settings.check()
    if batch < 1:
        raise CnnlabError(f"--batch-size must be a positive integer, got {batch}")
    mode = _fake_mode()
    fake = fake_copy(model, mode, settings.memory_format)
    fake.train(train)
    if settings.freeze:
        freeze(fake, list(settings.freeze))
        for name in settings.freeze:  # as the trainer does: frozen parts run in eval mode
            fake.get_submodule(name).eval()
    x = _batch(mode, input_shape, batch, settings.memory_format)
    if not train:
        return mode, fake, x, None
    params = [p for p in fake.parameters() if p.requires_grad]
    if not params:
        raise CnnlabError("every parameter is frozen; --freeze fewer modules")
    opt = build_optimizer(settings.optimizer, params, momentum=settings.momentum,
                          foreach=True if settings.device == "cuda" else None)
    with mode:
        for p in params:
            p.grad = torch.empty_like(p)
    opt.step()  # outside the mode: the step counters stay real CPU scalars, as in a real run
    return mode, fake, x, opt


def _tracker(settings: StepSettings, on_op=None) -> AllocationTracker:
    rounding = CUDA_ROUNDING if settings.device == "cuda" else 1
    return AllocationTracker(workspace_rule(settings.device), rounding, on_op)


def _register_static(tracker: AllocationTracker, model: nn.Module, x: torch.Tensor, opt) -> dict[str, int]:
    """Register what is alive before the step; returns its bytes by kind."""
    groups = {"params": list(model.parameters()), "buffers": list(model.buffers()), "input": [x]}
    if opt is not None:
        groups["grads"] = [p.grad for p in model.parameters() if p.grad is not None]
        groups["optimizer"] = [v for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    if tracker.rounding > 1:  # CUDA: cuBLAS's workspace, allocated by the first step and kept
        tracker.keep = [x.new_empty(CUBLAS_WORKSPACE, dtype=torch.uint8)]  # fake, like x; alive with the tracker
        groups["workspace"] = tracker.keep
    static = {}
    for tag, tensors in groups.items():
        serials = {tracker.register(t, tag) for t in tensors}
        static[tag] = sum(tracker.size[s] for s in serials if s is not None and tracker.tag[s] == tag)
    return static


def simulate_training(model: nn.Module, input_shape: Sequence[int], batch: int, settings: StepSettings,
                      *, layers: bool = True) -> Estimate:
    """Simulate one steady-state training step of ``model`` (any module; its parameters are not
    touched) on a batch of ``batch`` inputs of ``input_shape``."""
    mode, fake, x, opt = _prepare(model, input_shape, batch, settings, train=True)
    counts = _Counts()
    tracker = _tracker(settings, counts if layers else None)
    static = _register_static(tracker, fake, x, opt)
    recorder = _Layers(fake) if layers else None
    saved: dict[int, int] = {}
    by_layer: dict[int, int] = {}
    skip = {"params", "buffers", "input", "grads", "optimizer", "workspace"}

    def pack(t: torch.Tensor) -> torch.Tensor:
        serial = tracker.serial_of(t)
        if serial is not None and serial not in saved and tracker.tag[serial] not in skip:
            saved[serial] = tracker.size[serial]
            where = recorder.current if recorder is not None and recorder.current is not None else -1
            by_layer[where] = by_layer.get(where, 0) + tracker.size[serial]
        return t

    def phase(name: str) -> None:
        tracker.phase = counts.phase = name

    try:
        with tracker, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            tracker.start()
            training_step(fake, opt, x, None, amp_dtype=settings.amp_dtype, phase=phase)
    finally:
        if recorder is not None:
            recorder.remove()
    grads = {tracker.serial_of(p.grad) for p in fake.parameters() if p.grad is not None}
    sim = Simulation(tracker.peak, tracker.peak_at, _components(tracker, grads, saved), tracker.samples, saved,
                     by_layer, static)
    records = recorder.records if recorder is not None else []
    for index, n in by_layer.items():
        if index >= 0:
            records[index].saved_bytes = n
    return Estimate(sim, records, dict(counts.flops))


def simulate_inference(model: nn.Module, input_shape: Sequence[int], batch: int, settings: StepSettings) -> Estimate:
    """Simulate one forward pass in eval mode without gradients (what prediction and evaluation run)."""
    mode, fake, x, _ = _prepare(model, input_shape, batch, settings, train=False)
    tracker = _tracker(settings)
    static = _register_static(tracker, fake, x, None)
    with tracker, torch.no_grad():
        tracker.start()
        tracker.phase = "forward"
        with torch.autocast("cpu", dtype=settings.amp_dtype or torch.bfloat16, enabled=settings.amp):
            fake(x)
    return Estimate(Simulation(tracker.peak, tracker.peak_at, _components(tracker, set(), {}), tracker.samples,
                               static=static))


_KINDS = {"params": "parameters", "buffers": "buffers", "input": "input batch", "grads": "gradients",
          "workspace": "cuBLAS workspace",
          "optimizer": "optimizer state", "forward": "forward temporaries", "zero_grad": "forward temporaries",
          "backward": "gradients in flight", "step": "optimizer temporaries"}


def _components(tracker: AllocationTracker, grads: set, saved: dict[int, int]) -> dict[str, int]:
    """Bytes alive at the peak, by kind, largest first."""
    out: dict[str, int] = {}
    for serial, n in tracker.live_at_peak().items():
        kind = "gradients" if serial in grads else "activations" if serial in saved else \
            _KINDS.get(tracker.tag[serial], tracker.tag[serial])
        out[kind] = out.get(kind, 0) + n
    if tracker.peak_extra:
        out["kernel workspace"] = tracker.peak_extra
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))
