"""cnnlab.widgets: the Python side (traits in, results out; the explore widget's messages answered by the
service the app's routes call) and the front end in a real headless Chromium, on a page that hosts the widget's
ES module with a minimal fake anywidget model (get/set/on/off/send/save_changes). The browser tests skip
without Chromium/chromedriver or selenium; all of them skip without anywidget (the notebook extra)."""

from __future__ import annotations

import json
import re

import pytest

from conftest import extra_module, headless_chrome

extra_module("anywidget")

import cnnlab.widgets as widgets  # noqa: E402
from cnnlab.errors import CnnlabError  # noqa: E402
from cnnlab.visualize.cell import explain_cell  # noqa: E402
from cnnlab.widgets.classes import answer  # noqa: E402

WAIT = 60


@pytest.fixture(scope="module")
def explorer():
    return widgets.explore("convnet", dataset="digits")


def test_the_arithmetic_widget_answers_its_traits():
    w = widgets.arithmetic(input=5, kernel=3, padding=1)
    assert w.result["output"] == 5 and w.error == "" and any("= 5" in line for line in w.result["formula"])
    w.stride = 2
    assert w.result["output"] == 3 and w.result["animation"]["positions"] == 9
    w.padding = "same"
    w.stride = 1
    assert w.result["output"] == 5
    w.padding, w.kernel = 0, 7  # impossible: the one-line message, no result
    assert w.result == {} and "\n" not in w.error and "output must be >= 1" in w.error
    w.kernel, w.transposed, w.stride = 3, True, 2
    assert w.error == "" and w.result["output"] == (5 - 1) * 2 + 3


def test_the_widgets_degrade_to_static_html():
    from test_rich_display import check

    w = widgets.arithmetic(input=6, kernel=3, stride=3)
    data, _ = w._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data and "text/plain" in data
    text = " ".join(check(data["text/html"]).text)
    assert all(line in text for line in w.result["formula"])
    w.kernel = 9
    assert w.error in " ".join(check(w._repr_mimebundle_()[0]["text/html"]).text)


def test_the_explore_widget_answers_the_pages_messages_as_the_app_does(explorer):
    sent = []
    explorer.send = sent.append
    body = {"index": 3, "layer": "conv_2", "channel": 1, "y": 4, "x": 5}
    explorer._on_message(explorer, {"id": "t:1", "name": "cell", "subject": "convnet", "body": body}, [])
    catalog = explorer.catalog
    entry = catalog.get("convnet")
    x = catalog.image(entry, 3, None).x
    expected = explain_cell(catalog.subject(entry).model, x, "conv_2", 1, 4, 5).to_dict()
    assert sent[-1]["id"] == "t:1" and sent[-1]["answer"] == expected
    json.dumps(sent[-1])  # what goes over the comm is JSON
    explorer._on_message(explorer, {"id": "t:2", "name": "cell", "subject": "convnet",
                                    "body": body | {"layer": "nope"}}, [])
    assert set(sent[-1]) == {"id", "error"} and "nope" in sent[-1]["error"] and "\n" not in sent[-1]["error"]
    for wrong in ({"name": "cell", "subject": "convnet", "body": body | {"y": "4"}},
                  {"name": "predict", "subject": "../etc", "body": {}}, {"name": "rm", "body": None}):
        assert "\n" not in answer(catalog, wrong | {"id": 9})["error"]


def test_the_explore_widget_shows_its_overview_where_widgets_cannot_run(explorer):
    from test_rich_display import check

    html = explorer._repr_mimebundle_()[0]["text/html"]
    parser = check(html)
    overview = explorer.request("layers", {"index": 0, "channels": 1})
    text = " ".join(parser.text)
    assert all(layer["name"] in text and f"{layer['macs']:,}" in text for layer in overview["layers"])
    assert "test image 0" in text and sum(u.startswith("data:image/png") for u in parser.urls) > 1


def test_bad_arguments_are_one_line():
    with pytest.raises(CnnlabError, match="neither a run directory"):
        widgets.explore("no/such/run")
    with pytest.raises(CnnlabError, match="model name"):
        widgets.explore(object())


