"""Scoring a model's predictions: the confusion matrix (one definition, used by ``cnnlab evaluate``,
the report and the interpretation pages) and precision, recall and F1 per class from it."""

from __future__ import annotations

from typing import Any, Sequence

import torch

__all__ = ["confusion_counts", "per_class_metrics"]


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
