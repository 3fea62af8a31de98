"""The page of ``cnnlab report`` (``templates/report.html`` with ``templates/report.js``): what the
template is given. A click on a feature-map cell draws that cell's receptive-field box on the input
image; the intervals come from :mod:`cnnlab.summary`, computed in Python, so the page holds no
receptive-field arithmetic of its own."""

from __future__ import annotations

from pathlib import Path

from cnnlab.pages import write_page

__all__ = ["SECTIONS", "render_report"]

SECTIONS = ["curves", "confusion", "per-class", "calibration", "mistakes", "filters", "feature maps", "grad-cam", "trust",
            "layers"]


def _head(subject, parts) -> dict:
    scores = parts["scores"]
    return {"description": subject.description, "params": sum(p.numel() for p in subject.model.parameters()),
            "input": "x".join(map(str, subject.input_shape)), "accuracy": scores.accuracy,
            "images": int(scores.confusion.sum()), "dataset": subject.dataset}


def _layer_view(v: dict) -> dict:
    """One layer's maps of a sample: the cell size, the receptive field ("size x size, jump j")."""
    c, h, w = v["shape"]
    rf = "" if v["rf"] is None else f"{v['rf'][0]}x{v['rf'][0]}, jump {v['rf'][1]}"
    more = f" (first {len(v['maps'])} of {c} channels)" if len(v["maps"]) < c else ""
    return {"name": v["name"], "c": c, "h": h, "w": w, "rows": v["rows"], "cols": v["cols"], "rf": rf, "more": more,
            "size": max(40, min(112, 4 * h)), "maps": v["maps"]}


def _layer_rows(summary) -> list[dict]:
    rows = []
    for r in summary.layers:
        pad = r.padding if isinstance(r.padding, str) or r.padding is None else r.padding[0]
        rows.append({"name": r.name, "type": r.type, "transition": r.transition, "formula": r.formula or "",
                     "ksp": "" if r.kernel is None else f"{r.kernel[0]} / {r.stride[0]} / {pad}",
                     "params": r.params, "macs": r.macs, "jump": "" if r.jump is None else r.jump,
                     "rf": "all" if r.receptive_field is None else r.receptive_field})
    return rows


def render_report(subject, parts: dict, path: Path) -> list[str]:
    """Write the page; returns the section names."""
    samples = [s | {"layers": [_layer_view(v) for v in s["layers"]]} for s in parts["samples"]]
    write_page(path, "report.html", title=f"cnnlab report: {subject.description}", head=_head(subject, parts),
               curves=parts["curves"], confusion=parts["confusion"], per_class=parts["per_class"],
               calibration=parts["calibration"], mistakes=parts["mistakes"], filters=parts["filters"], samples=samples,
               summary=parts["summary"], layer_rows=_layer_rows(parts["summary"]), trust=parts.get("trust"))
    return [s for s in SECTIONS if s != "trust" or parts.get("trust")]
