"""cnnlab's one picture layer: matplotlib with the Agg backend (no display needed), set here once
and before pyplot is imported anywhere in cnnlab -- no other module imports ``matplotlib.pyplot``.

- :func:`subplots`: a new figure (``plt.subplots``); :func:`close`: one dropped unsaved
- :func:`figure_to_png` / :func:`png_data_url`: a figure (or PNG bytes) in memory, as bytes or as a
  ``data:image/png;base64,...`` URL for a self-contained page; no temporary files
- :func:`save_figure`: the PNG written atomically (:func:`cnnlab.storage.atomic_write`), the figure closed
- pixels: :func:`image_array`, :func:`uint8_image`, :func:`colorize`, :func:`array_to_png`; axes:
  :func:`show_image`, :func:`overlay`, :func:`grid_shape`
- the training figures: :func:`plot_curves`, :func:`plot_init_experiment`, :func:`plot_confusion`,
  :func:`plot_lr_find` (the learning-rate range test)
  (the analysis charts are in :mod:`cnnlab.analysis.charts`, the visualize figures beside their
  subjects in :mod:`cnnlab.visualize`)
- interpretation and comparison: :func:`reliability_figure`, :func:`gallery_figure` (top losses
  with Grad-CAM), :func:`compare_curves_figure` (several runs' curves overlaid)
"""

from __future__ import annotations

import base64
import io
import math
import os
from pathlib import Path
from typing import IO, Sequence

import matplotlib

if "inline" not in os.environ.get("MPLBACKEND", ""):  # Jupyter's inline backend stays (plt.show() in notebooks)
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from PIL import Image  # noqa: E402

from cnnlab.storage import atomic_write  # noqa: E402

__all__ = ["subplots", "close", "figure_to_png", "png_data_url", "save_figure", "image_array", "uint8_image",
           "show_image", "overlay", "grid_shape", "colorize", "array_to_png", "heat_overlay", "plot_curves",
           "plot_init_experiment", "confusion_figure", "plot_confusion", "plot_lr_find", "reliability_figure",
           "gallery_figure", "compare_curves_figure"]


def subplots(*args, **kwargs):
    """``(figure, axes)``: :func:`matplotlib.pyplot.subplots` on the Agg backend."""
    return plt.subplots(*args, **kwargs)


def close(fig) -> None:
    """Free a figure that will not be saved (one drawn half before an error)."""
    plt.close(fig)


def figure_to_png(fig, *, dpi: int = 100, tight: bool = False) -> bytes:
    """The figure as PNG bytes (``tight``: cropped to its contents); the figure is closed."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def png_data_url(picture, **kwargs) -> str:
    """``data:image/png;base64,...`` of PNG bytes, or of a figure (closed; ``kwargs`` as :func:`figure_to_png`)."""
    png = bytes(picture) if isinstance(picture, (bytes, bytearray, memoryview)) else figure_to_png(picture, **kwargs)
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def save_figure(fig, path: str | Path | IO[bytes], *, dpi: int = 100, tight: bool = False) -> str | Path | IO[bytes]:
    """Write the figure as a PNG to ``path`` (atomically: the old file or the new one, never a part)
    or into a binary file; the figure is closed. Returns ``path``."""
    png = figure_to_png(fig, dpi=dpi, tight=tight)
    if hasattr(path, "write"):
        path.write(png)
        return path
    path = Path(path)
    atomic_write(path, png, parents=True)
    return path


# ---------------------------------------------------------------------------------------
# Pixels and axes


def image_array(pixels) -> np.ndarray:
    """(C, H, W) tensor in [0, 1] -> what ``imshow`` takes: (H, W) for gray, (H, W, 3) for colour."""
    a = pixels.detach().float().cpu().clamp(0, 1)
    if a.dim() == 2:
        return a.numpy()
    if a.shape[0] == 1:
        return a[0].numpy()
    return a[:3].permute(1, 2, 0).numpy()


def uint8_image(pixels) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) or (H, W, 3) uint8."""
    return (image_array(pixels) * 255).round().astype(np.uint8)


