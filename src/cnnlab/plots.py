"""Matplotlib figures (Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(batch_losses: Sequence[float], history: Sequence, path: str | Path, steps_per_epoch: int) -> Path:
    """The lecture notebooks' two plots: minibatch cost, and train/test accuracy per epoch."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    steps = range(1, len(batch_losses) + 1)
    ax_loss.plot(steps, batch_losses, lw=0.6, alpha=0.5, label="minibatch cost")
    window = max(1, steps_per_epoch // 5)
    if len(batch_losses) >= window > 1:
        import numpy as np

        smooth = np.convolve(np.asarray(batch_losses), np.ones(window) / window, mode="valid")
        ax_loss.plot(range(window, len(batch_losses) + 1), smooth, lw=1.5, label=f"running mean ({window} batches)")
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.set_title("Minibatch cost")
    ax_loss.legend()
    epochs = [r.epoch for r in history]
    ax_acc.plot(epochs, [r.train_acc for r in history], marker="o", label="train")
    ax_acc.plot(epochs, [r.test_acc for r in history], marker="s", label="test")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_title("Accuracy per epoch")
    ax_acc.legend()
    ax_acc.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_init_experiment(rows: Sequence, path: str | Path) -> Path:
    """Train and test accuracy per epoch, one line per weight initialisation."""
    fig, (ax_train, ax_test) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for row in rows:
        epochs = [r.epoch for r in row.history]
        ax_train.plot(epochs, [r.train_acc for r in row.history], marker="o", ms=3, label=row.init)
        ax_test.plot(epochs, [r.test_acc for r in row.history], marker="o", ms=3, label=row.init)
    for ax, title in ((ax_train, "Train accuracy"), (ax_test, "Test accuracy")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    ax_train.set_ylabel("accuracy (%)")
    ax_test.legend(title="init", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
