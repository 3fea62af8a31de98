"""Filters: a convolution's kernels as pictures. The first layer's kernels as images (RGB where they
take 3 channels, a diverging gray-free map where they take 1); a deeper layer's as a grid with one
row per output channel and one column per input channel."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from cnnlab.display import figures_html
from cnnlab.errors import CnnlabError
from cnnlab.figures import grid_shape, save_figure, subplots
from cnnlab.visualize.layers import first_conv, get_layer
from cnnlab.visualize.source import default_out, resolve, writing

__all__ = ["conv_layers", "conv_weight", "rgb_filters", "filters_figure", "plot_filters", "FiltersResult",
           "show_filters"]

MAX_OUT, MAX_IN = 64, 16  # kernels drawn: output channels (first layer), inputs per row (deeper layers)


def conv_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def conv_weight(model: nn.Module, layer: str | None = None) -> tuple[str, torch.Tensor]:
    """``(name, weight (out, in/groups, kh, kw))`` of a convolution; None: the first one."""
    if layer is None:
        name, conv = first_conv(model)
    else:
        name, conv = layer, get_layer(model, layer)
        if not isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)):
            raise CnnlabError(f"layer {layer!r} is a {type(conv).__name__}, not a convolution: it has no filters; "
                              f"convolutions: {', '.join(conv_layers(model)[:12])}")
    w = conv.weight.detach().float().cpu()
    if isinstance(conv, nn.ConvTranspose2d):
        w = w.transpose(0, 1)  # stored (in, out/groups, kh, kw): show one filter per output channel
    return name, w


def rgb_filters(weight: torch.Tensor) -> torch.Tensor:
    """(out, 3, kh, kw) kernels -> (out, kh, kw, 3) images in [0, 1], one min-max scale for the layer
    (so a filter's strength stays comparable with the others')."""
    lo, hi = weight.min(), weight.max()
    scaled = (weight - lo) / (hi - lo) if hi > lo else torch.full_like(weight, 0.5)
    return scaled.permute(0, 2, 3, 1)


def _first_layer_figure(name: str, w: torch.Tensor):
    shown = min(w.shape[0], MAX_OUT)
    rows, cols = grid_shape(shown)
    fig, axes = subplots(rows, cols, figsize=(1.2 * cols, 1.2 * rows + 0.6), squeeze=False)
    images = rgb_filters(w[:shown]) if w.shape[1] == 3 else None
    bound = float(w[:shown].abs().max()) or 1.0
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= shown:
            ax.axis("off")
            continue
        if images is not None:
            ax.imshow(images[i].numpy(), interpolation="nearest")
        else:
            im = ax.imshow(w[i].mean(0).numpy(), cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
        ax.set_title(f"filter {i}", fontsize=7)
    if images is None:
        fig.colorbar(im, ax=axes, fraction=0.03, pad=0.02, label="weight")
    kind = "RGB, one scale for the layer" if images is not None else "red > 0 > blue"
    fig.suptitle(f"{name}: {w.shape[0]} filters of {w.shape[1]}x{w.shape[2]}x{w.shape[3]} ({kind})", fontsize=9)
    return fig


def _deep_layer_figure(name: str, w: torch.Tensor):
    n_out, n_in = min(w.shape[0], MAX_IN), min(w.shape[1], MAX_IN)
    fig, axes = subplots(n_out, n_in, figsize=(0.75 * n_in + 1.2, 0.75 * n_out + 0.8), squeeze=False)
    bound = float(w[:n_out, :n_in].abs().max()) or 1.0
    for o in range(n_out):
        for i in range(n_in):
            ax = axes[o][i]
            im = ax.imshow(w[o, i].numpy(), cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if o == 0:
                ax.set_title(f"in {i}", fontsize=6)
            if i == 0:
                ax.set_ylabel(f"out {o}", fontsize=6)
    fig.colorbar(im, ax=axes, fraction=0.03, pad=0.02, label="weight")
    more = f" (first {n_out} x {n_in} of {w.shape[0]} x {w.shape[1]})" if (n_out, n_in) != tuple(w.shape[:2]) else ""
    fig.suptitle(f"{name}: kernels {w.shape[2]}x{w.shape[3]}, one row per output channel, one column per input "
                 f"channel{more}", fontsize=9)
    return fig


def filters_figure(model: nn.Module, layer: str | None = None) -> tuple[str, object]:
    """``(layer, figure)`` of ``layer``'s kernels (default: the first convolution)."""
    name, w = conv_weight(model, layer)
    first = name == first_conv(model)[0]
    return name, _first_layer_figure(name, w) if first or w.shape[1] == 1 else _deep_layer_figure(name, w)


def plot_filters(model: nn.Module, path: str | Path, layer: str | None = None) -> tuple[str, Path]:
    """Draw ``layer``'s kernels (default: the first convolution) into ``path``; returns (layer, path)."""
    name, fig = filters_figure(model, layer)
    return name, save_figure(fig, path, tight=True)


@dataclass
class FiltersResult:
    path: Path
    layer: str
    shape: tuple[int, ...]  # (out, in, kh, kw)
    description: str = ""  # which model

    def _repr_html_(self) -> str:
        """In a notebook: the kernels as one picture."""
        return figures_html(f"Filters of {self.layer}: {self.description}", [(self.path, str(self.path))],
                            [f"{' x '.join(map(str, self.shape))} (out x in x kh x kw)"])


def show_filters(subject, layer: str | None = None, out: str | Path | None = None) -> FiltersResult:
    """``cnnlab show filters``: the PNG (default ``RUN_DIR/visualize/filters-<layer>.png``)."""
    subject, _ = resolve(subject, need_image=False)
    name, w = conv_weight(subject.model, layer)
    target = Path(out) if out is not None else default_out(subject, f"filters-{name}")
    with writing(subject, target, "show filters") as output:  # into a run: its lock, recorded
        _, path = plot_filters(subject.model, target, name)
        output.record(path)
    return FiltersResult(path, name, tuple(w.shape), subject.description)
