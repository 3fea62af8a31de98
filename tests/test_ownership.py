"""Read-side ownership of run directories (docs/RELIABILITY.md): a command that writes into a run
(report, export, evaluate's confusion plot, the pictures of show/demo) takes the run's lock or is
refused with one line and writes nothing; every reader of model.pt refuses one of another run;
every derived file records the model.pt it came from, and ``cnnlab runs`` says when it is stale."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from cnnlab.errors import RunDirError
from cnnlab.runs import load_run
from cnnlab.storage import RunLock, atomic_write
from cnnlab.training import TrainConfig, resume, train
from test_cli import assert_user_error, cnnlab_in_process as cnnlab
from test_reliability import snapshot

CONFIG = dict(dataset="digits", epochs=1, batch_size=256, lr=0.1, momentum=0.9)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Three finished runs: `a` (convnet), `same` (convnet, another seed), `other` (another architecture)."""
    root = tmp_path_factory.mktemp("own")
    train(TrainConfig(**CONFIG), out=str(root / "a"))
    train(TrainConfig(**{**CONFIG, "seed": 2}), out=str(root / "same"))
    train(TrainConfig(**{**CONFIG, "model": "convnet_allconv"}), out=str(root / "other"))
    return {p.name: p for p in root.iterdir()}


@pytest.fixture()
def run(runs, tmp_path) -> Path:
    """A private copy of run `a` to write into."""
    out = tmp_path / "run"
    shutil.copytree(runs["a"], out)
    return out


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "digit.png"
    Image.new("L", (8, 8), 128).save(path)
    return path


def has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


# every command that writes into RUN by default, or with an --out inside RUN
WRITERS = [
    ["evaluate", "{run}"],
    ["evaluate", "{run}", "--confusion", "{run}/mine.png"],
    ["export", "{run}"],
    ["export", "{run}", "--quantize", "int8"],
    ["export", "{run}", "--out", "{run}/sub/m.onnx"],
    ["report", "{run}", "--images", "1", "--max-eval", "20"],
    ["show", "filters", "{run}"],
    ["show", "featuremaps", "{run}", "--index", "1"],
    ["show", "gradcam", "{run}", "--methods", "gradcam"],
    ["show", "rf", "{run}", "--images", "2"],
    ["demo", "dropout", "{run}"],
    ["show", "filters", "{run}", "--out", "{run}/visualize/mine.png"],
]


def fill(args: list[str], run: Path) -> list[str]:
    return [a.replace("{run}", str(run)) for a in args]


@pytest.mark.parametrize("args", WRITERS, ids=lambda a: " ".join(a[:2]) + ("-out" if "--out" in a or
                                                                            "--confusion" in a else ""))
def test_a_command_writing_into_a_locked_run_is_refused(run, args):
    if "onnx" in " ".join(args) or args[0] == "export":
        pytest.importorskip("onnxruntime")
    lock = RunLock(run).acquire()  # another live cnnlab process (cnnlab train) holds the run
    try:
        before = snapshot(run)
        proc = cnnlab(*fill(args, run))
        assert_user_error(proc, f"{run} is in use by another cnnlab process (pid {os.getpid()})")
        assert snapshot(run) == before and not (run / "sub").exists()
    finally:
        lock.release()


def test_an_out_inside_another_locked_run_is_refused(runs, run, tmp_path):
    """--out into another run directory (or a model name's picture into one) waits for that run too."""
    lock = RunLock(run).acquire()
    try:
        before = snapshot(run)
        for args in (["show", "filters", str(runs["same"]), "--out", str(run / "visualize" / "f.png")],
                     ["evaluate", str(runs["same"]), "--confusion", str(run / "c.png")],
                     ["show", "filters", "convnet", "--in-channels", "1", "--out", str(run / "f.png")]):
            assert_user_error(cnnlab(*args), f"{run} is in use by another cnnlab process")
        assert snapshot(run) == before
    finally:
        lock.release()


def test_commands_that_write_elsewhere_run_beside_a_locked_run(run, tmp_path, image):
    lock = RunLock(run).acquire()
    try:
        before = snapshot(run)
        for args in (["predict", str(run), str(image)],
                     ["evaluate", str(run), "--confusion", str(tmp_path / "c.png")],
                     ["show", "filters", str(run), "--out", str(tmp_path / "f.png")]):
            proc = cnnlab(*args)
            assert proc.returncode == 0 and proc.stderr == "", (args, proc.stderr)
        assert snapshot(run) == before
        assert (tmp_path / "c.png").is_file() and (tmp_path / "f.png").is_file()
    finally:
        lock.release()


