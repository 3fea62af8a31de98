"""The lecture's "Spatial Dropout -- Dropout2D" slide on a real feature map: ``nn.Dropout`` zeroes
single activations (neighbours, highly correlated, still carry the information), ``nn.Dropout2d``
zeroes whole channels (Tompson et al. 2015). Both scale what they keep by 1/(1 - p)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError
from cnnlab.figures import save_figure, show_image, subplots
from cnnlab.visualize.featuremaps import feature_maps
from cnnlab.visualize.layers import first_conv, hw_c
from cnnlab.visualize.source import default_out, resolve, writing

__all__ = ["dropout_masks", "DropoutDemo", "show_dropout"]

MAX_CHANNELS = 8


def dropout_masks(fmap: torch.Tensor, p: float = 0.5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(nn.Dropout(p)(fmap), nn.Dropout2d(p)(fmap))`` for one (C, H, W) map, in training mode, with
    their own seeded random numbers (the global generator is left as it was). The masks are drawn on the
    CPU, so a seed drops the same activations and channels whatever device the model ran on."""
    if not 0.0 <= p < 1.0:
        raise CnnlabError(f"--p must be in [0, 1), got {p}")
    if fmap.dim() != 3:
        raise CnnlabError(f"dropout is shown on a feature map (C x H x W); got {hw_c(tuple(fmap.shape))}")
    fmap = fmap.detach().cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        plain = nn.Dropout(p).train()(fmap.unsqueeze(0))[0]
        torch.manual_seed(seed)
        spatial = nn.Dropout2d(p).train()(fmap.unsqueeze(0))[0]  # (1, C, H, W): one coin per channel
    return plain, spatial


@dataclass
class DropoutDemo:
    path: Path
    layer: str
    p: float
    shape: tuple[int, ...]
    dropout_zero_fraction: float  # of activations zeroed by nn.Dropout (of those that were not 0 already)
    dropped_channels: list[int]  # channels zeroed whole by nn.Dropout2d
    description: str = ""  # which model
    caption: str = ""  # which image


def _zeroed(before: torch.Tensor, after: torch.Tensor) -> float:
    live = before != 0
    return float(((after == 0) & live).sum()) / max(int(live.sum()), 1)


def _figure(pixels, fmap, plain, spatial, layer: str, p: float, *, dropped: list[int], frac: float,
            path: Path) -> Path:
    shown = min(fmap.shape[0], MAX_CHANNELS)
    fig, axes = subplots(3, shown + 1, figsize=(1.5 * (shown + 1), 5.2), squeeze=False)
    bound = float(torch.stack([fmap, plain, spatial]).abs().max()) or 1.0  # white = 0: dropped cells show as white
    labels = ("feature maps", f"nn.Dropout({p:g})", f"nn.Dropout2d({p:g})")
    for row, (label, maps) in enumerate(zip(labels, (fmap, plain, spatial))):
        show_image(axes[row][0], pixels, "input" if row == 0 else None)
        axes[row][0].set_ylabel(label, fontsize=8)
        for c in range(shown):
            ax = axes[row][c + 1]
            ax.imshow(maps[c].float().cpu().numpy(), cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"channel {c}", fontsize=7)
            if row == 2 and c in dropped:
                ax.set_title("dropped", fontsize=7, color="red")
    fig.suptitle(f"{layer} ({hw_c(tuple(fmap.shape))}), white = 0: Dropout zeroes {100 * frac:.0f}% of single "
                 f"activations in every map,\nDropout2d zeroes whole maps ({len(dropped)} of {fmap.shape[0]}); both "
                 f"scale the rest by 1/(1-p) = {1 / (1 - p):.2f}", fontsize=8)
    return save_figure(fig, path, tight=True)


def show_dropout(subject, image=None, layer: str | None = None, p: float = 0.5, seed: int = 0,
                 out: str | Path | None = None) -> DropoutDemo:
    """``cnnlab demo dropout``: one layer's maps (default: the first convolution's), as they are, under
    Dropout and under Dropout2d."""
    subject, image = resolve(subject, image)
    name = layer or first_conv(subject.model)[0]
    fmap = feature_maps(subject.model, image.x, [name])[name].float().cpu()
    plain, spatial = dropout_masks(fmap, p, seed)
    dropped = [c for c in range(fmap.shape[0]) if bool((spatial[c] == 0).all()) and bool((fmap[c] != 0).any())]
    frac = _zeroed(fmap, plain)
    target = Path(out) if out is not None else default_out(subject, f"dropout-{name}")
    with writing(subject, target, "demo dropout") as output:  # into a run: its lock, recorded
        path = _figure(image.pixels, fmap, plain, spatial, name, p, dropped=dropped, frac=frac, path=target)
        output.record(path)
    return DropoutDemo(path, name, p, tuple(fmap.shape), frac, dropped, subject.description, image.caption)
