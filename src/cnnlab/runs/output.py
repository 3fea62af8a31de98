"""Writing files made from a run's model.pt (a report, an ONNX file, plots): :class:`RunOutput`
holds the run's lock (the one ``cnnlab train`` holds) while it writes into the run directory,
only while model.pt is still the one read, and records each file in derived.json; elsewhere
(``--out`` outside the run) it writes freely."""

from __future__ import annotations

import os
from pathlib import Path

from cnnlab.errors import RunDirError
from cnnlab.runs.format import read_config_doc
from cnnlab.runs.run import Run
from cnnlab.storage import RunLock, record_derived, same_content

__all__ = ["RunOutput", "owning_run"]


def _inside(target: Path, folder: Path) -> bool:
    target, folder = Path(os.path.realpath(target)), Path(os.path.realpath(folder))
    return target == folder or folder in target.parents


def owning_run(target: str | os.PathLike, run_dir: str | os.PathLike | None = None) -> Path | None:
    """The run directory a file written to ``target`` would land in: ``run_dir`` when ``target`` is
    inside it, else the nearest folder at or above ``target`` holding a cnnlab config.json."""
    if run_dir is not None and Path(run_dir).is_dir() and _inside(Path(target), Path(run_dir)):
        return Path(run_dir)
    real = Path(os.path.realpath(target))
    return next((p for p in (real, *real.parents) if read_config_doc(p) is not None), None)


class RunOutput:
    """Writing files made from a run's model.pt (a report, an ONNX file, plots) to ``target``::

        with RunOutput(run_dir, target, "report") as output:  # refused here if the run is busy
            run = Run.open(run_dir)  # or load_run(run_dir); or pass run= when it was loaded before
            ...write target...
            output.record(target, run=run)

    Into a run directory (``target`` inside ``run_dir``, or inside any other run directory) it
    holds that run's lock for the block, so it never writes beside a running ``cnnlab train``
    (one line instead, nothing written). Into ``run_dir`` itself it also refuses when model.pt is
    no longer the one ``run`` read, and records each file in derived.json. Elsewhere it does
    nothing: the model was read whole, and the output is the caller's. ``run_dir`` None: a
    registry model, whose pictures only lock a run directory they are written into.
    """

    def __init__(self, run_dir: str | os.PathLike | None, target: str | os.PathLike, command: str,
                 run: Run | None = None):
        self.run_dir, self.command, self.run = (Path(run_dir) if run_dir is not None else None), command, run
        self.owner = owning_run(target, run_dir)
        self.inside = self.owner is not None and self.owner == self.run_dir
        self.lock: RunLock | None = None
        self.written: list[Path] = []

    def __enter__(self) -> "RunOutput":
        if self.owner is not None:
            self.lock = RunLock(self.owner).acquire(hint="wait for it to finish, or write elsewhere with --out")
            if self.run is not None:
                self.check(self.run)
        return self

    def check(self, run: Run) -> None:
        """Refuse to write a file made from ``run`` if model.pt changed since it was read."""
        self.run = run
        if self.inside and run.model_file and not same_content(run.path / "model.pt", run.model_file):
            raise RunDirError(f"{run.path / 'model.pt'} changed while this command ran (a training run "
                              f"replaced it); nothing was written: run the command again")

    def record(self, *paths: str | os.PathLike, run: Run | None = None) -> None:
        if run is not None:
            self.run = run
        if self.inside:
            self.written += [Path(p) for p in paths if _inside(Path(p), self.owner)]

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and self.written and self.run is not None and self.run.model_file:
                record_derived(self.owner, [p for p in self.written if p.is_file()], self.run.model_file,
                               self.command)
        finally:
            if self.lock is not None:
                self.lock.release()
                self.lock = None
