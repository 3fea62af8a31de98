"""The figures of ``cnnlab analyze --canziani`` / ``--modern``: Canziani et al.'s Figure 1 (top-1 vs
operations, blob area ~ parameters), operations vs parameters, time vs batch size and memory vs batch
size on this machine, each with the paper's own values (``data/canziani2016.json``) beside ours: hollow
markers, dashed curves. Each chart draws exactly the data its ``*_data`` function returns (tests read the
axes back)."""

from __future__ import annotations

from typing import Any

from cnnlab.analysis.canziani import CANZIANI_NETWORKS, paper_networks

__all__ = ["CANZIANI_CHARTS", "figure1_data", "figure2_data", "time_vs_batch_data", "memory_vs_batch_data",
           "draw_figure1", "draw_figure2", "draw_time_vs_batch", "draw_memory_vs_batch", "OURS_PAPER", "OURS_LATER",
           "PAPER", "PAPER_CURVES"]

CANZIANI_CHARTS = (("Figure 1 redrawn: top-1 vs operations", "canziani_fig1_top1_vs_ops.png"),
                   ("Operations vs parameters", "canziani_ops_vs_params.png"),
                   ("Time per image vs batch size", "canziani_time_vs_batch.png"),
                   ("Memory vs batch size", "canziani_memory_vs_batch.png"))
OURS_PAPER, OURS_LATER, PAPER = "cnnlab: the paper's networks", "cnnlab: later networks", "the paper (hollow)"
PAPER_CURVES = "dashed, hollow: the paper (Jetson TX1 GPU)"


def _group(m) -> str:
    return OURS_PAPER if m.name in CANZIANI_NETWORKS else OURS_LATER


def _paper_rows(report) -> list[tuple[dict[str, Any], Any]]:
    """(the paper's network, this report's model of it) for the networks the report ran, and with
    ``--canziani`` the networks of the paper no zoo has (Inception-v4, model None)."""
    by_name = {m.name: m for m in report.models}
    alone = "canziani" in ((report.canziani or {}).get("sets") or [])
    return [(p, by_name.get(p["cnnlab"])) for p in paper_networks()
            if p["cnnlab"] in by_name or (p["cnnlab"] is None and alone)]


def figure1_data(report) -> dict[str, Any]:
    """Points of the redrawn Figure 1: ``ours`` (name, G-FLOPs = 2 x MACs, top-1, parameters, group) for the
    networks with an accuracy, and ``paper`` (name, x, top-1, parameters, ``x_from``, ``alone``) for the networks
    the report ran (with ``--canziani`` also Inception-v4): x is the paper's G-Ops where the data file has them,
    else the cnnlab network's G-FLOPs (``x_from == "cnnlab"``); ``alone`` for a network only the paper has."""
    ours = [{"name": m.name, "x": m.flops / 1e9, "y": m.accuracy, "params": m.params, "group": _group(m)}
            for m in report.models if m.accuracy is not None]
    paper = []
    for p, m in _paper_rows(report):
        if p["top1"] is None or (p["gops"] is None and m is None):
            continue
        x, x_from = (p["gops"], "paper") if p["gops"] is not None else (m.flops / 1e9, "cnnlab")
        paper.append({"name": p["paper_name"], "x": x, "y": p["top1"], "params": p["params"], "x_from": x_from,
                      "alone": m is None})
    return {"ours": ours, "paper": paper}


