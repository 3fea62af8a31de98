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
from cnnlab.runs import (check_run_dir, default_run_dir, end_artefacts_missing, identity_differences, read_config_doc,
                         read_run_config, read_training_checkpoint)
from cnnlab.storage import RunLock
from cnnlab.training.callbacks import Callback, ConsoleLogger, TensorBoardLogger
from cnnlab.training.checkpoint import RunDirWriter
from cnnlab.training.config import LAUNCH_OPTIONS, ResumeOptionError, TrainConfig, option_flag, resume_safe
from cnnlab.training.distributed import check_nproc, distributed_env, relaunch_with_torchrun
from cnnlab.training.loop import Trainer
from cnnlab.training.lr_find import LrFindRecord
from cnnlab.training.lr_find import lr_find as lr_find_test
from cnnlab.training.lr_rules import DEFAULT_RULE, check_rule
from cnnlab.training.records import TrainResult
from cnnlab.training.recipes import recipe_config
from cnnlab.training.setup import check_data_settings

__all__ = ["train", "resume", "launch", "resolve_launch", "relaunch", "needs_relaunch", "check_resume_options"]

_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def train(config: TrainConfig | None = None, callbacks: Sequence[Callback] = (), *, overwrite: bool = False,
          write_run_dir: bool = True, **overrides: Any) -> TrainResult:
    """Train a model; returns the history, the final test accuracy and the model.

    ``train(epochs=1, dataset="digits")`` is short for ``train(TrainConfig(epochs=1, dataset="digits"))``;
    ``train(recipe="mnist-fast", seed=3)`` starts from a recipe's settings (see :mod:`cnnlab.training.recipes`)
    with the other keywords on top. With torchrun, rank 0 alone runs the callbacks and writes the run directory.
    """
    if config is None and overrides.get("recipe") is not None:
        overrides = dict(overrides)
        config = recipe_config(overrides.pop("recipe"), overrides)
    else:
        config = dataclasses.replace(config or TrainConfig(), **overrides)
    config.validate()
    check_data_settings(config)
    rank = distributed_env()[0]
    writer = None
    if write_run_dir and rank == 0:
        out = config.out or default_run_dir(config.model, config.dataset)
        check_run_dir(out, overwrite)  # fail before reading any data, not after training
        writer = RunDirWriter(out, overwrite=overwrite)
    trainer = Trainer(config, callbacks if rank == 0 else ())
    if writer is not None:
        trainer.callbacks.insert(0, writer)
    return trainer.fit()


def resume(run_dir: str | os.PathLike, callbacks: Sequence[Callback] = (), *, epochs: int | None = None,
           data_dir: str | None = None, **changes: Any) -> TrainResult:
    """Continue an interrupted run from its last ``checkpoint.pt``, up to its (or a new) ``epochs``.

    The run keeps its own settings; ``changes`` may set only those that cannot change its numbers
    (:func:`cnnlab.training.config.resume_safe`: ``download``, ``workers``), anything else is a
    :class:`ResumeOptionError` before anything is read or written.

    On the CPU with ``deterministic`` the final weights equal those of a run never stopped. A run
    killed before its first checkpoint starts again from its config.json; a run whose last epoch
    is done but whose end files (model.pt, result.json, curves.png) are missing gets them written.
    The directory is locked first, and the checkpoint must belong to the run (same run id, model,
    dataset and shapes as config.json) before anything is written.
    """
    path = Path(run_dir)
    check_resume_options(path, TrainConfig(**changes) if set(changes) <= _FIELDS else None, set(changes))
    ckpt = path / "checkpoint.pt"
    if not path.is_dir():
        raise RunDirError(f"--resume {path}: no such run directory")
    if not ckpt.is_file() and not (path / "config.json").is_file():
        raise RunDirError(f"--resume {path}: no checkpoint.pt there (runs write one after every epoch)")
    lock = RunLock(path).acquire()  # before reading: another process may be writing this run
    try:
        state = read_training_checkpoint(path) if ckpt.is_file() else None
        doc = read_config_doc(path)
        if doc is None:
            raise RunDirError(f"--resume {path}: config.json is missing or damaged, so checkpoint.pt cannot be checked "
                              f"against its run; start a new run")
        if state is not None:
            _check_checkpoint_identity(path, doc, state)
        config = TrainConfig.from_dict(state["config"] if state is not None else doc["config"])
        config.out = str(path)
        config.epochs = epochs if epochs is not None else config.epochs
        config.data_dir = data_dir if data_dir is not None else config.data_dir
        for name, value in changes.items():
            setattr(config, name, value)
        if state is not None and int(state["epoch"]) >= config.epochs and not end_artefacts_missing(path):
            raise RunDirError(f"{path} already has {state['epoch']} of {config.epochs} epochs; pass a larger --epochs "
                              f"to go on")
        trainer = Trainer(config, callbacks, resume_from=state)
        trainer.callbacks.insert(0, RunDirWriter(path, mode="resume" if state is not None else "restart", lock=lock,
                                                 run_id=doc.get("run_id")))
    except BaseException:
        lock.release()
        raise
    return trainer.fit()


