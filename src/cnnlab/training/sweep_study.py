"""The Optuna side of ``cnnlab sweep``: the study and its storage, one trial (an ordinary cnnlab run
in ``DIR/trial-NNNN``), per-epoch pruning, and the worker loop that several processes (on one
machine or many) run against one storage.

How a sweep ends with exactly ``trials`` finished trials, none run twice:

- a trial runs only if fewer than ``trials`` live trials (complete, pruned, running or waiting)
  have a smaller number; otherwise it is a *surplus* trial, failed at once and never shown
  (trial numbers are handed out by the storage, so every worker draws the same line);
- a trial whose process died (SIGKILL, a lost machine) is *orphaned*: it is failed and queued
  again with the same settings (Optuna's ``RetryHeartbeatStaleTrialCallback``), and the retry
  continues the dead trial's run directory from its last checkpoint (``cnnlab train --resume``);
  one found finished on disk is scored from its files, not trained again;
- orphans are found by the heartbeat every trial writes (stale after ``GRACE_SECONDS``), at once
  for a trial of this machine whose process is gone, and at once for every running trial of a
  sweep whose own SQLite file is locked by this process (no one else can be running it).

optuna is an optional extra (``pip install 'cnnlab[sweep]'``), imported only inside functions.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cnnlab.errors import CnnlabError
from cnnlab.runs import end_artefacts_missing, read_metrics, read_result
from cnnlab.training.callbacks import Callback, TrainerView
from cnnlab.training.launcher import resume, train
from cnnlab.training.records import EpochRecord
from cnnlab.training.sweep_spec import Dimension, SweepSpec

__all__ = ["optuna_module", "masked_url", "open_storage", "open_study", "run_worker", "recover_orphans", "PruningReporter",
           "trial_counts", "HEARTBEAT_SECONDS", "GRACE_SECONDS"]

HEARTBEAT_SECONDS = 10  # each running trial writes a heartbeat this often
GRACE_SECONDS = 60  # a trial whose heartbeat is older is a dead process's: failed and queued again
POLL_SECONDS = 1.0  # a worker with nothing to start waits this long before looking again


class SurplusTrial(Exception):
    """The sweep already has its trials: this one is failed at once and left out of the results."""


def optuna_module():
    """``optuna``, quiet (no per-trial log lines, no experimental-feature warnings), or one line naming the extra."""
    try:
        import optuna
    except ImportError:
        raise CnnlabError("cnnlab sweep needs optuna: pip install 'cnnlab[sweep]'") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    return optuna


def open_storage(url: str):
    """An RDB storage (SQLite file, PostgreSQL ...) with heartbeats; a dead trial is queued again."""
    optuna = optuna_module()
    modern = hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback")  # optuna >= 4.9 names it so
    stale = "heartbeat_stale_trial_callback" if modern else "failed_trial_callback"
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        return optuna.storages.RDBStorage(_with_driver(url), engine_kwargs=engine, heartbeat_interval=HEARTBEAT_SECONDS,
                                          grace_period=GRACE_SECONDS, **{stale: _retry_callback()})
    except ImportError as exc:
        raise CnnlabError(f"--storage {masked_url(url)}: its database driver is missing ({exc.__cause__ or exc}); "
                          f"for PostgreSQL: pip install psycopg2-binary") from None
    except Exception as exc:  # sqlalchemy's errors: a wrong URL, a server that does not answer
        raise CnnlabError(f"--storage {masked_url(url)}: cannot open it ({str(exc).splitlines()[0]})") from None


def _with_driver(url: str) -> str:
    """``postgresql://`` with psycopg2 when that is the driver installed (SQLAlchemy 2.1 means psycopg 3 by it)."""
    if not url.startswith("postgresql://"):
        return url
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def _retry_callback():
    """Optuna's callback that queues a failed trial again (same settings and user attributes)."""
    storages = optuna_module().storages
    return (getattr(storages, "RetryHeartbeatStaleTrialCallback", None) or storages.RetryFailedTrialCallback)()


def masked_url(url: str) -> str:
    head, sep, tail = url.rpartition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, creds = head.partition("//")
    return f"{scheme}//{creds.split(':', 1)[0]}:***@{tail}"