def figure2_data(report) -> dict[str, Any]:
    """Operations (G-FLOPs) vs parameters (millions): ours, and the paper's (its G-Ops vs its parameters, Figure 2;
    ``alone`` as in :func:`figure1_data`) for the networks the report ran (with ``--canziani`` also Inception-v4)."""
    ours = [{"name": m.name, "x": m.params / 1e6, "y": m.flops / 1e9, "group": _group(m)} for m in report.models]
    paper = [{"name": p["paper_name"], "x": p["params"] / 1e6, "y": p["gops"], "alone": m is None}
             for p, m in _paper_rows(report) if p["params"] is not None and p["gops"] is not None]
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
        for p in data["paper"]:
            if p["alone"]:
                ax.annotate(f"{p['name']} (paper)", (p["x"], p["y"]), fontsize=7, ha="center", va="center")
    placed = any(p["x_from"] == "cnnlab" for p in data["paper"])
    ax.set_xlabel("G-FLOPs per image (2 x MACs; the paper's axis: G-Ops)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Canziani et al. Figure 1 redrawn: top-1 vs operations (area ~ parameters)"
                 + ("\nhollow: the paper's top-1, drawn at cnnlab's operations where its own are not transcribed"
                    if placed else "\nhollow: the paper's top-1 at its G-Ops, area ~ its parameters" if data["paper"]
                    else ""), fontsize=9)
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
        for p in data["paper"]:
            if p["alone"]:
                ax.annotate(f"{p['name']} (paper)", (p["x"], p["y"]), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("G-FLOPs per image (2 x MACs)")
    note = "\nhollow: the paper's G-Ops vs its parameters (its Figure 2)" if data["paper"] else ""
    ax.set_title("Operations vs parameters" + note, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    if data["ours"]:
        ax.legend(fontsize=7)
    return data


def _paper_curves(report, key: str) -> list[dict[str, Any]]:
    """The paper's curves (``key``: ``time_ms`` or ``memory_mb``) of the networks the report ran (with
    ``--canziani`` also Inception-v4)."""
    return [{"name": p["paper_name"], "cnnlab": p["cnnlab"], "batches": [b for b, _ in p[key]],
             "values": [v for _, v in p[key]]} for p, _ in _paper_rows(report) if p[key]]


def time_vs_batch_data(report) -> dict[str, Any]:
    """``ours`` (name, batches, ms per image on this machine) of the timed networks, ``paper`` (name, cnnlab,
    batches, ms per image on the paper's Jetson TX1, Figure 3)."""
    ours = [{"name": m.name, "batches": [t["batch"] for t in m.timing], "values": [t["ms_per_image"] for t in m.timing]}
            for m in report.models if m.timing]
    return {"ours": ours, "paper": _paper_curves(report, "time_ms")}


_MEMORY = {"measured_inference_peak_bytes": "measured inference peak", "inference_peak_bytes":
           "estimated inference peak", "forward_bytes": "activations, every output of the forward pass"}


def _memory_key(m) -> str:
    return next(k for k in _MEMORY if all(x.get(k) for x in m.memory) or k == "forward_bytes")


def memory_vs_batch_data(report) -> dict[str, Any]:
    """``ours`` (name, batches, MiB, kind: measured or estimated inference peak, or activations) and ``paper``
    (name, cnnlab, batches, the paper's maximum net memory utilisation in MB on the Jetson TX1, Figure 5)."""
    ours = [{"name": m.name, "batches": [x["batch"] for x in m.memory],
             "values": [x[_memory_key(m)] / 2**20 for x in m.memory], "kind": _MEMORY[_memory_key(m)]}
            for m in report.models]
    return {"ours": ours, "paper": _paper_curves(report, "memory_mb")}


def _draw_curves(ax, data) -> None:
    """Ours solid, the paper's dashed with hollow markers in the same colour (one of 20 per network; a network
    only the paper has, or one this run did not time, gets its own and a "(paper)" label); legend outside."""
    from matplotlib import colormaps

    names = [o["name"] for o in data["ours"]]
    names += [p["name"] for p in data["paper"] if p["cnnlab"] not in names]
    colour = {n: colormaps["tab20"](i % 20) for i, n in enumerate(names)}
    for o in data["ours"]:
        ax.plot(o["batches"], o["values"], marker="o", color=colour[o["name"]],
                label=o["name"].removeprefix("torchvision:"))
    for p in data["paper"]:
        ours = p["cnnlab"] in colour
        ax.plot(p["batches"], p["values"], ls="--", marker="o", mfc="none", alpha=0.8,
                color=colour[p["cnnlab"] if ours else p["name"]], label=None if ours else f"{p['name']} (paper)")
    if data["paper"]:
        ax.plot([], [], ls="--", marker="o", mfc="none", color="black", label=PAPER_CURVES)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.grid(alpha=0.3, which="both")
    if names:
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)


def draw_time_vs_batch(ax, report) -> dict[str, Any]:
    """Time per image vs batch size, this machine's and the paper's; returns the data drawn
    (:func:`time_vs_batch_data`)."""
    data = time_vs_batch_data(report)
    _draw_curves(ax, data)
    ax.set_ylabel("ms per image")
    paper = "\ndashed: the paper's Jetson TX1 GPU (Torch7, cuDNN v5; its Figure 3)" if data["paper"] else ""
    ax.set_title(f"Inference time per image vs batch size ({report.machine.get('device', '')})" + paper, fontsize=9)
    if not data["ours"]:
        ax.text(0.5, 0.02, "timing skipped (--no-timing)" + (": the paper's curves alone" if data["paper"] else ""),
                ha="center", va="bottom", transform=ax.transAxes)
    return data


def draw_memory_vs_batch(ax, report) -> dict[str, Any]:
    """Memory vs batch size, this machine's and the paper's; returns the data drawn (:func:`memory_vs_batch_data`)."""
    data = memory_vs_batch_data(report)
    _draw_curves(ax, data)
    ax.set_ylabel("memory of inference (MiB; the paper's axis: MB)")
    paper = ("\ndashed: the paper's maximum system memory on the Jetson TX1 (its Figure 5)" if data["paper"] else "")
    ax.set_title(f"Memory vs batch size: {'; '.join(sorted({o['kind'] for o in data['ours']}))}" + paper, fontsize=9)
    return data
