"""The HTML of ``cnnlab report``, and its JavaScript: a click on a feature-map cell draws that cell's
receptive-field box on the input image (the intervals come from :mod:`cnnlab.summary`, computed in
Python, so the page holds no receptive-field arithmetic of its own)."""

from __future__ import annotations

import html
import json
from pathlib import Path

__all__ = ["REPORT_JS", "render_report"]

REPORT_JS = r"""
(function () {
  function showBox(wrap, evt) {
    const img = wrap.querySelector('img.fmap'), layer = wrap.closest('.layer'), sample = wrap.closest('.sample');
    const h = parseInt(layer.dataset.h, 10), w = parseInt(layer.dataset.w, 10);
    const rect = img.getBoundingClientRect();
    const y = Math.min(h - 1, Math.max(0, Math.floor((evt.clientY - rect.top) / rect.height * h)));
    const x = Math.min(w - 1, Math.max(0, Math.floor((evt.clientX - rect.left) / rect.width * w)));
    const input = sample.querySelector('.inputbox'), H = parseInt(input.dataset.h, 10), W = parseInt(input.dataset.w, 10);
    const rows = JSON.parse(layer.dataset.rows), cols = JSON.parse(layer.dataset.cols);
    const top = rows ? rows[y][0] : 0, bottom = rows ? rows[y][1] : H;
    const left = cols ? cols[x][0] : 0, right = cols ? cols[x][1] : W;
    const pic = input.querySelector('img'), sy = pic.clientHeight / H, sx = pic.clientWidth / W;
    const box = input.querySelector('.rf-box');
    box.style.top = (top * sy) + 'px'; box.style.left = (left * sx) + 'px';
    box.style.height = ((bottom - top) * sy) + 'px'; box.style.width = ((right - left) * sx) + 'px';
    box.style.display = 'block';
    Object.assign(box.dataset, {layer: layer.dataset.layer, y: y, x: x, top: top, left: left, bottom: bottom,
                                right: right});
    sample.querySelectorAll('.cell-mark').forEach(function (m) { m.style.display = 'none'; });
    const mark = wrap.querySelector('.cell-mark');
    mark.style.top = (y * img.clientHeight / h) + 'px'; mark.style.left = (x * img.clientWidth / w) + 'px';
    mark.style.height = (img.clientHeight / h) + 'px'; mark.style.width = (img.clientWidth / w) + 'px';
    mark.style.display = 'block';
    const rf = layer.dataset.rf ? ' (receptive field ' + layer.dataset.rf + ')' : ' (the whole input)';
    sample.querySelector('.rf-text').textContent = layer.dataset.layer + ' cell (' + y + ', ' + x + ') sees rows ' +
      top + '..' + (bottom - 1) + ', columns ' + left + '..' + (right - 1) + rf;
  }
  document.querySelectorAll('.fmap-wrap').forEach(function (wrap) {
    wrap.addEventListener('click', function (evt) { showBox(wrap, evt); });
  });
})();
"""


def _e(value) -> str:
    return html.escape(str(value))


def _header(subject, parts) -> str:
    params = sum(p.numel() for p in subject.model.parameters())
    scores = parts["scores"]
    return (f"<h1>cnnlab report: {_e(subject.description)}</h1>"
            f"<p>{params:,} parameters; input {_e('x'.join(map(str, subject.input_shape)))} (CxHxW); "
            f"test accuracy <b>{scores.accuracy:.2f}%</b> over {int(scores.confusion.sum())} images of "
            f"{_e(subject.dataset)}.</p>")


def _curves_and_scores(parts) -> str:
    curves = (f'<img alt="learning curves" src="{parts["curves"]}" style="max-width:100%">' if parts["curves"]
              else "<p>No learning curves: this is not a finished run directory.</p>")
    rows = "".join(f"<tr><td>{_e(r['class'])}</td><td class=num>{r['precision']:.3f}</td>"
                   f"<td class=num>{r['recall']:.3f}</td><td class=num>{r['f1']:.3f}</td>"
                   f"<td class=num>{r['support']}</td></tr>" for r in parts["per_class"])
    table = ("<table id='per-class'><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th>"
             f"</tr>{rows}</table>")
    return (f"<h2 id='curves'>Learning curves</h2>{curves}"
            f"<h2 id='confusion'>Confusion matrix and per-class precision / recall</h2>"
            f"<div><img alt='confusion matrix' src='{parts['confusion']}' style='vertical-align:top'>"
            f"<div style='display:inline-block;margin-left:1em'>{table}</div></div>")


