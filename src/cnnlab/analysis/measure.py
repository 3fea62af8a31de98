"""Measured peaks, to set beside the estimates: one real training step (or forward pass) on the
device, as ``cnnlab train`` (or ``cnnlab evaluate``) would run it.

- CUDA: ``torch.cuda.max_memory_allocated`` (everything the caching allocator handed out,
  in its 512-byte blocks; the CUDA context is not included).
- CPU: the peak of the running total of the c10 CPU allocator's allocation and free events that
  ``torch.profiler`` records (``profile_memory=True``), plus the tensor bytes alive when the
  session starts; it starts before the first step, because frees of blocks allocated before a
  session are not reported. oneDNN's scratch buffers go through the same allocator (an
  LD_PRELOAD malloc counter agrees within 0.3 MiB). The process's peak RSS is not that peak (the C
  allocator keeps freed pages, Python and torch's code are resident too): it is measured beside it
  (``Measurement.rss_peak_bytes``, VmHWM reset before the steps), what the operating system sees.

Two steps run: the first creates the optimizer state after the activations are gone; the second
is the steady state that every later step repeats. The peak is the larger (the second).
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
import torch.nn as nn
from torch._C._profiler import _EventType
from torch.profiler import ProfilerActivity, profile, record_function

from cnnlab import allocator
from cnnlab.analysis.estimate import StepSettings
from cnnlab.analysis.simulate import build_optimizer, training_step
from cnnlab.models.weights import freeze
from cnnlab.runtime import determinism, resolve_device

__all__ = ["Measurement", "measure_training_peak", "measure_inference_peak", "peak_bytes_of", "CPU_METHOD",
           "CUDA_METHOD"]

CPU_METHOD = "torch.profiler memory events (CPU allocator), peak of the running total"
CUDA_METHOD = "torch.cuda.max_memory_allocated"


@dataclass
class Measurement:
    """Peak bytes of the measured steps (the allocator's), and on the CPU the process's resident memory."""

    peak_bytes: int
    method: str
    steps: list[int] = field(default_factory=list)  # the peak of each step run
    rss_before_bytes: int | None = None  # the process's RSS before the steps (CPU)
    rss_peak_bytes: int | None = None  # the process's peak RSS during the steps (CPU; VmHWM)
    rss_since_start: bool = False  # the peak could not be reset: it counts from the process's start


def _device(settings: StepSettings) -> torch.device:
    return resolve_device(settings.device)


def _storage_bytes(tensors) -> int:
    seen = {}
    for t in tensors:
        if isinstance(t, torch.Tensor):
            seen[id(t.untyped_storage())] = t.untyped_storage().nbytes()
    return sum(seen.values())


def _real(model: nn.Module, input_shape: Sequence[int], batch: int, settings: StepSettings, device: torch.device,
          train: bool):
    """A copy of ``model`` on ``device`` (frozen, train or eval mode as the trainer sets it) and a
    random batch with labels."""
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):  # a registry model built on meta
        real = copy.deepcopy(model).to_empty(device=device)
        with torch.no_grad():
            for p in real.parameters():
                p.normal_(0, 0.02)
            for b in real.buffers():
                b.fill_(1 if b.is_floating_point() else 0)
        real = real.to(memory_format=settings.memory_format)
    else:
        real = copy.deepcopy(model).to(device, memory_format=settings.memory_format)
    real.train(train)
    if settings.freeze:
        freeze(real, list(settings.freeze))
        for name in settings.freeze:
            real.get_submodule(name).eval()
    x = torch.rand((batch, *input_shape), device=device)
    if x.dim() == 4:
        x = x.contiguous(memory_format=settings.memory_format)
    return real, x


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Kineto writes start/stop lines to file descriptor 2 from C++; keep them off the terminal."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _cpu_peaks(run: Callable[[], None], alive: Callable[[], int], steps: int) -> list[int]:
    """Peak bytes of each of ``steps`` calls of ``run`` from one profiler session."""
    base = alive()
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for k in range(steps):
            with record_function(f"cnnlab_step_{k}"):
                run()
    allocs, windows = [], {}
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation:
            allocs.append((node.start_time_ns, node.extra_fields.alloc_size))
        elif node.name.startswith("cnnlab_step_"):
            windows[int(node.name.rsplit("_", 1)[1])] = (node.start_time_ns, node.end_time_ns)
        stack.extend(node.children)
    allocs.sort()
    peaks, cur, i = [], 0, 0
    for k in range(steps):
        t0, t1 = windows[k]
        while i < len(allocs) and allocs[i][0] < t0:
            cur += allocs[i][1]
            i += 1
        peak = cur
        while i < len(allocs) and allocs[i][0] <= t1:
            cur += allocs[i][1]
            peak = max(peak, cur)
            i += 1
        peaks.append(base + peak)
    return peaks


def _cuda_peaks(run: Callable[[], None], device: torch.device, steps: int) -> list[int]:
    peaks = []
    for _ in range(steps):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        torch.cuda.synchronize(device)
        peaks.append(torch.cuda.max_memory_allocated(device))
    return peaks


def _peaks(run, alive, device: torch.device, steps: int) -> Measurement:
    if device.type == "cuda":
        return Measurement(0, CUDA_METHOD, _cuda_peaks(run, device, steps))
    reset = allocator.reset_peak_rss()
    before = allocator.rss_bytes()
    peaks = _cpu_peaks(run, alive, steps)
    return Measurement(0, CPU_METHOD, peaks, before, allocator.peak_rss_bytes(), not reset)


def measure_training_peak(model: nn.Module, input_shape: Sequence[int], batch: int,
                          settings: StepSettings = StepSettings(), steps: int = 2) -> Measurement:
    """Run ``steps`` real training steps of a copy of ``model`` (random inputs and labels) and
    measure each step's peak bytes (weights, gradients, optimizer state and the batch included);
    on the CPU also the process's RSS before and at its peak during the steps."""
    settings.check()
    device = _device(settings)
    real, x = _real(model, input_shape, batch, settings, device, train=True)
    params = [p for p in real.parameters() if p.requires_grad]
    opt = build_optimizer(settings.optimizer, params, momentum=settings.momentum)
    scaler = torch.amp.GradScaler("cuda") if settings.amp and device.type == "cuda" else None

    def run() -> None:
        with determinism(True, device):  # as cnnlab train runs by default (cuDNN: deterministic algorithms)
            training_step(real, opt, x, None, amp_dtype=settings.amp_dtype, device_type=device.type, scaler=scaler)

    def alive() -> int:
        state = [v for s in opt.state.values() for v in s.values()]
        grads = [p.grad for p in real.parameters()]
        return _storage_bytes([*real.parameters(), *real.buffers(), x, *state, *grads])

    m = _peaks(run, alive, device, steps)
    m.peak_bytes = max(m.steps)
    return m


def measure_inference_peak(model: nn.Module, input_shape: Sequence[int], batch: int,
                           settings: StepSettings = StepSettings()) -> Measurement:
    """Peak bytes of one forward pass in eval mode without gradients (weights and batch included)."""
    settings.check()
    device = _device(settings)
    real, x = _real(model, input_shape, batch, settings, device, train=False)

    def run() -> None:
        with torch.no_grad(), torch.autocast(device.type, dtype=settings.amp_dtype or torch.bfloat16,
                                             enabled=settings.amp):
            real(x)

    m = _peaks(run, lambda: _storage_bytes([*real.parameters(), *real.buffers(), x]), device, 1)
    m.peak_bytes = max(m.steps)
    return m


def peak_bytes_of(run: Callable[[], None], tensors: Sequence[torch.Tensor], device: torch.device | str) -> int:
    """Peak bytes while ``run()`` executes, counting ``tensors`` (alive before it) and nothing else
    that existed before (on CUDA: the allocator's peak above what was allocated before)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        return _cuda_peaks(run, device, 1)[0] - before + _storage_bytes(tensors)
    return _cpu_peaks(run, lambda: _storage_bytes(tensors), 1)[0]
