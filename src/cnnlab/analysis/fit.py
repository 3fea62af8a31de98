"""The largest batch that fits a memory budget (``cnnlab summary --fit-memory``): for the tensors
alone (the allocator's peak, simulated: :mod:`cnnlab.analysis.training`), or on the CPU for the
process's resident memory (RSS), predicted from that peak by :class:`ResidentModel` with the figures
``benchmarks/bench_allocator.py`` measured for the C allocator policy in effect (:mod:`cnnlab.allocator`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any, Sequence

import torch.nn as nn

from cnnlab import allocator
from cnnlab.analysis.estimate import StepSettings, simulate_inference, simulate_training
from cnnlab.analysis.training import _simulate
from cnnlab.errors import CnnlabError
from cnnlab.parsing import format_bytes, parse_bytes

__all__ = ["FitResult", "ResidentModel", "fit_batch_size", "resident_model", "resident_figures"]


@dataclass(frozen=True)
class ResidentModel:
    """The process's resident memory (RSS) at the peak of a step whose tensors peak at P bytes, S of
    them alive across steps (parameters, buffers, gradients, optimizer state, the batch):
    ``runtime_bytes + first_steps_bytes + S + per_byte x (P - S)``. The step's transient tensors are
    what the C allocator may hold more of than they use (freed blocks it keeps); the two figures per
    allocator policy are measured by ``benchmarks/bench_allocator.py`` (``analysis/data/resident.json``)."""

    runtime_bytes: int  # this process's RSS now: Python, torch, cnnlab and the model's code, no tensor
    first_steps_bytes: int  # what the first real steps add beside the tensors (kernel code, oneDNN's JIT)
    per_byte: float  # resident bytes per byte of the step's transient tensors under the malloc policy in effect
    allocator: str  # that policy, in words (cnnlab.allocator.AllocatorState.describe)
    figures: str  # the policy whose measured figures are used ("lean", "fast", "default", "tcmalloc", ...)

    def rss(self, peak_bytes: int, static_bytes: int = 0) -> int:
        """The process's predicted peak RSS for a step whose tensors peak at ``peak_bytes``, ``static_bytes``
        of them alive across steps."""
        static = min(static_bytes, peak_bytes)
        return self.runtime_bytes + self.first_steps_bytes + static + math.ceil(self.per_byte * (peak_bytes - static))


def resident_figures() -> dict[str, dict[str, float]]:
    """Per allocator policy: ``per_byte`` and ``first_steps_bytes``, as measured by benchmarks/bench_allocator.py."""
    return json.loads((resources.files("cnnlab.analysis") / "data" / "resident.json").read_text())["policies"]


def resident_model() -> ResidentModel | None:
    """How this process's RSS follows the allocator's peak (None where its RSS cannot be read): its RSS
    now, and the measured figures of the malloc policy in effect (glibc's own where it was not measured)."""
    now = allocator.rss_bytes()
    if now is None:
        return None
    state = allocator.state()
    figures = resident_figures()
    name = state.allocator.split()[0] if "preloaded" in state.allocator else state.name
    key = name if name in figures else "default"
    return ResidentModel(now, int(figures[key]["first_steps_bytes"]), float(figures[key]["per_byte"]),
                         state.describe(), key)


@dataclass
class FitResult:
    """The largest batch whose estimated peak fits ``budget_bytes`` -- or, where ``at_limit``, the
    search's upper limit ``limit``, which still fits: memory does not bound the batch below it.

    ``memory``: what the budget is for -- ``tensors``, the allocator's peak (PyTorch's count; on CUDA
    the device memory), or ``process``, the process's resident memory (RSS) as :class:`ResidentModel`
    predicts it from that peak."""

    batch_size: int
    peak_bytes: int  # estimated peak at batch_size
    next_peak_bytes: int | None  # estimated peak at batch_size + 1 (None at the search's upper limit)
    budget_bytes: int
    train: bool
    settings: StepSettings
    limit: int = 1 << 24  # the largest batch the search tries
    at_limit: bool = False  # the search stopped at ``limit``: the true answer is at least ``batch_size``
    memory: str = "tensors"  # tensors | process
    static_bytes: int | None = None  # the tensors alive across steps at batch_size (weights, gradients, the batch)
    rss_bytes: int | None = None  # memory="process": the predicted peak RSS at batch_size
    next_rss_bytes: int | None = None  # ... at batch_size + 1
    resident: ResidentModel | None = None  # memory="process": how the RSS is predicted

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["settings"] = asdict(self.settings)
        return d


def _affine_guess(budget: int, s2: Sequence[int], s3: Sequence[int], limit: int) -> int:
    """The largest b with max_i(s2_i + (b - 2)(s3_i - s2_i)) <= budget (samples at batch 2 and 3)."""
    best = limit
    for a, b in zip(s2, s3):
        if b > a:
            best = min(best, 2 + (budget - a) // (b - a))
    return max(1, best)


def fit_batch_size(model: nn.Module, input_shape: Sequence[int], budget: str | int,
                   settings: StepSettings | None = None, *, train: bool = True, limit: int = 1 << 24,
                   memory: str = "tensors") -> FitResult:
    """The largest batch size whose estimated peak (training step, or inference with ``train=False``)
    fits ``budget`` (bytes, or a size such as ``"8GiB"``). Two simulations predict it (the peak is
    affine in the batch size op by op); the answer and the next size are then simulated to confirm.

    ``memory="process"`` (CPU): the budget is for the process's resident memory, predicted by
    :func:`resident_model` (this process's RSS now, plus the step's tensors as the C allocator holds
    them); ``"tensors"``: for the allocator's peak alone (on CUDA always)."""
    budget = parse_bytes(budget)
    settings = settings or StepSettings()
    if memory not in ("tensors", "process"):
        raise CnnlabError(f"memory must be tensors or process, got {memory!r}")
    resident = resident_model() if memory == "process" and settings.device == "cpu" else None
    first, settings = _simulate(model, input_shape, 1, settings, train)  # the layout it can run in
    search = _Search(model, input_shape, settings, train, resident, {1: first.sim})
    if search.cost(1) > budget:
        raise CnnlabError(search.too_small(budget))
    if limit < 2 or search.cost(2) > budget:
        return search.result(1, None if limit < 2 else 2, budget, limit, at_limit=limit < 2)
    lo, hi = search.bracket(budget, limit)
    while hi is not None and hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if search.cost(mid) <= budget else (lo, mid)
    return search.result(lo, hi, budget, limit, at_limit=hi is None and lo >= limit)


class _Search:
    """The simulated steps of :func:`fit_batch_size`, one per batch size, and what each costs."""

    def __init__(self, model, input_shape, settings: StepSettings, train: bool, resident: ResidentModel | None,
                 cache: dict[int, Any]):
        self.model, self.input_shape, self.settings, self.train = model, input_shape, settings, train
        self.resident, self.cache = resident, cache

    def sim(self, b: int):
        if b not in self.cache:
            self.cache[b] = (simulate_training(self.model, self.input_shape, b, self.settings, layers=False)
                             if self.train else simulate_inference(self.model, self.input_shape, b, self.settings)).sim
        return self.cache[b]

    def cost(self, b: int) -> int:
        """What the budget is for at batch ``b``: the tensors' peak, or the process's predicted RSS."""
        sim = self.sim(b)
        return sim.peak if self.resident is None else self.resident.rss(sim.peak, sum(sim.static.values()))

    def samples(self, b: int) -> list[float]:
        """The bytes alive after each op (affine in the batch), or the RSS predicted from them (affine too)."""
        sim = self.sim(b)
        if self.resident is None:
            return sim.samples
        static, per = sum(sim.static.values()), self.resident.per_byte
        return [(1 - per) * static + per * x for x in sim.samples]

    def bracket(self, budget: int, limit: int) -> tuple[int, int | None]:
        """(lo, hi): lo fits, hi (None: the limit) does not; from the affine guess, checked and widened."""
        room = budget if self.resident is None else \
            budget - self.resident.runtime_bytes - self.resident.first_steps_bytes
        same_ops = len(self.sim(2).samples) == len(self.sim(3).samples)
        guess = max(2, min(limit, int(_affine_guess(room, self.samples(2), self.samples(3), limit)))) \
            if same_ops else 2
        lo, hi = 1, None
        if self.cost(guess) <= budget:
            lo = guess
            if guess < limit:
                hi = guess + 1 if self.cost(guess + 1) > budget else None
        else:
            hi = guess
        while hi is None and lo < limit:  # the guess was low: double until a size does not fit
            nxt = min(limit, 2 * lo)
            lo, hi = (nxt, None) if self.cost(nxt) <= budget else (lo, nxt)
        return lo, hi

    def too_small(self, budget: int) -> str:
        what = "a training step" if self.train else "inference"
        step = f"{what} ({self.settings.describe(self.train)})"
        if self.resident is None:
            return (f"even a batch of 1 needs {format_bytes(self.sim(1).peak)} for {step}; "
                    f"the budget is {format_bytes(budget)}")
        return (f"even a batch of 1 needs {format_bytes(self.cost(1))} of resident memory for {step}: this process "
                f"holds {format_bytes(self.resident.runtime_bytes)} before any tensor (Python, torch, cnnlab); "
                f"the budget is {format_bytes(budget)}")

    def result(self, b: int, nxt: int | None, budget: int, limit: int, at_limit: bool = False) -> FitResult:
        fit = FitResult(b, self.sim(b).peak, None if nxt is None else self.sim(nxt).peak, budget, self.train,
                        self.settings, limit, at_limit=at_limit, static_bytes=sum(self.sim(b).static.values()))
        if self.resident is not None:
            fit.memory, fit.resident, fit.rss_bytes = "process", self.resident, self.cost(b)
            fit.next_rss_bytes = None if nxt is None else self.cost(nxt)
        return fit
