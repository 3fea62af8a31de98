"""The picture layer (:mod:`cnnlab.figures`: PNGs in memory, written atomically) and the page layer
(:mod:`cnnlab.pages`: Jinja2 templates with autoescape, one inlined stylesheet, ``|tojson`` in scripts)."""

from __future__ import annotations

import base64
import io
import json
import re
import tempfile

import pytest

from cnnlab import figures, pages
from cnnlab.errors import CnnlabError

PNG = b"\x89PNG\r\n\x1a\n"
HOSTILE = "<script>alert('x')</script> & \"quoted\" </b>"
FETCH = re.compile(r"""(src|href)=["']?(https?:)?//|@import|url\(\s*["']?https?:""", re.I)


def _figure(title: str = "t"):
    fig, ax = figures.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [2, 0, 1])
    ax.set_title(title)
    return fig


def _open_figures() -> int:
    from matplotlib._pylab_helpers import Gcf

    return len(Gcf.get_all_fig_managers())


@pytest.fixture
def no_temporary_files(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a temporary file or directory was made")

    for name in ("mkdtemp", "mkstemp", "TemporaryDirectory", "NamedTemporaryFile", "TemporaryFile"):
        monkeypatch.setattr(tempfile, name, refuse)


def test_figure_to_png_and_data_urls_stay_in_memory(no_temporary_files):
    before = _open_figures()
    png = figures.figure_to_png(_figure())
    assert png.startswith(PNG) and _open_figures() == before  # closed
    url = figures.png_data_url(png)
    assert url.startswith("data:image/png;base64,") and base64.b64decode(url.split(",", 1)[1]) == png
    from_figure = figures.png_data_url(_figure(), tight=True)
    assert base64.b64decode(from_figure.split(",", 1)[1]).startswith(PNG) and _open_figures() == before
    from PIL import Image

    loose, tight = (Image.open(io.BytesIO(figures.figure_to_png(_figure(), tight=t))).size for t in (False, True))
    assert loose == (300, 200) and tight != loose  # dpi 100 x (3, 2) inches; tight: cropped to the drawing


def test_save_figure_writes_atomically_and_closes(tmp_path, no_temporary_files):
    before = _open_figures()
    path = figures.save_figure(_figure(), tmp_path / "new" / "f.png", dpi=50)
    assert path.read_bytes().startswith(PNG) and sorted(p.name for p in path.parent.iterdir()) == ["f.png"]
    assert _open_figures() == before
    buffer = io.BytesIO()
    figures.save_figure(_figure(), buffer)
    assert buffer.getvalue().startswith(PNG)
    folder = tmp_path / "taken"
    (folder / "keep.txt").parent.mkdir()
    (folder / "keep.txt").write_text("old")
    with pytest.raises(CnnlabError, match="cannot write") as err:  # a folder where the file would go
        figures.save_figure(_figure(), folder)
    assert len(str(err.value).splitlines()) == 1 and (folder / "keep.txt").read_text() == "old"
    (tmp_path / "file").write_text("x")
    with pytest.raises(CnnlabError, match="cannot write"):  # a file where the folder would go
        figures.save_figure(_figure(), tmp_path / "file" / "f.png")
    assert _open_figures() == before and (tmp_path / "file").read_text() == "x"


def test_training_figures_write_through_the_one_helper(tmp_path, no_temporary_files):
    from types import SimpleNamespace as R

    from cnnlab.analysis.charts import analysis_charts

    history = [R(epoch=e, train_acc=50.0 + e, val_acc=None, test_acc=40.0 + e, monitored=40.0 + e) for e in (1, 2)]
    assert callable(analysis_charts)
    paths = [figures.plot_curves([1.0, 0.5, 0.25, 0.2], history, tmp_path / "curves.png", 2),
             figures.plot_confusion([[3, 1], [0, 4]], ["a", HOSTILE], tmp_path / "deep" / "c.png"),
             figures.plot_init_experiment([R(init="he", history=history)], tmp_path / "inits.png")]
    assert all(p.read_bytes().startswith(PNG) for p in paths)


def _script_json(page: str, name: str):
    match = re.search(rf"<script>const {name} = (.*?);</script>", page, re.S)
    return json.loads(match.group(1))


def test_pages_escape_text_and_pass_script_data_as_json():
    data = {"frames": [{"title": HOSTILE}], "positions": 1, "note": "</script><script>alert(1)</script>"}
    page = pages.render("animation.html", title=HOSTILE, animation=data)
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert page.count("</script>") == 2  # the data one and the player's: the data cannot close a script
    assert _script_json(page, "ANIMATION") == data
    assert pages.asset("cnnlab.css") in page and pages.asset("animation.js") in page
    assert page.startswith("<!DOCTYPE html>") and not FETCH.search(page)
    with pytest.raises(Exception, match="positions"):  # a missing value is an error, not an empty string
        pages.render("animation.html", title="t", animation={"frames": []})


def test_every_page_inlines_the_one_stylesheet(tmp_path):
    from cnnlab.analysis import ModelReport, Report, write_html
    from cnnlab.visualize import conv_animation, save_animation

    css = pages.asset("cnnlab.css")
    anim = save_animation(conv_animation(3, 2), tmp_path / "a" / "anim.html").read_text()
    memory = [{"batch": 2, "forward_bytes": 2**20, "training_bytes": 2**19, "training_peak_bytes": 2**22,
               "inference_peak_bytes": 2**21}]
    model = ModelReport(HOSTILE, [1, 8, 8], 10, 10, 0, 0, 40, 100, 200, memory=memory, accuracy=91.5,
                        accuracy_source="a <source>", unsupported=["aten::odd<op>"])
    report = Report([model], {"description": "cpu & <b>", "torch": "2", "threads": 1, "python": "3"}, [2])
    page = write_html(report, tmp_path / "r.html").read_text()
    for text in (anim, page):
        assert css in text and not FETCH.search(text) and text.count("<style>") == 1
    assert 'class="analyze"' in page and 'class="lab"' in anim
    assert HOSTILE not in page and "&lt;script&gt;alert(&#39;x&#39;)" in page and "<b>" not in page
    assert "91.50 <sup>[1]</sup>" in page and "[1] a &lt;source&gt;" in page and "aten::odd&lt;op&gt;" in page
    assert page.count("data:image/png;base64,") == 4  # the four charts, embedded
