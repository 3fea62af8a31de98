"""Saving a run: the state that ``--resume`` continues bit for bit, and the run directory's files.

:func:`capture_state` / :func:`restore_state` hold everything a run needs to continue exactly
(model, optimizer, schedule, RNG states, history). :class:`RunDirWriter` is the callback that
writes the run directory (format: :mod:`cnnlab.runs`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cnnlab.errors import RunDirError
from cnnlab.runs import atomic_write_bytes, prepare_run_dir
from cnnlab.runtime import environment_info
from cnnlab.training.callbacks import Callback

if TYPE_CHECKING:
    from cnnlab.training.loop import EpochRecord, Trainer, TrainResult

__all__ = ["capture_state", "restore_state", "RunDirWriter"]


def _cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def capture_state(trainer: "Trainer", epoch: int) -> dict[str, Any]:
    """Everything needed to continue after ``epoch`` bit for bit (model, optimizer, schedule, RNGs)."""
    state = {
        "epoch": epoch,
        "model": _cpu_state_dict(trainer.model),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "shuffle_rng": trainer.shuffle.get_state(),
        "history": [dataclasses.asdict(r) for r in trainer.history],
        "batch_losses": list(trainer.batch_losses),
        "config": trainer.config.to_dict(),
        "best": trainer.best,
    }
    if trainer.device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(trainer.device)
    return state


def restore_state(trainer: "Trainer", state: dict[str, Any]) -> int:
    """Load a :func:`capture_state` dict into the trainer; returns the epoch it holds."""
    from cnnlab.training.loop import EpochRecord

    try:
        trainer.model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise RunDirError(f"the checkpoint does not fit model {trainer.config.model!r}: "
                          f"{str(exc).splitlines()[0]}") from None
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("shuffle_rng") is not None:
        trainer.shuffle.set_state(state["shuffle_rng"])
    if trainer.device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], trainer.device)
    trainer.history = [EpochRecord(**r) for r in state["history"]]
    trainer.batch_losses = list(state["batch_losses"])
    trainer.best = state.get("best")
    return int(state["epoch"])


class RunDirWriter(Callback):
    """Writes config.json at the start; a metrics.csv row and an atomic checkpoint.pt (everything
    needed to resume) after every epoch; model.pt, result.json and curves.png at the end."""

    METRICS_HEADER = "epoch,train_loss,train_acc,val_acc,test_acc,seconds,elapsed\n"

    def __init__(self, path: str | os.PathLike, overwrite: bool = False, plot: bool = True, resume: bool = False):
        self.path = Path(path)
        self.overwrite = overwrite
        self.plot = plot
        self.resume = resume

    @staticmethod
    def _row(record: "EpochRecord") -> str:
        pct = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
        return (f"{record.epoch},{record.train_loss:.6f},{record.train_acc:.4f},{pct(record.val_acc)},"
                f"{pct(record.test_acc)},{record.seconds:.3f},{record.elapsed:.3f}\n")

    def on_train_start(self, trainer: "Trainer") -> None:
        trainer.run_dir = self.path if self.resume else prepare_run_dir(self.path, self.overwrite)
        config = trainer.config.to_dict()
        config["out"] = str(trainer.run_dir)
        doc = {
            "config": config,
            "classes": trainer.classes,
            "input_shape": list(trainer.input_shape),
            "skipped_files": list(trainer.skipped),
            "environment": environment_info(trainer.device),
        }
        (trainer.run_dir / "config.json").write_text(json.dumps(doc, indent=2) + "\n")
        # on resume: the rows of the epochs the checkpoint holds, nothing after them
        rows = "".join(self._row(r) for r in trainer.history)
        (trainer.run_dir / "metrics.csv").write_text(self.METRICS_HEADER + rows)

    def on_epoch_end(self, trainer: "Trainer", record: "EpochRecord") -> None:
        assert trainer.run_dir is not None
        with open(trainer.run_dir / "metrics.csv", "a") as fh:
            fh.write(self._row(record))
        state = capture_state(trainer, record.epoch)
        atomic_write_bytes(trainer.run_dir / "checkpoint.pt", lambda fh: torch.save(state, fh))

    def on_train_end(self, trainer: "Trainer", result: "TrainResult") -> None:
        from cnnlab import __version__

        assert trainer.run_dir is not None
        result.run_dir = trainer.run_dir
        best_epoch = trainer.best["epoch"] if trainer.best else None
        checkpoint = {
            "state_dict": _cpu_state_dict(trainer.model),
            "config": trainer.config.to_dict(),
            "classes": list(trainer.classes),
            "input_shape": list(trainer.input_shape),
            "test_correct": result.test_correct,
            "test_total": result.test_total,
            "best_epoch": best_epoch,
            "cnnlab_version": __version__,
        }
        (trainer.run_dir / "result.json").write_text(json.dumps({
            "test_acc": result.test_acc, "test_correct": result.test_correct, "test_total": result.test_total,
            "best_epoch": best_epoch, "best_val_acc": trainer.best["val_acc"] if trainer.best else None,
            "seconds": result.seconds,
        }, indent=2) + "\n")
        atomic_write_bytes(trainer.run_dir / "model.pt", lambda fh: torch.save(checkpoint, fh))
        if self.plot:
            from cnnlab.plots import plot_curves

            plot_curves(result.batch_losses, result.history, trainer.run_dir / "curves.png", trainer.steps_per_epoch)
