"""The four charts of ``cnnlab analyze`` after Canziani, Paszke & Culurciello (2016): accuracy vs
operations, time per image vs batch size, memory vs batch size, operations vs time. Drawn with
:mod:`cnnlab.figures`; written as PNGs (``--charts DIR``) or embedded in the HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from cnnlab.analysis.charts_canziani import (CANZIANI_CHARTS, draw_figure1, draw_figure2, draw_memory_vs_batch,
                                             draw_time_vs_batch)
from cnnlab.figures import close, figure_to_png, save_figure, subplots

__all__ = ["CHARTS", "chart_figures", "chart_pngs", "analysis_charts"]

CHARTS = (("Accuracy vs operations", "accuracy_vs_ops.png"), ("Time per image vs batch size", "time_vs_batch.png"),
          ("Memory vs batch size", "memory_vs_batch.png"), ("Operations vs time", "ops_vs_time.png"))


def chart_figures(report) -> Iterator[tuple[str, str, object]]:
    """``(title, file name, figure)`` of each chart, one at a time (each figure is the caller's to close);
    with ``--canziani`` / ``--modern`` the paper's figures with its values beside ours, then operations vs time."""
    charts, draws = CHARTS, (_accuracy_vs_ops, _time_vs_batch, _memory_vs_batch, _ops_vs_time)
    if report.canziani is not None:
        charts = CANZIANI_CHARTS + CHARTS[3:]
        draws = (draw_figure1, draw_figure2, draw_time_vs_batch, draw_memory_vs_batch, _ops_vs_time)
    for (title, filename), draw in zip(charts, draws):
        fig, ax = subplots(figsize=(7.5, 5))
        try:
            draw(ax, report)
            fig.tight_layout()
        except BaseException:
            close(fig)
            raise
        yield title, filename, fig


def chart_pngs(report) -> dict[str, bytes]:
    """{title: PNG bytes} of the charts, in memory."""
    return {title: figure_to_png(fig) for title, _, fig in chart_figures(report)}


def analysis_charts(report, out_dir: str | Path) -> dict[str, Path]:
    """Write the charts of :mod:`cnnlab.analysis` as PNGs into ``out_dir``; returns {title: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return {title: save_figure(fig, out_dir / filename) for title, filename, fig in chart_figures(report)}


def _pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    if len(xs) < 2:
        return float("nan")
    return float(np.corrcoef(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float))[0, 1])


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
