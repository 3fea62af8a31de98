"""Seeded splits: a per-class hold-out (test or validation) and a random validation split."""

from __future__ import annotations

import torch

from cnnlab.errors import CnnlabError

__all__ = ["stratified_holdout", "split_validation"]


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
    """A seeded random (train, val) split of ``data``; the same seed gives the same split."""
    n_val = round(fraction * len(data))
    if not 1 <= n_val < len(data):
        raise CnnlabError(f"--val-fraction {fraction} leaves {n_val} of {len(data)} images for validation; "
                          f"choose a fraction that keeps at least one image on each side")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
    return data.subset(train_idx), data.subset(val_idx)
