"""Hooks around the training loop, and the callbacks cnnlab ships.

The loop (:class:`cnnlab.training.loop.Trainer`) only trains and evaluates; everything else --
the progress bar and the notebook's epoch lines, TensorBoard, the run directory's files --
is a :class:`Callback` reacting to these hooks, in this order::

    on_train_start                     once, after the model and optimizer exist
      on_epoch_start(epoch)            before each epoch's first batch
        on_batch_end(epoch, step, loss)  after every optimizer step (loss: a 0-d tensor)
      on_epoch_end(record)             after the epoch's evaluation (record: EpochRecord)
    on_train_end(result)               once, with the final test accuracy (result: TrainResult)

The rule: a callback reads, it never writes. It may read anything the trainer offers (its
``parts``, its loop ``state``, and the views ``trainer.model``, ``trainer.history`` ...) and
the hook's arguments, and may write its own files and attributes; it never sets an attribute of
the trainer, of ``trainer.state``, of the record or of the result (only the loop does). What a
callback has to tell the trainer it declares on itself: :attr:`Callback.run_dir`, the directory
it writes the run to, which the trainer reports as ``trainer.run_dir`` and in the result. To
stop a run, raise (``KeyboardInterrupt`` or an error): ``on_exception`` hooks run, then it
propagates. ``tests/test_training_parts.py`` checks that the shipped callbacks change no trainer state.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cnnlab.errors import CnnlabError
from cnnlab.terminal import make_console
from cnnlab.training.records import EpochRecord, LoopState, TrainResult

if TYPE_CHECKING:
    import torch.nn as nn

    from cnnlab.data import BatchSource
    from cnnlab.training.config import TrainConfig
    from cnnlab.training.setup import RunParts

__all__ = ["Callback", "ConsoleLogger", "TensorBoardLogger", "TrainerView"]


class TrainerView(Protocol):
    """What a callback reads of the trainer that calls it (:class:`cnnlab.training.loop.Trainer` is one):
    typed here so that the callbacks, which the loop imports, never import the loop."""

    parts: RunParts
    state: LoopState

    @property
    def config(self) -> TrainConfig: ...
    @property
    def device(self) -> torch.device: ...
    @property
    def model(self) -> nn.Module: ...
    @property
    def eval_model(self) -> nn.Module: ...
    @property
    def optimizer(self) -> torch.optim.Optimizer: ...
    @property
    def train_data(self) -> BatchSource: ...
    @property
    def val_data(self) -> BatchSource | None: ...
    @property
    def test_data(self) -> BatchSource: ...
    @property
    def classes(self) -> list[str]: ...
    @property
    def input_shape(self) -> tuple[int, int, int]: ...
    @property
    def skipped(self) -> tuple[str, ...]: ...
    @property
    def history(self) -> list[EpochRecord]: ...
    @property
    def batch_losses(self) -> list[float]: ...
    @property
    def best(self) -> dict[str, Any] | None: ...
    @property
    def run_dir(self) -> Path | None: ...
    def steps_in_epoch(self, epoch: int) -> int: ...


def _tensorboard():
    """``torch.utils.tensorboard`` (optional: it needs the tensorboard package)."""
    try:
        import torch.utils.tensorboard as tensorboard
    except ImportError:
        raise CnnlabError("--tensorboard needs the tensorboard package: pip install 'cnnlab[tensorboard]'") from None
    return tensorboard


class Callback:
    """Hook points around the loop (names after Lightning/fastai). Override what you need;
    the trainer is passed to every hook, so a callback can read (not change) its state."""

    run_dir: Path | None = None  # the directory this callback writes the run to, if it does (see the module's rule)

    def on_train_start(self, trainer: TrainerView) -> None:
        """The model, optimizer and schedule exist; on resume, ``trainer.history`` holds the epochs done."""

    def on_epoch_start(self, trainer: TrainerView, epoch: int) -> None:
        """Epoch ``epoch`` (1-based) is about to start."""

    def on_batch_end(self, trainer: TrainerView, epoch: int, step: int, loss: torch.Tensor) -> None:
        """One optimizer step is done; ``loss`` is the batch's mean cost (reading it syncs a GPU)."""

    def on_epoch_end(self, trainer: TrainerView, record: EpochRecord) -> None:
        """The epoch is trained and evaluated; ``record`` is its row of metrics.csv."""

    def on_train_end(self, trainer: TrainerView, result: TrainResult) -> None:
        """Training is over; ``result`` holds the final test accuracy and the model."""

    def on_exception(self, trainer: TrainerView, exc: BaseException) -> None:
        """The run stopped with ``exc`` (an error, a full disk, Ctrl-C); the exception propagates after the hooks."""