def _check_checkpoint_identity(path: Path, doc: dict[str, Any], state: dict[str, Any]) -> None:
    """checkpoint.pt must be this run's: same run id (when both have one), model, dataset, shapes
    (:func:`cnnlab.runs.identity_differences`, the comparison model.pt is checked with too)."""
    differences = identity_differences(doc, state)
    if differences:
        raise RunDirError(f"--resume {path}: checkpoint.pt belongs to another run than config.json "
                          f"({'; '.join(differences[:3])}); put the run's own checkpoint.pt back, or start a new run")


def resolve_launch(config: TrainConfig, explicit: set[str] = frozenset(), *,
                   resume_dir: str | os.PathLike | None = None, overwrite: bool = False, nproc: int = 1,
                   force_nproc: bool = False) -> TrainConfig:
    """Every check of ``cnnlab train``, once, before torchrun starts its processes or anything is
    written; returns the run's settings. ``explicit``: the settings given on the command line; with
    ``config.recipe`` they override the recipe's settings, which override the defaults. With
    ``resume_dir``, any of them (or ``overwrite``, ``nproc`` ...) but :func:`resume_safe` is refused."""
    given = set(explicit) | {name for name, on in (("overwrite", overwrite), ("nproc", nproc != 1),
                                                   ("force_nproc", force_nproc)) if on}
    if resume_dir is not None:
        check_resume_options(Path(resume_dir), config, given)
    if config.recipe is not None and resume_dir is None:
        config = recipe_config(config.recipe, {name: getattr(config, name) for name in explicit
                                               if name != "recipe" and name in _FIELDS})
    config.validate()  # with --resume: the settings it may change (--epochs ...); the rest are the run's
    check_data_settings(config)
    check_nproc(nproc, config.device, config.batch_size, force=force_nproc)
    return config


def needs_relaunch(nproc: int) -> bool:
    """True when ``--nproc N`` (N > 1) asks for processes that torchrun has not started yet."""
    return nproc > 1 and distributed_env()[1] == 1


def relaunch(config: TrainConfig, explicit: set[str] = frozenset(), *, nproc: int, overwrite: bool = False,
             force_nproc: bool = False, argv: Sequence[str] | None = None) -> int:
    """Run this command again under torchrun with ``nproc`` processes; returns torchrun's exit code.
    The run directory is checked (and named, when ``--out`` was not given) here, once for all ranks."""
    config = resolve_launch(config, explicit, overwrite=overwrite, nproc=nproc, force_nproc=force_nproc)
    out = config.out or str(default_run_dir(config.model, config.dataset))
    check_run_dir(out, overwrite)  # one line here, not one per process
    return relaunch_with_torchrun(nproc, sys.argv[1:] if argv is None else argv, None if config.out else out)


