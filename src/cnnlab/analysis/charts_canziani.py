"""The figures of ``cnnlab analyze --canziani`` / ``--modern``: Canziani et al.'s Figure 1 (top-1 vs
operations, blob area ~ parameters), operations vs parameters, time vs batch size and memory vs batch
size on this machine, each with the paper's own values as hollow markers where the data file has them.
Each chart draws exactly the data its ``*_data`` function returns (tests read the axes back)."""

from __future__ import annotations

from typing import Any

from cnnlab.analysis.canziani import CANZIANI_NETWORKS, paper_networks

__all__ = ["CANZIANI_CHARTS", "figure1_data", "figure2_data", "draw_figure1", "draw_figure2",
           "draw_time_vs_batch", "draw_memory_vs_batch", "OURS_PAPER", "OURS_LATER", "PAPER"]

CANZIANI_CHARTS = (("Figure 1 redrawn: top-1 vs operations", "canziani_fig1_top1_vs_ops.png"),
                   ("Operations vs parameters", "canziani_ops_vs_params.png"),
                   ("Time per image vs batch size", "canziani_time_vs_batch.png"),
                   ("Memory vs batch size", "canziani_memory_vs_batch.png"))
OURS_PAPER, OURS_LATER, PAPER = "cnnlab: the paper's networks", "cnnlab: later networks", "the paper (hollow)"


def _group(m) -> str:
    return OURS_PAPER if m.name in CANZIANI_NETWORKS else OURS_LATER


def figure1_data(report) -> dict[str, Any]:
    """Points of the redrawn Figure 1: ``ours`` (name, G-FLOPs = 2 x MACs, top-1, parameters, group) for the
    networks with an accuracy, and ``paper`` (name, x, top-1, parameters, ``x_from``): the paper's G-Ops where
    transcribed, else the cnnlab network's G-FLOPs (``x_from == "cnnlab"``)."""
    ours = [{"name": m.name, "x": m.flops / 1e9, "y": m.accuracy, "params": m.params, "group": _group(m)}
            for m in report.models if m.accuracy is not None]
    by_name = {m.name: m for m in report.models}
    paper = []
    for p in paper_networks():
        m = by_name.get(p["cnnlab"]) if p["cnnlab"] else None
        if p["top1"] is None or (p["gops"] is None and m is None):
            continue
        x, x_from = (p["gops"], "paper") if p["gops"] is not None else (m.flops / 1e9, "cnnlab")
        paper.append({"name": p["paper_name"], "x": x, "y": p["top1"], "params": p["params"], "x_from": x_from})
    return {"ours": ours, "paper": paper}


def figure2_data(report) -> dict[str, Any]:
    """Operations (G-FLOPs) vs parameters (millions): ours, and the paper's where both are transcribed."""
    ours = [{"name": m.name, "x": m.params / 1e6, "y": m.flops / 1e9, "group": _group(m)} for m in report.models]
    paper = [{"name": p["paper_name"], "x": p["params"] / 1e6, "y": p["gops"]} for p in paper_networks()
             if p["params"] is not None and p["gops"] is not None]
    return {"ours": ours, "paper": paper}


def _sizes(params: list, biggest: float) -> list[float]:
    return [2000 * (p or 0) / biggest + 20 if p else 60 for p in params]