PAUSING = textwrap.dedent("""
    import os, pathlib, sys, time
    import cnnlab.storage as storage
    target, state, write_file = int(sys.argv[1]), {"n": 0}, storage._write_file

    def pausing_write(tmp, content):  # hold the run at its Nth write until the test says go
        state["n"] += 1
        if state["n"] == target:
            flag = pathlib.Path(os.environ["CNNLAB_TEST_FLAG"])
            flag.with_suffix(".paused").touch()
            while not flag.exists():
                time.sleep(0.05)
        write_file(tmp, content)

    storage._write_file = pausing_write
    from cnnlab.cli import run
    sys.exit(run(sys.argv[2:]))
""")


def test_report_and_export_are_refused_while_train_resume_runs(run, tmp_path):
    """The probe: `report` and `export` while `train --resume` continues the run."""
    script, flag = tmp_path / "pausing.py", tmp_path / "go"
    script.write_text(PAUSING)
    first = subprocess.Popen([sys.executable, str(script), "3", "train", "--resume", str(run), "--epochs", "3", "-q"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "CNNLAB_TEST_FLAG": str(flag)})
    deadline = time.time() + 300
    while not flag.with_suffix(".paused").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, first.communicate()
    before = snapshot(run)
    refused = [cnnlab("report", str(run), "--images", "0", "--max-eval", "20"), cnnlab("evaluate", str(run))]
    if has_onnxruntime():
        refused.append(cnnlab("export", str(run)))
    after = snapshot(run)
    flag.touch()
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    for proc in refused:
        assert_user_error(proc, "in use by another cnnlab process", f"pid {first.pid}")
    assert after == before
    assert not (run / "report.html").exists() and not (run / "model.onnx").exists()


def foreign(run: Path, donor: Path, *, drop_run_id: bool = False) -> None:
    """Put `donor`'s model.pt into `run` (optionally as an older cnnlab wrote it: no run id)."""
    ckpt = torch.load(donor / "model.pt", weights_only=True)
    if drop_run_id:
        ckpt.pop("run_id", None)
    atomic_write(run / "model.pt", lambda fh: torch.save(ckpt, fh))


@pytest.mark.parametrize("donor,fragment", [("other", "model 'convnet_allconv' vs 'convnet'"), ("same", "run id")])
def test_every_reader_refuses_a_model_pt_of_another_run(runs, run, image, donor, fragment):
    foreign(run, runs[donor])
    before = snapshot(run)
    commands = [["evaluate", str(run)], ["predict", str(run), str(image)], ["show", "filters", str(run)],
                ["report", str(run), "--images", "0"], ["show", "gradcam", str(run), "--out", str(run.parent / "g.png")]]
    if has_onnxruntime():
        commands.append(["export", str(run)])
    if donor == "same":  # the same architecture: only the run id tells; the library check is shared
        commands = commands[:2] + commands[-1:]
    for args in commands:
        assert_user_error(cnnlab(*args), f"{run / 'model.pt'} belongs to another run than {run / 'config.json'}",
                          fragment)
    assert snapshot(run) == before and not (run.parent / "g.png").exists()


def test_an_older_model_pt_without_run_id_is_checked_by_its_settings(runs, run):
    foreign(run, runs["other"], drop_run_id=True)
    with pytest.raises(RunDirError, match="belongs to another run.*model 'convnet_allconv' vs 'convnet'"):
        load_run(run)
    assert_user_error(cnnlab("evaluate", str(run)), "belongs to another run", "convnet_allconv")
    foreign(run, runs["a"], drop_run_id=True)  # its own model, from before model.pt carried the run id
    assert load_run(run).config.model == "convnet"


def test_model_pt_carries_the_run_id_of_config_json(runs):
    for path in runs.values():
        doc = json.loads((path / "config.json").read_text())
        assert torch.load(path / "model.pt", weights_only=True)["run_id"] == doc["run_id"]
        assert load_run(path).model_file["run_id"] == doc["run_id"]


def test_a_damaged_config_json_refuses_model_pt_and_a_lone_model_pt_loads(run, tmp_path):
    (run / "config.json").write_text("{ not json")
    with pytest.raises(RunDirError, match="config.json is damaged"):
        load_run(run)
    alone = tmp_path / "alone"  # a lone model.pt (no config.json): nothing to check it against
    alone.mkdir()
    shutil.copy(run / "model.pt", alone / "model.pt")
    assert load_run(alone).config.model == "convnet"


def derived(run: Path) -> dict:
    return json.loads((run / "derived.json").read_text())["files"]


def listed(run: Path) -> dict:
    proc = cnnlab("runs", str(run), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)[0]


