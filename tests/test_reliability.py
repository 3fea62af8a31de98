"""Nothing lost, nothing silent (docs/RELIABILITY.md): run-directory ownership, checkpoint
identity, write ordering and atomicity under kill -9 and a full disk, and one-line errors for
the inputs and faults that used to end in a traceback. Each CLI case runs in a subprocess and
checks the exit code, exactly one stderr line, and that nothing on disk changed."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.errors import RunDirError
from cnnlab.storage import ARTEFACTS, RunLock
from cnnlab.training import TrainConfig, resume, train
from test_cli import assert_user_error, cnnlab, cnnlab_in_process

RECIPE = ["--dataset", "digits", "--epochs", "3", "--batch-size", "256", "--lr", "0.1", "--momentum", "0.9", "-q"]
CONFIG = dict(dataset="digits", epochs=3, batch_size=256, lr=0.1, momentum=0.9)


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (the lock file aside)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".cnnlab.lock"}


def assert_unchanged_error(proc, before: dict[str, str], root: Path, *fragments: str) -> None:
    assert_user_error(proc, *fragments)
    assert snapshot(root) == before


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "model.pt", weights_only=True)["state_dict"]


def metric_rows(run_dir: Path) -> list[list[str]]:
    """metrics.csv without its time columns (seconds, elapsed)."""
    return [line.split(",")[:5] for line in (run_dir / "metrics.csv").read_text().splitlines()]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The uninterrupted run every faulty run is compared with."""
    out = tmp_path_factory.mktemp("straight") / "run"
    train(TrainConfig(**CONFIG), out=str(out))
    return out


# ---------------------------------------------------------------------------------------
# Fault injection: kill -9 and ENOSPC at chosen writes (every run-directory write goes
# through cnnlab.storage._write_file, then os.replace)

FAULTY = textwrap.dedent("""
    import errno, os, signal, sys
    import cnnlab.storage as storage
    phase, target = sys.argv[1], int(sys.argv[2])
    state = {"n": 0}
    write_file, replace = storage._write_file, os.replace

    def faulty_write(tmp, content):
        state["n"] += 1
        if state["n"] == target:
            if phase == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            if phase == "during":
                with open(tmp, "wb") as fh:
                    fh.write(b"half a file")
                os.kill(os.getpid(), signal.SIGKILL)
            if phase == "enospc":
                raise OSError(errno.ENOSPC, "No space left on device")
            if phase == "pause":  # hold the run here until the test says go (another process meets it)
                import pathlib, time
                flag = pathlib.Path(os.environ["CNNLAB_TEST_FLAG"])
                flag.with_suffix(".paused").touch()
                while not flag.exists():
                    time.sleep(0.05)
        write_file(tmp, content)

    def faulty_replace(src, dst):
        if phase == "after" and state["n"] == target and str(src).endswith(".tmp"):
            os.kill(os.getpid(), signal.SIGKILL)  # the new file is complete but not yet in place
        replace(src, dst)

    storage._write_file, storage.os.replace = faulty_write, faulty_replace
    from cnnlab.cli import run
    sys.exit(run(sys.argv[3:]))
""")

# the writes of a 3-epoch run, in order
WRITES = ["config.json", "metrics.csv"] + ["checkpoint.pt", "metrics.csv"] * 3 + ["result.json", "model.pt",
                                                                                  "curves.png"]


def faulty_run(tmp_path: Path, phase: str, target: int, out: Path, *extra: str) -> subprocess.CompletedProcess:
    script = tmp_path / "faulty.py"
    script.write_text(FAULTY)
    return subprocess.run([sys.executable, str(script), phase, str(target), "train", *RECIPE, "--out", str(out),
                           *extra], capture_output=True, text=True, timeout=600)


def assert_resumes_to_straight(out: Path, straight: Path) -> None:
    resume(out)
    for name in ("config.json", "metrics.csv", "checkpoint.pt", "model.pt", "result.json", "curves.png"):
        assert (out / name).is_file(), name
    a, b = weights(out), weights(straight)
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert metric_rows(out) == metric_rows(straight)
    assert json.loads((out / "result.json").read_text())["test_acc"] == \
        json.loads((straight / "result.json").read_text())["test_acc"]


def _kill_moments(n: int = 10, seed: int = 0) -> list[tuple[str, int]]:
    """``n`` seeded (phase, write number) pairs covering every kind of file written."""
    rng = random.Random(seed)
    moments = {(rng.choice(["before", "during", "after"]), WRITES.index(name) + 1) for name in sorted(set(WRITES))}
    while len(moments) < n:
        moments.add((rng.choice(["before", "during", "after"]), rng.randint(1, len(WRITES))))
    return sorted(moments, key=lambda m: (m[1], m[0]))


