"""One readable training loop.

``Trainer(config)`` prepares one run -- data, model, optimizer, schedule -- and ``fit()`` runs
its epochs: ``train_one_epoch`` then ``evaluate``, with the hooks of
:mod:`cnnlab.training.callbacks` around them. The loop itself does nothing but train;
progress bars, logging, checkpoints and plots are callbacks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.data import LoadOptions, augment_batch, get_dataset_spec, iterate_batches, load_splits, normalization
from cnnlab.errors import CnnlabError
from cnnlab.models import (create_model, first_conv_key, freeze, get_model_info, init_weights, load_weights,
                           weights_in_channels)
from cnnlab.runtime import determinism, explain_out_of_memory, memory_format_for, resolve_device
from cnnlab.training.callbacks import Callback
from cnnlab.training.checkpoint import restore_state
from cnnlab.training.compile import CompileClock, compile_module
from cnnlab.training.config import TrainConfig
from cnnlab.training.distributed import (all_reduce, distributed_env, join_process_group, leave_process_group,
                                         local_device, wrap_ddp)
from cnnlab.training.ema import WeightEma
from cnnlab.training.evaluate import evaluate_accuracy
from cnnlab.training.lookahead import Lookahead
from cnnlab.training.optim import build_optimizer, build_scheduler
from cnnlab.training.rewrite import pool_before_relu
from cnnlab.training.tta import tta_kind

__all__ = ["EpochRecord", "TrainResult", "Trainer"]


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float  # mean minibatch cost over the epoch
    train_acc: float  # percent; see TrainConfig.train_eval for which of the two definitions
    test_acc: float | None  # percent; None when a validation split is used (test is scored once, at the end)
    seconds: float  # training time of the epoch, evaluation excluded
    elapsed: float  # wall time since the start, evaluation included
    val_acc: float | None = None  # percent, when --val-fraction carves a validation split

    @property
    def monitored(self) -> float:
        """The per-epoch figure used for model selection: validation if there is one, else test."""
        return self.val_acc if self.val_acc is not None else self.test_acc  # type: ignore[return-value]


@dataclass
class TrainResult:
    config: TrainConfig
    history: list[EpochRecord]
    batch_losses: list[float]
    test_correct: int
    test_total: int
    seconds: float
    run_dir: Path | None
    model: nn.Module  # the weights evaluated: the moving average with --ema-decay
    data_seconds: float = 0.0  # loading and decoding the data (this process)
    compile_seconds: float = 0.0  # steps that compiled a graph (--compile); part of train_seconds

    @property
    def train_seconds(self) -> float:
        """Seconds of the optimizer steps of every epoch (evaluation, checkpoints and data decoding excluded)."""
        return sum(r.seconds for r in self.history)

    @property
    def test_acc(self) -> float:
        return 100.0 * self.test_correct / self.test_total


class Trainer:
    """One run: ``Trainer(config)`` loads the data and builds the model, optimizer and schedule
    (seeded as the lecture does: ``torch.manual_seed(seed)`` right before the model);
    :meth:`fit` trains. ``resume_from``: a checkpoint (see :mod:`cnnlab.training.checkpoint`) to continue."""

    def __init__(self, config: TrainConfig, callbacks: Sequence[Callback] = (),
                 resume_from: dict[str, Any] | None = None):
        config.validate()
        self.config = c = config
        self.callbacks = list(callbacks)
        self.rank, self.world = distributed_env()
        if self.world > 1 and c.batch_size % self.world:
            raise CnnlabError(f"--batch-size {c.batch_size} is the global batch and must divide by the "
                              f"{self.world} processes")
        self.device = local_device(resolve_device(c.device))
        get_model_info(c.model)  # unknown model: fail before loading any data
        started = time.perf_counter()
        with explain_out_of_memory(f"loading {c.dataset}"):
            self._load_data()
        self.data_seconds = time.perf_counter() - started
        self.memory_format = memory_format_for(c.channels_last, self.device)
        self.normalize = normalization(c.dataset, c.normalize)
        self.augment = get_dataset_spec(c.dataset).augment if c.augment else None
        self.steps_per_epoch = math.ceil(len(self.train_data) / c.batch_size)
        if c.limit_batches is not None:
            self.steps_per_epoch = min(self.steps_per_epoch, c.limit_batches)
        self.total_steps = c.total_steps(self.steps_per_epoch)  # --epochs 1.5: one and a half epochs of steps
        # what fit() changes as it goes
        self.history: list[EpochRecord] = []
        self.batch_losses: list[float] = []
        self.best: dict[str, Any] | None = None  # best validation epoch, its accuracy and weights
        self.test_counts: tuple[int, int] | None = None
        self.run_dir: Path | None = None  # set by the RunDirWriter callback
        self.replaced_head: list[str] = []  # head tensors left as initialised (--weights with other classes)
        with determinism(c.deterministic, self.device), explain_out_of_memory(f"building {c.model}"):
            torch.manual_seed(c.seed)  # before the model is built, as in the lecture's notebook
            self.model = self.build_model()
        self._joined_group = join_process_group(self.device)
        # what the training forward calls: the model (pools before ReLUs, see training/rewrite.py), DDP under torchrun
        self.net = wrap_ddp(pool_before_relu(self.model)[0] if c.pool_before_relu else self.model, self.device)
        self._build_optimization()
        self.shuffle = torch.Generator().manual_seed(c.seed)  # batch order and augmentation
        self.start_epoch = restore_state(self, resume_from) + 1 if resume_from is not None else 1

    def _build_optimization(self) -> None:
        """Optimizer, schedule, gradient scaler, and the optional tricks: Lookahead, a moving average
        of the weights, test-time augmentation, a compiled forward."""
        c = self.config
        self.optimizer = build_optimizer(self.model, c)
        self.scheduler = build_scheduler(self.optimizer, c, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=c.amp and self.device.type == "cuda")
        self.lookahead = Lookahead(self.model, c.lookahead_steps, c.lookahead_alpha) if c.lookahead_steps else None
        self.ema = WeightEma(self.model, c.ema_decay) if c.ema_decay else None
        self.tta = tta_kind(c.dataset, c.tta)
        self.compile_clock = CompileClock(c.compile)
        if c.compile:
            self.net = compile_module(self.net)

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated and saved: the moving average with --ema-decay, else the model."""
        return self.ema.module if self.ema is not None else self.model

    def steps_in_epoch(self, epoch: int) -> int:
        """Optimizer steps of ``epoch`` (1-based): all of an epoch, fewer in the last of a fractional run."""
        return max(0, min(self.steps_per_epoch, self.total_steps - (epoch - 1) * self.steps_per_epoch))

    def _load_data(self) -> None:
        c = self.config
        options = LoadOptions(c.download, c.input_size, c.in_channels, c.skip_bad_images, c.stream, c.workers)
        splits = load_splits(c.dataset, c.data_dir, options, val_fraction=c.val_fraction, seed=c.seed)
        self.skipped = splits.skipped
        self.classes = splits.train.classes
        self.input_shape = splits.train.sample_shape  # (C, H, W)
        self.train_data = splits.train.to(self.device)
        self.val_data = splits.val.to(self.device) if splits.val is not None else None
        self.test_data = splits.test.to(self.device)

    def build_model(self) -> nn.Module:
        """The registry model for the data's shape and classes, initialised, loaded and frozen as configured."""
        c, (channels, side, _) = self.config, self.input_shape
        if get_model_info(c.model).family == "resnet" and side <= 64 and "stem" not in c.model_options:
            # the ImageNet stem shrinks 32 px to 8 before the first block; small images get the CIFAR
            # stem unless asked otherwise (recorded in the config, so evaluate/resume rebuild the same)
            c.model_options["stem"] = "cifar"
        model = create_model(c.model, num_classes=len(self.classes), in_channels=channels, input_size=side,
                             **c.model_options)
        init_weights(model, c.init)
        if c.weights:
            expected = weights_in_channels(c.weights, first_conv_key(model))
            if expected is not None and expected != channels:
                raise CnnlabError(
                    f"the weights in {c.weights} expect {expected} input channel(s) but {c.dataset} has {channels}; "
                    f"pass --in-channels {expected}" + (" to repeat the gray channel" if channels == 1 else ""))
            self.replaced_head = load_weights(model, c.weights, replace_head=True)
        if c.freeze:
            freeze(model, c.freeze)
        return model.to(self.device, memory_format=memory_format_for(c.channels_last, self.device))

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def fit(self) -> TrainResult:
        """Train from ``start_epoch`` to ``config.epochs``, evaluating after each epoch."""
        c = self.config
        shape = "x".join(map(str, self.input_shape))
        try:
            with determinism(c.deterministic, self.device), \
                    explain_out_of_memory(f"training {c.model} on {shape} images in batches of {c.batch_size}"):
                self._call("on_train_start")
                start = time.perf_counter() - (self.history[-1].elapsed if self.history else 0.0)
                for epoch in range(self.start_epoch, c.epoch_count + 1):
                    self._call("on_epoch_start", epoch)
                    record = self.evaluate(epoch, *self.train_one_epoch(epoch), start)
                    self.history.append(record)
                    self._call("on_epoch_end", record)
                result = self._finish(start)
                self._call("on_train_end", result)
        except BaseException as exc:
            self._call("on_exception", exc)
            raise
        leave_process_group(self._joined_group)
        return result

    def train_one_epoch(self, epoch: int) -> tuple[list[float], float, int, int]:
        """One pass over the training data: (minibatch losses, seconds, correct, seen) of this process."""
        c = self.config
        self.model.train()
        for name in c.freeze:  # frozen parts are fixed feature extractors: BN statistics and dropout stay off
            self.model.get_submodule(name).eval()
        epoch_start = time.perf_counter()
        losses: list[torch.Tensor] = []
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        seen = 0
        check_every = 1 if self.device.type == "cpu" else 50  # reading the loss syncs a GPU
        batches = iterate_batches(self.train_data, c.batch_size, shuffle=True, generator=self.shuffle,
                                  memory_format=self.memory_format, normalize=self.normalize,
                                  shard=(self.rank, self.world))
        steps = self.steps_in_epoch(epoch)
        for step, (x, y) in enumerate(batches):
            if step >= steps:  # --limit-batches, or the end of a fractional last epoch
                break
            seen += len(y)
            with self.compile_clock:
                logits, loss = self.train_step(x, y)
            losses.append(loss)
            correct += (logits.argmax(dim=1) == y).sum()
            if step % check_every == 0 and not torch.isfinite(loss):
                self._stop_non_finite(epoch, losses)
            self._call("on_batch_end", epoch, step, loss)
        values = torch.stack(losses).tolist()
        if not all(math.isfinite(v) for v in values):
            self._stop_non_finite(epoch, losses)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return values, time.perf_counter() - epoch_start, int(correct), seen

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, backward, optimizer and schedule step on one batch: (logits, loss), detached."""
        c = self.config
        if self.augment is not None:
            x = augment_batch(x, self.augment, self.shuffle)
        amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        self.optimizer.zero_grad(set_to_none=True)  # before the forward: last step's gradients are not held through it
        with torch.autocast(self.device.type, dtype=amp_dtype, enabled=c.amp):
            logits = self.net(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=c.label_smoothing)
        self.scaler.scale(loss).backward()
        if c.clip_grad is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.lookahead is not None:
            self.lookahead.step()
        if self.ema is not None:
            self.ema.update(self.model)
        loss = loss.detach()
        if self.world > 1:  # the global batch's mean loss, as one process would see it
            loss = all_reduce(loss * len(y)) / all_reduce(torch.tensor(float(len(y)), device=self.device))
        return logits.detach(), loss

    def evaluate(self, epoch: int, losses: list[float], seconds: float, correct: int, seen: int,
                 start: float) -> EpochRecord:
        """The epoch's record: train accuracy (running or a full pass), then validation or test accuracy."""
        c = self.config
        self.batch_losses.extend(losses)
        if c.train_eval == "full":
            correct, seen = self._score(self.train_data)
        elif self.world > 1:
            correct = int(all_reduce(torch.tensor(correct, device=self.device)))
            seen = int(all_reduce(torch.tensor(seen, device=self.device)))
        val_acc = test_acc = None
        if self.val_data is not None:
            val_correct, val_total = self._score(self.val_data)
            val_acc = 100.0 * val_correct / val_total
            if self.best is None or val_acc > self.best["val_acc"]:
                self.best = {"epoch": epoch, "val_acc": val_acc,
                             "model": {k: v.detach().cpu().clone() for k, v in self.eval_model.state_dict().items()}}
        else:
            self.test_counts = self._score(self.test_data)
            test_acc = 100.0 * self.test_counts[0] / self.test_counts[1]
        return EpochRecord(epoch=epoch, train_loss=sum(losses) / len(losses), train_acc=100.0 * correct / seen,
                           test_acc=test_acc, seconds=seconds, elapsed=time.perf_counter() - start, val_acc=val_acc)

    def _score(self, data) -> tuple[int, int]:
        model = self.eval_model
        if self.config.pool_before_relu:  # the same outputs, ~2x faster here; traced in eval mode, weights shared
            was_training = model.training
            graph = pool_before_relu(model.eval())[0]
            model.train(was_training)
            # the graph gets the model's mode too: evaluate_accuracy restores the shared modules to the graph's
            model = graph.train(was_training)
        correct, total, _ = evaluate_accuracy(model, data, self.config.eval_batch_size, self.memory_format,
                                              self.normalize, tta=self.tta)
        return correct, total

    def _finish(self, start: float) -> TrainResult:
        c = self.config
        if self.val_data is not None:
            # model selection on validation; the test set is scored once, for the selected weights
            assert self.best is not None
            self.eval_model.load_state_dict(self.best["model"])
            self.test_counts = self._score(self.test_data)
        elif self.test_counts is None:  # resumed after the last epoch to finish the run's files
            self.test_counts = self._score(self.test_data)
        return TrainResult(config=c, history=self.history, batch_losses=self.batch_losses,
                           test_correct=self.test_counts[0], test_total=self.test_counts[1],
                           seconds=time.perf_counter() - start, run_dir=self.run_dir, model=self.eval_model,
                           data_seconds=self.data_seconds, compile_seconds=self.compile_clock.seconds)

    @staticmethod
    def _stop_non_finite(epoch: int, losses: list[torch.Tensor]) -> None:
        values = torch.stack(losses).tolist()
        bad = next(i for i, v in enumerate(values) if not math.isfinite(v))
        raise CnnlabError(f"the loss became {values[bad]} at epoch {epoch}, step {bad}; lower --lr and try again")