def test_derived_files_record_their_model_and_go_stale_when_it_changes(run):
    commands = [["evaluate", str(run)], ["show", "filters", str(run)],
                ["report", str(run), "--images", "1", "--max-eval", "20"]]
    if has_onnxruntime():
        commands.append(["export", str(run)])
    for args in commands:
        proc = cnnlab(*args)
        assert proc.returncode == 0, (args, proc.stderr)
    files = derived(run)
    model = load_run(run).model_file
    names = {"confusion_test.png", "visualize/filters-conv_1.png", "report.html"} | \
            ({"model.onnx"} if has_onnxruntime() else set())
    assert set(files) == names
    assert all(files[n]["model"]["sha256"] == model["sha256"] and files[n]["model"]["run_id"] == model["run_id"]
               for n in names)
    row = listed(run)
    assert row["status"] == "finished" and row["stale"] == [] and set(row["derived"].values()) == {"fresh"}

    proc = cnnlab("train", "--resume", str(run), "--epochs", "2", "-q")  # a new model.pt
    assert proc.returncode == 0, proc.stderr
    row = listed(run)
    assert sorted(row["stale"]) == sorted(names) and "report.html stale" in row["status"]
    table = cnnlab("runs", str(run))
    assert "report.html stale" in table.stdout

    assert cnnlab("show", "filters", str(run)).returncode == 0  # made again: fresh again
    row = listed(run)
    assert row["derived"]["visualize/filters-conv_1.png"] == "fresh" and row["derived"]["report.html"] == "stale"


def test_a_copied_run_keeps_its_derived_files_fresh_and_a_rewritten_one_is_unrecorded(run, tmp_path):
    assert cnnlab("show", "filters", str(run)).returncode == 0
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)  # new inodes and times: matched by content
    assert listed(copy)["derived"] == {"visualize/filters-conv_1.png": "fresh"}
    (copy / "visualize" / "filters-conv_1.png").write_bytes(b"not the recorded picture")
    (copy / "report.html").write_text("<html>written by something else</html>")
    assert listed(copy)["derived"] == {"visualize/filters-conv_1.png": "unrecorded", "report.html": "unrecorded"}


def test_a_picture_is_refused_when_model_pt_changed_after_loading(run):
    from cnnlab.visualize import load_subject, show_filters

    subject = load_subject(run)
    resume(run, epochs=2)  # a training run replaces model.pt after the picture's model was read
    before = snapshot(run)
    with pytest.raises(RunDirError, match="model.pt changed while this command ran"):
        show_filters(subject)
    assert snapshot(run) == before
    assert show_filters(load_subject(run)).path.is_file()


def test_overwrite_clears_derived_files_of_the_old_run(run):
    assert cnnlab("show", "filters", str(run)).returncode == 0
    (run / "report.html").write_text("old")
    train(TrainConfig(**CONFIG), out=str(run), overwrite=True)
    assert not any((run / name).exists() for name in ("report.html", "visualize", "derived.json"))


def test_a_lock_that_cannot_be_taken_or_written_is_one_line_and_left_free(tmp_path, monkeypatch):
    """No flock on the file system (ENOLCK), or a full disk while writing the pid: one line naming the lock
    file, and the file is closed, so the run is not left locked by this process."""
    import errno

    from cnnlab import storage
    from cnnlab.errors import RunDirError

    real_flock = storage.fcntl.flock

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(storage.fcntl, "flock", no_locks)
    with pytest.raises(RunDirError, match=r"\.cnnlab\.lock"):
        storage.RunLock(tmp_path).acquire()
    monkeypatch.setattr(storage.fcntl, "flock", real_flock)

    class FullDisk:
        def __init__(self, fh):
            self.fh = fh

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: FullDisk(real_open(*a, **k)))
    with pytest.raises(RunDirError, match="no space left"):
        storage.RunLock(tmp_path).acquire()
    monkeypatch.setattr("builtins.open", real_open)
    storage.RunLock(tmp_path).acquire().release()  # nothing was left held


def test_an_exclusive_lock_makes_the_second_holder_wait(tmp_path):
    """``storage.exclusive`` (the benchmarks' --lock): a second holder waits until the first leaves; None locks
    nothing."""
    import threading

    from cnnlab.storage import exclusive

    lock, order = tmp_path / "cpu.lock", []
    entered = threading.Event()

    def second():
        entered.set()
        with exclusive(lock):
            order.append("second")

    with exclusive(lock):
        waiter = threading.Thread(target=second)
        waiter.start()
        entered.wait(10)
        waiter.join(0.3)  # it cannot get in while the lock is held
        order.append("first leaves")
    waiter.join(10)
    assert order == ["first leaves", "second"] and not waiter.is_alive()
    with exclusive(None):
        pass
