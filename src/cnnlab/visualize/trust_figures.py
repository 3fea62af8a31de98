"""The pictures of ``cnnlab trust`` (through :mod:`cnnlab.figures`, the one module that touches
pyplot): the cascade of Adebayo et al. (rows: methods, columns: the layers randomized so far), its
scores per step, and the deletion / insertion curves of Petsiuk et al."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch

from cnnlab.figures import save_figure, show_image, subplots
from cnnlab.visualize.trust_checks import METHOD_TITLES, StepScore
from cnnlab.visualize.trust_metrics import Curves

__all__ = ["plot_cascade", "plot_cascade_scores", "plot_faithfulness"]

REFERENCE_STYLE = {"random": ("0.45", "--"), "centre": ("0.65", ":")}


def _heat(ax, m: torch.Tensor, title: str) -> None:
    h = m.detach().float().cpu().abs()
    top = float(h.max())
    ax.imshow((h / top).numpy() if top > 0 else h.numpy(), cmap="inferno", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7)


def plot_cascade(pixels: torch.Tensor, shown: Mapping[str, Sequence[torch.Tensor]],
                 scores: Mapping[str, Sequence[StepScore]], path: str | Path, title: str = "") -> Path:
    """Rows: methods; columns: the input, the original map, then the map after each cascade step
    (the layers from the logits down re-initialised), titled with the mean rank correlation."""
    methods = list(shown)
    cols = 1 + max(len(v) for v in shown.values())
    fig, axes = subplots(len(methods), cols, figsize=(1.5 * cols + 0.6, 1.7 * len(methods) + 0.7), squeeze=False)
    for row, method in enumerate(methods):
        show_image(axes[row][0], pixels, "input" if row == 0 else None)
        axes[row][0].set_ylabel(METHOD_TITLES.get(method, method), fontsize=8)
        for col, (m, s) in enumerate(zip(shown[method], scores[method]), start=1):
            head = ("original" if col == 1 else f"+ {s.label}") if row == 0 else ""
            _heat(axes[row][col], m, f"{head}\nrho {s.spearman:.2f}" if head else f"rho {s.spearman:.2f}")
        for ax in axes[row][1 + len(shown[method]):]:
            ax.axis("off")
    fig.suptitle(title or "Cascading randomization (Adebayo et al. 2018): layers re-initialised from the logits "
                          "down", fontsize=9)
    return save_figure(fig, path, tight=True)


def plot_cascade_scores(cascade: Mapping[str, Sequence[StepScore]],
                        independent: Mapping[str, Sequence[StepScore]] | None, path: str | Path) -> Path:
    """Spearman and SSIM against the original map per step (mean, bars: one standard deviation over
    the images): cascading solid, independent dashed."""
    fig, axes = subplots(1, 2, figsize=(10, 3.4))
    for ax, key in zip(axes, ("spearman", "ssim")):
        for method, rows in cascade.items():
            line = ax.errorbar(range(len(rows)), [getattr(r, key) for r in rows],
                               yerr=[getattr(r, key + "_std") for r in rows], marker="o", ms=3, capsize=2,
                               label=f"{METHOD_TITLES.get(method, method)} (cascading)")
            if independent and independent.get(method):
                ind = independent[method]
                ax.plot(range(1, len(ind) + 1), [getattr(r, key) for r in ind], ls="--", marker="x", ms=3,
                        color=line[0].get_color(), label=f"{METHOD_TITLES.get(method, method)} (independent)")
        labels = ["original", *[f"+ {r.label}" for r in next(iter(cascade.values()))[1:]]]
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
        ax.set_ylim(-0.3, 1.05)
        ax.axhline(0, color="0.8", lw=0.8)
        ax.set_title({"spearman": "rank correlation of |map| with the original", "ssim": "SSIM with the original"}[key],
                     fontsize=9)
    axes[0].legend(fontsize=7)
    return save_figure(fig, path, tight=True)


def plot_faithfulness(curves: Mapping[str, Curves], baseline: str, path: str | Path) -> Path:
    """Mean deletion and insertion curves of each method, a random map and a centre-bias map; the
    legend holds each area (deletion: lower is better; insertion: higher is better)."""
    fig, axes = subplots(1, 2, figsize=(10, 3.6))
    for ax, kind in zip(axes, ("deletion", "insertion")):
        for name, c in curves.items():
            curve = getattr(c, kind).mean(0)
            xs = torch.linspace(0, 1, curve.numel())
            color, style = REFERENCE_STYLE.get(name, (None, "-"))
            ax.plot(xs.numpy(), curve.numpy(), ls=style, color=color,
                    label=f"{METHOD_TITLES.get(name, name + ' map')}: area {float(getattr(c, kind + '_area').mean()):.3f}")
        better = "lower" if kind == "deletion" else "higher"
        ax.set_title(f"{kind} ({baseline} baseline): area {better} is better", fontsize=9)
        ax.set_xlabel("fraction of pixels " + ("removed" if kind == "deletion" else "put back"), fontsize=8)
        ax.set_ylabel("probability of the class", fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
    return save_figure(fig, path, tight=True)