def open_study(spec: SweepSpec, storage: Any, *, create: bool):
    """The spec's study in ``storage``; a study of that name made from another spec is refused."""
    optuna = optuna_module()
    fingerprint = json.loads(json.dumps({k: v for k, v in spec.to_dict().items() if k != "name"}))  # as stored
    if create:
        study = optuna.create_study(study_name=spec.name, storage=storage, direction=spec.direction,
                                    load_if_exists=True)
        if "spec" not in study.user_attrs:
            study.set_user_attr("spec", fingerprint)
    else:
        study = optuna.load_study(study_name=spec.name, storage=storage)
    if study.user_attrs.get("spec") != fingerprint:
        raise CnnlabError(f"study {spec.name!r} in that storage was made from another spec; give the spec a new "
                          f"name = \"...\" (or use the same spec to join it)")
    return study


def _sampler(spec: SweepSpec, offset: int):
    optuna = optuna_module()
    seed = None if spec.seed is None else (spec.seed + offset) % 2**32
    if spec.sampler == "grid":
        return optuna.samplers.GridSampler({d.name: d.grid() for d in spec.space}, seed=spec.seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(spec: SweepSpec):
    optuna = optuna_module()
    if spec.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)


def _suggest(trial: Any, dim: Dimension, grid: bool) -> Any:
    if grid or dim.kind == "choice":
        return trial.suggest_categorical(dim.name, dim.grid() if grid else list(dim.choices))
    if dim.kind == "int":
        return trial.suggest_int(dim.name, dim.low, dim.high, step=dim.step or 1, log=dim.log)
    return trial.suggest_float(dim.name, dim.low, dim.high, step=dim.step, log=dim.log)


@dataclass
class TrialCounts:
    done: int  # complete or pruned
    running: int
    waiting: int
    errors: list[str]  # messages of the trials failed by an error (not retried)

    @property
    def live(self) -> int:
        return self.done + self.running + self.waiting


def trial_counts(study: Any) -> TrialCounts:
    state = optuna_module().trial.TrialState
    trials = study.get_trials(deepcopy=False)
    count = lambda *states: sum(t.state in states for t in trials)  # noqa: E731
    errors = [t.user_attrs["error"] for t in trials if t.state == state.FAIL and "error" in t.user_attrs]
    return TrialCounts(count(state.COMPLETE, state.PRUNED), count(state.RUNNING), count(state.WAITING), errors)


class PruningReporter(Callback):
    """Reports the metric of every epoch to the trial (the epochs a resumed run already has first)
    and stops the run (:class:`optuna.TrialPruned`) when the pruner says so."""

    def __init__(self, trial: Any, metric: str):
        self.trial, self.metric = trial, metric
        self.reported: set[int] = set()

    def _report(self, record: EpochRecord) -> None:
        value = getattr(record, self.metric)
        if value is not None and record.epoch not in self.reported:
            self.trial.report(float(value), record.epoch)
            self.reported.add(record.epoch)

    def on_train_start(self, trainer: TrainerView) -> None:
        for record in trainer.history:
            self._report(record)

    def on_epoch_end(self, trainer: TrainerView, record: EpochRecord) -> None:
        self._report(record)
        if record.epoch < trainer.config.epoch_count and self.trial.should_prune():
            self.trial.set_user_attr("pruned_at", record.epoch)
            raise optuna_module().TrialPruned(f"pruned after epoch {record.epoch}")


def trial_value(run_dir: Path, metric: str) -> float:
    """The trial's score, read from its files: the kept model's validation accuracy (the best epoch's),
    its test accuracy, or the last epoch's train accuracy or cost."""
    result, rows = read_result(run_dir), read_metrics(run_dir)
    if metric == "val_acc" and result.get("best_val_acc") is not None:
        return float(result["best_val_acc"])
    if metric == "test_acc":
        return float(result["test_acc"])
    values = [float(r[metric]) for r in rows if r.get(metric) not in (None, "")]
    if not values:
        raise CnnlabError(f"{run_dir}: metrics.csv has no {metric} column to score the trial with")
    return max(values) if metric == "val_acc" else values[-1]


def _run_dir(folder: Path, trial: Any) -> Path:
    """A retry continues its dead trial's directory when that is on this machine; a new trial gets its own."""
    previous = trial.user_attrs.get("run_dir")
    if previous and trial.user_attrs.get("host") == socket.gethostname() and Path(previous).is_dir():
        return Path(previous)
    return folder / f"trial-{trial.number:04d}"


