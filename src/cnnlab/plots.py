"""Matplotlib figures (Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(batch_losses: Sequence[float], history: Sequence, path: str | Path | IO[bytes],
                steps_per_epoch: int) -> str | Path | IO[bytes]:
    """The lecture notebooks' two plots: minibatch cost, and train/test accuracy per epoch, as a
    PNG written to ``path`` (a file name or a binary file)."""
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
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path


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
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------
# The Canziani et al. figures (cnnlab analyze)


def _pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    import numpy as np

    if len(xs) < 2:
        return float("nan")
    return float(np.corrcoef(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float))[0, 1])


def analysis_charts(report, out_dir: str | Path) -> dict[str, Path]:
    """Write the four charts of :mod:`cnnlab.analysis` as PNGs; returns {title: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    charts = [("Accuracy vs operations", "accuracy_vs_ops.png", _accuracy_vs_ops),
              ("Time per image vs batch size", "time_vs_batch.png", _time_vs_batch),
              ("Memory vs batch size", "memory_vs_batch.png", _memory_vs_batch),
              ("Operations vs time", "ops_vs_time.png", _ops_vs_time)]
    paths: dict[str, Path] = {}
    for title, filename, draw in charts:
        fig, ax = plt.subplots(figsize=(7.5, 5))
        draw(ax, report)
        paths[title] = _save(fig, out_dir / filename)
    return paths


def _accuracy_vs_ops(ax, report) -> None:
    """Canziani's first figure: top-1 accuracy vs operations, blob area proportional to parameters."""
    with_acc = [m for m in report.models if m.accuracy is not None]
    if not with_acc:
        ax.text(0.5, 0.5, "no accuracies known for these models\n(--runs DIR, or torchvision architectures)",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    biggest = max(m.params for m in with_acc)
    for m in with_acc:
        ax.scatter(m.flops / 1e9, m.accuracy, s=2000 * m.params / biggest + 20, alpha=0.45)
        ax.annotate(m.name, (m.flops / 1e9, m.accuracy), fontsize=8, ha="center", va="center")
    ax.set_xlabel("G-FLOPs per image (2 x MACs)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Accuracy vs operations (blob area ~ parameters)")
    ax.grid(alpha=0.3)


def _time_vs_batch(ax, report) -> None:
    for m in report.models:
        if m.timing:
            ax.plot([t["batch"] for t in m.timing], [t["ms_per_image"] for t in m.timing], marker="o", label=m.name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("ms per image")
    ax.set_title(f"Inference time per image vs batch size ({report.machine.get('device', '')})")
    ax.grid(alpha=0.3, which="both")
    if any(m.timing for m in report.models):
        ax.legend(fontsize=7, ncol=2)


def _memory_vs_batch(ax, report) -> None:
    """Canziani's memory chart: the inference peak (weights, batch and activations) per batch size,
    estimated (solid) and, where timed, measured (dashed, same colour)."""
    measured_any = False
    for m in report.models:
        sizes = [x["batch"] for x in m.memory]
        key = "inference_peak_bytes" if all("inference_peak_bytes" in x for x in m.memory) else "forward_bytes"
        line, = ax.plot(sizes, [x[key] / 2**20 for x in m.memory], marker="o", label=f"{m.name}")
        measured = [(x["batch"], x["measured_inference_peak_bytes"] / 2**20) for x in m.memory
                    if x.get("measured_inference_peak_bytes")]
        if measured:
            measured_any = True
            ax.plot(*zip(*measured), ls="--", marker="x", color=line.get_color(), alpha=0.8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("peak memory of inference (MiB)")
    how = "estimated (solid) and measured (dashed)" if measured_any else "estimated"
    ax.set_title(f"Inference memory vs batch size, {how}\n(weights, batch and activations)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)


def _ops_vs_time(ax, report) -> None:
    """Operations vs measured time at the largest batch, with Pearson's correlation coefficient."""
    timed = [m for m in report.models if m.timing]
    if not timed:
        ax.text(0.5, 0.5, "timing skipped (--no-timing)", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    batch = max(t["batch"] for t in timed[0].timing)
    xs, ys = [], []
    for m in timed:
        t = next((t for t in m.timing if t["batch"] == batch), m.timing[-1])
        xs.append(m.flops / 1e9)
        ys.append(t["ms_per_image"])
        ax.annotate(m.name, (xs[-1], ys[-1]), fontsize=7)
    ax.scatter(xs, ys)
    ax.set_title(f"Operations vs measured time (batch {batch}): Pearson r = {_pearson(xs, ys):.3f}")
    ax.set_xlabel("G-FLOPs per image")
    ax.set_ylabel("ms per image")
    ax.grid(alpha=0.3)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion(confusion, classes: Sequence[str], path: str | Path, title: str = "Confusion matrix") -> Path:
    """Counts per (true, predicted) class, rows normalised for the colour."""
    import numpy as np

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
    return _save(fig, Path(path))
