"""The lecture as notebooks (examples/notebooks/): each is stored without outputs and runs from top to bottom
in a fresh kernel (nbclient), with CNNLAB_NOTEBOOK_QUICK=1 (a few batches instead of epochs), ending in a figure.

A notebook lists the data it reads in its metadata (``"cnnlab": {"data": ["mnist"]}``): it skips without MNIST
on a developer's machine and fails on CI, as the other MNIST tests do (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import extra_module

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "examples" / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 300  # a hang guard per cell, not a speed test (quick mode runs each notebook in seconds)
TOPICS = ("convnet", "init", "dropout", "convolution", "vgg16", "resnet", "canziani", "inside")


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_the_lecture_has_its_eight_notebooks() -> None:
    names = [p.stem for p in NOTEBOOKS]
    assert len(names) == len(TOPICS), names
    for name, topic in zip(names, TOPICS):
        assert topic in name, (name, topic)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    nb = _load(path)
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name} cell {i} has outputs: clear them before committing"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"
    assert nb["metadata"]["cnnlab"]["data"] in ([], ["mnist"]), "metadata.cnnlab.data names what it reads"


def _has_figure(cell: dict) -> bool:
    return any("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_ends_in_a_figure(path: Path, tmp_path: Path, request, monkeypatch) -> None:
    nbformat = extra_module("nbformat")
    nbclient = extra_module("nbclient")
    if "mnist" in _load(path)["metadata"]["cnnlab"]["data"]:
        request.getfixturevalue("mnist_root")
    monkeypatch.setenv("CNNLAB_NOTEBOOK_QUICK", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", shutdown_kernel="immediate",
                                     resources={"metadata": {"path": str(tmp_path)}})  # the kernel runs in tmp_path
    client.execute()  # a cell that raises fails here, with its traceback
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "every code cell ran"
    assert _has_figure(code[-1]), f"{path.name} should end in a figure, not {code[-1].outputs}"
    assert not list(tmp_path.iterdir()), "a notebook writes nothing into its working folder"
