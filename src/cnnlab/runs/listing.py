"""``cnnlab runs``: one row per run directory, read from its files (:mod:`cnnlab.runs.format`),
with what each derived file's state is (fresh, stale, unrecorded)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cnnlab.display import RunsTable
from cnnlab.errors import RunDirError
from cnnlab.runs.format import end_artefacts_missing, read_metrics, read_result, read_run_config
from cnnlab.storage import derived_status

__all__ = ["run_dirs_under", "read_test_accuracy", "list_runs"]


def run_dirs_under(root: Path) -> list[Path]:
    """``root`` itself if it is a run directory, else the run directories one level below it."""
    if (root / "config.json").is_file():
        return [root]
    return sorted(p.parent for p in root.glob("*/config.json"))


def read_test_accuracy(run_dir: str | os.PathLike) -> float | None:
    """The run's final test accuracy: result.json's (the selected model), else the last epoch's in metrics.csv."""
    run_dir = Path(run_dir)
    result = read_result(run_dir)
    if isinstance(result.get("test_acc"), (int, float)):
        return float(result["test_acc"])
    tests = [float(r["test_acc"]) for r in read_metrics(run_dir) if r.get("test_acc")]
    return tests[-1] if tests else None


def _stale_text(stale: list[str]) -> str:
    """"; report.html stale; model.onnx stale; visualize/ stale (3 files)": one phrase per stale file,
    the pictures in visualize/ counted together."""
    pictures = [name for name in stale if name.startswith("visualize/")]
    text = "".join(f"; {name} stale" for name in stale if name not in pictures)
    return text + (f"; visualize/ stale ({len(pictures)} file{'s' * (len(pictures) > 1)})" if pictures else "")


def list_runs(root: str | os.PathLike = "runs") -> RunsTable:
    """One row per run directory under ``root`` (or ``root`` itself): model, dataset, epochs done,
    best validation and final test accuracy, time, and whether it finished; ``derived``: each file
    made from model.pt (report.html, model.onnx, plots) -> fresh / stale / unrecorded
    (:func:`cnnlab.storage.derived_status`), the stale ones also named in ``status``. A list of dicts
    (:class:`cnnlab.display.RunsTable`) that a notebook shows as the table."""
    root = Path(root)
    if not root.is_dir():
        raise RunDirError(f"{root} is not a folder; pass the folder holding your run directories (default: runs)")
    rows = RunsTable()
    for d in run_dirs_under(root):
        config = read_run_config(d)
        if not config:
            continue  # not a cnnlab run
        metrics = read_metrics(d)
        result = read_result(d)
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
