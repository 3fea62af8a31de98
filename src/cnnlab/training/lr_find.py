"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks",
WACV, section 3.3), run as fastai's ``Learner.lr_find`` runs it.

The run's own parts (:func:`cnnlab.training.setup.prepare`: data, model, optimizer, batch size,
recipe, augmentation, amp ...) train for ``num_iter`` minibatches of the training data (again
from the start when an epoch's batches run out) with the learning rate raised exponentially from
``start_lr`` to ``end_lr`` (:func:`cnnlab.training.lr_rules.sweep_lrs`), one optimizer step per
rate through :meth:`cnnlab.training.loop.Trainer.train_step`. The loss of each step is recorded
and smoothed (:func:`~cnnlab.training.lr_rules.smooth`). The test stops early, as fastai's does,
when the smoothed loss exceeds 4 times the best smoothed loss so far (that step is recorded), or
when a loss is not finite (that step is not). Each rule of :mod:`cnnlab.training.lr_rules` then
suggests a learning rate.

Afterwards the model, the optimizer's state, the schedule, the gradient scaler, the EMA and
Lookahead weights, each module's train/eval mode and the random states (torch's CPU and CUDA
generators, the run's shuffling generator, Python's ``random`` and NumPy's) are bit for bit what
they were before (:func:`preserved`).
"""

from __future__ import annotations

import copy
import math
import random
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch

from cnnlab.data import iterate_batches
from cnnlab.errors import CnnlabError
from cnnlab.runs import read_config_doc, write_config_doc
from cnnlab.runtime import determinism, explain_out_of_memory
from cnnlab.training.callbacks import Callback, TrainerView
from cnnlab.training.config import TrainConfig
from cnnlab.training.loop import Trainer
from cnnlab.training.lr_rules import (BETA, DEFAULT_RULE, RULES, analysis_window, check_rule, check_sweep, suggest,
                                      sweep_lrs)
from cnnlab.training.setup import RunParts, prepare

__all__ = ["LrFindResult", "lr_find", "range_test", "preserved", "DIVERGE", "RULES", "DEFAULT_RULE", "LrFindRecord"]

DIVERGE = 4.0  # stop once the smoothed loss is above DIVERGE x its best so far (fastai's rule)


@dataclass
class LrFindResult:
    """A range test's curve and what each rule reads from it."""

    lrs: list[float]  # the learning rate of each recorded step
    losses: list[float]  # the step's minibatch loss
    smoothed: list[float]  # bias-corrected moving average of ``losses`` (beta 0.98)
    suggestions: dict[str, float]  # rule -> learning rate, every rule of RULES
    stopped_early: bool
    stop_reason: str  # why it stopped ("ran all N steps" when it did not stop early)
    start_lr: float
    end_lr: float
    num_iter: int
    window: tuple[int, int] = (0, 0)  # the points the rules read: lrs[window[0]:window[1]]
    settings: dict[str, Any] = field(default_factory=dict)  # the run's settings the test trained with

    def suggestion(self, rule: str = DEFAULT_RULE) -> float:
        """The learning rate ``rule`` suggests (an :class:`UnknownNameError` for an unknown rule)."""
        return self.suggestions[check_rule(rule)]

    def smoothed_at(self, lr: float) -> float:
        """The smoothed loss at ``lr``, interpolated on log(lr) (clamped to the ends of the curve)."""
        return float(np.interp(math.log(lr), np.log(self.lrs), self.smoothed))

    def to_dict(self) -> dict[str, Any]:
        return {"suggestions": dict(self.suggestions), "stopped_early": self.stopped_early,
                "stop_reason": self.stop_reason, "start_lr": self.start_lr, "end_lr": self.end_lr,
                "num_iter": self.num_iter, "steps": len(self.lrs), "window": list(self.window),
                "rule_points": {rule: self.smoothed_at(lr) for rule, lr in self.suggestions.items()},
                "lrs": list(self.lrs), "losses": list(self.losses), "smoothed": list(self.smoothed),
                "settings": dict(self.settings)}


def _rng_states() -> dict[str, Any]:
    states = {"torch": torch.get_rng_state(), "random": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["random"])
    np.random.set_state(states["numpy"])
    if "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])


@contextmanager
def preserved(parts: RunParts) -> Iterator[None]:
    """Whatever the block does to ``parts`` and the random generators is undone on exit (also on an
    error): weights and buffers, optimizer state and hyper-parameters, schedule, scaler, EMA,
    Lookahead, each module's mode, and the RNG states -- restored bit for bit from copies."""
    model_state = copy.deepcopy(parts.model.state_dict())
    optimizer_state = copy.deepcopy(parts.optimizer.state_dict())
    scheduler_state = copy.deepcopy(parts.scheduler.state_dict())
    scaler_state = copy.deepcopy(parts.scaler.state_dict())
    ema_state = copy.deepcopy(parts.ema.state_dict()) if parts.ema is not None else None
    lookahead_state = copy.deepcopy(parts.lookahead.state_dict()) if parts.lookahead is not None else None
    modes = {name: module.training for name, module in parts.model.named_modules()}
    shuffle_state = parts.shuffle.get_state()
    rng = _rng_states()
    try:
        yield
    finally:
        with torch.no_grad():
            parts.model.load_state_dict(model_state)  # copies into the same tensors: views and the graph stay valid
        parts.optimizer.load_state_dict(optimizer_state)
        parts.scheduler.load_state_dict(scheduler_state)
        parts.scaler.load_state_dict(scaler_state)
        if ema_state is not None:
            parts.ema.load_state_dict(ema_state)
        if lookahead_state is not None:
            parts.lookahead.load_state_dict(lookahead_state)
        for name, module in parts.model.named_modules():
            module.training = modes[name]
        parts.shuffle.set_state(shuffle_state)
        _set_rng_states(rng)


def _batches(parts: RunParts) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The run's training minibatches, shuffled by its generator, epoch after epoch."""
    if len(parts.data.train) == 0:
        raise CnnlabError("the training split is empty; the range test needs training images")
    while True:
        yield from iterate_batches(parts.data.train, parts.config.batch_size, shuffle=True, generator=parts.shuffle,
                                   memory_format=parts.prep.memory_format, normalize=parts.prep.normalize,
                                   shard=(parts.rank, parts.world))


def _sweep(parts: RunParts, lrs: list[float], stop_div: bool) -> tuple[list[float], list[float], list[float], str]:
    """Train one step per learning rate; returns the rates, losses and smoothed losses recorded (the smoothing of
    :func:`~cnnlab.training.lr_rules.smooth`, kept as it is computed for the stop rule) and why it stopped ('' if
    it did not)."""
    trainer = Trainer(parts)
    parts.model.train()
    for name in parts.config.freeze:
        parts.model.get_submodule(name).eval()
    batches = _batches(parts)
    done: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    best, average = math.inf, 0.0
    for step, lr in enumerate(lrs):
        for group in parts.optimizer.param_groups:
            group["lr"] = lr  # the schedule's factor is not applied: the sweep sets the rate of every step
        x, y = next(batches)
        loss = float(trainer.train_step(x, y)[1])
        if not math.isfinite(loss):
            return done, losses, smoothed, f"the loss became {loss} at lr {lr:.3g} (step {step + 1})"
        done.append(lr)
        losses.append(loss)
        average = BETA * average + (1 - BETA) * loss
        smoothed.append(average / (1 - BETA ** (step + 1)))
        best = min(best, smoothed[-1])
        if stop_div and smoothed[-1] > DIVERGE * best:
            return done, losses, smoothed, (f"the smoothed loss {smoothed[-1]:.3g} passed {DIVERGE:g}x its best "
                                            f"({best:.3g}) at lr {lr:.3g} (step {step + 1})")
    return done, losses, smoothed, ""


def range_test(parts: RunParts, *, start_lr: float = 1e-7, end_lr: float = 10.0, num_iter: int = 100,
               stop_div: bool = True) -> LrFindResult:
    """The range test on ``parts`` (built by :func:`~cnnlab.training.setup.prepare`), which are left
    bit for bit as they were (see :func:`preserved`). ``stop_div``: stop when the loss diverges."""
    check_sweep(start_lr, end_lr, num_iter)
    config = parts.config
    shape = "x".join(map(str, parts.data.input_shape))
    with preserved(parts), determinism(config.deterministic, parts.device), \
            explain_out_of_memory(f"the range test of {config.model} on {shape} images in batches of "
                                  f"{config.batch_size}"):
        lrs, losses, smoothed, reason = _sweep(parts, sweep_lrs(start_lr, end_lr, num_iter), stop_div)
    if len(lrs) < 2:
        raise CnnlabError(f"the range test stopped after {len(lrs)} step(s): {reason}; start lower (--start-lr "
                          f"below {start_lr:g})")
    return LrFindResult(lrs=lrs, losses=losses, smoothed=smoothed, suggestions=suggest(lrs, smoothed, num_iter),
                        stopped_early=bool(reason), stop_reason=reason or f"ran all {num_iter} steps",
                        start_lr=float(start_lr), end_lr=float(end_lr), num_iter=num_iter,
                        window=analysis_window(len(lrs), num_iter), settings=config.to_dict())


def lr_find(config: TrainConfig, *, start_lr: float = 1e-7, end_lr: float = 10.0, num_iter: int = 100,
            stop_div: bool = True, device: str | torch.device | None = None) -> LrFindResult:
    """Prepare ``config``'s run (data, model, optimizer ..., on ``device`` if given) and run the range
    test on it; nothing is written. ``lr_find(TrainConfig(dataset="digits")).suggestion("valley")``."""
    check_sweep(start_lr, end_lr, num_iter)
    parts = prepare(config, device=device)
    return range_test(parts, start_lr=start_lr, end_lr=end_lr, num_iter=num_iter, stop_div=stop_div)


class LrFindRecord(Callback):
    """Adds ``"lr_find"`` to the run's config.json when the run starts: the rule, the learning rate it
    chose (the run's ``config.lr``), every rule's suggestion and the sweep."""

    def __init__(self, result: LrFindResult, rule: str):
        self.entry = {"rule": rule, "lr": result.suggestion(rule), "suggestions": dict(result.suggestions),
                      "start_lr": result.start_lr, "end_lr": result.end_lr, "num_iter": result.num_iter,
                      "steps": len(result.lrs), "stopped_early": result.stopped_early,
                      "stop_reason": result.stop_reason}

    def on_train_start(self, trainer: TrainerView) -> None:
        run_dir = getattr(trainer, "run_dir", None)  # the run directory's writer declares it
        doc = read_config_doc(run_dir) if run_dir is not None else None
        if doc is not None:
            doc["lr_find"] = self.entry
            write_config_doc(run_dir, doc)
