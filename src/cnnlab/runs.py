"""The run directory: what ``cnnlab train`` writes, and how everything else reads it back.

::

    RUN_DIR/
      config.json     every setting, class names, input shape, environment
      metrics.csv     one row per finished epoch
      checkpoint.pt   everything --resume needs, rewritten atomically after every epoch
      model.pt        state_dict + config + classes + input shape, when the run has finished
      result.json     final test accuracy, best validation epoch, seconds
      curves.png      cost and accuracy curves
      derived.json    which model.pt each derived file (report.html, model.onnx, plots) came from

Training, evaluation, prediction, export and the analysis all go through this module, so the
format has one definition. Checkpoints are read with ``torch.load(weights_only=True)``: a
file from elsewhere is never executed.

Read side: :func:`load_run` refuses a model.pt of another run (its run id, or for an older file
its model, dataset and shapes, against config.json), and reads it in one piece with its
fingerprint. :class:`RunOutput` is how a command writes a derived file: into the run directory
only holding the run's lock (the one ``cnnlab train`` holds), only while model.pt is still the
one read, recording the file in derived.json; elsewhere (``--out`` outside the run) freely.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.errors import RunDirError
from cnnlab.paths import check_folder
from cnnlab.storage import LOCK_NAME, RunLock, check_writable, derived_status, read_fingerprinted, record_derived

if TYPE_CHECKING:
    import torch.nn as nn

    from cnnlab.training.config import TrainConfig

__all__ = [
    "default_run_dir",
    "check_run_dir",
    "end_artefacts_missing",
    "read_checkpoint",
    "read_config_doc",
    "read_run_config",
    "LoadedRun",
    "load_run",
    "check_model_identity",
    "RunOutput",
    "owning_run",
    "list_runs",
    "run_dirs_under",
    "read_test_accuracy",
]

CHECKPOINT_KEYS = {"epoch", "model", "optimizer", "scheduler", "torch_rng", "history", "config"}
MODEL_KEYS = {"state_dict", "config", "input_shape", "classes"}
END_ARTEFACTS = ("model.pt", "result.json", "curves.png")  # written once the last epoch is done


def default_run_dir(model: str, dataset: str, root: str | os.PathLike = "runs") -> Path:
    """``runs/<timestamp>-<model>-<dataset>-<4 hex digits>``: two runs started in the same second
    (even by two processes) get different folders."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    while True:
        path = Path(root) / f"{stamp}-{model}-{dataset}-{uuid.uuid4().hex[:4]}"
        if not path.exists():
            return path


