"""Matplotlib helpers shared by the pictures (Agg backend: no display needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

__all__ = ["plt", "image_array", "show_image", "overlay", "save", "grid_shape", "png_bytes", "colorize"]


def image_array(pixels: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> what ``imshow`` takes: (H, W) for gray, (H, W, 3) for colour."""
    a = pixels.detach().float().cpu().clamp(0, 1)
    if a.dim() == 2:
        return a.numpy()
    if a.shape[0] == 1:
        return a[0].numpy()
    return a[:3].permute(1, 2, 0).numpy()


def show_image(ax, pixels: torch.Tensor, title: str | None = None) -> None:
    array = image_array(pixels)
    ax.imshow(array, cmap="gray" if array.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def overlay(ax, pixels: torch.Tensor, heat: torch.Tensor, title: str | None = None, alpha: float = 0.5,
            cmap: str = "jet") -> None:
    """The image in gray with a heat map (H, W) in [0, 1] over it."""
    gray = pixels.detach().float().cpu().mean(0).numpy()
    ax.imshow(gray, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.imshow(heat.detach().float().cpu().numpy(), cmap=cmap, vmin=0, vmax=1, alpha=alpha, interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def grid_shape(n: int, max_cols: int = 8) -> tuple[int, int]:
    cols = min(max_cols, max(1, math.ceil(math.sqrt(n))))
    return math.ceil(n / cols), cols


def save(fig, path: str | Path, dpi: int = 100) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def colorize(values: torch.Tensor, cmap: str = "viridis", vmin: float | None = None,
             vmax: float | None = None) -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8 through a matplotlib colour map (min-max unless given)."""
    v = values.detach().float().cpu()
    lo = float(v.min()) if vmin is None else vmin
    hi = float(v.max()) if vmax is None else vmax
    scaled = ((v - lo) / (hi - lo)).clamp(0, 1) if hi > lo else torch.zeros_like(v)
    rgba = matplotlib.colormaps[cmap](scaled.numpy())
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def png_bytes(array: np.ndarray, scale: int = 1) -> bytes:
    """A PNG of an (H, W) or (H, W, 3) uint8 array, each pixel ``scale`` x ``scale`` (no smoothing)."""
    import io

    from PIL import Image

    image = Image.fromarray(array)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def uint8_image(pixels: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) or (H, W, 3) uint8."""
    return (image_array(pixels) * 255).round().astype(np.uint8)


def titles_fit(titles: Sequence[str], width: int = 60) -> list[str]:
    return [t if len(t) <= width else t[: width - 3] + "..." for t in titles]
