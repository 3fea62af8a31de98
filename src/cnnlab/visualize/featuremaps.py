"""Feature maps: every layer's output for one image (kept by the tracer's hooks: exactly the module outputs),
drawn as one grid per layer with its ``HxWxC`` and the output-size arithmetic in the title."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError
from cnnlab.display import figures_html
from cnnlab.figures import grid_shape, save_figure, show_image, subplots
from cnnlab.trace import trace
from cnnlab.visualize.layers import check_image, default_layers, hw_c, layer_name
from cnnlab.visualize.source import default_dir, resolve, writing

__all__ = ["feature_maps", "layer_titles", "plot_feature_maps", "FeatureMapsResult", "show_featuremaps"]

MAX_CHANNELS = 64  # channels drawn per layer


def _layer_list(model: nn.Module, x: torch.Tensor, layers: str | Sequence[str] | None) -> list[str]:
    if layers is None:
        return default_layers(model, x)
    names: list[str] = []
    for part in [layers] if isinstance(layers, (str, nn.Module)) else layers:
        if isinstance(part, nn.Module):
            names.append(layer_name(model, part))
        else:  # "conv_1,pool_2": unknown names are one line with the closest
            names += [layer_name(model, n.strip()) for n in part.split(",") if n.strip()]
    return names


def feature_maps(model: nn.Module, image: torch.Tensor, layers: str | Sequence[str] | None = None
                 ) -> dict[str, torch.Tensor]:
    """``{layer name: its output for image}``: (C, H, W) for a feature map (the batch dimension
    dropped), kept by :func:`cnnlab.trace.trace` as the module returned it (copied at once, so a later
    in-place ReLU does not change it). A module called twice keeps its last call.

    Args:
        model: any ``nn.Module``; it runs in its current mode (call ``model.eval()`` first, as for inference).
        image: one image, (C, H, W) or (1, C, H, W), prepared as the model's input.
        layers: module names (``model.named_modules()``) or a comma-separated string; None: every conv
            and pooling layer (one per stage for deep nets, see :func:`cnnlab.visualize.layers.default_layers`).
    """
    x = check_image(model, image)
    if x.shape[0] != 1:
        raise CnnlabError(f"feature_maps takes one image; got a batch of {x.shape[0]}")
    names = _layer_list(model, x, layers)
    captured = trace(model, x, eval_mode=False, keep=set(names)).kept()
    missing = [n for n in names if n not in captured]
    if missing:
        raise CnnlabError(f"layer {missing[0]!r} does not run in the model's forward pass; choose another")
    return {n: captured[n][0] for n in names}


def layer_titles(model: nn.Module, input_shape: Sequence[int], maps: dict[str, torch.Tensor]) -> dict[str, str]:
    """``conv_2: 14x14x4 => 14x14x8, k3 s1 p1: (14 + 2 - 3)/1 + 1 = 14`` (the lecture's comment style,
    the formula from :mod:`cnnlab.arithmetic` through :func:`cnnlab.trace.trace`)."""
    rows = {r.name: r for r in trace(model, tuple(input_shape)).layers()}
    titles = {}
    for name, fmap in maps.items():
        row = rows.get(name)
        if row is None:
            titles[name] = f"{name}: {hw_c(tuple(fmap.shape))} (block output)"
            continue
        text = f"{name} ({row.type}): {row.transition}"
        if row.kernel is not None:
            pad = row.padding if isinstance(row.padding, str) else row.padding[0]
            text += f", k{row.kernel[0]} s{row.stride[0]} p{pad}"
        if row.formula:
            text += f"\no = {row.formula}" if "=" in row.formula else f"\n{row.formula}"
        titles[name] = text
    return titles


def plot_feature_maps(pixels: torch.Tensor, fmap: torch.Tensor, title: str, path: str | Path,
                      max_channels: int = MAX_CHANNELS) -> Path:
    """One layer's maps as a grid (one colour scale for the layer), the input image first."""
    if fmap.dim() != 3:
        raise CnnlabError(f"{title.split(':')[0]} gives {hw_c(tuple(fmap.shape))}, not feature maps; choose a conv or "
                          f"pooling layer")
    shown = min(fmap.shape[0], max_channels)
    rows, cols = grid_shape(shown + 1)
    fig, axes = subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows + 0.6), squeeze=False)
    values = fmap[:shown].float().cpu()
    lo, hi = float(values.min()), float(values.max())
    show_image(axes[0][0], pixels, "input")
    for i, ax in enumerate(axes.flat[1:]):
        if i < shown:
            im = ax.imshow(values[i].numpy(), cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1,
                           interpolation="nearest")
            ax.set_title(f"channel {i}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("on" if i < shown else "off")
    if shown:
        fig.colorbar(im, ax=axes, fraction=0.02, pad=0.02)
    extra = f" (first {shown} of {fmap.shape[0]} channels)" if shown < fmap.shape[0] else ""
    fig.suptitle(title + extra, fontsize=9)
    return save_figure(fig, path, tight=True)


@dataclass
class FeatureMapsResult:
    paths: dict[str, Path]  # layer -> PNG
    titles: dict[str, str]
    caption: str  # which image
    description: str = ""  # which model

    def _repr_html_(self) -> str:
        """In a notebook: the pictures, one per layer, with their titles."""
        return figures_html(f"Feature maps: {self.description}, {self.caption}",
                            [(path, self.titles.get(name, name)) for name, path in self.paths.items()])


def show_featuremaps(subject, image=None, layers: str | Sequence[str] | None = None,
                     out_dir: str | Path | None = None) -> FeatureMapsResult:
    """``cnnlab show featuremaps``: one PNG per layer in ``out_dir`` (default ``RUN_DIR/visualize``)."""
    subject, image = resolve(subject, image)
    maps = feature_maps(subject.model, image.x, layers)
    titles = layer_titles(subject.model, subject.input_shape, maps)
    folder = Path(out_dir) if out_dir is not None else default_dir(subject)
    with writing(subject, folder, "show featuremaps") as output:  # into a run: its lock, recorded
        paths = {name: plot_feature_maps(image.pixels, fmap, titles[name], folder / f"featuremaps-{name}.png")
                 for name, fmap in maps.items()}
        output.record(*paths.values())
    return FeatureMapsResult(paths, titles, image.caption, subject.description)
