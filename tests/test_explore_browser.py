"""``cnnlab explore``'s page in a real headless Chromium against the real server (two finished one-epoch digits
runs, behind a token): the runs list overlays their curves and opens a run; the page loads without a console
error; a stroke drawn on the canvas changes the probabilities while it is drawn (one /predict in flight at most,
passing on the X-Cnnlab-Token header alone); a click on a map cell shows how that cell was computed (its total
equal to its value in the map, as displayed); the playground shows the error of an impossible layer; an uploaded
file is predicted; an API error is one line by its control; the page is not blank. Skips where Chromium and
chromedriver, selenium or the explore extra (FastAPI, uvicorn, captum) are missing."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import threading
import urllib.parse
import urllib.request

import pytest

from conftest import extra_module, headless_chrome, no_chromium

webdriver = extra_module("selenium.webdriver")
for _module in ("fastapi", "uvicorn", "captum", "PIL"):
    extra_module(_module)

pytestmark = no_chromium
WAIT = 60  # seconds a wait may take on a loaded machine before the test fails (never a sleep)
TOKEN = "s3cret-token"


def _start_server(*args: str) -> tuple[subprocess.Popen, str, list[str]]:
    """``cnnlab explore ARGS --no-browser --port 0``; its URL from the first line; the rest of its output drained."""
    proc = subprocess.Popen([sys.executable, "-m", "cnnlab", "explore", *args, "--no-browser", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    first = threading.Event()

    def drain():
        for line in proc.stdout:
            lines.append(line)
            first.set()
        first.set()

    threading.Thread(target=drain, daemon=True).start()
    if not first.wait(WAIT) or not lines or not lines[0].startswith("cnnlab explore: http://"):
        proc.kill()
        pytest.fail(f"cnnlab explore did not print its URL first: {''.join(lines)!r}")
    return proc, lines[0].split(": ", 1)[1].strip(), lines


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _get_json(url: str, token: str):
    request = urllib.request.Request(url, headers={"X-Cnnlab-Token": token})
    with urllib.request.urlopen(request, timeout=WAIT) as answer:
        return json.load(answer)


@pytest.fixture(scope="module")
def server(finished_run, tmp_path_factory):
    """Two finished one-epoch digits runs served with a token. Yields the printed URL (``?token=``, which sets a
    cookie; the drawing test drops it, so its requests pass on the page's X-Cnnlab-Token header alone), the URL
    that opens the first run (``#subject=ID``) and that run's record."""
    runs = tmp_path_factory.mktemp("explore") / "runs"
    for name in ("first", "second"):
        shutil.copytree(finished_run, runs / name)
    proc, url, _ = _start_server(str(runs), "--token", TOKEN)
    assert url.endswith(f"/?token={TOKEN}")
    base = url.split("?")[0]
    subjects = _get_json(base + "api/subjects", TOKEN)
    assert len(subjects) == 2
    info = _get_json(base + "api/subjects/" + urllib.parse.quote(subjects[0]["id"]), TOKEN)
    yield url, url + "#subject=" + urllib.parse.quote(info["id"]), info
    _stop(proc)


@pytest.fixture(scope="module")
def browser():
    driver = headless_chrome("1280,900")
    yield driver
    driver.quit()


def _wait(browser, condition, message: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT, poll_frequency=0.05).until(condition, message)


def _severe(browser) -> list[dict]:
    return [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]


def _probs(browser) -> list[str]:
    return browser.execute_script("return Array.from(document.querySelectorAll('#probs tr')).map(r => r.dataset.p)")


def _open(browser, url: str) -> None:
    """A fresh load of the page at ``url`` (through about:blank: the same URL with a #fragment would not reload)."""
    from selenium.webdriver.common.by import By

    browser.get("about:blank")
    browser.get(url)
    _wait(browser, lambda b: all(_probs(b)) and _probs(b), "no probabilities shown")
    _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "img.map[data-layer][data-channel]"), "no maps shown")


