"""What a training step costs, for any ``nn.Module``: per-layer forward and backward FLOPs, the
bytes saved for backward, and the memory of the whole step (parameters, gradients, optimizer
state, activations and the peak), estimated by simulating the allocator
(:mod:`cnnlab.analysis.simulate`) and, on request, measured (:mod:`cnnlab.analysis.measure`). The
largest batch that fits a memory budget: :mod:`cnnlab.analysis.fit`.

The peak is not the sum of the parts: the activations are freed progressively during backward
while the gradients appear, the previous step's gradients live through the forward pass (the
trainer zeroes them after it), and Adam's update needs per-parameter temporaries. The simulation
follows all of it; ``sum_bytes`` is the naive sum, for comparison.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Sequence

import torch
import torch.nn as nn

from cnnlab.analysis.estimate import LayerRecord, StepSettings, simulate_inference, simulate_training
from cnnlab.analysis.measure import measure_training_peak
from cnnlab.analysis.simulate import STATE_BUFFERS, peak_at_batch
from cnnlab.errors import CnnlabError

__all__ = ["TrainingMemory", "TrainingCost", "training_cost", "attach_training", "inference_peak", "peaks_by_batch",
           "memory_curves"]


@dataclass
class TrainingMemory:
    """Bytes of one training step. ``peak_bytes`` is the whole step's peak (weights and the input
    batch included); ``at_peak`` what was alive then, by kind."""

    params_bytes: int
    grads_bytes: int
    optimizer_bytes: int
    activations_bytes: int  # tensors saved for backward (parameters and the input batch not included)
    buffers_bytes: int
    input_bytes: int
    peak_bytes: int
    peak_at: str  # phase: op
    at_peak: dict[str, int] = field(default_factory=dict)
    measured_peak_bytes: int | None = None
    measured_method: str | None = None
    measured_rss_before_bytes: int | None = None  # the process's resident memory before the measured steps (CPU)
    measured_rss_peak_bytes: int | None = None  # ... and at its peak during them (VmHWM)

    @property
    def sum_bytes(self) -> int:
        """The naive total: every part at once (no workspace, nothing freed or in flight)."""
        return (self.params_bytes + self.grads_bytes + self.optimizer_bytes + self.activations_bytes
                + self.buffers_bytes + self.input_bytes)

    def parts(self) -> list[tuple[str, int | None]]:
        """(label, bytes) rows for a table."""
        rows = [("parameters", self.params_bytes), ("gradients", self.grads_bytes),
                ("optimizer state", self.optimizer_bytes), ("activations saved for backward", self.activations_bytes),
                ("buffers (batch-norm statistics)", self.buffers_bytes), ("input batch", self.input_bytes),
                ("sum of the above", self.sum_bytes), ("peak of the step (estimated)", self.peak_bytes)]
        if self.measured_peak_bytes is not None:
            rows.append(("peak of the step (measured)", self.measured_peak_bytes))
        if self.measured_rss_peak_bytes is not None:
            rows.append(("process RSS before the steps (measured)", self.measured_rss_before_bytes))
            rows.append(("process RSS peak during the steps (measured)", self.measured_rss_peak_bytes))
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sum_bytes": self.sum_bytes}


@dataclass
class TrainingCost:
    """Per-layer FLOPs and saved bytes, and the memory of one training step of ``batch_size``."""

    batch_size: int
    settings: StepSettings
    layers: list[LayerRecord]
    memory: TrainingMemory
    other_flops: int = 0  # convolutions and matrix products outside conv/linear modules (forward + backward)

    @property
    def forward_flops(self) -> int:
        return sum(r.forward_flops for r in self.layers)

    @property
    def grad_input_flops(self) -> int:
        return sum(r.grad_input_flops for r in self.layers)

    @property
    def grad_weight_flops(self) -> int:
        return sum(r.grad_weight_flops for r in self.layers)

    @property
    def other_saved_bytes(self) -> int:
        """Saved for backward by code between the layers (``F.relu`` in a forward, the loss)."""
        return max(0, self.memory.activations_bytes - sum(r.saved_bytes for r in self.layers))

    @property
    def training_flops(self) -> int:
        """Forward + backward FLOPs of the step (conv and linear layers, 2 x MACs each)."""
        return self.forward_flops + self.grad_input_flops + self.grad_weight_flops + self.other_flops

    def totals(self) -> dict[str, Any]:
        s = self.settings
        return {"batch_size": self.batch_size, "optimizer": s.optimizer, "momentum": s.momentum, "amp": s.amp,
                "device": s.device, "memory_format": str(s.memory_format).removeprefix("torch."),
                "frozen": list(s.freeze), "optimizer_buffers_per_parameter": _buffers(s),
                "forward_flops": self.forward_flops, "grad_input_flops": self.grad_input_flops,
                "grad_weight_flops": self.grad_weight_flops, "other_flops": self.other_flops,
                "training_flops": self.training_flops, "other_saved_bytes": self.other_saved_bytes}


def _buffers(settings: StepSettings) -> int:
    return 1 if settings.optimizer == "sgd" and settings.momentum else STATE_BUFFERS[settings.optimizer]


def _memory(est) -> TrainingMemory:
    sim = est.sim
    return TrainingMemory(
        params_bytes=sim.static.get("params", 0), grads_bytes=sim.static.get("grads", 0),
        optimizer_bytes=sim.static.get("optimizer", 0), activations_bytes=sum(sim.saved.values()),
        buffers_bytes=sim.static.get("buffers", 0), input_bytes=sim.static.get("input", 0),
        peak_bytes=sim.peak, peak_at=sim.peak_at, at_peak=sim.components)


def training_cost(model: nn.Module, input_shape: Sequence[int], batch_size: int = 1,
                  settings: StepSettings | None = None, *, measure: bool = False) -> TrainingCost:
    """The cost of one training step of ``model`` on ``batch_size`` inputs of ``input_shape``
    (C, H, W), as ``cnnlab train`` runs it with ``settings``; ``measure`` also runs two real steps
    on a copy of the model and records the measured peak beside the estimate."""
    settings = settings or StepSettings()
    est, settings = _simulate(model, input_shape, batch_size, settings)
    layers = est.layers
    rows_flops = sum(r.forward_flops + r.grad_input_flops + r.grad_weight_flops for r in layers)
    cost = TrainingCost(batch_size, settings, layers, _memory(est),
                        other_flops=max(0, sum(est.dispatched_flops.values()) - rows_flops))
    if measure:
        m = measure_training_peak(model, input_shape, batch_size, settings)
        cost.memory.measured_peak_bytes, cost.memory.measured_method = m.peak_bytes, m.method
        cost.memory.measured_rss_before_bytes, cost.memory.measured_rss_peak_bytes = m.rss_before_bytes, m.rss_peak_bytes
    return cost


def _simulate(model: nn.Module, input_shape: Sequence[int], batch_size: int, settings: StepSettings,
              train: bool = True):
    """simulate_training (or _inference); a model whose forward needs NCHW (``x.view(-1, 392)`` on a
    channels-last map fails, in a real step too) is simulated in NCHW when the layout was the default's."""
    def run(s: StepSettings):
        return simulate_training(model, input_shape, batch_size, s) if train else \
            simulate_inference(model, input_shape, batch_size, s)

    try:
        return run(settings), settings
    except CnnlabError:
        raise
    except Exception as exc:  # noqa: BLE001 -- the user's forward: one line, not a traceback
        if settings.channels_last is None and settings.device == "cpu":
            try:
                nchw = replace(settings, channels_last=False)
                return run(nchw), nchw
            except Exception:  # noqa: BLE001
                pass
        what = "training step" if train else "forward pass"
        raise CnnlabError(f"the {what} fails ({settings.describe(train)}): {type(exc).__name__}: "
                          f"{(str(exc).strip().splitlines() or [''])[0]}") from None


