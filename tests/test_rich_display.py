"""What cnnlab's results show in a notebook: each ``_repr_html_`` is valid, self-contained HTML (no network URL,
pictures as data URLs, the stylesheet scoped to the fragment) holding the numbers the object holds; the plain
``repr`` stays the object's own; nothing is printed while the HTML is made (a notebook shows one or the other)."""

from __future__ import annotations

import importlib.util
import re
from html.parser import HTMLParser

import pytest
import torch.nn as nn

import cnnlab
from cnnlab import pages
from cnnlab.display import RunsTable, figures_html
from cnnlab.visualize import conv_animation, pool_animation

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Checker(HTMLParser):
    """Tags balanced; every src/href local (a data: URL or a fragment), never http(s):// or //."""

    def __init__(self):
        super().__init__()
        self.stack, self.urls, self.ids, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.urls += [attrs[k] for k in ("src", "href") if attrs.get(k)]
        self.ids += [attrs["id"]] if attrs.get("id") else []
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def check(html: str) -> Checker:
    """Parse ``html`` (a fragment: no page frame) and return what it holds."""
    assert isinstance(html, str) and html.startswith('<div class="cnnlab-frag">') and "<html" not in html
    parser = Checker()
    parser.feed(html)
    parser.close()
    assert parser.stack == [], f"unclosed: {parser.stack}"
    for url in parser.urls:
        assert not re.match(r"(https?:)?//", url), url
        assert url.startswith(("data:", "#")), url
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    return parser


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 4, 3, stride=2),
                         nn.Flatten(), nn.Linear(4 * 2 * 2, 5))


def test_a_summary_shows_its_layer_table(capsys):
    summary = cnnlab.summarize(tiny_net(), (1, 10, 10))
    html = summary._repr_html_()
    text = " ".join(check(html).text)
    for row in summary.layers:
        assert row.name in text and f"{row.macs:,}" in text and row.transition in text
        if row.formula:
            assert row.formula in text
        if row.receptive_field is not None:
            assert f"{row.receptive_field} (jump {row.jump})" in text
    assert f"{summary.total_macs:,}" in text and f"{summary.total_params:,}" in text
    assert repr(summary).startswith("ModelSummary(") and capsys.readouterr().out == ""


def test_a_training_summary_shows_the_step_and_its_memory():
    summary = cnnlab.summarize(tiny_net(), (1, 10, 10), train=True, batch_size=4, optimizer="adam")
    text = " ".join(check(summary._repr_html_()).text)
    memory = summary.training.memory
    for label, n in memory.parts():
        assert label in text and (n is None or f"{n:,}" in text)
    for row in summary.layers:
        assert f"{row.forward_flops or 0:,}" in text and f"{row.grad_weight_flops or 0:,}" in text
    assert f"{summary.training.training_flops:,}" in text and "batch 4" in text


@pytest.mark.parametrize("make", [lambda: conv_animation(5, 3, 2, 1), lambda: pool_animation(6, 2, 2),
                                  lambda: conv_animation(3, 3, 2, 0, transposed=True)])
def test_an_animation_is_its_player_inline_with_an_id_of_its_own(make):
    anim = make()
    first, second = anim._repr_html_(), anim._repr_html_()
    a, b = check(first), check(second)
    assert len(a.ids) == 1 and a.ids != b.ids  # two players on one notebook page never share an id
    assert pages.asset("animation.js") in first and "const ANIMATION" not in first  # no global name to clash
    for line in anim.caption:
        assert line in " ".join(a.text)
    assert f'data-positions="{anim.positions}"' in first


def test_the_analysis_report_shows_its_table_and_charts():
    from cnnlab.analysis import ModelReport, Report

    report = Report([ModelReport("tiny", [1, 8, 8], 12_345_678, 12_345_678, 0, 0, 4936, 1_172_839_450, 2_345_678_900,
                                 memory=[{"batch": 1, "forward_bytes": 2048, "training_bytes": 1024}])],
                    {"description": "a test machine", "torch": "x", "threads": 1, "python": "3"}, [1])
    html = report._repr_html_()
    parser = check(html)
    text = " ".join(parser.text)
    assert "tiny" in text and "12.35" in text and "2.346" in text  # parameters (M), GFLOPs
    assert sum(u.startswith("data:image/png;base64,") for u in parser.urls) == 4  # the four Canziani charts


def test_pictures_and_runs_table(tmp_path):
    from cnnlab.figures import array_to_png
    import numpy as np

    png = tmp_path / "a.png"
    png.write_bytes(array_to_png(np.zeros((4, 4, 3), np.uint8)))
    html = figures_html("Feature maps", [(png, "conv1 28x28x4"), (tmp_path / "gone.png", "gone")])
    parser = check(html)
    assert parser.urls and parser.urls[0].startswith("data:image/png;base64,") and "conv1 28x28x4" in parser.text
    assert "gone.png is gone" in " ".join(parser.text)
    rows = RunsTable([{"run": "runs/a", "model": "convnet", "dataset": "digits", "epochs": "1/1",
                       "best_val_acc": 91.25, "test_acc": 90.5, "seconds": 3.0, "status": "finished"}])
    text = " ".join(check(rows._repr_html_()).text)
    assert "runs/a" in text and "91.25" in text and "90.50" in text and "finished" in text
    assert repr(rows) == repr(list(rows)) and rows == list(rows)
    assert "No runs here." in check(RunsTable()._repr_html_()).text


def test_the_visualize_results_show_their_figure(finished_run):
    from cnnlab.runs import list_runs
    from cnnlab.visualize import show_featuremaps, show_filters, show_gradcam, show_receptive_field
    from cnnlab.visualize.source import Source

    source = Source(str(finished_run), index=0)
    result = show_featuremaps(source)
    parser = check(result._repr_html_())
    assert len([u for u in parser.urls if u.startswith("data:image/png")]) == len(result.paths)
    assert all(title in parser.text for title in result.titles.values())
    rf = show_receptive_field(Source(str(finished_run), index=0))
    text = " ".join(check(rf._repr_html_()).text)
    assert f"rows {rf.box[0]}..{rf.box[2] - 1}" in text and rf.layer in text
    filters = show_filters(Source(str(finished_run)))
    assert "x".join(map(str, filters.shape)).replace("x", " x ") in " ".join(check(filters._repr_html_()).text)
    if importlib.util.find_spec("captum") is not None:
        cam = show_gradcam(Source(str(finished_run), index=0), methods="gradcam")
        text = " ".join(check(cam._repr_html_()).text)
        assert f"class {cam.target_name} (p = {cam.probability:.4f})" in text and cam.layer in text
    runs = list_runs(finished_run.parent)
    assert isinstance(runs, RunsTable) and str(finished_run) in " ".join(check(runs._repr_html_()).text)