def _mistakes(parts) -> str:
    items = "".join(f"<figure><img class=pix width=96 src='{m['uri']}'><figcaption>#{m['index']}: true {_e(m['true'])}"
                    f", predicted {_e(m['pred'])} ({100 * m['p']:.0f}%)</figcaption></figure>"
                    for m in parts["mistakes"])
    return f"<h2 id='mistakes'>The most confident mistakes</h2>{items or '<p>No mistakes.</p>'}"


def _sample(s: dict, n: int) -> str:
    h, w = s["hw"]
    layers = []
    for v in s["layers"]:
        c, lh, lw = v["shape"]
        size = max(40, min(112, 4 * lh))
        maps = "".join(f"<div class=fmap-wrap><img class=fmap data-channel={i} width={size} height={size} "
                       f"src='{uri}'><div class=cell-mark></div></div>" for i, uri in enumerate(v["maps"]))
        rf = "" if v["rf"] is None else f"{v['rf'][0]}x{v['rf'][0]}, jump {v['rf'][1]}"
        more = f" (first {len(v['maps'])} of {c} channels)" if len(v["maps"]) < c else ""
        layers.append(f"<div class=layer data-layer='{_e(v['name'])}' data-h={lh} data-w={lw} "
                      f"data-rows='{json.dumps(v['rows'])}' data-cols='{json.dumps(v['cols'])}' data-rf='{rf}'>"
                      f"<div class=name>{_e(v['name'])}: {lh}x{lw}x{c}{more}</div>{maps}</div>")
    return (f"<div class=sample id='sample-{n}'><p>Test image #{s['index']}: true {_e(s['label'])}, predicted "
            f"{_e(s['pred'])} ({100 * s['p']:.1f}%)</p>"
            f"<div class=sample-body><div class=left>"
            f"<div class=inputbox data-h={h} data-w={w}><img class=pix width=168 height=168 src='{s['input']}'>"
            f"<div class=rf-box id='rf-box-{n}'></div></div><div class=rf-text id='rf-text-{n}'></div>"
            f"<figure><img width=168 height=168 src='{s['cam']}'><figcaption>Grad-CAM at {_e(s['cam_layer'])}"
            f"</figcaption></figure></div><div class=fmaps>{''.join(layers)}</div></div></div>")


def _layer_table(summary) -> str:
    head = ("<tr><th>layer</th><th>type</th><th>HxWxC => HxWxC</th><th>k / s / p</th><th>output size</th>"
            "<th>params</th><th>MACs</th><th>RF</th><th>jump</th></tr>")
    rows = []
    for r in summary.layers:
        pad = r.padding if isinstance(r.padding, str) or r.padding is None else r.padding[0]
        ksp = "" if r.kernel is None else f"{r.kernel[0]} / {r.stride[0]} / {pad}"
        rf = "all" if r.receptive_field is None else r.receptive_field
        rows.append(f"<tr><td>{_e(r.name)}</td><td>{_e(r.type)}</td><td>{_e(r.transition)}</td><td>{ksp}</td>"
                    f"<td>{_e(r.formula or '')}</td><td class=num>{r.params:,}</td><td class=num>{r.macs:,}</td>"
                    f"<td class=num>{rf}</td><td class=num>{'' if r.jump is None else r.jump}</td></tr>")
    return (f"<h2 id='layers'>Layers</h2><p>{summary.total_params:,} parameters, {summary.total_macs:,} MACs per "
            f"image (FLOPs = 2 x MACs); RF: receptive field along the height (cnnlab.arithmetic).</p>"
            f"<div class=wrap><table id='layer-table'>{head}{''.join(rows)}</table></div>")


def render_report(subject, parts: dict, path: Path) -> list[str]:
    """Write the page; returns the section names."""
    from cnnlab.visualize.html_assets import page

    samples = "".join(_sample(s, n) for n, s in enumerate(parts["samples"]))
    body = (_header(subject, parts) + _curves_and_scores(parts) + _mistakes(parts)
            + f"<h2 id='filters'>Filters</h2><img alt='filters' src='{parts['filters']}' style='max-width:100%'>"
            + "<h2 id='samples'>Feature maps and Grad-CAM</h2><p>Click any cell of a feature map: its receptive "
              "field appears as a red box on the image.</p>" + samples
            + _layer_table(parts["summary"]) + f"<script>{REPORT_JS}</script>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page(f"cnnlab report: {subject.description}", body), encoding="utf-8")
    return ["curves", "confusion", "per-class", "mistakes", "filters", "feature maps", "grad-cam", "layers"]
