"""Scoring a model's predictions: the confusion matrix (one definition, used by ``cnnlab evaluate``,
the report and the interpretation pages), precision, recall and F1 per class from it, and a run's
logits on one of its splits (:func:`split_logits`, what ``cnnlab interpret`` and ``cnnlab compare`` score)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from cnnlab.data import BatchSource
from cnnlab.errors import CnnlabError
from cnnlab.runs.run import Run
from cnnlab.runtime import forward_batch_size

__all__ = ["confusion_counts", "per_class_metrics", "split_logits"]


def confusion_counts(labels: torch.Tensor, predicted: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts on the CPU: row = true class, column = predicted."""
    k = num_classes
    return torch.bincount((labels * k + predicted).cpu(), minlength=k * k).view(k, k)


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


@torch.no_grad()  # not inference_mode: the logits may be fitted on (temperature scaling)
def split_logits(run: Run, split: str = "test", data_dir: str | None = None, batch_size: int | None = None, *,
                 model: nn.Module | None = None, data: BatchSource | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, K) float32, labels (N,) int64), both on the CPU, of the run's model on its
    ``split`` prepared as in training, in the split's order (plain forward passes: a run trained
    with ``--tta`` is scored here without its test-time views). ``model``, ``data``: the run's
    model and that split when already loaded."""
    model = run.load_model() if model is None else model.eval()
    prep = run.preprocessing
    model.to(memory_format=prep.memory_format)
    data = run.split(split, data_dir) if data is None else data
    if batch_size is None:  # the run's forward batch, smaller on the CPU for large feature maps
        batch_size = forward_batch_size(model, data.sample_shape, run.config.eval_batch_size, data.device)
    logits, labels = [], []
    for x, y in prep.batches(data, batch_size):
        logits.append(model(x).float().cpu())
        labels.append(y.cpu())
    if not logits:
        raise CnnlabError(f"the {split} split of {run.path} is empty; there is nothing to score")
    return torch.cat(logits), torch.cat(labels)
