"""The page of ``cnnlab analyze --html`` (``templates/analyze.html``): the findings first, one readable
table (human headers with units), the four Canziani charts side by side, and the details (per-batch
memory, operation counts, the machine and its roof) folded away in ``<details>``. One
self-contained file: the charts are embedded as PNG data URLs, the stylesheet inlined."""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from cnnlab.analysis.charts import chart_pngs
from cnnlab.figures import png_data_url
from cnnlab.parsing import format_bytes
from cnnlab.pages import fragment, write_page

__all__ = ["write_html", "report_html", "findings"]

MiB = 2**20


class Cited(NamedTuple):
    """A table cell with a source note: ``text <sup>[ref]</sup>``."""

    text: str
    ref: int


def _num(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict:
    return {"headers": list(headers), "rows": [list(row) for row in rows]}


def _at(m, key: str, batch: int) -> Any:
    entry = next((x for x in m.memory if x["batch"] == batch), {})
    return entry.get(key)


def findings(report) -> list[str]:
    """The headline sentences: what the numbers say (with ``--canziani``/``--modern`` the paper's questions first)."""
    paper = (report.canziani or {}).get("findings", {})
    out = list(paper.get("sentences", []))
    timed = [m for m in report.models if m.timing]
    if len(timed) >= 3 and "pearson_ops_time" not in paper:  # the paper's findings say it already (FLOPs = 2 MACs)
        batch = max(t["batch"] for t in timed[0].timing)
        pairs = [(m.flops, next((t for t in m.timing if t["batch"] == batch), m.timing[-1])["ms_per_image"]) for m in timed]
        r = statistics.correlation([p[0] for p in pairs], [p[1] for p in pairs])
        out.append(f"Operations predict time: Pearson r = {r:.2f} between forward FLOPs and ms per image at batch "
                   f"{batch} ({len(timed)} models).")
    if timed:
        fast = max(timed, key=lambda m: max(t["images_per_s"] for t in m.timing))
        best = max(fast.timing, key=lambda t: t["images_per_s"])
        out.append(f"Fastest: {fast.name}, {best['images_per_s']:,.0f} images/s at batch {best['batch']} "
                   f"({100 * best['roof_fraction']:.0f}% of the roof).")
    trained = [m for m in report.models if m.training_flops and m.flops]
    if trained:
        ratios = [m.training_flops / m.flops for m in trained]
        out.append(f"A training step costs {min(ratios):.2f}x to {max(ratios):.2f}x the forward FLOPs (the first "
                   f"layer needs no input gradient, so a little under 3x).")
    big = max(report.batch_sizes) if report.batch_sizes else None
    peaks = [(m, _at(m, "training_peak_bytes", big)) for m in report.models if _at(m, "training_peak_bytes", big)]
    if len(peaks) >= 2:
        lo, hi = min(peaks, key=lambda p: p[1]), max(peaks, key=lambda p: p[1])
        out.append(f"Training at batch {big} needs from {format_bytes(lo[1])} ({lo[0].name}) to {format_bytes(hi[1])} "
                   f"({hi[0].name}) at its peak, weights and gradients included (SGD).")
    errors = [abs(x["inference_peak_bytes"] - x["measured_inference_peak_bytes"]) / x["measured_inference_peak_bytes"]
              for m in report.models for x in m.memory
              if x.get("measured_inference_peak_bytes") and x.get("inference_peak_bytes")]
    if errors:
        out.append(f"The memory estimate is within {100 * max(errors):.1f}% of the measured inference peak "
                   f"({len(errors)} measurements).")
    with_acc = [m for m in report.models if m.accuracy is not None]
    if with_acc:
        best = max(with_acc, key=lambda m: m.accuracy)
        out.append(f"Most accurate: {best.name}, {best.accuracy:.2f}% top-1 [{_source_ids(report)[best.accuracy_source]}].")
    return out


def _source_ids(report) -> dict[str, int]:
    sources = sorted({m.accuracy_source for m in report.models if m.accuracy_source})
    return {s: i + 1 for i, s in enumerate(sources)}


def _main_table(report) -> dict:
    sizes = report.batch_sizes or [x["batch"] for x in report.models[0].memory]
    small, big = min(sizes), max(sizes)
    timed = any(m.timing for m in report.models)
    ids = _source_ids(report)
    headers = ["Model", "Input (CxHxW)", "Parameters (M)", "Forward GFLOPs / image", "Training GFLOPs / image",
               "Top-1 accuracy (%)", f"Training peak @ batch {big} (MiB)", f"Inference peak @ batch {big} (MiB)"]
    if timed:
        headers += [f"ms / image @ batch {small}", f"ms / image @ batch {big}", f"Images / s @ batch {big}",
                    "% of roof"]
    rows = []
    for m in report.models:
        acc = "-" if m.accuracy is None else Cited(f"{m.accuracy:.2f}", ids[m.accuracy_source])
        measured = _at(m, "measured_inference_peak_bytes", big)
        infer = _num((_at(m, "inference_peak_bytes", big) or 0) / MiB)
        row = [m.name, "x".join(map(str, m.input_shape)), _num(m.params / 1e6, 2),
               _num(m.flops / 1e9, 3), _num(m.training_flops / 1e9, 3) if m.training_flops else "-", acc,
               _num((_at(m, "training_peak_bytes", big) or 0) / MiB),
               infer + (f" (measured {measured / MiB:,.1f})" if measured else "")]
        if timed and m.timing:
            first, last = m.timing[0], m.timing[-1]
            row += [_num(first["ms_per_image"], 3), _num(last["ms_per_image"], 3), _num(last["images_per_s"], 0),
                    _num(100 * last["roof_fraction"], 0)]
        rows.append(row)
    return _table(headers, rows)


def _memory_details(report) -> dict:
    headers = ["Model", "Batch", "Training peak (MiB)", "Inference peak (MiB)", "Inference peak, measured (MiB)",
               "Activations: every forward output (MiB)", "Activations: saved for backward (MiB)"]
    rows = [[m.name, x["batch"], _num((x.get("training_peak_bytes") or 0) / MiB),
             _num((x.get("inference_peak_bytes") or 0) / MiB),
             _num(x["measured_inference_peak_bytes"] / MiB) if x.get("measured_inference_peak_bytes") else "-",
             _num(x["forward_bytes"] / MiB), _num(x["training_bytes"] / MiB)] for m in report.models for x in m.memory]
    return _table(headers, rows)


def _ops_details(report) -> dict:
    cats = sorted({k for m in report.models for k in m.other_ops})
    headers = ["Model", "MACs / image", *[f"{c} element-ops / image" for c in cats], "Not counted (unknown ops)"]
    rows = [[m.name, _num(m.macs), *[_num(m.other_ops.get(c)) for c in cats], "; ".join(m.unsupported) or "-"]
            for m in report.models]
    return _table(headers, rows)


def _cited(sentence: str) -> list[tuple[str, bool]]:
    """A finding cut into ``(text, is a [n] source note)`` pieces, the notes set as superscripts."""
    return [(part, part.startswith("[")) for part in re.split(r"(\[[^\]]*\])", sentence) if part]


def _context(report) -> dict[str, Any]:
    """What ``templates/analyze.html`` shows of ``report``, its four charts embedded as PNG."""
    charts = {title: png_data_url(png) for title, png in chart_pngs(report).items()}
    return dict(title="cnnlab analyze", findings=[_cited(f) for f in findings(report)], models=_main_table(report),
                sources=_source_ids(report), charts=charts, memory=_memory_details(report), ops=_ops_details(report),
                convention=report.convention, machine=report.machine)


def write_html(report, path: str | Path) -> Path:
    """Write ``report`` (a :class:`cnnlab.analysis.Report`) with its four charts embedded as PNG."""
    return write_page(path, "analyze.html", **_context(report))


def report_html(report) -> str:
    """The same page as a notebook's output (``Report._repr_html_``): the table and the charts, inline."""
    return fragment("analyze.html", **_context(report))