def draw_figure1(ax, report) -> dict[str, Any]:
    """Top-1 vs operations, blob area ~ parameters; returns the data drawn (:func:`figure1_data`)."""
    data = figure1_data(report)
    if not data["ours"] and not data["paper"]:
        ax.text(0.5, 0.5, "no accuracies known for these networks", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return data
    biggest = max([o["params"] for o in data["ours"]] + [p["params"] or 0 for p in data["paper"]] + [1])
    for group, colour in ((OURS_PAPER, "tab:blue"), (OURS_LATER, "tab:orange")):
        pts = [o for o in data["ours"] if o["group"] == group]
        if pts:
            ax.scatter([o["x"] for o in pts], [o["y"] for o in pts], s=_sizes([o["params"] for o in pts], biggest),
                       alpha=0.45, color=colour, label=group)
            for o in pts:
                ax.annotate(o["name"].removeprefix("torchvision:"), (o["x"], o["y"]), fontsize=7, ha="center",
                            va="center")
    if data["paper"]:
        ax.scatter([p["x"] for p in data["paper"]], [p["y"] for p in data["paper"]],
                   s=_sizes([p["params"] for p in data["paper"]], biggest), facecolors="none", edgecolors="black",
                   linewidths=1.2, label=PAPER)
    placed = any(p["x_from"] == "cnnlab" for p in data["paper"])
    ax.set_xlabel("G-FLOPs per image (2 x MACs; the paper's axis: G-Ops)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Canziani et al. Figure 1 redrawn: top-1 vs operations (area ~ parameters)"
                 + ("\nhollow: the paper's top-1, drawn at cnnlab's operations where its own are not transcribed"
                    if placed else ""), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", markerscale=0.3)
    return data


def draw_figure2(ax, report) -> dict[str, Any]:
    """Operations vs parameters (log-log); returns the data drawn (:func:`figure2_data`)."""
    data = figure2_data(report)
    for group, colour in ((OURS_PAPER, "tab:blue"), (OURS_LATER, "tab:orange")):
        pts = [o for o in data["ours"] if o["group"] == group]
        if pts:
            ax.scatter([o["x"] for o in pts], [o["y"] for o in pts], color=colour, label=group)
            for o in pts:
                ax.annotate(o["name"].removeprefix("torchvision:"), (o["x"], o["y"]), fontsize=7)
    if data["paper"]:
        ax.scatter([p["x"] for p in data["paper"]], [p["y"] for p in data["paper"]], facecolors="none",
                   edgecolors="black", label=PAPER)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("G-FLOPs per image (2 x MACs)")
    note = "" if data["paper"] else "\n(the paper's operations and parameters are not transcribed: ours alone)"
    ax.set_title("Operations vs parameters" + note, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    if data["ours"]:
        ax.legend(fontsize=7)
    return data


def _setup_note() -> str:
    return "\nthe paper's curves (Jetson TX1 GPU, Torch7) are not transcribed: this machine alone"


def draw_time_vs_batch(ax, report) -> None:
    for m in report.models:
        if m.timing:
            ax.plot([t["batch"] for t in m.timing], [t["ms_per_image"] for t in m.timing], marker="o",
                    label=m.name.removeprefix("torchvision:"))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("ms per image")
    ax.set_title(f"Inference time per image vs batch size ({report.machine.get('device', '')})" + _setup_note(),
                 fontsize=9)
    ax.grid(alpha=0.3, which="both")
    if any(m.timing for m in report.models):
        ax.legend(fontsize=6, ncol=2)
    else:
        ax.text(0.5, 0.5, "timing skipped (--no-timing)", ha="center", va="center", transform=ax.transAxes)


_MEMORY = {"measured_inference_peak_bytes": "measured inference peak", "inference_peak_bytes":
           "estimated inference peak", "forward_bytes": "activations, every output of the forward pass"}


def _memory_key(m) -> str:
    return next(k for k in _MEMORY if all(x.get(k) for x in m.memory) or k == "forward_bytes")


def draw_memory_vs_batch(ax, report) -> None:
    kinds = set()
    for m in report.models:
        key = _memory_key(m)
        kinds.add(_MEMORY[key])
        ax.plot([x["batch"] for x in m.memory], [x[key] / 2**20 for x in m.memory], marker="o",
                label=m.name.removeprefix("torchvision:"))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("memory of inference (MiB)")
    ax.set_title(f"Memory vs batch size: {'; '.join(sorted(kinds))}" + _setup_note(), fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6, ncol=2)