class ConsoleLogger(Callback):
    """Progress bar with the running loss during an epoch; one summary line after it.

    ``Epoch: 001/010 | Loss: 0.4512 | Train: 92.72% | Test: 93.10% | 1.62 s | Time elapsed: 0.04 min``
    """

    def __init__(self, console: Console | None = None, refresh_every: int = 10):
        self.console = console or make_console()  # piped: one unwrapped line per message
        self.refresh_every = refresh_every  # batches between loss read-outs (each one syncs a GPU)
        self.progress: Progress | None = None
        self.task = None
        self._running: torch.Tensor | None = None

    def on_train_start(self, trainer: TrainerView) -> None:
        c = trainer.config
        n_train, n_test = len(trainer.train_data), len(trainer.test_data)
        shape = "x".join(str(d) for d in trainer.input_shape)
        opt = f"{c.optimizer} lr {c.lr:g}" + (f" momentum {c.momentum:g}" if c.momentum else "")
        threads = f" ({torch.get_num_threads()} threads)" if trainer.device.type == "cpu" else ""
        self.console.print(
            f"{c.model} on {c.dataset} ({n_train:,} train / {n_test:,} test, {shape}), {opt}, batch {c.batch_size}, "
            f"{c.epochs:g} epochs, seed {c.seed}, {trainer.device}{threads}"
            + (", deterministic" if c.deterministic else "")
        )
        if trainer.skipped:
            self.console.print(f"Skipped {len(trainer.skipped)} unreadable file(s), e.g. {trainer.skipped[0]}")
        if trainer.run_dir is not None:
            self.console.print(f"Run directory: {trainer.run_dir}")

    def on_epoch_start(self, trainer: TrainerView, epoch: int) -> None:
        self.progress = Progress(
            TextColumn(f"Epoch {epoch:03d}/{trainer.config.epoch_count:03d}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("cost {task.fields[loss]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,  # no bar (and no blank line) in logs and pipes
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=trainer.steps_in_epoch(epoch), loss="-")
        self._running = None

    def on_batch_end(self, trainer: TrainerView, epoch: int, step: int, loss: torch.Tensor) -> None:
        assert self.progress is not None
        self._running = loss if self._running is None else 0.9 * self._running + 0.1 * loss
        if step % self.refresh_every == 0:
            self.progress.update(self.task, advance=1, loss=f"{float(self._running):.4f}")
        else:
            self.progress.update(self.task, advance=1)

    def on_epoch_end(self, trainer: TrainerView, record: EpochRecord) -> None:
        if self.progress is not None:
            self.progress.stop()
        self.console.print(
            f"Epoch: {record.epoch:03d}/{trainer.config.epoch_count:03d} | Cost: {record.train_loss:.4f} | "
            f"Train: {record.train_acc:.2f}% | "
            + (f"Val: {record.val_acc:.2f}%" if record.val_acc is not None else f"Test: {record.test_acc:.2f}%")
            + f" | {record.seconds:.2f} s | "
            f"Time elapsed: {record.elapsed / 60:.2f} min"
        )

    def on_train_end(self, trainer: TrainerView, result: TrainResult) -> None:
        compiled = f", {result.compile_seconds:.1f} s of it compiling" if trainer.config.compile else ""
        self.console.print(f"Total Training Time: {result.seconds / 60:.2f} min (optimizer steps alone: "
                           f"{result.train_seconds:.1f} s{compiled})")
        if trainer.best is not None:
            self.console.print(f"Best validation accuracy: {trainer.best['val_acc']:.2f}% at epoch "
                               f"{trainer.best['epoch']} (those weights are kept and scored on test)")
        self.console.print(f"Test accuracy: {result.test_acc:.2f}% ({result.test_correct}/{result.test_total})")

    def on_exception(self, trainer: TrainerView, exc: BaseException) -> None:
        if self.progress is not None:  # Ctrl-C, SIGTERM, an error: the bar goes, the terminal's cursor comes back
            self.progress.stop()


class TensorBoardLogger(Callback):
    """TensorBoard event files in ``RUN_DIR/tensorboard`` (optional dependency: ``tensorboard``):
    minibatch cost every step; train/val/test accuracy, mean cost and learning rate every epoch."""

    def __init__(self, every: int = 10):
        _tensorboard()  # fails here, before the run starts, without the package
        self.every = every
        self.writer = None
        self.step = 0

    def on_train_start(self, trainer: TrainerView) -> None:
        if trainer.run_dir is None:
            return
        self.writer = _tensorboard().SummaryWriter(log_dir=str(trainer.run_dir / "tensorboard"))
        self.step = len(trainer.batch_losses)

    def on_batch_end(self, trainer: TrainerView, epoch: int, step: int, loss: torch.Tensor) -> None:
        self.step += 1
        if self.writer is not None and step % self.every == 0:
            self.writer.add_scalar("cost/minibatch", float(loss), self.step)

    def on_epoch_end(self, trainer: TrainerView, record: EpochRecord) -> None:
        if self.writer is None:
            return
        self.writer.add_scalar("cost/epoch", record.train_loss, record.epoch)
        self.writer.add_scalar("accuracy/train", record.train_acc, record.epoch)
        for name in ("val_acc", "test_acc"):
            value = getattr(record, name)
            if value is not None:
                self.writer.add_scalar(f"accuracy/{name.removesuffix('_acc')}", value, record.epoch)
        if trainer.optimizer is not None:
            self.writer.add_scalar("lr", trainer.optimizer.param_groups[0]["lr"], record.epoch)
        self.writer.flush()

    def on_train_end(self, trainer: TrainerView, result: TrainResult) -> None:
        if self.writer is not None:
            self.writer.close()
