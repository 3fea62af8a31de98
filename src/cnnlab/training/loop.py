"""One readable training loop.

:func:`cnnlab.training.setup.prepare` builds a run's parts -- data, model, optimizer, schedule --
and ``Trainer(parts).fit()`` runs its epochs: ``train_one_epoch`` then ``score_epoch``, with the
hooks of :mod:`cnnlab.training.callbacks` around them. ``Trainer(config)`` does both steps. The
loop itself does nothing but train; progress bars, logging, checkpoints and plots are callbacks,
which read the trainer and never change it.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.data import BatchSource, augment_batch, iterate_batches
from cnnlab.errors import CnnlabError
from cnnlab.runtime import determinism, explain_out_of_memory
from cnnlab.training.callbacks import Callback
from cnnlab.training.checkpoint import restore_state
from cnnlab.training.config import TrainConfig
from cnnlab.training.distributed import all_reduce, leave_process_group
from cnnlab.training.evaluate import evaluate_accuracy
from cnnlab.training.records import EpochRecord, EpochStats, LoopState, TrainResult
from cnnlab.training.rewrite import pool_before_relu
from cnnlab.training.setup import RunParts, build_model, prepare

__all__ = ["EpochRecord", "EpochStats", "LoopState", "TrainResult", "Trainer"]


class Trainer:
    """One run: ``Trainer(parts)`` trains the parts :func:`~cnnlab.training.setup.prepare` built;
    ``Trainer(config)`` (or :meth:`from_config`) prepares them first. :meth:`fit` trains.

    ``resume_from``: a checkpoint (see :mod:`cnnlab.training.checkpoint`) to continue.
    ``run_dir``: where the run is written, if anywhere; by default the directory a callback
    declares (:attr:`Callback.run_dir`, e.g. the run directory's writer).

    The trainer's attributes are ``parts`` (what it trains, fixed), ``state`` (what the loop has
    done, a :class:`LoopState`) and ``callbacks``; the other names are read-only views of them.
    """

    def __init__(self, parts: RunParts | TrainConfig, callbacks: Sequence[Callback] = (),
                 resume_from: dict[str, Any] | None = None, *, run_dir: str | os.PathLike | None = None):
        if isinstance(parts, TrainConfig):
            parts = prepare(parts)
        self.parts = parts
        self.callbacks = list(callbacks)
        self.given_run_dir = Path(run_dir) if run_dir is not None else None
        self.state = restore_state(parts, resume_from) if resume_from is not None else LoopState()

    @classmethod
    def from_config(cls, config: TrainConfig, callbacks: Sequence[Callback] = (),
                    resume_from: dict[str, Any] | None = None, *, device: str | torch.device | None = None,
                    run_dir: str | os.PathLike | None = None) -> "Trainer":
        """Prepare ``config``'s parts (on ``device`` if given) and a trainer for them."""
        return cls(prepare(config, device=device), callbacks, resume_from, run_dir=run_dir)

    # read-only views of the parts and the loop state (what callbacks and tests read)
    @property
    def config(self) -> TrainConfig:
        """The run's resolved settings (what config.json records)."""
        return self.parts.config

    @property
    def device(self) -> torch.device:
        return self.parts.device

    @property
    def model(self) -> nn.Module:
        return self.parts.model

    @property
    def net(self) -> nn.Module:
        """What the training forward calls (see :class:`~cnnlab.training.setup.RunParts`)."""
        return self.parts.net

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated and saved: the moving average with --ema-decay, else the model."""
        return self.parts.eval_model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.parts.optimizer

    @property
    def scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
        return self.parts.scheduler

    @property
    def train_data(self) -> BatchSource:
        return self.parts.data.train

    @property
    def val_data(self) -> BatchSource | None:
        return self.parts.data.val

    @property
    def test_data(self) -> BatchSource:
        return self.parts.data.test

    @property
    def classes(self) -> list[str]:
        return self.parts.data.classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.parts.data.input_shape

    @property
    def skipped(self) -> tuple[str, ...]:
        return self.parts.data.skipped

    @property
    def steps_per_epoch(self) -> int:
        return self.parts.steps_per_epoch

    @property
    def tta(self) -> str | None:
        return self.parts.tta

    @property
    def history(self) -> list[EpochRecord]:
        return self.state.history

    @property
    def batch_losses(self) -> list[float]:
        return self.state.batch_losses

    @property
    def best(self) -> dict[str, Any] | None:
        return self.state.best

    @property
    def run_dir(self) -> Path | None:
        """The run directory: ``run_dir`` as given, else the first a callback declares, else None."""
        if self.given_run_dir is not None:
            return self.given_run_dir
        return next((cb.run_dir for cb in self.callbacks if isinstance(cb, Callback) and cb.run_dir is not None),
                    None)

    def steps_in_epoch(self, epoch: int) -> int:
        """Optimizer steps of ``epoch`` (1-based): all of an epoch, fewer in the last of a fractional run."""
        p = self.parts
        return max(0, min(p.steps_per_epoch, p.total_steps - (epoch - 1) * p.steps_per_epoch))

    def build_model(self) -> nn.Module:
        """A fresh model as the run builds it (seed the RNG first), from the resolved config."""
        p = self.parts
        return build_model(p.config, p.data.input_shape, len(p.data.classes), p.device)[0]

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def fit(self) -> TrainResult:
        """Train from ``state.start_epoch`` to ``config.epochs``, scoring after each epoch."""
        c, loop = self.parts.config, self.state
        shape = "x".join(map(str, self.parts.data.input_shape))
        try:
            with determinism(c.deterministic, self.parts.device), \
                    explain_out_of_memory(f"training {c.model} on {shape} images in batches of {c.batch_size}"):
                self._call("on_train_start")
                start = time.perf_counter() - (loop.history[-1].elapsed if loop.history else 0.0)
                for epoch in range(loop.start_epoch, c.epoch_count + 1):
                    self._call("on_epoch_start", epoch)
                    stats = self.train_one_epoch(epoch)
                    record = self.score_epoch(epoch, stats, start)
                    loop.history.append(record)
                    self._call("on_epoch_end", record)
                result = self._finish(start)
                self._call("on_train_end", result)
        except BaseException as exc:
            self._call("on_exception", exc)
            raise
        leave_process_group(self.parts.joined_group)
        return result

    def train_one_epoch(self, epoch: int) -> EpochStats:
        """One pass over the training data: its minibatch losses, seconds, correct and seen, in this process."""
        p = self.parts
        p.model.train()
        for name in p.config.freeze:  # frozen parts are fixed feature extractors: BN statistics and dropout stay off
            p.model.get_submodule(name).eval()
        epoch_start = time.perf_counter()
        losses: list[torch.Tensor] = []
        correct = torch.zeros((), dtype=torch.long, device=p.device)
        seen = 0
        check_every = 1 if p.device.type == "cpu" else 50  # reading the loss syncs a GPU
        batches = iterate_batches(p.data.train, p.config.batch_size, shuffle=True, generator=p.shuffle,
                                  memory_format=p.prep.memory_format, normalize=p.prep.normalize,
                                  shard=(p.rank, p.world))
        steps = self.steps_in_epoch(epoch)
        for step, (x, y) in enumerate(batches):
            if step >= steps:  # --limit-batches, or the end of a fractional last epoch
                break
            seen += len(y)
            with p.compile_clock:
                logits, loss = self.train_step(x, y)
            losses.append(loss)
            correct += (logits.argmax(dim=1) == y).sum()
            if step % check_every == 0 and not torch.isfinite(loss):
                self._stop_non_finite(epoch, losses)
            self._call("on_batch_end", epoch, step, loss)
        values = torch.stack(losses).tolist()
        if not all(math.isfinite(v) for v in values):
            self._stop_non_finite(epoch, losses)
        if p.device.type == "cuda":
            torch.cuda.synchronize(p.device)
        return EpochStats(losses=values, seconds=time.perf_counter() - epoch_start, correct=int(correct), seen=seen)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, backward, optimizer and schedule step on one batch: (logits, loss), detached."""
        p, c = self.parts, self.parts.config
        if p.prep.augment is not None:
            x = augment_batch(x, p.prep.augment, p.shuffle)
        amp_dtype = torch.float16 if p.device.type == "cuda" else torch.bfloat16
        p.optimizer.zero_grad(set_to_none=True)  # before the forward: last step's gradients are not held through it
        with torch.autocast(p.device.type, dtype=amp_dtype, enabled=c.amp):
            logits = p.net(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=c.label_smoothing)
        p.scaler.scale(loss).backward()
        if c.clip_grad is not None:
            p.scaler.unscale_(p.optimizer)
            torch.nn.utils.clip_grad_norm_(p.model.parameters(), c.clip_grad)
        p.scaler.step(p.optimizer)
        p.scaler.update()
        p.scheduler.step()
        if p.lookahead is not None:
            p.lookahead.step()
        if p.ema is not None:
            p.ema.update(p.model)
        loss = loss.detach()
        if p.world > 1:  # the global batch's mean loss, as one process would see it
            loss = all_reduce(loss * len(y)) / all_reduce(torch.tensor(float(len(y)), device=p.device))
        return logits.detach(), loss

    def score_epoch(self, epoch: int, stats: EpochStats, start: float) -> EpochRecord:
        """The end of an epoch: keep its losses, score train accuracy (running or a full pass), then
        validation (keeping the best weights) or test; returns the epoch's record (``start``: fit's start)."""
        p, loop = self.parts, self.state
        loop.batch_losses.extend(stats.losses)
        correct, seen = stats.correct, stats.seen
        if p.config.train_eval == "full":
            correct, seen = self._score(p.data.train)
        elif p.world > 1:
            correct = int(all_reduce(torch.tensor(correct, device=p.device)))
            seen = int(all_reduce(torch.tensor(seen, device=p.device)))
        val_acc = test_acc = None
        if p.data.val is not None:
            val_correct, val_total = self._score(p.data.val)
            val_acc = 100.0 * val_correct / val_total
            if loop.best is None or val_acc > loop.best["val_acc"]:
                loop.best = {"epoch": epoch, "val_acc": val_acc,
                             "model": {k: v.detach().cpu().clone() for k, v in p.eval_model.state_dict().items()}}
        else:
            loop.test_counts = self._score(p.data.test)
            test_acc = 100.0 * loop.test_counts[0] / loop.test_counts[1]
        return EpochRecord(epoch=epoch, train_loss=sum(stats.losses) / len(stats.losses),
                           train_acc=100.0 * correct / seen, test_acc=test_acc, seconds=stats.seconds,
                           elapsed=time.perf_counter() - start, val_acc=val_acc)

    def score(self, data: BatchSource, *, tta: bool = True) -> tuple[int, int]:
        """(correct, total) of the evaluated weights on ``data`` as the run scores it: with the run's
        test-time augmentation, or without it (``tta=False``)."""
        return self._score(data, tta=tta)

    def _score(self, data: BatchSource, tta: bool = True) -> tuple[int, int]:
        p = self.parts
        model = p.eval_model
        if p.config.pool_before_relu:  # the same outputs, ~2x faster here; traced in eval mode, weights shared
            was_training = model.training
            graph = pool_before_relu(model.eval())[0]
            model.train(was_training)
            # the graph gets the model's mode too: evaluate_accuracy restores the shared modules to the graph's
            model = graph.train(was_training)
        correct, total, _ = evaluate_accuracy(model, data, p.config.eval_batch_size, p.prep.memory_format,
                                              p.prep.normalize, tta=p.tta if tta else None,
                                              tta_margin=p.config.tta_margin)
        return correct, total

    def _finish(self, start: float) -> TrainResult:
        p, loop = self.parts, self.state
        if p.data.val is not None:
            # model selection on validation; the test set is scored once, for the selected weights
            assert loop.best is not None
            p.eval_model.load_state_dict(loop.best["model"])
            loop.test_counts = self._score(p.data.test)
        elif loop.test_counts is None:  # resumed after the last epoch to finish the run's files
            loop.test_counts = self._score(p.data.test)
        return TrainResult(config=p.config, history=loop.history, batch_losses=loop.batch_losses,
                           test_correct=loop.test_counts[0], test_total=loop.test_counts[1],
                           seconds=time.perf_counter() - start, run_dir=self.run_dir, model=p.eval_model,
                           data_seconds=p.data.seconds, compile_seconds=p.compile_clock.seconds)

    @staticmethod
    def _stop_non_finite(epoch: int, losses: list[torch.Tensor]) -> None:
        values = torch.stack(losses).tolist()
        bad = next(i for i, v in enumerate(values) if not math.isfinite(v))
        raise CnnlabError(f"the loss became {values[bad]} at epoch {epoch}, step {bad}; lower --lr and try again")
