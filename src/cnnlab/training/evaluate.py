"""Scoring models: accuracy during training, a finished run's splits, per-class metrics, prediction."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.data import TensorData, iterate_batches
from cnnlab.data.decode import decode_image
from cnnlab.errors import CnnlabError
from cnnlab.figures import plot_confusion
from cnnlab.inference import check_mode
from cnnlab.inference.runs import optimize_run
from cnnlab.runs import LoadedRun, Run, RunOutput, confusion_counts, load_run, per_class_metrics
from cnnlab.runtime import determinism, forward_batch_size, resolve_device
from cnnlab.training.tta import tta_kind, tta_logits

__all__ = ["evaluate_accuracy", "confusion_matrix", "evaluate_run", "evaluate_run_detailed", "per_class_metrics",
           "predict", "run_split", "Evaluation", "evaluate_with_report"]


@torch.inference_mode()
def evaluate_accuracy(
    model: nn.Module,
    data,
    batch_size: int = 512,
    memory_format: torch.memory_format = torch.contiguous_format,
    normalize: tuple[Sequence[float], Sequence[float]] | None = None,
    tta: str | None = None,
    tta_margin: float | None = None,
) -> tuple[int, int, float]:
    """(correct, total, mean loss) of ``model`` on ``data`` (already on the model's device), in batches of
    at most ``batch_size`` (fewer on the CPU for large feature maps: :func:`cnnlab.runtime.forward_batch_size`);
    ``tta``: score the mean logits of the views of :mod:`cnnlab.training.tta` ("shift", "shift+flip"),
    for the images less sure than ``tta_margin`` only if given (:func:`~cnnlab.training.tta.tta_logits`)."""
    was_training = model.training
    model.eval()
    batch_size = forward_batch_size(model, data.sample_shape, batch_size, data.device)
    correct = torch.zeros((), dtype=torch.long, device=data.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=data.device)
    for x, y in iterate_batches(data, batch_size, memory_format=memory_format, normalize=normalize):
        logits = tta_logits(model, x, tta, tta_margin)
        correct += (logits.argmax(dim=1) == y).sum()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
    model.train(was_training)
    return int(correct), len(data), float(loss_sum) / max(len(data), 1)


def run_split(run: Run, split: str, data_dir: str | None, device: torch.device):
    """The run's ``val`` or ``test`` split, prepared exactly as in training, on ``device``
    (:meth:`cnnlab.runs.Run.split`)."""
    if split not in ("val", "test"):
        raise CnnlabError(f"--split must be val or test, got {split!r}")
    return run.split(split, data_dir, device)


@torch.inference_mode()
def confusion_matrix(model: nn.Module, data, num_classes: int, batch_size: int,
                     memory_format: torch.memory_format = torch.contiguous_format,
                     normalize: tuple[Sequence[float], Sequence[float]] | None = None,
                     tta: str | None = None, tta_margin: float | None = None) -> torch.Tensor:
    """Counts per (true class, predicted class) of ``model`` on ``data`` (rows: true); ``tta`` as in
    :func:`evaluate_accuracy` (a run trained with --tta is scored as it was), in batches of at most ``batch_size``."""
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    model.eval()
    batch_size = forward_batch_size(model, data.sample_shape, batch_size, data.device)
    for x, y in iterate_batches(data, batch_size, memory_format=memory_format, normalize=normalize):
        confusion += confusion_counts(y, tta_logits(model, x, tta, tta_margin).argmax(dim=1), num_classes)
    return confusion


def evaluate_run(run_dir: str | os.PathLike, *, data_dir: str | None = None, device: str = "auto",
                 split: str = "test", optimize: str | None = None) -> tuple[int, int, LoadedRun]:
    """Reload a run and score one split (test by default): (correct, total, run)."""
    correct, total, run, _ = evaluate_run_detailed(run_dir, data_dir=data_dir, device=device, split=split,
                                                   optimize=optimize)
    return correct, total, run


def evaluate_run_detailed(run_dir: str | os.PathLike, *, data_dir: str | None = None, device: str = "auto",
                          split: str = "test", optimize: str | None = None) -> tuple[int, int, LoadedRun, torch.Tensor]:
    """As :func:`evaluate_run`, plus the confusion matrix (rows: true class, columns: predicted).
    ``optimize``: score the model through ``cnnlab.optimize`` in that mode (int8 calibrates on
    the run's training images)."""
    dev = resolve_device(device)
    if optimize is not None:
        check_mode(optimize, dev)  # before any data is read
    run = load_run(run_dir, dev)
    data = run_split(run, split, data_dir, dev)
    prep = run.preprocessing
    with determinism(run.config.deterministic, dev):
        run.model.to(memory_format=prep.memory_format)
        model = run.model
        if optimize is not None:
            example, _ = next(prep.batches(data, run.config.eval_batch_size))
            model = optimize_run(run, optimize, example, data_dir=data_dir)
        confusion = confusion_matrix(model, data, len(run.classes), run.config.eval_batch_size, prep.memory_format,
                                     prep.normalize, tta_kind(run.config.dataset, run.config.tta),
                                     run.config.tta_margin)
    return int(confusion.diagonal().sum()), int(confusion.sum()), run, confusion


@torch.inference_mode()
def predict(run_dir: str | os.PathLike, images: Sequence[str | os.PathLike], *, top_k: int = 3,
            device: str = "auto", optimize: str | None = None) -> list[tuple[str, list[tuple[str, float]]]]:
    """Top-k classes with probabilities for image files of any size and mode, converted the way
    the run's data was (channels, square side, ``ToTensor`` scaling); ``optimize``: through
    ``cnnlab.optimize`` in that mode."""
    if top_k < 1:
        raise CnnlabError(f"--top-k must be a positive integer, got {top_k}")
    dev = resolve_device(device)
    if optimize is not None:
        check_mode(optimize, dev)
    run = load_run(run_dir, dev)
    prep = run.preprocessing
    data = TensorData(torch.stack([decode_image(p, prep.channels, prep.side) for p in images]),
                      torch.zeros(len(images), dtype=torch.long), run.classes).to(dev)
    run.model.to(memory_format=prep.memory_format)
    x, _ = next(prep.batches(data, len(data)))  # the same scaling and normalisation as training, same code
    model = run.model
    if optimize is not None:
        model = optimize_run(run, optimize, x)
    probs = torch.softmax(model(x).float(), dim=1)
    k = min(top_k, probs.shape[1])
    values, indices = probs.topk(k, dim=1)
    return [(str(p), [(run.classes[int(i)], float(v)) for v, i in zip(vs, ix)])
            for p, vs, ix in zip(images, values.cpu(), indices.cpu())]


@dataclass
class Evaluation:
    """What ``cnnlab evaluate`` reports for one split of a run."""

    run: LoadedRun
    split: str
    correct: int
    total: int
    per_class: list[dict[str, Any]]
    confusion: torch.Tensor
    confusion_png: Path

    @property
    def accuracy(self) -> float:
        return 100.0 * self.correct / self.total


def evaluate_with_report(run_dir: str | os.PathLike, *, data_dir: str | None = None, device: str = "auto",
                         split: str = "test", confusion_png: str | os.PathLike | None = None,
                         optimize: str | None = None) -> Evaluation:
    """Score one split of a run, per class too, and draw its confusion matrix
    (default ``RUN_DIR/confusion_<split>.png``). Drawn into the run directory, it holds the run's
    lock from reading model.pt to the PNG, and records the PNG in derived.json (:class:`RunOutput`)."""
    png = Path(confusion_png) if confusion_png is not None else Path(run_dir) / f"confusion_{split}.png"
    with RunOutput(run_dir, png, f"evaluate --split {split}") as output:
        correct, total, run, matrix = evaluate_run_detailed(run_dir, data_dir=data_dir, device=device, split=split,
                                                            optimize=optimize)
        plot_confusion(matrix.numpy(), run.classes, png, title=f"{run.config.model} on {run.config.dataset} ({split})")
        output.record(png, run=run)
    return Evaluation(run, split, correct, total, per_class_metrics(matrix, run.classes), matrix, png)