def test_page_loads_and_drawing_updates_the_prediction_while_drawing(server, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    _, url, info = server
    _open(browser, url)
    assert not _severe(browser)
    names = [e.get_attribute("data-name") for e in browser.find_elements(By.CSS_SELECTOR, "#overview .layer[data-name]")]
    assert names == info["layers"]  # a card per spatial layer, in forward order
    assert len(_probs(browser)) == len(info["classes"]) and browser.find_element(By.ID, "predicted").text
    assert browser.execute_script("return CNNLAB.token") == TOKEN
    browser.delete_all_cookies()  # from here on only the X-Cnnlab-Token header lets the requests in
    browser.execute_script("""window.__flight = {now: 0, most: 0, sent: 0}; const f = window.fetch;
      window.fetch = function (url, init) {
        if (!String(url).endsWith('/predict')) return f(url, init);
        const s = window.__flight; s.now++; s.sent++; s.most = Math.max(s.most, s.now);
        return f(url, init).finally(function () { s.now--; });
      };""")
    before = _probs(browser)
    canvas = browser.find_element(By.ID, "canvas")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    side = canvas.size["width"]
    stroke = ActionChains(browser).move_to_element_with_offset(canvas, -side // 10, -side // 3).click_and_hold()
    for _ in range(8):
        stroke.move_by_offset(0, side // 12)
    stroke.perform()  # the pen is still down: the prediction must follow the stroke already
    _wait(browser, lambda b: _probs(b) != before, "the probabilities did not change while drawing")
    ActionChains(browser).release().perform()
    _wait(browser, lambda b: b.execute_script("return window.__flight.now") == 0, "a /predict never answered")
    flight = browser.execute_script("return window.__flight")
    assert flight["sent"] >= 1 and flight["most"] == 1, flight
    probs = [float(p) for p in _probs(browser)]
    assert abs(sum(probs) - 1) < 1e-3 and not _severe(browser)


def _click_cell(browser, img, y: int, x: int) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", img)
    h, w = int(img.get_attribute("data-h")), int(img.get_attribute("data-w"))
    width, height = img.size["width"], img.size["height"]
    dx, dy = (x + 0.5) * width / w - width / 2, (y + 0.5) * height / h - height / 2  # from the element's centre
    ActionChains(browser).move_to_element_with_offset(img, int(dx), int(dy)).click().perform()


@pytest.mark.parametrize("which,channel,corner", [("first", 0, (0, 0)), ("last", 1, (-1, -1)), ("pool", 0, (1, 0))])
def test_a_clicked_cell_shows_its_computation(server, browser, which, channel, corner):
    from selenium.webdriver.common.by import By

    _, url, info = server
    _open(browser, url)
    layer = {"first": info["conv_layers"][0], "last": info["conv_layers"][-1],
             "pool": next((n for n in info["layers"] if "pool" in n), info["conv_layers"][0])}[which]
    img = browser.find_element(By.CSS_SELECTOR, f"img.map[data-layer='{layer}'][data-channel='{channel}']")
    h, w = int(img.get_attribute("data-h")), int(img.get_attribute("data-w"))
    y, x = corner[0] % h, corner[1] % w
    _click_cell(browser, img, y, x)
    _wait(browser, lambda b: b.find_elements(By.ID, "detail-value"), "no detail shown")
    heading = browser.find_element(By.CSS_SELECTOR, "#detail h3").text
    assert heading == f"{layer}, channel {channel}, cell ({y}, {x})"
    total, value = browser.find_element(By.ID, "detail-total").text, browser.find_element(By.ID, "detail-value").text
    assert total == value and float(value) == float(value)  # equal as displayed, and a number
    assert browser.find_elements(By.CSS_SELECTOR, "#detail table.grid.window")  # the window, as a grid
    meta = browser.find_element(By.CSS_SELECTOR, "#detail p.meta").text
    if layer in info["conv_layers"] and (y, x) == (0, 0) and "padding 0," not in meta:
        assert browser.find_elements(By.CSS_SELECTOR, "#detail td.pad")  # the corner's window reaches into padding
    if "max pooling" in meta:
        assert len(browser.find_elements(By.CSS_SELECTOR, "#detail td.win")) == 1  # the winner highlighted
    assert browser.find_element(By.ID, "rf-box").is_displayed()
    _wait(browser, lambda b: b.find_element(By.ID, "erf").get_attribute("src").startswith("data:image/png"), "no ERF")
    assert not _severe(browser)


def test_playground_shows_the_error_of_an_impossible_layer_then_recovers(server, browser):
    from selenium.webdriver.common.by import By

    url, _, _ = server
    browser.get("about:blank")
    browser.get(url)
    _wait(browser, lambda b: b.find_element(By.ID, "pg-output").text.strip(), "the playground showed nothing")
    for field, value in (("pg-input", "3"), ("pg-kernel", "5"), ("pg-stride", "1"), ("pg-padding", "0")):
        box = browser.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    error = browser.find_element(By.ID, "pg-error")
    _wait(browser, lambda b: error.is_displayed() and error.text.strip(), "no playground error shown")
    assert "\n" not in error.text.strip() and not browser.find_element(By.ID, "pg-output").text.strip()
    box = browser.find_element(By.ID, "pg-input")
    box.clear()
    box.send_keys("7")  # (7 - 5) / 1 + 1 = 3
    _wait(browser, lambda b: not error.is_displayed(), "the error stayed after a possible layer")
    assert "output size 3" in browser.find_element(By.ID, "pg-output").text
    _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#pg-animation .stage rect"), "no animation played")
    # the one SEVERE line allowed: the browser's own note of the 400 answer
    assert all(e.get("source") == "network" and "/api/playground" in e["message"] for e in _severe(browser))


def test_screenshot_is_not_blank(server, browser):
    from PIL import Image

    _, url, _ = server
    _open(browser, url)
    picture = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
    colours = picture.getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 1  # None: more colours than counted
    assert picture.getextrema() != ((255, 255), (255, 255), (255, 255))


def test_runs_list_overlays_the_curves_and_opens_a_run(server, browser):
    from selenium.webdriver.common.by import By

    url, _, _ = server
    browser.get("about:blank")
    browser.get(url)
    rows = _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#subjects tbody tr"), "no runs listed")
    assert len(rows) == 2 and browser.find_element(By.ID, "subjects").is_displayed()
    assert browser.execute_script("return Chart.getChart('curves').data.datasets.length") == 2
    assert not browser.find_element(By.ID, "subject").is_displayed()  # the list first, no run chosen yet
    link = rows[1].find_element(By.TAG_NAME, "a")
    name = link.text
    link.click()
    _wait(browser, lambda b: all(_probs(b)) and _probs(b), "the run did not open")
    assert name in browser.find_element(By.ID, "subject-name").text and not _severe(browser)

def test_an_uploaded_file_is_predicted_and_an_api_error_is_one_line_by_its_control(server, browser, tmp_path):
    from PIL import Image, ImageDraw
    from selenium.webdriver.common.by import By

    _, url, info = server
    _open(browser, url)
    before = _probs(browser)
    picture = Image.new("L", (40, 40), 0)
    ImageDraw.Draw(picture).line([(20, 6), (20, 34)], fill=255, width=5)  # a "1", white on black
    picture.save(tmp_path / "one.png")
    browser.find_element(By.ID, "upload").send_keys(str(tmp_path / "one.png"))
    _wait(browser, lambda b: _probs(b) != before, "the uploaded file was not predicted")
    assert "your file" in browser.find_element(By.ID, "index-label").text and not _severe(browser)
    index = browser.find_element(By.ID, "index")
    index.clear()
    index.send_keys(str(info["test_size"] + 5))  # beyond the test split: the API answers 400 {"error"}
    error = browser.find_element(By.ID, "input-error")
    _wait(browser, lambda b: error.is_displayed() and error.text.strip(), "no error line by the index box")
    assert "\n" not in error.text.strip() and str(info["test_size"] + 5) in error.text
    assert browser.find_elements(By.CSS_SELECTOR, "#overview .layer[data-name] img.map")  # the page stays
    assert all(e.get("source") == "network" and "/predict" in e["message"] for e in _severe(browser))