# ---- the front end, in a headless Chromium ---------------------------------------------------------------
HOST = """<!DOCTYPE html><html><head><meta charset="utf-8"></head><body><div id="out"></div><script>
window.sent = []; window.saved = [];
window.fakeModel = function (state) {  // anywidget's model, as far as a widget uses it
  const handlers = {};
  const fire = function (ev, a) { (handlers[ev] || []).slice().forEach(function (h) { h(a); }); };
  return {get: function (k) { return state[k]; },
          set: function (k, v) { state[k] = v; fire('change:' + k); },
          on: function (ev, cb) { (handlers[ev] = handlers[ev] || []).push(cb); },
          off: function (ev, cb) { handlers[ev] = (handlers[ev] || []).filter(function (h) { return h !== cb; }); },
          save_changes: function () { window.saved.push(JSON.parse(JSON.stringify(state))); },
          send: function (msg) { window.sent.push(msg); }, emit: fire};
};
window.mount = async function (esm, state) {
  const url = URL.createObjectURL(new Blob([esm], {type: 'text/javascript'}));
  const widget = (await import(url)).default;
  window.model = window.fakeModel(state);
  widget.render({model: window.model, el: document.getElementById('out')});
  return true;
};
</script></body></html>"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = headless_chrome("1280,900")
    page = tmp_path_factory.mktemp("host") / "host.html"
    page.write_text(HOST)
    driver.host = page.as_uri()
    yield driver
    driver.quit()


def _wait(browser, script: str, message: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT, poll_frequency=0.05).until(lambda b: b.execute_script(script), message)


def _mount(browser, esm: str, state: dict) -> None:
    browser.get(browser.host)
    browser.execute_async_script("const done = arguments[2]; mount(arguments[0], arguments[1]).then(done, "
                                 "function (e) { done(String(e)); });", esm, state)
    _wait(browser, "return document.getElementById('out').shadowRoot !== null", "the widget rendered nothing")


def _severe(browser) -> list[dict]:
    return [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]


SHADOW = "const r = document.getElementById('out').shadowRoot; "


def test_the_arithmetic_front_end_draws_and_reacts(browser):
    w = widgets.arithmetic(input=5, kernel=3, padding=1)
    state = {k: v for k, v in w.get_state().items() if not k.startswith("_") or k == "_markup"}
    _mount(browser, widgets.arithmetic_esm(), state)
    assert _wait(browser, SHADOW + "return r.querySelector('pre.formula').textContent", "no formula") \
        == "\n".join(w.result["formula"])
    assert browser.execute_script(SHADOW + "return r.querySelectorAll('svg.stage rect').length") > 0
    assert browser.execute_script(SHADOW + "return r.querySelector('[data-trait=kernel]').value") == "3"
    browser.execute_script(SHADOW + "const k = r.querySelector('[data-trait=kernel]'); k.value = '4'; "
                           "k.dispatchEvent(new Event('change'));")
    assert browser.execute_script("return window.saved[window.saved.length - 1].kernel") == 4  # control -> trait
    w.kernel = 4  # what the kernel answers, set on the fake model as the comm would
    browser.execute_script("model.set('result', arguments[0]); model.set('error', '');", w.result)
    assert _wait(browser, SHADOW + "return r.querySelector('b.output').textContent", "no output") == str(w.result["output"])
    w.kernel = 9
    browser.execute_script("model.set('kernel', 9); model.set('error', arguments[0]); model.set('result', {});", w.error)
    assert _wait(browser, SHADOW + "const e = r.querySelector('.error'); return !e.hidden && e.textContent", "no error") \
        == w.error
    assert browser.execute_script(SHADOW + "return r.querySelector('[data-trait=kernel]').value") == "9"
    assert not _severe(browser)


def _pump(browser, catalog, until: str, message: str) -> None:
    """Answer the page's messages in Python (the widget's own handler) until ``until`` holds."""
    from selenium.webdriver.support.ui import WebDriverWait

    def step(b):
        for msg in b.execute_script("const s = window.sent; window.sent = []; return s;"):
            b.execute_script("model.emit('msg:custom', arguments[0]);", answer(catalog, msg))
        return b.execute_script(until)

    WebDriverWait(browser, WAIT, poll_frequency=0.05).until(step, message)


def test_the_explore_front_end_is_the_apps_page_over_messages(browser, explorer):
    state = {"_markup": explorer._markup, "_config": explorer._config}
    _mount(browser, widgets.explore_esm(), state)
    _pump(browser, explorer.catalog, SHADOW + "return r.querySelectorAll('#overview img.map').length > 0",
          "the overview never came")
    names = browser.execute_script(SHADOW + "return Array.from(r.querySelectorAll('#overview .layer'))"
                                   ".map(c => c.dataset.name)")
    assert names == [layer["name"] for layer in explorer.request("layers", {"index": 0})["layers"]]
    browser.execute_script(SHADOW + "r.querySelector('#overview img.map').click();")
    _pump(browser, explorer.catalog, SHADOW + "return r.getElementById('detail-total') !== null", "no cell detail")
    total = browser.execute_script(SHADOW + "return r.getElementById('detail-total').textContent")
    value = browser.execute_script(SHADOW + "return r.getElementById('detail-value').textContent")
    assert re.fullmatch(r"-?\d+\.\d{4}", total) and total == value
    _pump(browser, explorer.catalog, SHADOW + "return r.querySelector('#pg-output pre') !== null", "no playground")
    assert not _severe(browser) and browser.execute_script("return location.hash") == ""