@pytest.mark.slow
@pytest.mark.parametrize("phase,target", _kill_moments())
def test_kill_9_at_any_write_then_resume_is_bitwise_equal(tmp_path, straight, phase, target):
    out = tmp_path / "run"
    proc = faulty_run(tmp_path, phase, target, out)
    assert proc.returncode == -9, (proc.returncode, proc.stderr)
    if not (out / "config.json").is_file():  # killed before the run existed: nothing to resume, start again
        assert not (out / "checkpoint.pt").exists()
        return
    assert_resumes_to_straight(out, straight)


@pytest.mark.slow
@pytest.mark.parametrize("target", range(1, len(WRITES) + 1))
def test_disk_full_at_any_write_is_one_line_and_resumable(tmp_path, straight, target, monkeypatch):
    """In-process (no kill needed): the n-th write hits ENOSPC; the CLI's one line is checked once below."""
    import errno

    import cnnlab.storage as storage

    out, calls, write_file = tmp_path / "run", [], storage._write_file

    def full_disk(tmp, content):
        calls.append(tmp)
        if len(calls) == target:
            raise OSError(errno.ENOSPC, "No space left on device")
        write_file(tmp, content)

    monkeypatch.setattr(storage, "_write_file", full_disk)
    with pytest.raises(RunDirError, match=f"no space left on the device while writing .*{WRITES[target - 1]}"):
        train(TrainConfig(**CONFIG), out=str(out))
    monkeypatch.setattr(storage, "_write_file", write_file)
    assert not list(out.glob(".*.tmp"))  # no half-written file left behind
    if target == 1:
        assert not (out / "config.json").exists()
        return
    ckpt = out / "checkpoint.pt"
    if ckpt.is_file():  # metrics and checkpoint agree: no row for an epoch the checkpoint does not hold
        epoch = torch.load(ckpt, weights_only=True)["epoch"]
        assert len(metric_rows(out)) - 1 in (epoch, epoch - 1) and len(metric_rows(out)) - 1 <= epoch
    assert_resumes_to_straight(out, straight)


def test_disk_full_on_the_command_line_is_one_line(tmp_path):
    out = tmp_path / "run"
    proc = faulty_run(tmp_path, "enospc", WRITES.index("checkpoint.pt") + 3, out)
    assert_user_error(proc, "no space left on the device while writing", "checkpoint.pt", "--resume")
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1


def test_resume_after_a_kill_before_the_first_checkpoint_starts_from_the_start(tmp_path, straight):
    out = tmp_path / "run"
    proc = faulty_run(tmp_path, "before", WRITES.index("checkpoint.pt") + 1, out)
    assert proc.returncode == -9 and (out / "config.json").is_file() and not (out / "checkpoint.pt").exists()
    proc = cnnlab("train", "--resume", str(out), "-q")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    a, b = weights(out), weights(straight)
    assert all(torch.equal(a[k], b[k]) for k in b)


# ---------------------------------------------------------------------------------------
# Run directories: one owner, checked identity, clean overwrite


