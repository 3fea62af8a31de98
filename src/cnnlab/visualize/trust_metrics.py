"""The numbers behind "can you trust the picture?": how alike two maps are (Spearman rank correlation
of absolute values, SSIM -- Adebayo et al. 2018), and how faithful a map is to the model (deletion and
insertion curves and their areas -- Petsiuk et al. 2018), with the reference maps a score needs
beside it (a seeded random map, a centre-bias map).

scipy computes the rank correlation (``scipy.stats.spearmanr``), scikit-image the SSIM
(``skimage.metrics.structural_similarity``). The deletion and insertion curves are cnnlab's own,
batched: every step of every image and map is one input of a few large forward passes::

    order   = the pixels by map value, highest first (ties: the earlier pixel first)
    n_k     = round(k * P / S), k = 0..S       (P pixels, S steps)
    deletion:  x_k = x with its first n_k pixels (all channels) set to the baseline
    insertion: x_k = the baseline with the first n_k pixels of x put back
    curve_k = softmax(model(x_k))[c]           (c: the class the map explains)
    area    = trapezoid of the curve over k / S in [0, 1]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.errors import CnnlabError, UnknownNameError

__all__ = ["BASELINES", "Curves", "spearman_abs", "ssim", "baseline_images", "random_maps", "centre_maps",
           "perturbation_curves", "area", "pixel_order"]

BASELINES = ("zero", "blur", "mean")
MAX_ELEMENTS = 1 << 23  # one forward chunk holds about this many input numbers (32 MiB of float32)


def _scipy_stats():
    try:
        import scipy.stats as stats
    except ImportError:
        raise CnnlabError("the rank correlation uses scipy: pip install 'cnnlab[visualize]' (or pip install scipy)"
                          ) from None
    return stats


def _skimage_metrics():
    try:
        import skimage.metrics as metrics
    except ImportError:
        raise CnnlabError("SSIM uses scikit-image: pip install 'cnnlab[visualize]' (or pip install scikit-image)"
                          ) from None
    return metrics


def _array(a) -> np.ndarray:
    return (a.detach().float().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, dtype=np.float64))


def spearman_abs(a, b) -> float:
    """Spearman's rank correlation of ``|a|`` and ``|b|`` (two maps of one image, any equal shape).
    A constant map (Grad-CAM all zero, say) ranks nothing: nan, as scipy says."""
    x, y = np.abs(_array(a)).ravel(), np.abs(_array(b)).ravel()
    if x.shape != y.shape:
        raise CnnlabError(f"maps of different sizes cannot be compared: {a.shape} and {b.shape}")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(_scipy_stats().spearmanr(x, y).statistic)


def _unit(m: np.ndarray) -> np.ndarray:
    span = np.ptp(m)
    return (m - m.min()) / span if span > 0 else np.zeros_like(m)


def ssim(a, b) -> float:
    """SSIM of two (H, W) maps, each of ``|map|`` scaled to [0, 1] first (as Adebayo et al. compare
    maps of different scales); the window is 7 pixels, or the largest odd side that fits."""
    x, y = _unit(np.abs(_array(a)).astype(np.float64)), _unit(np.abs(_array(b)).astype(np.float64))
    if x.ndim != 2 or x.shape != y.shape:
        raise CnnlabError(f"SSIM compares two H x W maps of one size, got {x.shape} and {y.shape}")
    side = min(x.shape)
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        return 1.0 if np.array_equal(x, y) else float(np.corrcoef(x.ravel(), y.ravel())[0, 1])
    return float(_skimage_metrics().structural_similarity(x, y, data_range=1.0, win_size=win))


def _blur(x: torch.Tensor) -> torch.Tensor:
    """A Gaussian blur of each channel, sigma = side / 16 (at least 1 pixel), reflected at the border."""
    side = min(x.shape[-2:])
    sigma = max(1.0, side / 16)
    radius = min(int(math.ceil(2 * sigma)), side - 1)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=x.device)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    out = F.pad(x, (radius, radius, 0, 0), mode="reflect") if radius else x
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="reflect") if radius else out
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def baseline_images(x: torch.Tensor, name: str) -> torch.Tensor:
    """What a removed pixel becomes, in the model's input space: ``zero`` (all zeros), ``blur`` (the
    image blurred, Petsiuk et al.'s insertion start) or ``mean`` (each image's per-channel mean)."""
    if name == "zero":
        return torch.zeros_like(x)
    if name == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if name == "blur":
        return _blur(x)
    raise UnknownNameError("baseline", name, BASELINES)


def random_maps(n: int, shape: tuple[int, int], seed: int) -> torch.Tensor:
    """(n, H, W) uniform random maps from a generator seeded with ``seed``: the chance level."""
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed))


def centre_maps(n: int, shape: tuple[int, int]) -> torch.Tensor:
    """(n, H, W) maps highest at the image centre, falling with the distance from it: the "the object
    is in the middle" guess a map should beat."""
    h, w = shape
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    d = (yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2
    return (-d).expand(n, h, w).clone()


def pixel_order(m: torch.Tensor) -> torch.Tensor:
    """The rank of every pixel of an (H, W) map: 0 for the highest value (ties: the earlier pixel first)."""
    order = torch.argsort(m.flatten().float(), descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(order.numel(), device=order.device)
    return ranks


@dataclass
class Curves:
    """Deletion and insertion curves, (N, S + 1) each: the class probability after k / S of the pixels."""

    deletion: torch.Tensor
    insertion: torch.Tensor

    @property
    def deletion_area(self) -> torch.Tensor:
        return area(self.deletion)

    @property
    def insertion_area(self) -> torch.Tensor:
        return area(self.insertion)


def area(curve: torch.Tensor) -> torch.Tensor:
    """(N, S + 1) -> (N,): the trapezoid area under each curve over [0, 1] (Petsiuk et al.'s ``auc``)."""
    s = curve.shape[-1] - 1
    return (curve.sum(-1) - curve[..., 0] / 2 - curve[..., -1] / 2) / max(s, 1)


def _steps_masks(m: torch.Tensor, steps: int) -> torch.Tensor:
    """(S + 1, H, W) booleans: True where step k has reached the pixel (its first n_k by rank)."""
    h, w = m.shape
    counts = torch.round(torch.arange(steps + 1, dtype=torch.float64) * (h * w) / steps).long()
    ranks = pixel_order(m.cpu())
    return (ranks.view(1, -1) < counts.view(-1, 1)).view(steps + 1, h, w)


@torch.no_grad()
def perturbation_curves(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, *,
                        baseline: str | torch.Tensor = "zero", steps: int = 16) -> Curves:
    """Deletion and insertion curves of ``maps`` (N, H, W) for images ``x`` (N, C, H, W), the class
    ``targets`` (N,) explained; ``baseline``: a name of :data:`BASELINES` or images like ``x``. All
    (2 x N x (S + 1)) perturbed images go through the model in a few large batches."""
    if steps < 1:
        raise CnnlabError(f"the deletion and insertion curves need at least 1 step, got {steps}")
    if maps.shape != (x.shape[0], *x.shape[-2:]):
        raise CnnlabError(f"maps of shape {tuple(maps.shape)} do not fit images of shape {tuple(x.shape)}")
    base = baseline_images(x, baseline) if isinstance(baseline, str) else baseline.to(x).expand_as(x)
    masks = torch.stack([_steps_masks(m, steps) for m in maps]).to(x.device).unsqueeze(2)  # (N, S+1, 1, H, W)
    xs, bs = x.unsqueeze(1), base.unsqueeze(1)
    inputs = torch.cat([torch.where(masks, bs, xs), torch.where(masks, xs, bs)], dim=1)  # deletion, insertion
    n, k = inputs.shape[:2]
    flat = inputs.flatten(0, 1)
    chunk = max(1, MAX_ELEMENTS // max(1, x[0].numel()))
    probs = torch.cat([torch.softmax(model(flat[i:i + chunk]).float(), dim=1) for i in range(0, len(flat), chunk)])
    picked = probs.view(n, k, -1).gather(2, targets.to(probs.device).view(n, 1, 1).expand(n, k, 1))[..., 0].cpu()
    return Curves(picked[:, :steps + 1], picked[:, steps + 1:])
