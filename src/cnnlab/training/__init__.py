"""Training: the settings (``config``), a run's parts (``setup``), the loop (``loop``) and its
records (``records``), optimizers and schedules (``optim``),
checkpoints (``checkpoint``), several processes (``distributed``), scoring (``evaluate``),
hooks (``callbacks``) and starting or continuing runs (``launcher``).

Names are imported on first use, so ``cnnlab.training.config`` loads without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "config",
    "Trainer": "loop",
    "EpochRecord": "records", "EpochStats": "records", "LoopState": "records", "TrainResult": "records",
    "RunParts": "setup", "prepare": "setup",
    "Callback": "callbacks", "ConsoleLogger": "callbacks", "TensorBoardLogger": "callbacks",
    "RunDirWriter": "checkpoint", "capture_state": "checkpoint", "restore_state": "checkpoint",
    "build_optimizer": "optim", "build_scheduler": "optim",
    "distributed_env": "distributed",
    "evaluate_accuracy": "evaluate", "evaluate_run": "evaluate", "evaluate_run_detailed": "evaluate",
    "per_class_metrics": "evaluate", "predict": "evaluate",
    "train": "launcher", "resume": "launcher", "launch": "launcher",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cnnlab.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"cnnlab.training.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
