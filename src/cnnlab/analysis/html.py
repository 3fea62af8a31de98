"""One self-contained HTML file for `cnnlab analyze --html`: table, charts (embedded), machine.

(Formerly ``cnnlab.report_html``.)
"""

from __future__ import annotations

import base64
import html
import tempfile
from pathlib import Path

__all__ = ["write_html"]


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return html.escape(str(v))


def write_html(report, path: str | Path) -> Path:
    """Write ``report`` (a :class:`cnnlab.analysis.Report`) with its four charts embedded as PNG."""
    from cnnlab.plots import analysis_charts

    with tempfile.TemporaryDirectory() as tmp:
        charts = analysis_charts(report, tmp)
        images = {title: base64.b64encode(p.read_bytes()).decode("ascii") for title, p in charts.items()}
    rows = report.to_rows()
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(k))}</td>" for k in keys) + "</tr>" for r in rows)
    figures = "".join(
        f'<figure><img alt="{html.escape(t)}" src="data:image/png;base64,{b64}"><figcaption>{html.escape(t)}</figcaption></figure>'
        for t, b64 in images.items()
    )
    machine = "".join(f"<li><b>{html.escape(str(k))}</b>: {_fmt(v)}</li>" for k, v in report.machine.items())
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>cnnlab analyze</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; }} th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; }}
th {{ background: #f0f0f0; position: sticky; top: 0; }} td:first-child, th:first-child {{ text-align: left; }}
.wrap {{ overflow-x: auto; max-width: 100%; }} figure {{ display: inline-block; margin: 1em; }} img {{ max-width: 720px; }}
</style></head><body>
<h1>cnnlab analyze</h1>
<p>After Canziani, Paszke &amp; Culurciello (2016), <i>An analysis of deep neural network models for practical applications</i>
(arXiv:1605.07678), measured on this machine. {html.escape(report.convention)}.</p>
<h2>Machine</h2><ul>{machine}</ul>
<h2>Models</h2><div class="wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>
<h2>Charts</h2>{figures}
</body></html>
"""
    path = Path(path)
    path.write_text(doc, encoding="utf-8")
    return path
