"""The run directory's files, each written and read here (one definition of the format)::

    RUN_DIR/
      config.json     every setting, class names, input shape, run id, environment
      metrics.csv     one row per finished epoch
      checkpoint.pt   everything --resume needs, rewritten atomically after every epoch
      model.pt        state_dict + config + classes + input shape, when the run has finished
      result.json     final test accuracy, best validation epoch, seconds
      curves.png      cost and accuracy curves (drawn by cnnlab.figures)
      derived.json    which model.pt each derived file came from (cnnlab.storage)

Every file is written atomically (:func:`cnnlab.storage.atomic_write`). Checkpoints are read with
``torch.load(weights_only=True)``: a file from elsewhere is never executed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Protocol

import torch

from cnnlab import __version__
from cnnlab.errors import RunDirError
from cnnlab.storage import LOCK_NAME, atomic_write, check_writable

__all__ = ["CONFIG_FILE", "METRICS_FILE", "CHECKPOINT_FILE", "MODEL_FILE", "RESULT_FILE", "CURVES_FILE",
           "CHECKPOINT_KEYS", "MODEL_KEYS", "END_ARTEFACTS", "IDENTITY_KEYS", "METRICS_HEADER",
           "default_run_dir", "check_run_dir", "end_artefacts_missing",
           "config_document", "write_config_doc", "read_config_doc", "read_run_config",
           "metrics_row", "write_metrics", "read_metrics",
           "checkpoint_payload", "write_checkpoint", "read_checkpoint", "read_training_checkpoint",
           "model_payload", "write_model", "write_result", "read_result", "identity_differences"]

CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE = "config.json", "metrics.csv", "checkpoint.pt"
MODEL_FILE, RESULT_FILE, CURVES_FILE = "model.pt", "result.json", "curves.png"
CHECKPOINT_KEYS = {"epoch", "model", "optimizer", "scheduler", "torch_rng", "history", "config"}
MODEL_KEYS = {"state_dict", "config", "input_shape", "classes"}
END_ARTEFACTS = (MODEL_FILE, RESULT_FILE, CURVES_FILE)  # written once the last epoch is done
IDENTITY_KEYS = ("model", "dataset", "model_options", "input_size", "in_channels")
METRICS_HEADER = "epoch,train_loss,train_acc,val_acc,test_acc,seconds,elapsed\n"


class EpochRow(Protocol):
    """One epoch as metrics.csv records it (``cnnlab.training.records.EpochRecord``)."""

    epoch: int
    train_loss: float
    train_acc: float
    val_acc: float | None
    test_acc: float | None
    seconds: float
    elapsed: float


# --- the directory ---

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
    return [name for name in END_ARTEFACTS if not (Path(run_dir) / name).is_file()]


# --- config.json ---

def config_document(config: dict[str, Any], *, run_id: str, classes: list[str], input_shape: Iterable[int],
                    skipped: Iterable[str] = (), environment: dict[str, Any] | None = None) -> dict[str, Any]:
    """What config.json holds: the settings, the run id, class names, input shape (C, H, W), the
    files left out (--skip-bad-images) and the machine."""
    return {"config": config, "run_id": run_id, "classes": list(classes), "input_shape": list(input_shape),
            "skipped_files": list(skipped), "environment": environment or {}}


def write_config_doc(run_dir: str | os.PathLike, doc: dict[str, Any]) -> None:
    atomic_write(Path(run_dir) / CONFIG_FILE, json.dumps(doc, indent=2) + "\n")


def read_config_doc(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``RUN_DIR/config.json`` (config, classes, input_shape, run_id, ...) as a dict, or None
    when it is missing, unreadable or not a JSON object with a ``config`` object."""
    try:
        doc = json.loads((Path(run_dir) / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        return None
    return doc


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``config`` object of ``RUN_DIR/config.json`` ({} when it is missing or unreadable)."""
    doc = read_config_doc(run_dir)
    return doc["config"] if doc is not None else {}


# --- metrics.csv ---

def metrics_row(record: EpochRow) -> str:
    """One epoch's line of metrics.csv (percentages with 4 decimals, empty when not scored)."""
    pct = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
    return (f"{record.epoch},{record.train_loss:.6f},{record.train_acc:.4f},{pct(record.val_acc)},"
            f"{pct(record.test_acc)},{record.seconds:.3f},{record.elapsed:.3f}\n")


def write_metrics(run_dir: str | os.PathLike, records: Iterable[EpochRow]) -> None:
    """metrics.csv with exactly ``records`` (on resume: the epochs the checkpoint holds)."""
    atomic_write(Path(run_dir) / METRICS_FILE, METRICS_HEADER + "".join(metrics_row(r) for r in records))


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, str]]:
    """metrics.csv's rows as dicts of strings ([] when it is missing)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    with open(path) as fh:
        return list(csv.DictReader(fh))


# --- checkpoint.pt and model.pt ---

def checkpoint_payload(state: dict[str, Any], *, run_id: str, classes: list[str],
                       input_shape: Iterable[int]) -> dict[str, Any]:
    """checkpoint.pt: a training state (``cnnlab.training.checkpoint.capture_state``) with what ties
    it to its run: the run id, class names and input shape."""
    return {**state, "run_id": run_id, "classes": list(classes), "input_shape": list(input_shape)}


def write_checkpoint(run_dir: str | os.PathLike, payload: dict[str, Any]) -> None:
    atomic_write(Path(run_dir) / CHECKPOINT_FILE, lambda fh: torch.save(payload, fh))


def read_checkpoint(path: Path, needed: set[str], kind: str, data: bytes | None = None) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` (of ``data``, the file's bytes, when given) with one-line
    errors for truncated or foreign files."""
    try:
        obj = torch.load(path if data is None else io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RunDirError(f"{path} cannot be read as a checkpoint ({type(exc).__name__}); it is truncated or not "
                          f"cnnlab's") from None
    if not isinstance(obj, dict) or not needed <= set(obj):
        raise RunDirError(f"{path} is not a cnnlab {kind} (needs {', '.join(sorted(needed))})")
    return obj


def read_training_checkpoint(run_dir: str | os.PathLike) -> dict[str, Any]:
    """``RUN_DIR/checkpoint.pt``, checked to hold what --resume needs."""
    return read_checkpoint(Path(run_dir) / CHECKPOINT_FILE, CHECKPOINT_KEYS, "training checkpoint")


def model_payload(state_dict: dict[str, torch.Tensor], config: dict[str, Any], *, classes: list[str],
                  input_shape: Iterable[int], run_id: str, test_correct: int | None = None,
                  test_total: int | None = None, best_epoch: int | None = None) -> dict[str, Any]:
    """model.pt: the weights (CPU tensors) with the settings, class names and input shape that
    rebuild the model, the final test counts and the run id."""
    return {"state_dict": state_dict, "config": config, "classes": list(classes), "input_shape": list(input_shape),
            "test_correct": test_correct, "test_total": test_total, "best_epoch": best_epoch, "run_id": run_id,
            "cnnlab_version": __version__}


def write_model(run_dir: str | os.PathLike, payload: dict[str, Any]) -> None:
    atomic_write(Path(run_dir) / MODEL_FILE, lambda fh: torch.save(payload, fh))


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


# --- result.json ---

def write_result(run_dir: str | os.PathLike, doc: dict[str, Any]) -> None:
    atomic_write(Path(run_dir) / RESULT_FILE, json.dumps(doc, indent=2) + "\n")


def read_result(run_dir: str | os.PathLike) -> dict[str, Any]:
    """``result.json`` as a dict ({} when missing, unreadable or not an object)."""
    try:
        result = json.loads((Path(run_dir) / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return result if isinstance(result, dict) else {}
