"""The figures of ``cnnlab show gradcam`` and ``cnnlab show rf``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

__all__ = ["plot_attributions", "plot_receptive_field"]


def _box_patch(box: tuple[int, int, int, int], color: str = "red"):
    from matplotlib.patches import Rectangle

    top, left, bottom, right = box
    # pixel i spans [i - 0.5, i + 0.5) in imshow's coordinates
    return Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False, edgecolor=color, linewidth=2)


def plot_attributions(pixels: torch.Tensor, panels: Sequence[tuple[str, torch.Tensor, str]], title: str,
                      path: str | Path, strip: Sequence[tuple[str, torch.Tensor]] = ()) -> Path:
    """The input, then one panel per method (``(title, map (H, W), "overlay"|"heat")``); below, if
    given, the per-layer Grad-CAM strip (``(layer, cam)``), shallow to deep."""
    from cnnlab.visualize.plotting import overlay, plt, save, show_image

    cols = max(len(panels) + 1, len(strip))
    rows = 2 if strip else 1
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.6 * rows + 0.4), squeeze=False)
    show_image(axes[0][0], pixels, "input")
    for ax, (name, heat, kind) in zip(axes[0][1:], panels):
        if kind == "overlay":
            overlay(ax, pixels, heat, name)
        else:
            h = heat.detach().float().cpu()
            ax.imshow((h / h.max()).numpy() if float(h.max()) > 0 else h.numpy(), cmap="inferno", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(name, fontsize=8)
    for ax in axes[0][len(panels) + 1:]:
        ax.axis("off")
    if strip:
        for ax, (name, cam) in zip(axes[1], strip):
            overlay(ax, pixels, cam, f"Grad-CAM at {name}")
        for ax in axes[1][len(strip):]:
            ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return save(fig, path)


def plot_receptive_field(pixels: torch.Tensor, erf: torch.Tensor, layer: str, cell: tuple[int, int],
                         fmap: torch.Tensor, box: tuple[int, int, int, int], rf: Any, path: str | Path) -> Path:
    """Three panels: the layer's feature map (mean over channels) with the cell, the input with the
    cell's theoretical box, the effective receptive field (Luo et al. 2016) with the same box."""
    from matplotlib.patches import Rectangle

    from cnnlab.visualize.plotting import plt, save, show_image

    fig, (ax_map, ax_img, ax_erf) = plt.subplots(1, 3, figsize=(10, 3.8))
    _, h, w = fmap.shape
    ax_map.imshow(fmap.float().mean(0).cpu().numpy(), cmap="viridis", interpolation="nearest")
    ax_map.add_patch(Rectangle((cell[1] - 0.5, cell[0] - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax_map.set_xticks(range(w)) if w <= 16 else ax_map.set_xticks([])
    ax_map.set_yticks(range(h)) if h <= 16 else ax_map.set_yticks([])
    ax_map.set_title(f"{layer}: {h}x{w}x{fmap.shape[0]} (mean of the maps), cell {cell}", fontsize=8)
    top, left, bottom, right = box
    if rf is None:
        text = "sees the whole input (after global pooling or a linear layer)"
    else:
        text = (f"RF {rf.size[0]}x{rf.size[1]}, jump {rf.jump[0]}: rows {top}..{bottom - 1}, cols {left}..{right - 1}")
    show_image(ax_img, pixels, text)
    ax_img.add_patch(_box_patch(box))
    peak = float(erf.max())
    ax_erf.imshow((erf / peak).cpu().numpy() if peak > 0 else erf.cpu().numpy(), cmap="inferno", vmin=0, vmax=1)
    ax_erf.add_patch(_box_patch(box, "cyan"))
    ax_erf.set_xticks([])
    ax_erf.set_yticks([])
    ax_erf.set_title("effective RF: mean |d cell / d input| (Luo et al. 2016)", fontsize=8)
    fig.suptitle(f"Receptive field of {layer} cell {cell}: theoretical box (arithmetic) vs effective (gradients)",
                 fontsize=9)
    return save(fig, path)
