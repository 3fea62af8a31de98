"""Saving a run: the state that ``--resume`` continues bit for bit, and the run directory's files.

:func:`capture_state` / :func:`restore_state` hold everything a run needs to continue exactly
(model, optimizer, schedule, RNG states, history). :class:`RunDirWriter` is the callback that
writes the run directory through the writers of :mod:`cnnlab.runs.format`, beside their readers.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import uuid
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn as nn

from cnnlab.allocator import peak_rss_bytes
from cnnlab.errors import RunDirError
from cnnlab.figures import plot_curves
from cnnlab.runs import (CURVES_FILE, check_run_dir, checkpoint_payload, config_document, end_artefacts_missing,
                         model_payload, read_config_doc, write_checkpoint, write_config_doc, write_metrics, write_model,
                         write_result)
from cnnlab.runtime import environment_info
from cnnlab.storage import RunLock, atomic_write, clear_artefacts, make_run_dir
from cnnlab.training.callbacks import Callback
from cnnlab.training.config import TrainConfig
from cnnlab.training.records import EpochRecord, LoopState, TrainResult
from cnnlab.training.setup import RunParts

__all__ = ["capture_state", "restore_state", "RunDirWriter", "TrainerView"]


class TrainerView(Protocol):
    """What :class:`RunDirWriter` reads of the trainer (``cnnlab.training.loop.Trainer``)."""

    config: TrainConfig
    parts: RunParts
    state: LoopState
    device: torch.device
    classes: list[str]
    input_shape: tuple[int, int, int]
    skipped: tuple[str, ...]
    tta: str | None
    steps_per_epoch: int

    @property
    def history(self) -> list[EpochRecord]: ...

    @property
    def best(self) -> dict[str, Any] | None: ...

    @property
    def eval_model(self) -> nn.Module: ...


def _cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def capture_state(parts: RunParts, loop: LoopState, epoch: int) -> dict[str, Any]:
    """Everything needed to continue after ``epoch`` bit for bit: the parts' weights, optimizer,
    schedule, RNGs and tricks, and the loop's state."""
    state = {
        "epoch": epoch,
        "model": _cpu_state_dict(parts.model),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "shuffle_rng": parts.shuffle.get_state(),
        "history": [dataclasses.asdict(r) for r in loop.history],
        "batch_losses": list(loop.batch_losses),
        "config": parts.config.to_dict(),
        "best": loop.best,
    }
    if parts.device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(parts.device)
    if parts.ema is not None:  # --ema-decay
        state["ema"] = parts.ema.state_dict()
    if parts.lookahead is not None:  # --lookahead-steps
        state["lookahead"] = parts.lookahead.state_dict()
    return state


def restore_state(parts: RunParts, state: dict[str, Any]) -> LoopState:
    """Load a :func:`capture_state` dict into ``parts`` (weights, optimizer, schedule, RNGs, tricks);
    returns the loop's state, ready to go on with the epoch after the checkpoint's."""
    try:
        parts.model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise RunDirError(f"the checkpoint does not fit model {parts.config.model!r}: "
                          f"{str(exc).splitlines()[0]}") from None
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("shuffle_rng") is not None:
        parts.shuffle.set_state(state["shuffle_rng"])
    if parts.device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], parts.device)
    if parts.ema is not None and "ema" in state:
        parts.ema.load_state_dict(state["ema"])
    if parts.lookahead is not None and "lookahead" in state:
        parts.lookahead.load_state_dict(state["lookahead"])
    return LoopState(start_epoch=int(state["epoch"]) + 1, history=[EpochRecord(**r) for r in state["history"]],
                     batch_losses=list(state["batch_losses"]), best=state.get("best"))


