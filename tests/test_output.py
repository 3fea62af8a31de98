"""Piped or redirected output is plain text, one message per line, never hard-wrapped -- whatever
the terminal width (COLUMNS) and however long the paths -- so logs and ``grep`` see whole lines
(cnnlab.terminal). Each command runs as a user runs it: a subprocess with its stdout piped."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab.terminal import make_console

NARROW = {"COLUMNS": "40", "LINES": "10", "TERM": "xterm-256color"}


def piped(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "cnnlab", *args], capture_output=True, text=True,
                          env={**os.environ, **NARROW, **(env or {})}, timeout=600)
    assert proc.returncode == 0 and proc.stderr == "", (args, proc.stderr)
    assert "\x1b" not in proc.stdout, "colour or cursor codes in piped output"
    return proc


def line_with(stdout: str, *parts: str) -> str:
    """The one line holding every part (each part unbroken), or a failure showing the output."""
    lines = [line for line in stdout.splitlines() if all(p in line for p in parts)]
    assert len(lines) >= 1, f"no single line holds {parts!r}:\n{stdout}"
    return lines[0]


@pytest.fixture(scope="module")
def deep(tmp_path_factory) -> Path:
    """A folder more than 200 characters deep (the test's own temporary path comes on top)."""
    root = tmp_path_factory.mktemp("long")
    path = root.joinpath(*[f"level-{i:02d}-of-a-deeply-nested-folder" for i in range(8)])
    assert len(str(path)) > 250
    path.mkdir(parents=True)
    return path


@pytest.fixture(scope="module")
def trained(deep) -> tuple[Path, str]:
    run = deep / "run"
    proc = piped("train", "--dataset", "digits", "--epochs", "1", "--out", str(run))
    return run, proc.stdout


def test_train_messages_are_whole_lines(trained):
    run, stdout = trained
    assert line_with(stdout, "Run directory: ", str(run)) == f"Run directory: {run}"
    line_with(stdout, "Saved config.json, metrics.csv, model.pt and curves.png in ", str(run))
    line_with(stdout, "Epoch: 001/001 | Cost: ", " | Train: ", " | Test: ", "Time elapsed: ")
    assert all(not line.strip() or line.startswith(("convnet on digits", "Run directory", "Epoch:", "Total Training",
                                                    "Test accuracy", "Saved"))
               for line in stdout.splitlines()), stdout  # no line is the tail of a wrapped one


def test_export_evaluate_and_runs_keep_paths_whole(trained):
    pytest.importorskip("onnxruntime")
    run, _ = trained
    target = run.parent / "model-with-a-long-name.onnx"
    out = piped("export", str(run), "--out", str(target)).stdout
    line_with(out, f"Wrote {target} (dynamic batch", "max |diff|")
    out = piped("evaluate", str(run)).stdout
    line_with(out, f"convnet on digits from {run}")
    line_with(out, f"Confusion matrix: {run / 'confusion_test.png'}")
    table = piped("runs", str(run)).stdout  # a table is laid out at its natural width: no cell cut or wrapped
    line_with(table, str(run), "convnet", "digits", "1/1", "finished")


def test_visualize_commands_keep_paths_whole(trained):
    run, _ = trained
    png = run.parent / "first-layer-filters.png"
    out = piped("show", "filters", str(run), "--out", str(png)).stdout
    line_with(out, "filters of 1x3x3")
    line_with(out, f"Wrote {png}")
    html = run.parent / "the-report.html"
    line_with(piped("report", str(run), "--images", "1", "--max-eval", "64", "--out", str(html)).stdout,
              f"Wrote {html} (", "sections: ")


def test_output_does_not_depend_on_the_terminal_width():
    """Deterministic commands print the same bytes at 40 and at 400 columns."""
    for args in (["arith", "--input", "224", "--kernel", "7", "--stride", "2", "--padding", "3"],
                 ["summary", "vgg16"], ["models"]):
        narrow = piped(*args).stdout
        assert narrow == piped(*args, env={"COLUMNS": "400"}).stdout, args
        assert max(map(len, narrow.splitlines())) > 40, args  # there was something to wrap


def test_the_console_factory_is_plain_and_unwrapped_off_a_terminal():
    from rich.table import Table

    buffer = io.StringIO()
    console = make_console(buffer)
    message = "Wrote runs/[old]/:smile:/" + "x" * 300 + ".pt (max |diff| 1e-7)"
    console.print(message)
    table = Table(title="t")
    table.add_column("path")
    table.add_column("n", justify="right")
    table.add_row("p" * 500, "1")
    console.print(table)
    lines = buffer.getvalue().splitlines()
    assert lines[0] == message  # not wrapped, not read as markup or emoji codes
    assert any("p" * 500 in line and line.rstrip().endswith("1 │") for line in lines)
    assert "\x1b" not in buffer.getvalue()
