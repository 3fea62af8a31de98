"""Scoring models: accuracy during training, a finished run's splits, per-class metrics, prediction."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.data import LoadOptions, TensorData, iterate_batches, load_splits, normalization
from cnnlab.errors import CnnlabError
from cnnlab.runs import LoadedRun, RunOutput, load_run
from cnnlab.runtime import determinism, memory_format_for, resolve_device
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
) -> tuple[int, int, float]:
    """(correct, total, mean loss) of ``model`` on ``data`` (already on the model's device);
    ``tta``: score the mean logits of the views of :mod:`cnnlab.training.tta` ("shift", "shift+flip")."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=data.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=data.device)
    for x, y in iterate_batches(data, batch_size, memory_format=memory_format, normalize=normalize):
        logits = tta_logits(model, x, tta)
        correct += (logits.argmax(dim=1) == y).sum()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
    model.train(was_training)
    return int(correct), len(data), float(loss_sum) / max(len(data), 1)


def run_split(run: LoadedRun, split: str, data_dir: str | None, device: torch.device):
    """The run's ``val`` or ``test`` split, prepared exactly as in training, on ``device``."""
    if split not in ("val", "test"):
        raise CnnlabError(f"--split must be val or test, got {split!r}")
    c, h, _ = run.input_shape
    cfg = run.config
    options = LoadOptions(cfg.download, h, c, cfg.skip_bad_images, cfg.stream, cfg.workers)
    splits = load_splits(cfg.dataset, data_dir or cfg.data_dir, options, val_fraction=cfg.val_fraction, seed=cfg.seed)
    chosen = splits.test if split == "test" else splits.val
    if chosen is None:
        raise CnnlabError(f"{run.path} was trained without --val-fraction, so it has no validation split; use --split test")
    return chosen.to(device)


@torch.inference_mode()
def confusion_matrix(model: nn.Module, data, num_classes: int, batch_size: int,
                     memory_format: torch.memory_format = torch.contiguous_format,
                     normalize: tuple[Sequence[float], Sequence[float]] | None = None,
                     tta: str | None = None) -> torch.Tensor:
    """Counts per (true class, predicted class) of ``model`` on ``data`` (rows: true); ``tta`` as in
    :func:`evaluate_accuracy` (a run trained with --tta is scored as it was)."""
    k = num_classes
    confusion = torch.zeros(k, k, dtype=torch.long)
    model.eval()
    for x, y in iterate_batches(data, batch_size, memory_format=memory_format, normalize=normalize):
        pred = tta_logits(model, x, tta).argmax(dim=1)
        confusion += torch.bincount((y * k + pred).cpu(), minlength=k * k).view(k, k)
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
        from cnnlab.inference import check_mode

        check_mode(optimize, dev)  # before any data is read
    run = load_run(run_dir, dev)
    data = run_split(run, split, data_dir, dev)
    with determinism(run.config.deterministic, dev):
        fmt = memory_format_for(run.config.channels_last, dev)
        run.model.to(memory_format=fmt)
        norm = normalization(run.config.dataset, run.config.normalize)
        model = run.model
        if optimize is not None:
            from cnnlab.inference.runs import optimize_run

            example, _ = next(iterate_batches(data, run.config.eval_batch_size, memory_format=fmt, normalize=norm))
            model = optimize_run(run, optimize, example, data_dir=data_dir)
        confusion = confusion_matrix(model, data, len(run.classes), run.config.eval_batch_size, fmt, norm,
                                     tta_kind(run.config.dataset, run.config.tta))
    return int(confusion.diagonal().sum()), int(confusion.sum()), run, confusion


def per_class_metrics(confusion: torch.Tensor, classes: Sequence[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class from a confusion matrix (rows: true)."""
    rows = []
    for i, name in enumerate(classes):
        tp = int(confusion[i, i])
        predicted, support = int(confusion[:, i].sum()), int(confusion[i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"class": name, "precision": precision, "recall": recall, "f1": f1, "support": support})
    return rows


@torch.inference_mode()
def predict(run_dir: str | os.PathLike, images: Sequence[str | os.PathLike], *, top_k: int = 3,
            device: str = "auto", optimize: str | None = None) -> list[tuple[str, list[tuple[str, float]]]]:
    """Top-k classes with probabilities for image files of any size and mode, converted the way
    the run's data was (channels, square side, ``ToTensor`` scaling); ``optimize``: through
    ``cnnlab.optimize`` in that mode."""
    from cnnlab.data.decode import decode_image

    if top_k < 1:
        raise CnnlabError(f"--top-k must be a positive integer, got {top_k}")
    dev = resolve_device(device)
    if optimize is not None:
        from cnnlab.inference import check_mode

        check_mode(optimize, dev)
    run = load_run(run_dir, dev)
    c, h, _ = run.input_shape
    data = TensorData(torch.stack([decode_image(p, c, h) for p in images]), torch.zeros(len(images), dtype=torch.long),
                      run.classes).to(dev)
    fmt = memory_format_for(run.config.channels_last, dev)
    run.model.to(memory_format=fmt)
    # the same scaling and normalisation as training, through the same batching code
    norm = normalization(run.config.dataset, run.config.normalize)
    x, _ = next(iterate_batches(data, len(data), memory_format=fmt, normalize=norm))
    model = run.model
    if optimize is not None:
        from cnnlab.inference.runs import optimize_run

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
    from cnnlab.figures import plot_confusion

    png = Path(confusion_png) if confusion_png is not None else Path(run_dir) / f"confusion_{split}.png"
    with RunOutput(run_dir, png, f"evaluate --split {split}") as output:
        correct, total, run, matrix = evaluate_run_detailed(run_dir, data_dir=data_dir, device=device, split=split,
                                                            optimize=optimize)
        plot_confusion(matrix.numpy(), run.classes, png, title=f"{run.config.model} on {run.config.dataset} ({split})")
        output.record(png, run=run)
    return Evaluation(run, split, correct, total, per_class_metrics(matrix, run.classes), matrix, png)
