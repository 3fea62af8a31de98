"""Shared fixtures. MNIST comes from $CNNLAB_DATA (CI sets it to ../shared/data).

Tests that need MNIST skip when it is absent on a developer's machine, but *fail* when
the environment variable CI is set: CI must never pass by skipping them.
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _mnist_root() -> Path:
    env = os.environ.get("CNNLAB_DATA")
    root = Path(env).expanduser() if env else REPO.parent / "shared" / "data"
    return root.resolve()


MNIST_ROOT = _mnist_root()
# Subprocesses and tests that chdir still find the data: make the path absolute once.
os.environ["CNNLAB_DATA"] = str(MNIST_ROOT)

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs two workers (pytest-xdist): one thread each,
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # subprocesses included, so the cores are not oversubscribed
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True, scope="session")
def _image_cache(tmp_path_factory) -> None:
    """Image folders decoded by the tests are cached in a temporary folder, not the user's ~/.cache."""
    os.environ["CNNLAB_CACHE"] = str(tmp_path_factory.mktemp("image-cache"))


def mnist_available() -> bool:
    raw = MNIST_ROOT / "MNIST" / "raw"
    return all((raw / f).is_file() or (raw / f"{f}.gz").is_file() for f in MNIST_FILES)


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    if not mnist_available():
        message = f"genuine MNIST not found under {MNIST_ROOT}/MNIST/raw (set CNNLAB_DATA)"
        if os.environ.get("CI"):
            pytest.fail(message + " -- CI must not skip the MNIST tests", pytrace=False)
        pytest.skip(message)
    return MNIST_ROOT


@pytest.fixture(scope="session")
def mnist_md5(mnist_root: Path) -> dict[str, str]:
    sums = {}
    md5_file = mnist_root / "MNIST" / "MD5SUMS"
    if md5_file.is_file():
        for line in md5_file.read_text().splitlines():
            digest, name = line.split()
            sums[Path(name).name] = digest
    return sums


def md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished one-epoch run on the bundled digits (one per test module that asks for it)."""
    from cnnlab.training import TrainConfig, train

    out = tmp_path_factory.mktemp("done") / "run"
    train(TrainConfig(dataset="digits", epochs=1, batch_size=256), out=str(out))
    return out


# --- a headless Chromium for the browser tests (report, explore, widgets); they skip without one -----------------
CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "", shutil.which("chromium-browser") or "",
                             shutil.which("google-chrome") or "") if p and Path(p).is_file()), None)
CHROMEDRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").is_file()
                                                else None)
no_chromium = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason="no Chromium/chromedriver installed")


def headless_chrome(window: str = "1280,900", *, console_logs: bool = True):
    """A headless Chromium driven by Selenium (``driver.quit()`` when done); skips the test without one.
    ``console_logs``: keep the page's console messages (``driver.get_log("browser")``)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("no Chromium/chromedriver installed")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={window}"):
        options.add_argument(arg)
    if console_logs:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def extra_module(name: str):
    """A module of the ``test`` extra: skip without it on a developer's machine, but *fail* when ``CI`` is set
    (CI installs the extra: a missing module there is a broken install, not a test to skip)."""
    if os.environ.get("CI"):
        return importlib.import_module(name)
    return pytest.importorskip(name)
