"""What a run produces, as named records: one epoch's training pass (:class:`EpochStats`), one
epoch's row of metrics.csv (:class:`EpochRecord`), the whole run (:class:`TrainResult`), and
what the loop has done so far (:class:`LoopState`, the part of a checkpoint that is not weights)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import torch.nn as nn

    from cnnlab.training.config import TrainConfig

__all__ = ["EpochStats", "EpochRecord", "LoopState", "TrainResult"]


class EpochStats(NamedTuple):
    """One epoch's training pass, in this process: what ``Trainer.train_one_epoch`` returns."""

    losses: list[float]  # the minibatch costs, in order
    seconds: float  # the optimizer steps' time (evaluation excluded)
    correct: int  # minibatch predictions that were right (the running train accuracy)
    seen: int  # training images of the pass


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
    config: "TrainConfig"  # the run's resolved settings (as saved in config.json)
    history: list[EpochRecord]
    batch_losses: list[float]
    test_correct: int
    test_total: int
    seconds: float
    run_dir: Path | None
    model: "nn.Module"  # the weights evaluated: the moving average with --ema-decay
    data_seconds: float = 0.0  # loading and decoding the data (this process)
    compile_seconds: float = 0.0  # steps that compiled a graph (--compile); part of train_seconds

    @property
    def train_seconds(self) -> float:
        """Seconds of the optimizer steps of every epoch (evaluation, checkpoints and data decoding excluded)."""
        return sum(r.seconds for r in self.history)

    @property
    def test_acc(self) -> float:
        return 100.0 * self.test_correct / self.test_total


@dataclass
class LoopState:
    """What ``Trainer.fit`` changes as it goes: the only trainer state the loop writes, and, with the
    weights, optimizer and RNGs, what a checkpoint restores. Callbacks read it, never write it."""

    start_epoch: int = 1  # the first epoch fit() trains (after a checkpoint's epoch on resume)
    history: list[EpochRecord] = field(default_factory=list)
    batch_losses: list[float] = field(default_factory=list)
    best: dict[str, Any] | None = None  # best validation epoch: {"epoch", "val_acc", "model": its weights}
    test_counts: tuple[int, int] | None = None  # (correct, total) of the last test score