def show_image(ax, pixels, title: str | None = None) -> None:
    array = image_array(pixels)
    ax.imshow(array, cmap="gray" if array.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def overlay(ax, pixels, heat, title: str | None = None, alpha: float = 0.5, cmap: str = "jet") -> None:
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


def colorize(values, cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """(H, W) values (a tensor) -> (H, W, 3) uint8 through a matplotlib colour map (min-max unless given)."""
    v = values.detach().float().cpu().numpy()
    lo = float(v.min()) if vmin is None else vmin
    hi = float(v.max()) if vmax is None else vmax
    scaled = np.clip((v - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(v)
    rgba = matplotlib.colormaps[cmap](scaled)
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def array_to_png(array: np.ndarray, scale: int = 1, *, fast: bool = False) -> bytes:
    """A PNG of an (H, W) or (H, W, 3) uint8 array, each pixel ``scale`` x ``scale`` (no smoothing).
    ``fast``: light compression (an app answering while you draw), else the smallest file."""
    image = Image.fromarray(array)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **({"compress_level": 1} if fast else {"optimize": True}))
    return buffer.getvalue()


def heat_overlay(pixels, heat, cmap: str = "jet", alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8: the image (C, H, W) in [0, 1], in gray, blended with ``heat`` (H, W) in [0, 1]
    through a colour map (Grad-CAM on the image)."""
    gray = pixels.detach().float().cpu().mean(0, keepdim=True).expand(3, -1, -1).permute(1, 2, 0).numpy() * 255
    mixed = (1 - alpha) * gray + alpha * colorize(heat, cmap, 0.0, 1.0).astype("float32")
    return mixed.round().clip(0, 255).astype("uint8")


# ---------------------------------------------------------------------------------------
# Training figures


def plot_curves(batch_losses: Sequence[float], history: Sequence, path: str | Path | IO[bytes],
                steps_per_epoch: int) -> str | Path | IO[bytes]:
    """The lecture notebooks' two plots: minibatch cost, and train/test accuracy per epoch, as a
    PNG written to ``path`` (a file name or a binary file)."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    steps = range(1, len(batch_losses) + 1)
    ax_loss.plot(steps, batch_losses, lw=0.6, alpha=0.5, label="minibatch cost")
    window = max(1, steps_per_epoch // 5)
    if len(batch_losses) >= window > 1:
        smooth = np.convolve(np.asarray(batch_losses), np.ones(window) / window, mode="valid")
        ax_loss.plot(range(window, len(batch_losses) + 1), smooth, lw=1.5, label=f"running mean ({window} batches)")
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.set_title("Minibatch cost")
    ax_loss.legend()
    epochs = [r.epoch for r in history]
    ax_acc.plot(epochs, [r.train_acc for r in history], marker="o", label="train")
    for key, marker in (("val_acc", "^"), ("test_acc", "s")):
        points = [(r.epoch, getattr(r, key)) for r in history if getattr(r, key) is not None]
        if points:
            ax_acc.plot(*zip(*points), marker=marker, label=key.removesuffix("_acc"))
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_title("Accuracy per epoch")
    ax_acc.legend()
    ax_acc.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def plot_init_experiment(rows: Sequence, path: str | Path) -> Path:
    """Train and test accuracy per epoch, one line per weight initialisation."""
    fig, (ax_train, ax_test) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for row in rows:
        epochs = [r.epoch for r in row.history]
        ax_train.plot(epochs, [r.train_acc for r in row.history], marker="o", ms=3, label=row.init)
        ax_test.plot(epochs, [r.monitored for r in row.history], marker="o", ms=3, label=row.init)
    for ax, title in ((ax_train, "Train accuracy"), (ax_test, "Test accuracy")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    ax_train.set_ylabel("accuracy (%)")
    ax_test.legend(title="init", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def confusion_figure(confusion, classes: Sequence[str], title: str = "Confusion matrix"):
    """Counts per (true, predicted) class, rows normalised for the colour."""
    cm = np.asarray(confusion)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(max(4, 0.55 * k + 2), max(3.5, 0.55 * k + 1.5)))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), classes, rotation=90 if k > 10 else 0, fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_confusion(confusion, classes: Sequence[str], path: str | Path, title: str = "Confusion matrix") -> Path:
    """:func:`confusion_figure` written to ``path``."""
    return save_figure(confusion_figure(confusion, classes, title), path)


def plot_lr_find(lrs: Sequence[float], losses: Sequence[float], smoothed: Sequence[float],
                 suggestions: dict[str, float], path: str | Path | IO[bytes], *, window: tuple[int, int] | None = None,
                 title: str = "Learning-rate range test") -> str | Path | IO[bytes]:
    """The range test's loss against the learning rate (log axis): each step's loss faint, the
    smoothed curve solid (the part the rules read, ``window``, drawn thicker), and each rule's
    suggestion marked on the smoothed curve and labelled with its value."""
    x, y, raw = np.asarray(lrs, dtype=float), np.asarray(smoothed, dtype=float), np.asarray(losses, dtype=float)
    first, stop = window if window is not None else (0, len(x))
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ax.plot(x, raw, lw=0.7, alpha=0.35, color="tab:gray", label="minibatch loss")
    ax.plot(x, y, lw=1.2, color="tab:blue", alpha=0.6)
    ax.plot(x[first:stop], y[first:stop], lw=2.2, color="tab:blue", label="smoothed loss (rules read this part)")
    markers = ("o", "s", "^", "D", "v")
    for i, (rule, lr) in enumerate(suggestions.items()):
        at = float(np.interp(np.log(lr), np.log(x), y))
        ax.plot([lr], [at], marker=markers[i % len(markers)], ms=9, ls="none", color=f"C{i + 1}",
                markeredgecolor="black", label=f"{rule}: {lr:.2e}", zorder=3)
        ax.annotate(f"{rule}\n{lr:.2e}", (lr, at), textcoords="offset points", xytext=(0, 12 + 22 * (i % 2)),
                    ha="center", fontsize=8, color=f"C{i + 1}")
    seen = y[first:stop] if stop - first >= 2 else y
    spread = max(float(seen.max() - seen.min()), 1e-3)
    ax.set_ylim(float(seen.min()) - 0.15 * spread, float(seen.max()) + 0.35 * spread)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


# ---------------------------------------------------------------------------------------
# Interpretation and comparison figures (cnnlab interpret, cnnlab compare)


def reliability_figure(bins: Sequence[dict], title: str = "Reliability diagram", after: Sequence[dict] | None = None,
                       ece: float | None = None, ece_after: float | None = None):
    """Accuracy per confidence bin (bars; ``bins`` as :func:`cnnlab.runs.interpret.reliability_bins`),
    the gap to the diagonal in red, the share of items per bin below; ``after``: the same bins
    after temperature scaling, drawn as a line."""
    fig, (ax, ax_count) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    lows = np.array([b["low"] for b in bins])
    width = np.array([b["high"] - b["low"] for b in bins])
    acc = np.array([b["accuracy"] if b["count"] else 0.0 for b in bins])
    conf = np.array([b["confidence"] if b["count"] else 0.0 for b in bins])
    full = np.array([b["count"] > 0 for b in bins])
    ax.bar(lows, acc, width=width, align="edge", edgecolor="black", color="#4c72b0", label="accuracy")
    ax.bar(lows[full], (conf - acc)[full], bottom=acc[full], width=width[full], align="edge", color="#dd4444",
           alpha=0.35, edgecolor="#dd4444", hatch="//", label="gap to confidence")
    if after is not None:
        points = [(b["confidence"], b["accuracy"]) for b in after if b["count"]]
        if points:
            ax.plot(*zip(*points), marker="o", color="#2ca02c", label="after temperature scaling")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    text = "" if ece is None else f"ECE {100 * ece:.2f}%" + ("" if ece_after is None else f" -> {100 * ece_after:.2f}%")
    ax.set_title(f"{title}\n{text}" if text else title, fontsize=10)
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left")
    counts = np.array([b["count"] for b in bins], dtype=float)
    ax_count.bar(lows, counts / max(counts.sum(), 1), width=width, align="edge", color="gray", edgecolor="black")
    ax_count.set_xlabel("confidence (max softmax probability)")
    ax_count.set_ylabel("share of items")
    fig.tight_layout()
    return fig


def gallery_figure(items: Sequence[tuple], title: str = "Top losses", max_cols: int = 4):
    """One panel pair per item ``(pixels (C, H, W) in [0, 1], Grad-CAM (H, W) in [0, 1], caption)``:
    the image, and the image with its Grad-CAM over it."""
    rows, cols = grid_shape(len(items), max_cols)
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(2.1 * 2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for n, (pixels, cam, caption) in enumerate(items):
        r, c = divmod(n, cols)
        show_image(axes[r, 2 * c], pixels, caption)
        overlay(axes[r, 2 * c + 1], pixels, cam, "Grad-CAM")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def compare_curves_figure(curves: Sequence[tuple[str, dict]]):
    """Training curves of several runs overlaid: (label, columns as
    :func:`cnnlab.runs.compare.read_curves`) each; accuracy (train dotted, val dashed, test solid)
    and train loss per epoch."""
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    for n, (label, c) in enumerate(curves):
        color = f"C{n % 10}"
        ax_acc.plot(c["epoch"], c["train_acc"], ":", color=color, marker=".", label=f"{label} train")
        for key, style in (("val_acc", "--"), ("test_acc", "-")):
            points = [(e, v) for e, v in zip(c["epoch"], c[key]) if v is not None]
            if points:
                ax_acc.plot(*zip(*points), style, color=color, marker="o", ms=3,
                            label=f"{label} {key.removesuffix('_acc')}")
        ax_loss.plot(c["epoch"], c["train_loss"], color=color, marker="o", ms=3, label=label)
    for ax in (ax_acc, ax_loss):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_title("Accuracy per epoch")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend(fontsize=7)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.set_title("Training loss per epoch")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend(fontsize=7)
    fig.tight_layout()
    return fig
