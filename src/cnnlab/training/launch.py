"""Starting and continuing runs: :func:`train`, :func:`resume`, and :func:`launch` (what
``cnnlab train`` does with its options: relaunch under torchrun, pick the callbacks, start a
new run or continue one)."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from cnnlab.errors import CnnlabError, RunDirError
from cnnlab.runs import CHECKPOINT_KEYS, check_run_dir, default_run_dir, read_checkpoint, read_run_config
from cnnlab.training.callbacks import Callback
from cnnlab.training.checkpoint import RunDirWriter
from cnnlab.training.config import TrainConfig
from cnnlab.training.distributed import distributed_env, relaunch_with_torchrun
from cnnlab.training.loop import Trainer, TrainResult

__all__ = ["train", "resume", "launch"]


def train(config: TrainConfig | None = None, callbacks: Sequence[Callback] = (), *, overwrite: bool = False,
          write_run_dir: bool = True, **overrides: Any) -> TrainResult:
    """Train a model; returns the history, the final test accuracy and the model.

    ``train(epochs=1, dataset="digits")`` is short for ``train(TrainConfig(epochs=1, dataset="digits"))``.
    With torchrun, rank 0 alone runs the callbacks and writes the run directory.
    """
    config = dataclasses.replace(config or TrainConfig(), **overrides)
    rank = distributed_env()[0]
    trainer = Trainer(config, callbacks if rank == 0 else ())
    if write_run_dir and rank == 0:
        out = config.out or default_run_dir(config.model, config.dataset)
        check_run_dir(out, overwrite)  # fail before training, not after
        trainer.callbacks.insert(0, RunDirWriter(out, overwrite=overwrite))
    return trainer.fit()


def resume(run_dir: str | os.PathLike, callbacks: Sequence[Callback] = (), *, epochs: int | None = None,
           data_dir: str | None = None) -> TrainResult:
    """Continue an interrupted run from its last ``checkpoint.pt``, up to its (or a new) ``epochs``.

    On the CPU with ``deterministic`` the final weights equal those of a run never stopped.
    """
    path = Path(run_dir)
    ckpt = path / "checkpoint.pt"
    if not path.is_dir():
        raise RunDirError(f"--resume {path}: no such run directory")
    if not ckpt.is_file():
        raise RunDirError(f"--resume {path}: no checkpoint.pt there (runs write one after every epoch)")
    state = read_checkpoint(ckpt, CHECKPOINT_KEYS, "training checkpoint")
    config = TrainConfig.from_dict(state["config"])
    config.out = str(path)
    if epochs is not None:
        config.epochs = epochs
    if data_dir is not None:
        config.data_dir = data_dir
    if int(state["epoch"]) >= config.epochs:
        raise RunDirError(f"{path} already has {state['epoch']} of {config.epochs} epochs; pass a larger --epochs to go on")
    trainer = Trainer(config, callbacks, resume_from=state)
    trainer.callbacks.insert(0, RunDirWriter(path, resume=True))
    return trainer.fit()


def _check_resume_options(run_dir: Path, config: TrainConfig, explicit: set[str]) -> None:
    """``--resume`` continues a run with its own settings: an explicit option that would change
    its model or dataset is a mistake, not a wish."""
    saved = read_run_config(run_dir)  # {} if unreadable: resume() says what is wrong with the directory
    for name in ("model", "dataset"):
        given = getattr(config, name)
        if name in explicit and saved.get(name, given) != given:
            raise CnnlabError(f"--resume {run_dir} was trained with --{name} {saved[name]}, not {given}; "
                              f"resume without --{name}, or start a new run")


def launch(config: TrainConfig, explicit: set[str] = frozenset(), *, resume_dir: str | os.PathLike | None = None,
           overwrite: bool = False, quiet: bool = False, tensorboard: bool = False, nproc: int = 1,
           console: Any = None, argv: Sequence[str] | None = None) -> TrainResult | int | None:
    """What ``cnnlab train`` does. ``explicit``: the settings given on the command line.

    Returns the result on rank 0, None on the other ranks, or the exit code of torchrun when
    ``nproc > 1`` relaunched this command under it.
    """
    if nproc < 1:
        raise CnnlabError(f"--nproc must be a positive integer, got {nproc}")
    rank, world = distributed_env()
    if nproc > 1 and world == 1:
        out = None if resume_dir is not None else str(default_run_dir(config.model, config.dataset))
        return relaunch_with_torchrun(nproc, sys.argv[1:] if argv is None else argv, out)
    callbacks: list[Callback] = []
    if not quiet and rank == 0:
        from cnnlab.training.callbacks import ConsoleLogger

        callbacks.append(ConsoleLogger(console))
    if tensorboard and rank == 0:
        from cnnlab.training.callbacks import TensorBoardLogger

        callbacks.append(TensorBoardLogger())
    if resume_dir is not None:
        _check_resume_options(Path(resume_dir), config, explicit)
        result = resume(resume_dir, callbacks, epochs=config.epochs if "epochs" in explicit else None,
                        data_dir=config.data_dir if "data_dir" in explicit else None)
    else:
        result = train(config, callbacks, overwrite=overwrite)
    return result if rank == 0 else None
