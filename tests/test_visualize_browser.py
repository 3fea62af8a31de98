"""The HTML report in a real headless browser: it renders, and clicking a feature-map cell draws that
cell's receptive-field box (from cnnlab.summary.receptive_field_map) on the input image. Skips where
no Chromium and chromedriver are installed (``.ci/run`` installs them where it can)."""

from __future__ import annotations

import pytest

from conftest import headless_chrome, no_chromium

webdriver = pytest.importorskip("selenium.webdriver")
pytest.importorskip("captum")

pytestmark = no_chromium


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The report of the ConvNet (random weights) on the bundled digits, resized to 28 px."""
    import torch

    from cnnlab.visualize import build_report, load_subject

    torch.manual_seed(0)
    subject = load_subject("convnet", dataset="digits")
    path = tmp_path_factory.mktemp("report") / "report.html"
    build_report(subject, n_images=2, out=path)
    return path, subject


@pytest.fixture(scope="module")
def browser():
    driver = headless_chrome("1300,1000", console_logs=False)
    yield driver
    driver.quit()


def _click_cell(browser, img, y: int, x: int, h: int, w: int) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", img)
    width, height = img.size["width"], img.size["height"]
    # Selenium 4 offsets are from the element's centre; aim at the middle of cell (y, x)
    dx = (x + 0.5) * width / w - width / 2
    dy = (y + 0.5) * height / h - height / 2
    ActionChains(browser).move_to_element_with_offset(img, int(dx), int(dy)).click().perform()


@pytest.mark.parametrize("sample,layer,channel,cell", [(0, "conv_2", 3, (4, 9)), (1, "pool_2", 0, (6, 0)),
                                                       (0, "conv_1", 1, (0, 27))])
def test_clicking_a_cell_draws_its_receptive_field_box(report, browser, sample, layer, channel, cell):
    from selenium.webdriver.common.by import By

    from cnnlab.summary import receptive_field_map

    path, subject = report
    browser.get(path.as_uri())
    assert browser.find_element(By.ID, "layer-table").is_displayed()
    box = browser.find_element(By.ID, f"rf-box-{sample}")
    assert not box.is_displayed()  # nothing drawn before a click
    group = browser.find_element(By.CSS_SELECTOR, f"#sample-{sample} .layer[data-layer='{layer}']")
    h, w = int(group.get_attribute("data-h")), int(group.get_attribute("data-w"))
    img = group.find_elements(By.CSS_SELECTOR, "img.fmap")[channel]
    _click_cell(browser, img, *cell, h, w)
    expected = receptive_field_map(subject.model, subject.input_shape)[layer].box(*cell)  # (top, left, bottom, right)
    assert box.is_displayed()
    got = tuple(int(box.get_attribute(f"data-{k}")) for k in ("top", "left", "bottom", "right"))
    assert (int(box.get_attribute("data-y")), int(box.get_attribute("data-x"))) == cell
    assert got == expected
    picture = browser.find_element(By.CSS_SELECTOR, f"#sample-{sample} .inputbox img")
    scale = picture.size["width"] / subject.input_shape[2]
    top, left, bottom, right = expected
    rect, origin = box.rect, picture.rect
    assert abs(rect["x"] - origin["x"] - left * scale) <= 1.5 and abs(rect["y"] - origin["y"] - top * scale) <= 1.5
    assert abs(rect["width"] - (right - left) * scale) <= 1.5 and abs(rect["height"] - (bottom - top) * scale) <= 1.5
    text = browser.find_element(By.ID, f"rf-text-{sample}").text
    assert text.startswith(f"{layer} cell ({cell[0]}, {cell[1]}) sees rows {top}..{bottom - 1}, columns {left}..{right - 1}")


def test_report_renders_every_section_without_script_errors(report, browser):
    from selenium.webdriver.common.by import By

    path, _ = report
    browser.get(path.as_uri())
    for section in ("curves", "confusion", "mistakes", "filters", "samples", "layers"):
        assert browser.find_element(By.ID, section).is_displayed()
    loaded = browser.execute_script("return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert loaded  # every embedded picture decodes
    logs = browser.get_log("browser") if hasattr(browser, "get_log") else []
    assert not [entry for entry in logs if entry.get("level") == "SEVERE"], logs


def test_animation_page_steps_through_every_frame(browser, tmp_path):
    from selenium.webdriver.common.by import By

    from cnnlab.visualize import conv_animation, save_animation

    anim = conv_animation(4, 3, 2, 1, transposed=True)  # 7x7 output: 49 positions
    path = save_animation(anim, tmp_path / "t.html")
    browser.get(path.as_uri())
    browser.find_element(By.CSS_SELECTOR, "#animation .play").click()  # pause the autoplay
    browser.execute_script("const s = document.querySelector('#animation .scrub'); s.value = 0; "
                           "s.dispatchEvent(new Event('input'))")
    counter = browser.find_element(By.CSS_SELECTOR, "#animation .counter")
    assert counter.text.strip() == f"frame 1 / {anim.positions + 2}"
    browser.find_element(By.CSS_SELECTOR, "#animation .next").click()
    assert counter.text.strip() == f"frame 2 / {anim.positions + 2}"
    grid = len(anim.panels[0].grid) ** 2 + 9 + anim.positions  # input grid, kernel, output cells
    assert len(browser.find_elements(By.CSS_SELECTOR, "#animation .stage rect")) == grid
    texts = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#animation .stage text")]
    assert anim.frames[1].title in texts and anim.frames[1].texts[0] in texts
    logs = browser.get_log("browser") if hasattr(browser, "get_log") else []
    assert not [entry for entry in logs if entry.get("level") == "SEVERE"], logs
