"""A dataset's splits (:class:`Splits`, what every loader returns) and seeded splitting: a per-class
hold-out (test or validation) and a random validation split."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from cnnlab.errors import CnnlabError

__all__ = ["Splits", "stratified_holdout", "split_validation", "shuffle_labels"]


@dataclass
class Splits:
    """A dataset's splits. ``val`` is None unless the dataset ships one (an image folder's
    ``val/``) or a validation fraction was carved out of ``train``."""

    train: Any  # a BatchSource
    test: Any
    val: Any = None

    @property
    def skipped(self) -> tuple[str, ...]:
        return tuple(self.train.skipped)


def stratified_holdout(labels: torch.Tensor, n_classes: int, fraction: float, seed: int) -> torch.Tensor:
    """A boolean mask that holds out ``round(fraction * n)`` images of each class, chosen with
    its own seeded generator (so the split is the same whatever the training seed)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(len(labels), dtype=torch.bool)
    for c in range(n_classes):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        mask[idx[: int(round(fraction * len(idx)))]] = True
    return mask


def split_validation(data, fraction: float, seed: int):
    """A seeded random (train, val) split of ``data``; the same seed gives the same split.

    Each side must keep at least as many images as there are classes (a model trained on fewer
    cannot have seen every class; a validation figure from fewer is not a measurement)."""
    n, classes = len(data), max(1, len(data.classes))
    n_val = round(fraction * n)
    if not classes <= n_val <= n - classes:
        side, left = ("training", n - n_val) if n_val > n - classes else ("validation", n_val)
        if n < 2 * classes:
            raise CnnlabError(f"--val-fraction {fraction:g}: the training split has only {n} images for "
                              f"{classes} classes, too few to hold some out; leave --val-fraction out")
        lo, hi = _fraction_near(classes, n, up=True), _fraction_near(n - classes, n, up=False)
        raise CnnlabError(f"--val-fraction {fraction:g} leaves {left} of {n} images for {side}, fewer than the "
                          f"{classes} classes; --val-fraction must be in [{lo}, {hi}] for this dataset")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
    return data.subset(train_idx), data.subset(val_idx)


def _fraction_near(count: int, n: int, up: bool) -> str:
    """The shortest decimal f, rounded from ``count / n`` up (``up``) or down, whose ``round(f * n)``
    is still ``count``: the edge of the valid --val-fraction range, as a user would type it."""
    for digits in range(1, 12):
        scaled = count / n * 10**digits
        text = f"{(math.ceil(scaled) if up else math.floor(scaled)) / 10**digits:.{digits}f}"
        if round(float(text) * n) == count:
            return text
    return repr(count / n)


def shuffle_labels(data, seed: int):
    """``data`` (a BatchSource) with its labels permuted by a generator seeded with ``seed`` (Zhang et al. 2017,
    "Understanding deep learning requires rethinking generalization"): every image keeps its place,
    the labels are the same multiset, reassigned at random; the same seed gives the same labels."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    labels = data.labels.cpu()[order].to(data.labels.device)
    return data.with_labels(labels)