def check_run_dir(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse an ``--out`` that is a file, lies under a file, cannot be written, or is a non-empty
    directory (unless ``overwrite``). Nothing is written."""
    path = Path(path)
    check_writable(path)
    if path.is_dir() and any(p.name != LOCK_NAME for p in path.iterdir()) and not overwrite:
        raise RunDirError(f"run directory {path} already exists and is not empty; choose another --out or pass --overwrite")
    return path


def end_artefacts_missing(run_dir: Path) -> list[str]:
    """The end-of-run files (written after the last epoch) that ``run_dir`` lacks."""
    return [name for name in END_ARTEFACTS if not (run_dir / name).is_file()]


def read_checkpoint(path: Path, needed: set[str], kind: str, data: bytes | None = None) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` (of ``data``, the file's bytes, when given) with one-line
    errors for truncated or foreign files."""
    import torch

    try:
        obj = torch.load(path if data is None else io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RunDirError(f"{path} cannot be read as a checkpoint ({type(exc).__name__}); it is truncated or not "
                          f"cnnlab's") from None
    if not isinstance(obj, dict) or not needed <= set(obj):
        raise RunDirError(f"{path} is not a cnnlab {kind} (needs {', '.join(sorted(needed))})")
    return obj


def read_config_doc(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``RUN_DIR/config.json`` (config, classes, input_shape, run_id, ...) as a dict, or None
    when it is missing, unreadable or not a JSON object with a ``config`` object."""
    try:
        doc = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        return None
    return doc


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``config`` object of ``RUN_DIR/config.json`` ({} when it is missing or unreadable)."""
    doc = read_config_doc(run_dir)
    return doc["config"] if doc is not None else {}


@dataclass
class LoadedRun:
    path: Path
    config: "TrainConfig"
    model: "nn.Module"
    classes: list[str]
    input_shape: tuple[int, int, int]
    checkpoint: dict[str, Any]
    # model.pt as read: sha256, size, mtime_ns, inode (see cnnlab.storage.same_content), and its run id
    model_file: dict[str, Any] = field(default_factory=dict)


IDENTITY_KEYS = ("model", "dataset", "model_options", "input_size", "in_channels")


def identity_differences(doc: dict[str, Any], state: dict[str, Any]) -> list[str]:
    """How a checkpoint (model.pt or checkpoint.pt) differs from config.json in what makes a run
    itself: run id (when both have one), model, dataset, model options, input shape, classes."""
    saved, ckpt = doc["config"], state["config"] if isinstance(state.get("config"), dict) else {}
    differences = []
    if doc.get("run_id") and state.get("run_id") and doc["run_id"] != state["run_id"]:
        differences.append(f"run id {str(state['run_id'])[:8]} vs {str(doc['run_id'])[:8]}")
    for key in IDENTITY_KEYS:
        if ckpt.get(key) != saved.get(key):
            differences.append(f"{key} {ckpt.get(key)!r} vs {saved.get(key)!r}")
    for key in ("input_shape", "classes"):
        if isinstance(state.get(key), (list, tuple)) and isinstance(doc.get(key), list) \
                and list(state[key]) != doc[key]:
            differences.append(f"{key} differ")
    return differences


def check_model_identity(path: Path, checkpoint: dict[str, Any]) -> None:
    """model.pt must be the run's own: refuse (one line naming both files) one copied from another
    run. A directory without config.json (a lone model.pt) has nothing to compare with."""
    config_file = path / "config.json"
    if not config_file.exists():
        return
    doc = read_config_doc(path)
    if doc is None:
        raise RunDirError(f"{config_file} is damaged, so {path / 'model.pt'} cannot be checked against its run; "
                          f"restore config.json, or retrain")
    differences = identity_differences(doc, checkpoint)
    if differences:
        raise RunDirError(f"{path / 'model.pt'} belongs to another run than {config_file} (model.pt vs config.json: "
                          f"{'; '.join(differences[:3])}); put the run's own model.pt back, or retrain")


def _check_model_contents(ckpt_path: Path, checkpoint: dict[str, Any]) -> None:
    shape, classes = checkpoint["input_shape"], checkpoint["classes"]
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise RunDirError(f"{ckpt_path} holds an impossible input shape {shape!r} (needs C, H, W > 0); it was edited "
                          f"or damaged: retrain, or restore the file")
    if not (isinstance(classes, list) and classes and all(isinstance(v, str) for v in classes)):
        raise RunDirError(f"{ckpt_path} holds no list of class names; it was edited or damaged")
    if not isinstance(checkpoint["config"], dict) or not isinstance(checkpoint["state_dict"], dict):
        raise RunDirError(f"{ckpt_path} is not a cnnlab checkpoint (its config or state_dict is not a mapping)")


def load_run(run_dir: str | os.PathLike, device: Any = "cpu") -> LoadedRun:
    """Rebuild the model of a run directory from its ``model.pt`` (``weights_only=True``), read in
    one piece (an atomic rewrite meanwhile gives the old file or the new one), after checking it
    is the run's own (:func:`check_model_identity`)."""
    from cnnlab.models import create_model, load_state_dict_checked
    from cnnlab.training.config import TrainConfig

    path = Path(run_dir)
    if os.path.lexists(path):
        check_folder(path, "run directory")  # a file, a link that loops, no permission: said as such
    if not path.is_dir():
        raise RunDirError(f"run directory {path} does not exist; pass the folder `cnnlab train` wrote (see --out)")
    ckpt_path = path / "model.pt"
    if not ckpt_path.is_file():
        raise RunDirError(f"{ckpt_path} is missing; the run did not finish, or {path} is not a cnnlab run directory")
    try:
        data, fingerprint = read_fingerprinted(ckpt_path)
    except OSError as exc:
        raise RunDirError(f"cannot read {ckpt_path} ({exc.strerror or type(exc).__name__})") from None
    checkpoint = read_checkpoint(ckpt_path, MODEL_KEYS, "checkpoint", data)
    _check_model_contents(ckpt_path, checkpoint)
    check_model_identity(path, checkpoint)
    config = TrainConfig.from_dict(checkpoint["config"])
    c, h, w = checkpoint["input_shape"]
    classes = checkpoint["classes"]
    model = create_model(config.model, num_classes=len(classes), in_channels=c, input_size=h, **config.model_options)
    load_state_dict_checked(model, checkpoint["state_dict"], f"{ckpt_path} (model {config.model!r})")
    model.to(device).eval()
    fingerprint["run_id"] = checkpoint.get("run_id")
    return LoadedRun(path, config, model, list(classes), (c, h, w), checkpoint, fingerprint)


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
            run = load_run(run_dir)  # or pass run= when it was loaded before
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
                 run: LoadedRun | None = None):
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

    def check(self, run: LoadedRun) -> None:
        """Refuse to write a file made from ``run`` if model.pt changed since it was read."""
        from cnnlab.storage import same_content

        self.run = run
        if self.inside and run.model_file and not same_content(run.path / "model.pt", run.model_file):
            raise RunDirError(f"{run.path / 'model.pt'} changed while this command ran (a training run "
                              f"replaced it); nothing was written: run the command again")

    def record(self, *paths: str | os.PathLike, run: LoadedRun | None = None) -> None:
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


def run_dirs_under(root: Path) -> list[Path]:
    """``root`` itself if it is a run directory, else the run directories one level below it."""
    if (root / "config.json").is_file():
        return [root]
    return sorted(p.parent for p in root.glob("*/config.json"))


def _read_metrics(run_dir: Path) -> list[dict[str, str]]:
    if not (run_dir / "metrics.csv").is_file():
        return []
    with open(run_dir / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def _read_result(run_dir: Path) -> dict[str, Any]:
    """``result.json`` as a dict ({} when missing, unreadable or not an object)."""
    try:
        result = json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        return {}
    return result if isinstance(result, dict) else {}


def read_test_accuracy(run_dir: str | os.PathLike) -> float | None:
    """The run's final test accuracy: result.json's (the selected model), else the last epoch's in metrics.csv."""
    run_dir = Path(run_dir)
    result = _read_result(run_dir)
    if isinstance(result.get("test_acc"), (int, float)):
        return float(result["test_acc"])
    tests = [float(r["test_acc"]) for r in _read_metrics(run_dir) if r.get("test_acc")]
    return tests[-1] if tests else None


def _stale_text(stale: list[str]) -> str:
    """"; report.html stale; model.onnx stale; visualize/ stale (3 files)": one phrase per stale file,
    the pictures in visualize/ counted together."""
    pictures = [name for name in stale if name.startswith("visualize/")]
    text = "".join(f"; {name} stale" for name in stale if name not in pictures)
    return text + (f"; visualize/ stale ({len(pictures)} file{'s' * (len(pictures) > 1)})" if pictures else "")


def list_runs(root: str | os.PathLike = "runs") -> list[dict[str, Any]]:
    """One row per run directory under ``root`` (or ``root`` itself): model, dataset, epochs done,
    best validation and final test accuracy, time, and whether it finished; ``derived``: each file
    made from model.pt (report.html, model.onnx, plots) -> fresh / stale / unrecorded
    (:func:`cnnlab.storage.derived_status`), the stale ones also named in ``status``."""
    root = Path(root)
    if not root.is_dir():
        raise RunDirError(f"{root} is not a folder; pass the folder holding your run directories (default: runs)")
    rows = []
    for d in run_dirs_under(root):
        config = read_run_config(d)
        if not config:
            continue  # not a cnnlab run
        metrics = _read_metrics(d)
        result = _read_result(d)
        tests = [float(r["test_acc"]) for r in metrics if r.get("test_acc")]
        vals = [float(r["val_acc"]) for r in metrics if r.get("val_acc")]
        finished = not end_artefacts_missing(d)
        derived = derived_status(d)
        stale = [name for name, state in derived.items() if state == "stale"]
        rows.append({
            "run": str(d), "model": config.get("model"), "dataset": config.get("dataset"),
            "epochs": f"{len(metrics)}/{config.get('epochs')}",
            "best_val_acc": result.get("best_val_acc", max(vals) if vals else None),
            "test_acc": result.get("test_acc", tests[-1] if tests else None),
            "seconds": result.get("seconds", float(metrics[-1]["elapsed"]) if metrics else None),
            "status": ("finished" if finished else
                       ("interrupted: --resume it" if (d / "checkpoint.pt").is_file() else "no epoch finished"))
                      + _stale_text(stale),
            "derived": derived, "stale": stale,
        })
    return rows