def make_objective(spec: SweepSpec, folder: Path, say: Callable[[str], None]) -> Callable[[Any], float]:
    """The function Optuna calls once per trial: an ordinary cnnlab run, scored from its files."""
    optuna = optuna_module()

    def objective(trial: Any) -> float:
        _claim(trial, spec)
        params = {dim.name: _suggest(trial, dim, spec.sampler == "grid") for dim in spec.space}
        run_dir = _run_dir(folder, trial)
        for key, value in (("run_dir", str(run_dir)), ("host", socket.gethostname()), ("pid", os.getpid())):
            trial.set_user_attr(key, value)
        config = spec.config(params)
        config.out = str(run_dir)
        try:
            _train_or_continue(config, run_dir, [PruningReporter(trial, spec.metric)])
        except optuna.TrialPruned:
            say(f"trial {trial.number} pruned after epoch {trial.user_attrs.get('pruned_at', '?')} ({run_dir})")
            raise
        except CnnlabError as exc:
            trial.set_user_attr("error", str(exc))
            say(f"trial {trial.number} failed: {exc}")
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM: queued again, to continue its run directory on --resume
            _retry(trial)
            exc.resume_dir = None  # type: ignore[attr-defined]  # the sweep resumes it, not `cnnlab train --resume`
            raise
        value = trial_value(run_dir, spec.metric)
        shown = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
        say(f"trial {trial.number}: {spec.metric} {value:.4g} with {shown} ({run_dir})")
        return value

    return objective


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _claim(trial: Any, spec: SweepSpec) -> None:
    """Fail this trial at once if ``spec.trials`` live trials precede it (see the module's doc)."""
    state = optuna_module().trial.TrialState
    live = (state.COMPLETE, state.PRUNED, state.RUNNING, state.WAITING)
    before = [t for t in trial.study.get_trials(deepcopy=False, states=live) if t.number < trial.number]
    if len(before) >= spec.trials:
        trial.set_user_attr("surplus", True)
        raise SurplusTrial(f"the sweep has its {spec.trials} trials")


def _train_or_continue(config: Any, run_dir: Path, callbacks: list[Callback]) -> None:
    """A new run; the dead trial's run continued from its checkpoint; or nothing, if it is finished on disk."""
    if (run_dir / "config.json").is_file() or (run_dir / "checkpoint.pt").is_file():
        epochs = [int(r["epoch"]) for r in read_metrics(run_dir)]
        if epochs and max(epochs) >= config.epoch_count and not end_artefacts_missing(run_dir):
            return  # it finished before its process died: scored from its files
        resume(run_dir, callbacks)
    else:
        train(config, callbacks, overwrite=run_dir.is_dir())


def _retry(trial: Any) -> None:
    """Queue ``trial`` again with its settings and run directory (it is failed as it stops)."""
    _retry_callback()(trial.study, trial.study._storage.get_trial(trial._trial_id))


def recover_orphans(study: Any, *, all_running: bool) -> list[int]:
    """Fail and queue again the running trials whose process is gone: every one with ``all_running``
    (this process holds the sweep's own storage), else those of this machine whose process is dead;
    the storage's heartbeat check catches the rest. Returns their numbers."""
    optuna = optuna_module()
    host, found = socket.gethostname(), []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        mine = trial.user_attrs.get("host") == host and not _alive(trial.user_attrs.get("pid"))
        if not (all_running or mine):
            continue
        try:
            if study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL):
                _retry_callback()(study, study._storage.get_trial(trial._trial_id))
                found.append(trial.number)
        except optuna.exceptions.UpdateFinishedTrialError:  # its process finished it meanwhile
            pass
    return found


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return True  # unknown: leave it to the heartbeat
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_worker(spec: SweepSpec, storage: Any, folder: Path, *, index: int = 0,
               say: Callable[[str], None] = print) -> None:
    """Run trials until the study has ``spec.trials`` finished ones; wait while others run the last ones.
    Stops with one line when as many trials failed by an error as the sweep was to run."""
    optuna = optuna_module()
    study = open_study(spec, storage, create=False)
    study.sampler = _sampler(spec, offset=7919 * len(study.get_trials(deepcopy=False)) + index)
    study.pruner = _pruner(spec)
    objective = make_objective(spec, folder, say)
    while True:
        optuna.storages.fail_stale_trials(study)
        counts = trial_counts(study)
        if counts.done >= spec.trials:
            return
        if len(counts.errors) >= spec.trials:
            raise CnnlabError(f"{len(counts.errors)} trials failed, as many as the sweep was to run; the first: "
                              f"{counts.errors[0]}")
        if counts.live >= spec.trials and not counts.waiting:
            time.sleep(POLL_SECONDS)  # the last trials are running elsewhere; a dead one comes back as waiting
            continue
        study.optimize(objective, n_trials=1, catch=(CnnlabError, SurplusTrial), gc_after_trial=False)
