"""``cnnlab sweep``: a hyperparameter search on Optuna, each trial an ordinary run directory.

The sweep folder ``DIR``::

    DIR/spec.toml        the spec, as given (``--resume DIR`` needs nothing else)
    DIR/sweep.json       the study's name and storage (a password is never written)
    DIR/study.db         the study (SQLite) unless ``--storage URL`` names another
    DIR/trial-0000/ ...  one run directory per trial this machine ran (``cnnlab runs DIR``)
    DIR/results.json     the trials: number, state, settings, score, run directory
    DIR/best.toml        the best trial's settings as a recipe: ``cnnlab train --recipe DIR/best.toml``
    DIR/history.png      Optuna's optimization history; DIR/importance.png its parameter importances

:func:`run_sweep` starts one, :func:`resume_sweep` continues one that was stopped or killed; both
hold ``DIR/.sweep.lock`` (with their worker processes) while they run. How trials are counted,
retried and never run twice: :mod:`cnnlab.training.sweep_study`.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cnnlab.errors import CnnlabError
from cnnlab.paths import check_folder
from cnnlab.storage import RunLock, atomic_write, check_writable
from cnnlab.training.sweep_spec import SweepSpec, load_spec, parse_spec
from cnnlab.training.sweep_report import best_row, trial_rows, write_best, write_plots
from cnnlab.training.sweep_study import (masked_url, open_storage, open_study, optuna_module, recover_orphans,
                                         run_worker, trial_counts)

__all__ = ["run_sweep", "resume_sweep", "SweepResult", "sweep_result", "worker_main", "default_sweep_dir"]

SPEC_FILE, STATE_FILE, DB_FILE, LOCK_FILE = "spec.toml", "sweep.json", "study.db", ".sweep.lock"
RESULTS_FILE, BEST_FILE, HISTORY_FILE, IMPORTANCE_FILE = "results.json", "best.toml", "history.png", "importance.png"
STORAGE_ENV = "CNNLAB_SWEEP_STORAGE"  # how a worker process gets the storage URL (not on its command line)


@dataclass
class SweepResult:
    folder: Path
    spec: SweepSpec
    trials: list[dict[str, Any]]  # one row per trial (surplus trials left out)
    best: dict[str, Any] | None
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"sweep": str(self.folder), "study": self.spec.name, "metric": self.spec.metric,
                "direction": self.spec.direction, "trials_wanted": self.spec.trials, "trials": self.trials,
                "best": self.best, "files": self.files, "notes": self.notes}


def default_sweep_dir(name: str) -> Path:
    return Path("sweeps") / f"{time.strftime('%Y%m%d-%H%M%S')}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}"


class SweepLock(RunLock):
    """``DIR/.sweep.lock``: held by the process running the sweep and shared with its workers, so a
    second ``--resume DIR`` is refused while any of them lives, and never after they are all gone."""

    def __init__(self, folder: Path):
        super().__init__(folder, LOCK_FILE, "sweep")

    def acquire(self, hint: str = "") -> "SweepLock":
        super().acquire(hint or f"wait for it or stop it, then `cnnlab sweep --resume {self.path.parent}`")
        return self


def _sqlite_url(folder: Path) -> str:
    return f"sqlite:///{(folder / DB_FILE).resolve()}"


def run_sweep(spec_path: str | os.PathLike, out: str | os.PathLike | None = None, *, workers: int = 1,
              storage: str | None = None, say: Callable[[str], None] = print) -> SweepResult:
    """Start the sweep of ``spec_path`` in ``out`` (new or empty) and run it to its end.

    ``storage``: an Optuna RDB URL (``postgresql://user@host/db``) shared with sweeps on other
    machines (each running this with the same spec: they share the study and its trial count);
    default: ``out/study.db``. ``workers``: trial processes on this machine."""
    _check_workers(workers)
    spec = load_spec(spec_path)
    optuna_module()  # the extra's one line, before anything is written
    folder = Path(out) if out is not None else default_sweep_dir(spec.name)
    check_writable(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise CnnlabError(f"--out {folder} is not an empty folder; continue that sweep with `cnnlab sweep --resume "
                          f"{folder}` or choose another --out")
    # a wrong URL, or a shared study of another spec, fails before the folder is made
    study = open_study(spec, open_storage(storage), create=True) if storage else None
    folder.mkdir(parents=True, exist_ok=True)
    lock = SweepLock(folder).acquire()
    try:
        atomic_write(folder / SPEC_FILE, Path(spec_path).read_bytes())
        atomic_write(folder / STATE_FILE, json.dumps({"name": spec.name, "storage": masked_url(storage) if storage
                                                      else None, "spec_file": str(Path(spec_path).resolve())},
                                                     indent=2) + "\n")
        url = storage or _sqlite_url(folder)
        study = study or open_study(spec, open_storage(url), create=True)
        say(f"sweep {spec.name}: {spec.trials} trials, {spec.sampler} sampler, {spec.metric} "
            f"({spec.direction}) in {folder}")
        return _drive(spec, study, folder, url, workers, lock, say)
    finally:
        lock.release()


def resume_sweep(folder: str | os.PathLike, *, workers: int = 1, storage: str | None = None,
                 say: Callable[[str], None] = print) -> SweepResult:
    """Continue a stopped or killed sweep where it was: its running trials are queued again and continue
    their run directories; it ends with the spec's number of trials, none run twice."""
    _check_workers(workers)
    folder = check_folder(Path(folder), "--resume")
    state, spec = _read_sweep(folder)
    optuna_module()
    stored = state.get("storage")
    if stored and "***" in stored and not storage:
        raise CnnlabError(f"--resume {folder}: its storage has a password, which is not saved; give it again with "
                          f"--storage URL (or put the password in ~/.pgpass)")
    url = storage or stored or _sqlite_url(folder)
    lock = SweepLock(folder).acquire()
    try:
        try:
            study = open_study(spec, open_storage(url), create=False)
        except KeyError:
            raise CnnlabError(f"--resume {folder}: its storage has no study {spec.name!r}") from None
        orphans = recover_orphans(study, all_running=url == _sqlite_url(folder))
        if orphans:
            say(f"trial(s) {', '.join(map(str, orphans))} stopped with their process: queued again, to continue "
                f"their run directories")
        return _drive(spec, study, folder, url, workers, lock, say)
    finally:
        lock.release()


def _check_workers(workers: int) -> None:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise CnnlabError(f"--workers must be a positive integer, got {workers!r}")


def _read_sweep(folder: Path) -> tuple[dict[str, Any], SweepSpec]:
    try:
        state = json.loads((folder / STATE_FILE).read_text())
        doc = tomllib.loads((folder / SPEC_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        raise CnnlabError(f"--resume {folder}: not a sweep folder (its {STATE_FILE} or {SPEC_FILE} is missing or "
                          f"damaged); give the folder `cnnlab sweep SPEC --out DIR` made") from None
    doc.setdefault("name", state.get("name"))  # a spec without a name took its file's
    return state, parse_spec(doc, folder / SPEC_FILE)


def _drive(spec: SweepSpec, study: Any, folder: Path, url: str, workers: int, lock: SweepLock,
           say: Callable[[str], None]) -> SweepResult:
    """The trials, in this process (one worker) or in ``workers`` processes sharing the storage; then the results."""
    if workers == 1:
        run_worker(spec, study._storage, folder, say=say)
    else:
        _run_processes(folder, url, workers, lock)
    counts = trial_counts(study)
    result = sweep_result(spec, study, folder)
    if counts.done < spec.trials:
        raise CnnlabError(f"the sweep stopped with {counts.done} of {spec.trials} trials finished"
                          + (f" (first error: {counts.errors[0]})" if counts.errors else "")
                          + f"; continue it with `cnnlab sweep --resume {folder}`")
    return result


def _run_processes(folder: Path, url: str, workers: int, lock: SweepLock) -> None:
    """``workers`` processes, each running trials until the sweep has its number; they share the lock."""
    env = {**os.environ, STORAGE_ENV: url}
    logs = [folder / f"worker-{i}.log" for i in range(workers)]
    procs = []
    try:
        for i, log in enumerate(logs):
            with open(log, "w") as err:
                procs.append(subprocess.Popen(
                    [sys.executable, "-c", "from cnnlab import allocator; allocator.apply(); "
                     "from cnnlab.training.sweep import worker_main; worker_main()",
                     str(folder), str(i), str(os.getpid())], env=env, stderr=err, pass_fds=(lock.fileno(),)))
        codes = [p.wait() for p in procs]
    except BaseException:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # each queues its trial again, to continue on --resume
        for p in procs:
            p.wait()
        raise
    finally:
        for log in logs:  # an empty log says nothing: gone; one with an error stays, named below
            if log.is_file() and not log.read_text(errors="replace").strip():
                log.unlink()
    for code, log in zip(codes, logs):
        if code != 0:
            text = log.read_text(errors="replace").strip() if log.is_file() else ""
            raise CnnlabError(f"a sweep worker stopped (exit code {code}): "
                              f"{text.splitlines()[-1] if text else 'no message'} (see {log})")


def worker_main() -> None:
    """A worker process of :func:`_run_processes`: ``folder index parent_pid`` on its command line."""
    folder, index, parent = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    _die_with_parent(parent)
    signal.signal(signal.SIGTERM, _interrupt)
    _, spec = _read_sweep(folder)
    try:
        run_worker(spec, open_storage(os.environ[STORAGE_ENV]), folder, index=index,
                   say=lambda line: print(line, flush=True))
    except CnnlabError as exc:
        print(f"cnnlab: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _die_with_parent(parent: int) -> None:
    """Linux: SIGTERM this worker when the sweep's process dies (a SIGKILL leaves no orphan training on)."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before prctl took effect
        sys.exit(130)


def sweep_result(spec: SweepSpec, study: Any, folder: Path) -> SweepResult:
    """The table of trials, the best one as ``best.toml``, the plots; written into ``folder``."""
    rows = trial_rows(study)
    best = best_row(spec, study)
    result = SweepResult(folder, spec, rows, best)
    if best is not None:
        write_best(spec, best, folder / BEST_FILE, folder)
        result.files["best"] = str(folder / BEST_FILE)
    else:
        result.notes.append("no trial completed, so there is no best.toml")
    result.files.update(write_plots(study, folder / HISTORY_FILE, folder / IMPORTANCE_FILE, result.notes))
    atomic_write(folder / RESULTS_FILE, json.dumps(result.to_dict(), indent=2) + "\n")
    result.files["results"] = str(folder / RESULTS_FILE)
    return result
