"""The command line, run as a user runs it: a real subprocess, exit codes, one-line errors.

:func:`cnnlab` runs ``python -m cnnlab`` in a subprocess. :func:`cnnlab_in_process` runs the same
entry point (:func:`cnnlab.cli.run`) in this process, with its own stdout, stderr, working folder and
environment, and gives the same ``CompletedProcess``: for the many error-path cases whose subject is the
message, not the process (it saves loading torch once per case). Start-up, environment read when torch
starts (ATEN_CPU_CAPABILITY), signals, locks held by other
processes and anything torchrun does keep the subprocess.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def cnnlab(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cnnlab", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def cnnlab_in_process(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    import torch

    from cnnlab.cli import run

    saved_env, saved_cwd, saved_threads = dict(os.environ), os.getcwd(), torch.get_num_threads()
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run(list(args))
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        torch.set_num_threads(saved_threads)
    return subprocess.CompletedProcess(["cnnlab", *args], code, out.getvalue(), err.getvalue())


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("cnnlab: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["train", "--model", "vggg"], ["unknown model 'vggg'"]),
        (["train", "--model", "convnt"], ["did you mean convnet"]),
        (["train", "--dataset", "svhn"], ["unknown dataset 'svhn'", "cifar10, digits, fashion-mnist, imagefolder, mnist"]),
        (["train", "--dataset", "imagenet"], ["unknown dataset 'imagenet'", "did you mean imagefolder"]),
        (["train", "--epochs", "0", "--dataset", "digits"], ["--epochs must be a positive integer"]),
        (["train", "--lr", "-1", "--dataset", "digits"], ["--lr must be a positive number"]),
        (["train", "--optimizer", "rmsprop"], ["--optimizer"]),
        (["train", "--no-such-flag"], ["No such option"]),
        (["train", "--dataset", "digits", "-o", "dropout2d"], ["KEY=VALUE"]),
        (["arith", "--input", "3", "--kernel", "5"], ["input 3, kernel 5, padding 0, stride 1: (3 + 0 - 5)/1 + 1 = -1"]),
        (["arith", "--input", "28", "--kernel", "3", "--padding", "half"], ["padding must be an int, 'same' or 'valid'"]),
        (["arith", "--input", "28"], ["--kernel"]),
        (["summary", "convnet", "--input", "1x2x2"], ["vanishes at pool_2"]),
        (["summary", "convnet", "--input", "28x28"], ["CxHxW"]),
        (["summary", "resnett"], ["unknown model"]),
        (["evaluate", "/definitely/not/here"], ["does not exist"]),
    ],
)
def test_user_errors_are_one_line_exit_2(args, fragments):
    assert_user_error(cnnlab(*args), *fragments)


def test_cuda_without_a_gpu_is_a_user_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = cnnlab("train", "--dataset", "digits", "--device", "cuda", "--out", str(tmp_path / "r"))
    assert_user_error(proc, "no CUDA device is available", "--device cpu")


def test_missing_data_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    proc = cnnlab("train", "--data-dir", str(tmp_path / "empty"), "--no-download", "--out", str(out))
    assert_user_error(proc, str(tmp_path / "empty" / "MNIST" / "raw"), "train-images-idx3-ubyte", "--data-dir")
    assert not out.exists()


def test_missing_data_without_network(tmp_path):
    """With downloading on and no network the user still gets one line, no traceback."""
    proc = cnnlab("train", "--data-dir", str(tmp_path), "--epochs", "1", "--out", str(tmp_path / "run"))
    if proc.returncode == 0:
        pytest.skip("this machine has a network: MNIST was downloaded")
    assert_user_error(proc, "MNIST not found", "--data-dir")


def test_existing_run_dir_kept(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.pt").write_bytes(b"precious")
    proc = cnnlab("train", "--dataset", "digits", "--epochs", "1", "--out", str(out))
    assert_user_error(proc, "already exists", "--overwrite")
    assert (out / "model.pt").read_bytes() == b"precious"


def test_evaluate_truncated_checkpoint(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04 truncated")
    assert_user_error(cnnlab("evaluate", str(tmp_path)), "cannot be read")


def test_arith_prints_the_worked_formula():
    proc = cnnlab("arith", "--input", "28", "--kernel", "3", "--stride", "1", "--padding", "same")
    assert proc.returncode == 0, proc.stderr
    assert "(28 + 2 - 3)/1 + 1 = 28" in proc.stdout
    assert "output size: 28" in proc.stdout


def test_summary_table_and_json():
    proc = cnnlab("summary", "convnet", "--input", "1x28x28")
    assert proc.returncode == 0, proc.stderr
    for text in ["28x28x1 => 28x28x4", "14x14x8 => 7x7x8", "(28 + 2 - 3)/1 + 1 = 28", "4,266", "88,592"]:
        assert text in proc.stdout
    proc = cnnlab("summary", "convnet", "--input", "3x32x32", "--format", "json", "--num-classes", "5")
    doc = json.loads(proc.stdout)
    assert doc["total_params"] == 4 * 28 + 8 * 37 + 5 * 513
    assert doc["layers"][-1]["transition"] == "512 => 5"


def test_models_lists_the_registry():
    proc = cnnlab("models", "--format", "json")
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["convnet"]["params"] == 4266 and rows["convnet"]["macs"] == 88592


def test_train_and_evaluate_on_digits(tmp_path):
    out = tmp_path / "run"
    proc = cnnlab("train", "--dataset", "digits", "--epochs", "3", "--momentum", "0.9", "--lr", "0.1",
                  "--batch-size", "32", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Epoch: 003/003" in proc.stdout and "Test accuracy:" in proc.stdout
    reported = [line for line in proc.stdout.splitlines() if line.startswith("Test accuracy:")][0]
    for name in ("config.json", "metrics.csv", "model.pt", "curves.png"):
        assert (out / name).is_file()
    proc = cnnlab("evaluate", str(out))
    assert proc.returncode == 0, proc.stderr
    assert reported in proc.stdout.splitlines()


@pytest.mark.mnist
def test_train_mnist_cli_and_evaluate(mnist_root, tmp_path):
    out = tmp_path / "run"
    proc = cnnlab("train", "--epochs", "1", "--momentum", "0.9", "--data-dir", str(mnist_root), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    reported = [line for line in proc.stdout.splitlines() if line.startswith("Test accuracy:")][0]
    assert float(reported.split()[2].rstrip("%")) >= 95.0
    proc = cnnlab("evaluate", str(out), "--data-dir", str(mnist_root))
    assert reported in proc.stdout.splitlines()


def test_help_and_version():
    assert cnnlab("--help").returncode == 0
    proc = cnnlab("train", "--help")
    assert proc.returncode == 0 and "--batch-size" in proc.stdout
    proc = cnnlab()
    assert proc.returncode == 0 and "train" in proc.stdout
    assert "0.1.0" in cnnlab("--version").stdout