def process_seconds() -> float | None:
    """Seconds since this process started (Linux: /proc/self/stat against /proc/uptime), or None."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def result_document(trainer: TrainerView, result: TrainResult) -> dict[str, Any]:
    """result.json: the final test accuracy, and time to accuracy: seconds and test accuracy per epoch."""
    best = trainer.best
    return {
        "test_acc": result.test_acc, "test_correct": result.test_correct, "test_total": result.test_total,
        "best_epoch": best["epoch"] if best else None, "best_val_acc": best["val_acc"] if best else None,
        "seconds": result.seconds,
        "train_seconds": result.train_seconds,
        "compile_seconds": result.compile_seconds,
        "data_seconds": result.data_seconds,
        "process_seconds": process_seconds(),
        "peak_rss_bytes": peak_rss_bytes(),  # the process's resident memory at its peak (VmHWM), up to now
        "timing": "train_seconds: the optimizer steps only (data decoding, evaluation, checkpoints excluded; "
                  "compile_seconds included); seconds: fit() from its first epoch to the final test score; "
                  "data_seconds: reading and decoding the dataset; process_seconds: from the process's start "
                  "to this file",
        "tta": trainer.tta,
        "epochs": [{"epoch": r.epoch, "train_seconds": seconds, "test_acc": r.test_acc, "val_acc": r.val_acc}
                   for r, seconds in zip(trainer.history, itertools.accumulate(h.seconds for h in trainer.history))],
    }


class RunDirWriter(Callback):
    """Writes the run directory (format: :mod:`cnnlab.runs`), so that at every moment the run is
    either resumable or complete:

    - start: take the directory's lock (before anything is written); a new run clears an old
      run's files (``--overwrite``); config.json (with a ``run_id``) and an empty metrics.csv.
    - every epoch: checkpoint.pt first, then metrics.csv -- metrics never claim an epoch the
      checkpoint does not hold.
    - end: result.json, model.pt, curves.png; ``--resume`` re-creates whichever is missing.

    Every file is written atomically (:func:`cnnlab.storage.atomic_write`).
    ``mode``: "new" (a fresh or ``--overwrite`` directory), "resume" (continue the checkpoint),
    or "restart" (a run killed before its first checkpoint: start it again in place).
    """


    def __init__(self, path: str | os.PathLike, overwrite: bool = False, plot: bool = True, mode: str = "new",
                 lock: RunLock | None = None, run_id: str | None = None):
        self.path = Path(path)
        self.overwrite = overwrite
        self.plot = plot
        self.mode = mode
        self.lock = lock
        self.run_id = run_id or uuid.uuid4().hex
        self.run_dir = self.path  # declared to the trainer (Trainer.run_dir); the trainer is never written

    def _write_metrics(self, trainer: TrainerView) -> None:
        write_metrics(self.path, trainer.history)

    def on_train_start(self, trainer: TrainerView) -> None:
        if self.mode == "new":
            check_run_dir(self.path, self.overwrite)
            make_run_dir(self.path)
        if self.lock is None:
            self.lock = RunLock(self.path).acquire()  # the first thing written into the directory
        if self.mode != "resume":
            clear_artefacts(self.path)  # --overwrite, or a restart: no stale file of an older run stays
        config = trainer.config.to_dict()
        config["out"] = str(self.path)
        doc = config_document(config, run_id=self.run_id, classes=trainer.classes, input_shape=trainer.input_shape,
                              skipped=trainer.skipped, environment=environment_info(trainer.device))
        old = read_config_doc(self.path) if self.mode == "resume" else None
        if old is None or old.get("config") != config:  # on resume only when a setting changed (--epochs)
            write_config_doc(self.path, {**(old or {}), **doc})  # what else the run recorded stays (lr_find)
        self._write_metrics(trainer)  # on resume: the epochs the checkpoint holds, nothing after them

    def on_epoch_end(self, trainer: TrainerView, record: EpochRecord) -> None:
        state = capture_state(trainer.parts, trainer.state, record.epoch)
        write_checkpoint(self.path, checkpoint_payload(state, run_id=self.run_id, classes=trainer.classes,
                                                       input_shape=trainer.input_shape))
        self._write_metrics(trainer)

    def on_train_end(self, trainer: TrainerView, result: TrainResult) -> None:
        best_epoch = trainer.best["epoch"] if trainer.best else None
        model = model_payload(_cpu_state_dict(trainer.eval_model),  # the moving average with --ema-decay
                              trainer.config.to_dict(), classes=trainer.classes, input_shape=trainer.input_shape,
                              run_id=self.run_id, test_correct=result.test_correct, test_total=result.test_total,
                              best_epoch=best_epoch)
        write_result(self.path, result_document(trainer, result))
        write_model(self.path, model)
        if self.plot:
            atomic_write(self.path / CURVES_FILE, lambda fh: plot_curves(result.batch_losses, result.history, fh,
                                                                         trainer.steps_per_epoch))
        self._release()

    def on_exception(self, trainer: TrainerView, exc: BaseException) -> None:
        if isinstance(exc, KeyboardInterrupt) and self._resumable(trainer):
            exc.resume_dir = self.path  # type: ignore[attr-defined]  # the CLI's one line says what to resume
        self._release()

    def _resumable(self, trainer: TrainerView) -> bool:
        """Whether `cnnlab train --resume` has something to do: the run exists and is not complete."""
        done = bool(trainer.history) and trainer.history[-1].epoch >= trainer.config.epoch_count
        return (self.path / "config.json").is_file() and not (done and not end_artefacts_missing(self.path))

    def _release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None