def attach_training(summary: Any, model: nn.Module, input_shape: Sequence[int], batch_size: int = 1,
                    settings: StepSettings | None = None, *, measure: bool = False, **step: Any) -> TrainingCost:
    """:func:`training_cost` onto a :class:`cnnlab.summary.ModelSummary`: its layer rows get the
    per-layer costs (matched by name and call order), ``summary.training`` the totals."""
    if settings is None:
        step = {k: tuple(v) if k == "freeze" and not isinstance(v, str) else (v,) if k == "freeze" else v
                for k, v in step.items()}
        settings = StepSettings(**step)
    cost = training_cost(model, input_shape, batch_size, settings, measure=measure)
    calls: dict[str, list[LayerRecord]] = {}
    for rec in cost.layers:
        calls.setdefault(rec.name, []).append(rec)
    for row in summary.layers:  # the same leaf calls in the same order, unless a forward branches on .training
        rec = calls.get(row.name, []).pop(0) if calls.get(row.name) else None
        if rec is not None:
            row.forward_macs, row.forward_flops, row.saved_bytes = rec.forward_macs, rec.forward_flops, rec.saved_bytes
            row.grad_input_flops, row.grad_weight_flops = rec.grad_input_flops, rec.grad_weight_flops
    summary.training = cost
    return cost


