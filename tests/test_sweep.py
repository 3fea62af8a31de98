"""cnnlab sweep: the spec's checks, workers sharing one study, a killed sweep resumed with no trial lost
or run twice, best.toml as a recipe, and a study shared through a real PostgreSQL server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import extra_module

from cnnlab.runs import Run, read_metrics
from cnnlab.training.recipes import load_recipe
from test_cli import assert_user_error, cnnlab_in_process

optuna = extra_module("optuna")

ROOT = Path(__file__).resolve().parents[1]
BASE = {"dataset": "digits", "val_fraction": 0.2, "epochs": 1, "batch_size": 64}


def write_spec(path: Path, head: str = "", base: dict | None = None, space: str = "") -> Path:
    base_lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in (BASE if base is None else base).items())
    space = space or 'lr = { low = 0.05, high = 0.5, log = true }\nmomentum = { choices = [0.0, 0.9] }'
    path.write_text(f"{head}\n[base]\n{base_lines}\n\n[space]\n{space}\n")
    return path


def finished(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["state"] in ("COMPLETE", "PRUNED")]


# --- the spec: every mistake one line naming its key or field, exit 2, nothing written ---------------------------

BAD_SPECS = [
    ("trials = 4", None, "lrr = { low = 0.01, high = 0.1 }", ["[space]", "'lrr'", "did you mean lr"]),
    ("trials = 4", {**BASE, "epoch": 2}, "", ["[base]", "'epoch'", "did you mean epochs"]),
    ("trails = 4", None, "", ["'trails'", "did you mean trials"]),
    ("trials = 4", None, "lr = { low = 0.3, high = 0.001 }", ["[space] lr", "empty", "low (0.3)"]),
    ("trials = 4", None, "epochs = { low = 2, high = 2 }", ["[space] epochs", "empty"]),
    ("trials = 4", None, "batch_size = { low = 16.5, high = 64 }", ["[space] batch_size", "int", "16.5"]),
    ("trials = 4", None, 'lr = { low = "0.1", high = 0.5 }', ["[space] lr", "float", "'0.1'"]),
    ("trials = 4", None, "optimizer = { choices = [1, 2] }", ["[space] optimizer", "str"]),
    ("trials = 4", None, 'optimizer = { choices = ["sgd", "rmsprop"] }', ["[space] optimizer", "'rmsprop'"]),
    ("trials = 4", None, "momentum = { low = 0.5, high = 1.5 }", ["[space] momentum.high", "1.5"]),
    ("trials = 4", None, "lr = { low = -1.0, high = 0.5 }", ["[space] lr.low", "-1.0"]),
    ("trials = 4", None, "lr = { low = 0.0, high = 0.5, log = true }", ["[space] lr", "log"]),
    ("trials = 4", None, 'out = { choices = ["a", "b"] }', ["[space] out", "cannot be searched"]),
    ("trials = 4", None, "lr = { low = 0.01, high = 0.5, stepp = 0.1 }", ["[space] lr", "'stepp'"]),
    ("trials = 4", None, "nesterov = { choices = [true, false] }", ["[space] nesterov", "--nesterov"]),
    ('trials = "4"', None, "", ["trials", "'4'"]),
    ("trials = 0", None, "", ["trials", "positive"]),
    ('metric = "val_loss"', None, "", ["metric", "'val_loss'"]),
    ('sampler = "cmaes"', None, "", ["sampler", "'cmaes'"]),
    ("trials = 4", {"dataset": "digits", "epochs": 1}, "", ["val_acc", "val_fraction"]),
    ('sampler = "grid"', None, "lr = { low = 0.01, high = 0.5, log = true }", ["[space] lr", "grid"]),
    ('sampler = "grid"\ntrials = 5', None, "momentum = { choices = [0.0, 0.9] }", ["trials", "2 points"]),
    ("trials = 4", {**BASE, "lr": "fast"}, "", ["[base] lr", "'fast'"]),
]


@pytest.mark.parametrize("head,base,space,fragments", BAD_SPECS)
def test_a_bad_spec_is_one_line_naming_the_field(tmp_path, head, base, space, fragments):
    spec = write_spec(tmp_path / "bad.toml", head, base, space)
    proc = cnnlab_in_process("sweep", str(spec), "--out", str(tmp_path / "out"))
    assert_user_error(proc, *fragments)
    assert not (tmp_path / "out").exists()


def test_the_command_line_refuses_a_spec_and_resume_together_and_a_folder_that_is_not_a_sweep(tmp_path):
    spec = write_spec(tmp_path / "s.toml", "trials = 2")
    assert_user_error(cnnlab_in_process("sweep"), "SPEC.toml", "--resume")
    assert_user_error(cnnlab_in_process("sweep", str(spec), "--resume", str(tmp_path)), "not both")
    assert_user_error(cnnlab_in_process("sweep", "--resume", str(tmp_path)), "not a sweep folder")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    assert_user_error(cnnlab_in_process("sweep", str(spec), "--out", str(tmp_path / "full")), "--resume")


# --- two workers, one study --------------------------------------------------------------------------------------

def test_two_workers_finish_the_trials_and_each_is_a_run_whose_best_trains_as_a_recipe(tmp_path):
    spec = write_spec(tmp_path / "spec.toml", 'trials = 4\nsampler = "random"\nseed = 3')
    proc = cnnlab_in_process("sweep", str(spec), "--out", str(tmp_path / "sw"), "--workers", "2", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    rows = finished(result["trials"])
    assert len(rows) == 4 == len(result["trials"])  # no surplus, failed or lost trial shown
    assert len({r["run_dir"] for r in rows}) == 4
    for row in rows:
        run = Run.open(row["run_dir"])  # each trial an ordinary finished run directory
        assert run.config.lr == pytest.approx(row["params"]["lr"]) and run.config.momentum == row["params"]["momentum"]
        assert Path(row["run_dir"]).parent == tmp_path / "sw"
    best = max(rows, key=lambda r: r["value"])
    assert result["best"]["number"] == best["number"]
    recipe = load_recipe(str(tmp_path / "sw" / "best.toml"))
    assert recipe.settings["lr"] == pytest.approx(best["params"]["lr"]) and recipe.settings["dataset"] == "digits"
    for name in ("history.png", "importance.png", "results.json"):
        assert (tmp_path / "sw" / name).stat().st_size > 0
    trained = cnnlab_in_process("train", "--recipe", str(tmp_path / "sw" / "best.toml"), "--out", str(tmp_path / "b"),
                                "--quiet")
    assert trained.returncode == 0, trained.stderr
    assert Run.open(tmp_path / "b").config.lr == pytest.approx(best["params"]["lr"])


# --- SIGKILL mid-trial, then --resume ----------------------------------------------------------------------------

def _kill_mid_trial(proc: subprocess.Popen, folder: Path, deadline: float) -> Path:
    """SIGKILL ``proc`` as soon as a trial has an epoch in metrics.csv but no model.pt (its training half done)."""
    while time.monotonic() < deadline and proc.poll() is None:
        for trial in sorted(folder.glob("trial-*")):
            if read_metrics(trial) and not (trial / "model.pt").is_file():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return trial
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"no trial was caught mid-run (exit code {proc.wait()})")


def test_a_sweep_killed_mid_trial_resumes_with_no_trial_lost_or_run_twice(tmp_path):
    base = {**BASE, "epochs": 4, "input_size": 28}  # epochs long enough to be caught between two checkpoints
    spec = write_spec(tmp_path / "spec.toml", 'trials = 3\nsampler = "random"\nseed = 1\npruner = "none"', base)
    folder = tmp_path / "sw"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "cnnlab", "sweep", str(spec), "--out", str(folder)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = _kill_mid_trial(proc, folder, time.monotonic() + 120)
    epochs_at_kill = len(read_metrics(killed))
    assert 1 <= epochs_at_kill < 4
    assert_user_error(cnnlab_in_process("sweep", str(spec), "--out", str(folder)), "--resume")

    resumed = cnnlab_in_process("sweep", "--resume", str(folder), "--format", "json")
    assert resumed.returncode == 0, resumed.stderr
    rows = json.loads(resumed.stdout)["trials"]
    done = finished(rows)
    assert len(done) == 3 and all(r["state"] == "COMPLETE" for r in done)
    dead = [r for r in rows if r["run_dir"] == str(killed) and r["state"] == "FAIL"]
    assert len(dead) == 1 and "retried_as" in dead[0]  # the killed trial: failed, queued again once
    retry = next(r for r in rows if r["number"] == dead[0]["retried_as"])
    assert retry["state"] == "COMPLETE" and retry["run_dir"] == str(killed) and retry["params"] == dead[0]["params"]
    assert len({r["run_dir"] for r in done}) == 3  # no run directory trained for two trials
    assert len({json.dumps(r["params"], sort_keys=True) for r in done}) == 3  # no settings run twice
    epochs = [int(row["epoch"]) for row in read_metrics(killed)]
    assert epochs == [1, 2, 3, 4]  # continued from its checkpoint: each epoch once
    for row in done:
        assert Run.open(row["run_dir"]).config.epochs == 4
    again = cnnlab_in_process("sweep", "--resume", str(folder), "--format", "json")  # finished: nothing more runs
    assert again.returncode == 0 and json.loads(again.stdout)["trials"] == rows


# --- several machines: one PostgreSQL study ----------------------------------------------------------------------

def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL server on a free local port (skips without initdb/pg_ctl, or as root without
    a postgres user to run it)."""
    pytest.importorskip("psycopg2")
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl)")
    as_user: list[str] = []
    home = Path(tempfile.mkdtemp(prefix="cnnlab-pg-"))
    if os.geteuid() == 0:
        if not shutil.which("runuser") or subprocess.run(["id", "postgres"], capture_output=True).returncode:
            pytest.skip("running as root without a postgres user for the server")
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(home, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = home / "data"
    try:
        subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "cnnlab"], check=True,
                       capture_output=True)
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(home / "log"), "-w", "-o",
                        f"-p {port} -k {home} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
        yield f"postgresql://cnnlab@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def test_machines_share_one_study_through_postgresql(tmp_path, postgres_url):
    spec = write_spec(tmp_path / "spec.toml", 'trials = 2\nsampler = "random"\nseed = 5\nname = "shared"')
    first = cnnlab_in_process("sweep", str(spec), "--storage", postgres_url, "--out", str(tmp_path / "a"),
                              "--format", "json")
    assert first.returncode == 0, first.stderr
    # a second machine joining the finished study: it runs nothing more and reports the same trials
    second = cnnlab_in_process("sweep", str(spec), "--storage", postgres_url, "--out", str(tmp_path / "b"),
                               "--format", "json")
    assert second.returncode == 0, second.stderr
    rows_a, rows_b = json.loads(first.stdout)["trials"], json.loads(second.stdout)["trials"]
    assert len(finished(rows_a)) == 2 and rows_b == rows_a
    assert not list((tmp_path / "b").glob("trial-*")) and (tmp_path / "b" / "best.toml").is_file()
    assert "storage" in json.loads((tmp_path / "a" / "sweep.json").read_text())
    other = write_spec(tmp_path / "other.toml", 'trials = 3\nname = "shared"')  # same name, another spec
    assert_user_error(cnnlab_in_process("sweep", str(other), "--storage", postgres_url, "--out", str(tmp_path / "c")),
                      "'shared'", "another spec")
    assert not (tmp_path / "c").exists()