def test_a_run_directory_has_one_owner(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    lock = RunLock(out).acquire()  # another live process holds it
    try:
        before = snapshot(out)
        assert_unchanged_error(cnnlab("train", *RECIPE, "--out", str(out), "--overwrite"), before, out, "in use")
        assert_unchanged_error(cnnlab("train", "--resume", str(out)), before, out, "no checkpoint.pt")
    finally:
        lock.release()


def test_two_processes_on_one_out_the_second_is_refused(tmp_path):
    out, flag = tmp_path / "run", tmp_path / "go"
    script = tmp_path / "faulty.py"
    script.write_text(FAULTY)
    pause_at = WRITES.index("checkpoint.pt") + 3  # in the middle of epoch 2's writes
    first = subprocess.Popen([sys.executable, str(script), "pause", str(pause_at), "train", *RECIPE, "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "CNNLAB_TEST_FLAG": str(flag)})
    deadline = time.time() + 300
    while not flag.with_suffix(".paused").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    before = snapshot(out)
    second = cnnlab("train", *RECIPE, "--out", str(out), "--overwrite", "--seed", "7")
    resumed = cnnlab("train", "--resume", str(out))
    after = snapshot(out)
    flag.touch()
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert_user_error(second, "in use by another cnnlab process")
    assert_user_error(resumed, "in use by another cnnlab process")
    assert after == before  # the refused processes wrote nothing
    assert [r[0] for r in metric_rows(out)[1:]] == ["1", "2", "3"]
    assert json.loads((out / "config.json").read_text())["config"]["seed"] == 1


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    train(TrainConfig(**{**CONFIG, "epochs": 1}), out=str(a))
    train(TrainConfig(**{**CONFIG, "epochs": 1, "model": "convnet_allconv"}), out=str(b))
    (a / "model.pt").unlink()
    shutil.copy(b / "checkpoint.pt", a / "checkpoint.pt")
    before = snapshot(a)
    assert_unchanged_error(cnnlab("train", "--resume", str(a)), before, a, "belongs to another run", "model")
    with pytest.raises(RunDirError, match="belongs to another run"):
        resume(a)


def test_resume_finishes_a_run_whose_end_files_are_missing(tmp_path, straight):
    out = tmp_path / "run"
    shutil.copytree(straight, out)
    for name in ("model.pt", "curves.png"):
        (out / name).unlink()
    assert json.loads(cnnlab("runs", str(out), "--format", "json").stdout)[0]["status"].startswith("interrupted")
    proc = cnnlab("train", "--resume", str(out), "-q")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    a, b = weights(out), weights(straight)
    assert all(torch.equal(a[k], b[k]) for k in b) and (out / "curves.png").is_file()
    assert_user_error(cnnlab("train", "--resume", str(out)), "already has 3 of 3 epochs")


def test_overwrite_clears_the_old_run_first(tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(**{**CONFIG, "epochs": 1}), out=str(out))
    (out / "mine.txt").write_text("not cnnlab's")
    proc = faulty_run(tmp_path, "before", WRITES.index("checkpoint.pt") + 1, out, "--overwrite")  # killed in the new run
    assert proc.returncode == -9, proc.stderr
    left = {p.name for p in out.iterdir()}
    assert "model.pt" not in left and "result.json" not in left and "mine.txt" in left
    rows = json.loads(cnnlab("runs", str(out), "--format", "json").stdout)
    assert rows[0]["status"] != "finished"


def test_export_is_self_contained(tmp_path, straight):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    run = tmp_path / "run"
    shutil.copytree(straight, run)
    proc = cnnlab("export", str(run))
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in run.iterdir() if "onnx" in p.name] == ["model.onnx"]
    alone = tmp_path / "elsewhere"
    alone.mkdir()
    shutil.copy(run / "model.onnx", alone / "copy.onnx")
    session = ort.InferenceSession(str(alone / "copy.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(None, {"images": np.zeros((2, 1, 8, 8), np.float32)})[0]
    assert out.shape == (2, 10)


def test_default_run_names_do_not_collide(tmp_path):
    from cnnlab.runs import default_run_dir

    names = {default_run_dir("convnet", "digits", tmp_path) for _ in range(50)}
    assert len(names) == 50
    procs = [subprocess.Popen([sys.executable, "-m", "cnnlab", "train", *RECIPE[:3], "1", *RECIPE[4:]], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0 and err == "", err
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all((r / "model.pt").is_file() for r in runs)


def test_a_successful_run_prints_nothing_on_stderr(tmp_path):
    proc = cnnlab("train", *RECIPE[:3], "1", *RECIPE[4:], "--out", str(tmp_path / "run"))
    assert proc.returncode == 0 and proc.stderr == ""


# ---------------------------------------------------------------------------------------
# What already held and must keep holding: Ctrl-C, and pickles that are never executed


def test_sigint_exits_130_with_a_usable_checkpoint(tmp_path, straight):
    import signal

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "cnnlab", "train", *RECIPE, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (out / "checkpoint.pt").is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    if proc.returncode == 0:
        pytest.skip("the run finished before the interrupt arrived")
    assert proc.returncode == 130 and err.strip().splitlines() == ["cnnlab: error: interrupted"], err
    assert_resumes_to_straight(out, straight)


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_files(tmp_path: Path) -> dict[str, Path]:
    import pickle

    marker = tmp_path / "pwned"
    files = {}
    for kind in ("zip", "legacy", "raw"):
        path = tmp_path / f"evil-{kind}.pt"
        payload = {"state_dict": _Evil(marker), "config": {}, "input_shape": [1, 8, 8], "classes": ["a"]}
        if kind == "raw":
            path.write_bytes(pickle.dumps(payload))
        else:
            torch.save(payload, path, _use_new_zipfile_serialization=kind == "zip")
        files[kind] = path
    return files


def test_malicious_pickles_are_never_executed(tmp_path, straight):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    for i, (kind, evil) in enumerate(_evil_files(tmp_path).items()):
        call = cnnlab if i == 0 else cnnlab_in_process  # the real command once; the rest in this process (faster)
        assert_user_error(call("train", *RECIPE, "--weights", str(evil), "--out", str(tmp_path / f"w-{kind}")))
        shutil.copy(evil, run / "model.pt")
        assert_user_error(call("evaluate", str(run)), "cannot be read")
        shutil.copy(evil, run / "checkpoint.pt")
        assert_user_error(call("train", "--resume", str(run), "--epochs", "4"), "cannot be read")
    assert not marker.exists()
