"""A finished run, optimized: its splits prepared as in training, seeded calibration batches
from its training split, and prediction through any optimized module.

Used by ``cnnlab evaluate/predict --optimize``, ``cnnlab export --quantize int8`` and
``cnnlab bench infer RUN``; nothing here imports ``cnnlab.training``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from cnnlab.data import iterate_batches
from cnnlab.errors import CnnlabError
from cnnlab.inference.modes import optimize
from cnnlab.runs import LoadedRun, Run

__all__ = ["CALIBRATION_IMAGES", "CALIBRATION_BATCH", "load_split", "calibration_from", "run_calibration",
           "optimize_run", "predict_labels"]

CALIBRATION_IMAGES = 256  # training images whose activation ranges calibrate int8 (enough: docs/BENCHMARKS.md)
CALIBRATION_BATCH = 32


def load_split(run: Run, split: str, data_dir: str | None = None, device: torch.device | str = "cpu"):
    """The run's ``train``, ``val`` or ``test`` split, resized and converted as in training
    (:meth:`cnnlab.runs.Run.split`)."""
    return run.split(split, data_dir, device)


def calibration_from(data, normalize=None, *, images: int = CALIBRATION_IMAGES, seed: int = 0,
                     batch_size: int = CALIBRATION_BATCH) -> list[torch.Tensor]:
    """``images`` training images drawn with ``seed`` (the same seed, the same batches), scaled
    and normalised exactly as in training, in batches of ``batch_size``."""
    if images < 1:
        raise CnnlabError(f"--calibration-images must be a positive integer, got {images}")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:images]
    subset = data.subset(order.sort().values)
    return [x for x, _ in iterate_batches(subset, batch_size, normalize=normalize)]


def run_calibration(run: Run, data_dir: str | None = None, *, images: int = CALIBRATION_IMAGES,
                    seed: int = 0, normalized: bool = True) -> list[torch.Tensor]:
    """Calibration batches from the run's training split (CPU, float32), normalised as the model
    sees them (``normalized=False``: in [0, 1], for an exported model that normalises itself)."""
    train = run.split("train", data_dir, "cpu")
    stats = run.preprocessing.normalize if normalized else None
    return calibration_from(train, stats, images=images, seed=seed)


def optimize_run(run: LoadedRun, mode: str, example: torch.Tensor, *, data_dir: str | None = None,
                 calibration_images: int = CALIBRATION_IMAGES, seed: int = 0) -> torch.nn.Module:
    """``optimize(run.model, mode, example)``; ``int8`` and ``auto`` calibrate on the run's
    training images (``calibration_images`` of them, drawn with ``seed``)."""
    calibration = None
    if mode in ("int8", "auto"):
        calibration = run_calibration(run, data_dir, images=calibration_images, seed=seed)
    return optimize(run.model, mode, example, calibration)


@torch.inference_mode()
def predict_labels(model: Callable[[torch.Tensor], Any], data, batch_size: int,
                   normalize=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted class, true label) for every item of ``data``, in order (CPU int64)."""
    preds, labels = [], []
    for x, y in iterate_batches(data, batch_size, normalize=normalize):
        out = model(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        preds.append(out.argmax(1).cpu())
        labels.append(y.cpu())
    return torch.cat(preds), torch.cat(labels)