def inference_peak(model: nn.Module, input_shape: Sequence[int], batch_size: int,
                   settings: StepSettings | None = None) -> int:
    """Estimated peak bytes of one forward pass in eval mode without gradients (weights and batch included)."""
    return simulate_inference(model, input_shape, batch_size, settings or StepSettings()).sim.peak


def peaks_by_batch(model: nn.Module, input_shape: Sequence[int], batch_sizes: Sequence[int],
                   settings: StepSettings | None = None, *, train: bool = True, at_2: Any = None) -> dict[int, int]:
    """Estimated peak bytes at every batch size from two simulations, at batch 2 and 3 (``at_2``: the
    batch-2 simulation if already run): each op's live bytes are affine in the batch size
    (:func:`cnnlab.analysis.simulate.peak_at_batch`). Simulated one by one: batch 1 (PyTorch runs a
    single small image through another convolution kernel), with one thread every batch below 16
    (1x1 convolutions too), and every size where the two simulations ran different ops."""
    settings = settings or StepSettings()

    def sim(b: int):
        return (simulate_training(model, input_shape, b, settings, layers=False) if train
                else simulate_inference(model, input_shape, b, settings)).sim

    def alone(b: int) -> int:
        try:
            return sim(b).peak
        except ValueError:  # a BatchNorm after a linear layer refuses to train on one sample (BN-AlexNet)
            return peak_at_batch(b, 2, s2, 3, s3)

    s2, s3 = (at_2 or sim(2)).samples, sim(3).samples
    apart = 16 if torch.get_num_threads() == 1 else 2
    return {b: alone(b) if b < apart or len(s2) != len(s3) else peak_at_batch(b, 2, s2, 3, s3)
            for b in batch_sizes}


def memory_curves(model: nn.Module, input_shape: Sequence[int], batch_sizes: Sequence[int],
                  settings: StepSettings | None = None) -> tuple[int, dict[int, int], dict[int, int]]:
    """(training FLOPs per image, training peaks, inference peaks by batch size): four simulations."""
    settings = settings or StepSettings()
    est = simulate_training(model, input_shape, 2, settings)
    flops = sum(r.forward_flops + r.grad_input_flops + r.grad_weight_flops for r in est.layers)
    flops = max(flops, sum(est.dispatched_flops.values())) // 2
    train = peaks_by_batch(model, input_shape, batch_sizes, settings, train=True, at_2=est.sim)
    return flops, train, peaks_by_batch(model, input_shape, batch_sizes, settings, train=False)
