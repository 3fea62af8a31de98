"""Test-time augmentation (TTA): score each image by the mean logits of a few views of it.

The views are those training augmentation makes plausible (airbench's ``tta_level``): the image,
weight 1, and its four 1-pixel shifts (up, down, left, right; zero-filled), weight 1/2 each; for
colour datasets (augmented with flips) the mirror image and its shifts too. All views of a batch go
through the model in one forward pass. ``--tta`` turns it on for every accuracy a run reports.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.data import get_dataset_spec

__all__ = ["SHIFTS", "TTA_KINDS", "tta_kind", "shift_images", "tta_views", "tta_logits"]

SHIFTS = ((1, 0), (-1, 0), (0, 1), (0, -1))  # (dy, dx): one pixel down, up, right, left
SHIFT_WEIGHT = 0.5
TTA_KINDS = ("shift", "shift+flip")


def tta_kind(dataset: str, enabled: bool) -> str | None:
    """None without TTA; "shift+flip" for datasets trained with flips (colour images), else "shift"."""
    if not enabled:
        return None
    return "shift+flip" if get_dataset_spec(dataset).augment == "crop+flip" else "shift"


def shift_images(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``x`` (N, C, H, W) moved by ``dy`` rows down and ``dx`` columns right (|d| <= 1), zeros
    coming in; same shape and memory format."""
    n, c, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1))  # (N, C, H + 2, W + 2)
    out = padded[:, :, 1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    return out.contiguous(memory_format=fmt)


def tta_views(x: torch.Tensor, kind: str) -> tuple[list[torch.Tensor], list[float]]:
    """The views of a batch and their weights (the image 1, each shift 1/2)."""
    if kind not in TTA_KINDS:
        raise ValueError(f"tta kind must be one of {TTA_KINDS}, got {kind!r}")
    bases = [x, x.flip(-1)] if kind == "shift+flip" else [x]
    views, weights = [], []
    for base in bases:
        views.append(base)
        weights.append(1.0)
        for dy, dx in SHIFTS:
            views.append(shift_images(base, dy, dx))
            weights.append(SHIFT_WEIGHT)
    return views, weights


def tta_logits(model: nn.Module, x: torch.Tensor, kind: str | None, margin: float | None = None) -> torch.Tensor:
    """The weighted mean of ``model``'s logits over the views of ``x`` (``model(x)`` when ``kind`` is None).

    ``margin``: augment only the unsure images, those whose plain top-1 and top-2 softmax probabilities
    are closer than ``margin`` (0 < margin <= 1); the others keep their plain logits. A sure image's
    prediction rarely changes under its shifts, so this keeps most of TTA's gain at a fraction of its
    cost (the extra views are run for the unsure images only). ``margin=None`` (or 1) augments all.
    """
    if kind is None:
        return model(x)
    if margin is None or margin >= 1.0:
        views, weights = tta_views(x, kind)
        logits = model(torch.cat(views)).float()  # (V*N, classes): one pass for all views
        return _weighted_mean(logits.view(len(views), len(x), -1), weights)
    if not 0.0 < margin:
        raise ValueError(f"margin must be in (0, 1], got {margin}")
    logits = model(x).float()  # (N, classes)
    top2 = logits.softmax(dim=1).topk(min(2, logits.shape[1]), dim=1).values
    unsure = (top2[:, 0] - top2[:, -1]) < margin if top2.shape[1] > 1 else torch.zeros_like(top2[:, 0], dtype=torch.bool)
    if not bool(unsure.any()):
        return logits
    index = unsure.nonzero().squeeze(1)
    views, weights = tta_views(x[index], kind)
    extra = model(torch.cat(views[1:])).float()  # the unsure images' other views, one pass
    stacked = torch.cat([logits[index].unsqueeze(0), extra.view(len(views) - 1, len(index), -1)])
    return logits.index_copy(0, index, _weighted_mean(stacked, weights))


def _weighted_mean(logits: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """(V, N, classes) logits of V views -> (N, classes), view v weighted ``weights[v]``."""
    w = torch.tensor(weights, dtype=logits.dtype, device=logits.device).view(-1, 1, 1)
    return (logits * w).sum(0) / w.sum()
