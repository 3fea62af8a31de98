"""The run directory: what ``cnnlab train`` writes, and how everything else reads it back.

::

    RUN_DIR/
      config.json     every setting, class names, input shape, environment
      metrics.csv     one row per finished epoch
      checkpoint.pt   everything --resume needs, rewritten atomically after every epoch
      model.pt        state_dict + config + classes + input shape, when the run has finished
      result.json     final test accuracy, best validation epoch, seconds
      curves.png      cost and accuracy curves

Training, evaluation, prediction, export and the analysis all go through this module, so the
format has one definition. Checkpoints are read with ``torch.load(weights_only=True)``: a
file from elsewhere is never executed.
"""

from __future__ import annotations

import csv
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from cnnlab.errors import RunDirError
from cnnlab.paths import check_folder
from cnnlab.storage import LOCK_NAME, check_writable

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


def read_checkpoint(path: Path, needed: set[str], kind: str) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with one-line errors for truncated or foreign files."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
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


def load_run(run_dir: str | os.PathLike, device: Any = "cpu") -> LoadedRun:
    """Rebuild the model of a run directory from its ``model.pt`` (``weights_only=True``)."""
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
    checkpoint = read_checkpoint(ckpt_path, MODEL_KEYS, "checkpoint")
    shape, classes = checkpoint["input_shape"], checkpoint["classes"]
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise RunDirError(f"{ckpt_path} holds an impossible input shape {shape!r} (needs C, H, W > 0); it was edited "
                          f"or damaged: retrain, or restore the file")
    if not (isinstance(classes, list) and classes and all(isinstance(v, str) for v in classes)):
        raise RunDirError(f"{ckpt_path} holds no list of class names; it was edited or damaged")
    if not isinstance(checkpoint["config"], dict) or not isinstance(checkpoint["state_dict"], dict):
        raise RunDirError(f"{ckpt_path} is not a cnnlab checkpoint (its config or state_dict is not a mapping)")
    config = TrainConfig.from_dict(checkpoint["config"])
    c, h, w = shape
    model = create_model(config.model, num_classes=len(classes), in_channels=c, input_size=h, **config.model_options)
    load_state_dict_checked(model, checkpoint["state_dict"], f"{ckpt_path} (model {config.model!r})")
    model.to(device).eval()
    return LoadedRun(path, config, model, list(checkpoint["classes"]), (c, h, w), checkpoint)


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


def list_runs(root: str | os.PathLike = "runs") -> list[dict[str, Any]]:
    """One row per run directory under ``root`` (or ``root`` itself): model, dataset, epochs done,
    best validation and final test accuracy, time, and whether it finished."""
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
        rows.append({
            "run": str(d), "model": config.get("model"), "dataset": config.get("dataset"),
            "epochs": f"{len(metrics)}/{config.get('epochs')}",
            "best_val_acc": result.get("best_val_acc", max(vals) if vals else None),
            "test_acc": result.get("test_acc", tests[-1] if tests else None),
            "seconds": result.get("seconds", float(metrics[-1]["elapsed"]) if metrics else None),
            "status": "finished" if finished else
                      ("interrupted: --resume it" if (d / "checkpoint.pt").is_file() else "no epoch finished"),
        })
    return rows