def launch(config: TrainConfig, explicit: set[str] = frozenset(), *, resume_dir: str | os.PathLike | None = None,
           overwrite: bool = False, quiet: bool = False, tensorboard: bool = False, nproc: int = 1,
           force_nproc: bool = False, console: Any = None, lr_find: str | None = None) -> TrainResult | None:
    """What ``cnnlab train`` does in this process (see :func:`resolve_launch` for the checks): a new run,
    or ``resume_dir`` continued. Returns the result on rank 0 and None on the other ranks of a torchrun
    job. ``nproc > 1`` outside torchrun is :func:`relaunch`'s, from the command line.

    ``lr_find``: a rule of :mod:`cnnlab.training.lr_rules` (``--lr find:RULE``; "" for the default): the
    range test (:func:`cnnlab.training.lr_find.lr_find`) runs on the run's settings first and the run
    trains with the rate the rule suggests; config.json records it as ``config.lr`` (a number, as
    ever) and the test under ``"lr_find"``."""
    if needs_relaunch(nproc):
        raise CnnlabError(f"--nproc {nproc} starts processes from the command line (`cnnlab train --nproc {nproc}`); "
                          f"launch() trains in this process: call relaunch() or run the command")
    config = resolve_launch(config, explicit, resume_dir=resume_dir, overwrite=overwrite, nproc=nproc,
                            force_nproc=force_nproc)
    rank = distributed_env()[0]
    callbacks: list[Callback] = []
    if not quiet and rank == 0:
        callbacks.append(ConsoleLogger(console))
    if tensorboard and rank == 0:
        callbacks.append(TensorBoardLogger())
    if lr_find is not None:
        config, record = _find_lr(config, lr_find, resume_dir, overwrite, console)
        callbacks.append(record)
    if resume_dir is not None:
        given = set(explicit) & set(resume_safe()) & _FIELDS
        result = resume(resume_dir, callbacks, **{name: getattr(config, name) for name in given})
    else:
        result = train(config, callbacks, overwrite=overwrite)
    return result if rank == 0 else None


def _find_lr(config: TrainConfig, rule: str, resume_dir: Any, overwrite: bool, console: Any
             ) -> tuple[TrainConfig, LrFindRecord]:
    """``--lr find:RULE``: the range test on ``config``, then ``config`` with the suggested rate, and the
    callback that records the test in config.json. Checked first: no resume, a run directory that may be
    written."""
    rule = check_rule(rule or DEFAULT_RULE)
    if resume_dir is not None:
        raise CnnlabError("--lr find starts a new run with the learning rate it finds; leave it out with --resume")
    if distributed_env()[1] > 1:
        raise CnnlabError("--lr find runs in one process; run `cnnlab lr-find` first and pass its --lr to torchrun")
    check_run_dir(config.out or default_run_dir(config.model, config.dataset), overwrite)  # before the test
    result = lr_find_test(config)
    chosen = result.suggestion(rule)
    if console is not None:
        others = ", ".join(f"{name} {lr:.3g}" for name, lr in result.suggestions.items() if name != rule)
        console.print(f"lr-find: --lr {chosen:.3g} ({rule}; {others}; {result.stop_reason})")
    return dataclasses.replace(config, lr=chosen), LrFindRecord(result, rule)


def _trained_with(name: str, saved: Any, given: Any) -> str:
    """``--lr 0.05, not 0.5``; ``--amp, not --no-amp`` for a switch."""
    flag = option_flag(name).split("/")[0]
    if isinstance(saved, bool) and isinstance(given, bool):
        return f"{flag if saved else '--no-' + flag[2:]}, not {flag if given else '--no-' + flag[2:]}"
    return f"{flag} {_shown(saved)}, not {_shown(given)}"


def _shown(value: Any) -> str:
    """A setting's value as the command line spells it."""
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def check_resume_options(run_dir: str | os.PathLike, config: TrainConfig | None, given: set[str]) -> None:
    """``--resume`` continues a run with its own settings: every setting or option given with it
    but :func:`resume_safe` is refused, all of them in one line, before anything is read or written."""
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    order = [*fields, *LAUNCH_OPTIONS]
    refused = sorted(set(given) - set(resume_safe()), key=lambda n: (order.index(n) if n in order else len(order), n))
    if not refused:
        return
    saved = read_run_config(run_dir)  # {} if unreadable: then no "trained with" part
    differ = [_trained_with(n, saved[n], getattr(config, n)) for n in refused
              if config is not None and n in saved and n in fields and saved[n] != getattr(config, n)]
    flags = [option_flag(n) for n in refused]
    safe = [option_flag(n) for n in resume_safe()]
    raise ResumeOptionError(
        f"--resume {run_dir} continues the run with its own settings: leave out {_and(flags)}"
        + (f" (it was trained with {'; with '.join(differ)})" if differ else "")
        + f"; only {_and(safe)} may be given with --resume (start a new run to change anything else)")


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
