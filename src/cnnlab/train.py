"""Compatibility: the training code now lives in :mod:`cnnlab.training` (one module per concern)
and the run-directory format in :mod:`cnnlab.runs`. The names importable from here before the
move still are, e.g. ``from cnnlab.train import TrainConfig, train``."""

from cnnlab.data import normalization
from cnnlab.runs import LoadedRun, check_run_dir, default_run_dir, list_runs, load_run
from cnnlab.runtime import determinism, resolve_device
from cnnlab.training.callbacks import Callback
from cnnlab.training.checkpoint import RunDirWriter
from cnnlab.training.config import TrainConfig
from cnnlab.training.distributed import distributed_env
from cnnlab.training.evaluate import (evaluate_accuracy, evaluate_run, evaluate_run_detailed, per_class_metrics,
                                      predict)
from cnnlab.training.launcher import resume, train
from cnnlab.training.loop import EpochRecord, Trainer, TrainResult


def normalization_for(config: TrainConfig):
    """(mean, std) of ``config``'s dataset when it normalises, else None."""
    return normalization(config.dataset, config.normalize)


__all__ = [
    "TrainConfig", "EpochRecord", "TrainResult", "Callback", "Trainer", "train", "resume", "predict", "list_runs",
    "evaluate_accuracy", "evaluate_run", "evaluate_run_detailed", "per_class_metrics", "load_run", "LoadedRun",
    "resolve_device", "determinism", "distributed_env", "check_run_dir", "default_run_dir",
    "RunDirWriter", "normalization_for",
]
