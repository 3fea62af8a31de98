"""One self-contained HTML page for ``cnnlab analyze --html``: the findings first, one readable
table (human headers with units), the four Canziani charts side by side, and the details
(per-batch memory, operation counts, the machine and its roof) folded away in ``<details>``."""

from __future__ import annotations

import base64
import html
import statistics
import tempfile
from pathlib import Path
from typing import Any, Sequence

__all__ = ["write_html", "findings"]

MiB = 2**20
CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em; color: #222;
       line-height: 1.45; }
h1 { margin-bottom: .2em; } .lead { color: #555; margin-top: 0; }
ul.findings { background: #f5f8ff; border-left: 4px solid #4a78c2; padding: .8em 1em .8em 2em; }
ul.findings li { margin: .25em 0; }
.wrap { overflow-x: auto; } table { border-collapse: collapse; font-size: 13px; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; vertical-align: bottom; white-space: normal; } td:first-child, th:first-child { text-align: left; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 1em; }
.charts figure { margin: 0; } .charts img { width: 100%; height: auto; }
figcaption, .note { color: #555; font-size: 13px; } details { margin: .8em 0; } summary { cursor: pointer; font-weight: 600; }
"""


def _num(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return html.escape(str(v))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], table_id: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    ident = f' id="{table_id}"' if table_id else ""
    return f'<div class="wrap"><table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _at(m, key: str, batch: int) -> Any:
    entry = next((x for x in m.memory if x["batch"] == batch), {})
    return entry.get(key)


def findings(report) -> list[str]:
    """The headline sentences: what the numbers say."""
    from cnnlab.analysis.training import format_bytes

    out = []
    timed = [m for m in report.models if m.timing]
    if len(timed) >= 3:
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


def _main_table(report) -> str:
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
        acc = "-" if m.accuracy is None else f"{m.accuracy:.2f} <sup>[{ids[m.accuracy_source]}]</sup>"
        measured = _at(m, "measured_inference_peak_bytes", big)
        infer = _num((_at(m, "inference_peak_bytes", big) or 0) / MiB)
        row = [html.escape(m.name), "x".join(map(str, m.input_shape)), _num(m.params / 1e6, 2),
               _num(m.flops / 1e9, 3), _num(m.training_flops / 1e9, 3) if m.training_flops else "-", acc,
               _num((_at(m, "training_peak_bytes", big) or 0) / MiB),
               infer + (f" (measured {measured / MiB:,.1f})" if measured else "")]
        if timed and m.timing:
            first, last = m.timing[0], m.timing[-1]
            row += [_num(first["ms_per_image"], 3), _num(last["ms_per_image"], 3), _num(last["images_per_s"], 0),
                    _num(100 * last["roof_fraction"], 0)]
        rows.append(row)
    return _table(headers, rows, "models")


def _memory_details(report) -> str:
    headers = ["Model", "Batch", "Training peak (MiB)", "Inference peak (MiB)", "Inference peak, measured (MiB)",
               "Activations: every forward output (MiB)", "Activations: saved for backward (MiB)"]
    rows = [[html.escape(m.name), x["batch"], _num((x.get("training_peak_bytes") or 0) / MiB),
             _num((x.get("inference_peak_bytes") or 0) / MiB),
             _num(x["measured_inference_peak_bytes"] / MiB) if x.get("measured_inference_peak_bytes") else "-",
             _num(x["forward_bytes"] / MiB), _num(x["training_bytes"] / MiB)] for m in report.models for x in m.memory]
    note = ("<p class='note'>Peaks include the weights and the input batch (training: gradients and optimizer state "
            "too, SGD). 'Every forward output' counts each tensor the layers produce as if none were freed; 'saved "
            "for backward' only those autograd keeps, so the first can exceed the second.</p>")
    return _table(headers, rows) + note


def _ops_details(report) -> str:
    cats = sorted({k for m in report.models for k in m.other_ops})
    headers = ["Model", "MACs / image", *[f"{c} element-ops / image" for c in cats], "Not counted (unknown ops)"]
    rows = [[html.escape(m.name), _num(m.macs), *[_num(m.other_ops.get(c)) for c in cats],
             html.escape("; ".join(m.unsupported)) or "-"] for m in report.models]
    return _table(headers, rows) + f"<p class='note'>{html.escape(report.convention)}.</p>"


def _machine_details(report) -> str:
    mc = report.machine
    items = [f"<li>{html.escape(mc.get('description', ''))}; torch {html.escape(str(mc.get('torch')))}, "
             f"{mc.get('threads')} threads, Python {html.escape(str(mc.get('python')))}</li>"]
    if mc.get("roof_gflops"):
        items.append(f"<li>Roof: {mc['roof_gflops']:,.0f} GFLOP/s, the best of these float32 measurements "
                     f"(fastest run of each; {html.escape(str(mc.get('roof_source')))}):<ul>"
                     + "".join(f"<li>{html.escape(k)}: {v:,.0f} GFLOP/s</li>"
                               for k, v in mc.get("roof_measurements", {}).items()) + "</ul></li>")
    if mc.get("theoretical_peak_formula"):
        items.append(f"<li>Theoretical peak: {html.escape(mc['theoretical_peak_formula'])}</li>")
    return f"<ul>{''.join(items)}</ul>"


def write_html(report, path: str | Path) -> Path:
    """Write ``report`` (a :class:`cnnlab.analysis.Report`) with its four charts embedded as PNG."""
    from cnnlab.plots import analysis_charts

    with tempfile.TemporaryDirectory() as tmp:
        charts = analysis_charts(report, tmp)
        images = {title: base64.b64encode(p.read_bytes()).decode("ascii") for title, p in charts.items()}
    figures = "".join(f'<figure><img alt="{html.escape(t)}" src="data:image/png;base64,{b64}"></figure>'
                      for t, b64 in images.items())
    sources = "".join(f"<li>[{i}] {html.escape(s)}</li>" for s, i in _source_ids(report).items())
    facts = "".join(f"<li>{html.escape(f).replace('[', '<sup>[').replace(']', ']</sup>')}</li>"
                    for f in findings(report))
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>cnnlab analyze</title><style>{CSS}</style></head><body>
<h1>What these networks cost</h1>
<p class="lead">After Canziani, Paszke &amp; Culurciello (2016), <i>An analysis of deep neural network models for
practical applications</i> (arXiv:1605.07678), measured on this machine. FLOPs = 2 x multiply-accumulates of the
conv and linear layers.</p>
<ul class="findings">{facts or '<li>Counts only (run without --no-timing for times and measured memory).</li>'}</ul>
<h2>Models</h2>{_main_table(report)}
{f'<ol class="note" style="list-style:none;padding-left:0">{sources}</ol>' if sources else ''}
<h2>Charts</h2><div class="charts">{figures}</div>
<details><summary>Memory at every batch size</summary>{_memory_details(report)}</details>
<details><summary>Operations by kind</summary>{_ops_details(report)}</details>
<details><summary>Machine and roof</summary>{_machine_details(report)}</details>
</body></html>
"""
    path = Path(path)
    path.write_text(doc, encoding="utf-8")
    return path
