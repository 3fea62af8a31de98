"""SIGTERM (Slurm, Kubernetes, systemd, ``timeout``) and SIGHUP stop ``cnnlab train`` as Ctrl-C does:
the write in progress is finished (no temporary file, no torn file), one line on stderr naming the
run to resume, exit code 128 + the signal (143 for SIGTERM), and ``--resume`` ends with the weights
of a run never stopped. The moments are seeded: a write (before, during or after its bytes) or an
optimizer step, chosen like tests/test_reliability.py's kill -9 moments."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from cnnlab.cli._signals import stop_signals_raise
from test_cli import cnnlab
from test_reliability import RECIPE, WRITES, metric_rows, straight, weights  # noqa: F401  (straight: a fixture)

SIGNALLING = textwrap.dedent("""
    import os, signal, sys, time
    import torch
    import cnnlab.storage as storage
    phase, target, signame = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    signum = getattr(signal, signame)
    state = {"writes": 0, "steps": 0}
    write_file, replace, backward = storage._write_file, os.replace, torch.Tensor.backward

    def signalling_write(tmp, content):
        state["writes"] += 1
        if state["writes"] == target:
            if phase == "before":
                os.kill(os.getpid(), signum)
            if phase == "during":
                with open(tmp, "wb") as fh:
                    fh.write(b"half a file")
                os.kill(os.getpid(), signum)
            if phase == "pause":  # the test sends the signal from outside while this write waits
                open(os.environ["CNNLAB_TEST_FLAG"], "w").close()
                time.sleep(3)
        write_file(tmp, content)

    def signalling_replace(src, dst):
        if phase == "after" and state["writes"] == target and str(src).endswith(".tmp"):
            os.kill(os.getpid(), signum)  # the new file is complete but not yet in place
        replace(src, dst)

    def signalling_backward(self, *args, **kwargs):
        backward(self, *args, **kwargs)
        state["steps"] += 1
        if phase == "step" and state["steps"] == target:
            os.kill(os.getpid(), signum)  # gradients computed, the optimizer step not taken

    storage._write_file, storage.os.replace, torch.Tensor.backward = signalling_write, signalling_replace, \\
        signalling_backward
    from cnnlab.cli import run
    sys.exit(run(sys.argv[4:]))
""")


def _moments(seed: int = 143) -> list[tuple[str, int]]:
    """A step, and a write in each phase: the first checkpoint.pt, epoch 1's metrics.csv, a seeded other."""
    rng = random.Random(seed)
    phases = ["before", "during", "after"]
    rng.shuffle(phases)
    writes = [WRITES.index("checkpoint.pt") + 1, WRITES.index("metrics.csv", 2) + 1, rng.randint(1, len(WRITES))]
    return [("step", rng.randint(1, 15)), *zip(phases, writes)]


def signalled_run(tmp_path: Path, phase: str, target: int, out: Path, signame: str = "SIGTERM",
                  env: dict | None = None) -> subprocess.Popen:
    script = tmp_path / "signalling.py"
    script.write_text(SIGNALLING)
    # the command as a terminal starts it: SIGHUP not ignored even where pytest runs under nohup (an ignored
    # signal stays ignored in cnnlab, as nohup asks: test_handlers_belong_to_the_command_line_only)
    return subprocess.Popen([sys.executable, str(script), phase, str(target), signame, "train", *RECIPE, "--out",
                             str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})},
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))


def assert_stopped_cleanly(proc: subprocess.Popen, out: Path, signum: int) -> bool:
    """Exit 128 + signal, one stderr line, no temporary file, every file whole. Returns whether the
    line asks for `--resume` (it does not when the signal met the run's very last write)."""
    _, err = proc.communicate(timeout=600)
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, (proc.returncode, err)
    hint = f"cnnlab: error: terminated ({name}); resume with `cnnlab train --resume {out}`"
    assert err.splitlines() in ([hint], [f"cnnlab: error: terminated ({name})"]), err
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []
    json.loads((out / "config.json").read_text())
    if (out / "checkpoint.pt").exists():
        torch.load(out / "checkpoint.pt", weights_only=True)
    return err.splitlines() == [hint]


def resume_to_straight(out: Path, straight: Path) -> None:
    resumed = cnnlab("train", "--resume", str(out), "-q")
    assert resumed.returncode == 0 and resumed.stderr == "", resumed.stderr
    a, b = weights(out), weights(straight)
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert metric_rows(out) == metric_rows(straight)


@pytest.mark.parametrize("phase,target", _moments())
def test_sigterm_at_a_seeded_moment_exits_143_and_resumes_bitwise(tmp_path, straight, phase, target):
    out = tmp_path / "run"
    proc = signalled_run(tmp_path, phase, target, out)
    if assert_stopped_cleanly(proc, out, signal.SIGTERM):
        if phase != "step":
            assert (out / WRITES[target - 1]).is_file()  # the write the signal met was finished, not dropped
        resume_to_straight(out, straight)
    else:  # the last write was finished: the run is complete
        assert target == len(WRITES) and all(torch.equal(weights(out)[k], v) for k, v in weights(straight).items())


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_a_signal_from_outside_during_a_write_waits_for_it(tmp_path, straight, signame):
    """As `timeout` or Slurm sends it, while epoch 2's checkpoint.pt is being written (held for 3 s)."""
    out, flag = tmp_path / "run", tmp_path / "writing"
    proc = signalled_run(tmp_path, "pause", WRITES.index("checkpoint.pt") + 3, out, signame,
                         env={"CNNLAB_TEST_FLAG": str(flag)})
    deadline = time.time() + 300
    while not flag.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(getattr(signal, signame))
    assert assert_stopped_cleanly(proc, out, getattr(signal, signame))
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 2  # the write in progress was finished
    resume_to_straight(out, straight)


def test_handlers_belong_to_the_command_line_only():
    """Importing or training with cnnlab changes no signal handler; the CLI's are restored after it."""
    before = signal.getsignal(signal.SIGTERM)
    with stop_signals_raise():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
    ignored = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stop_signals_raise():  # nohup: an ignored signal stays ignored
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, ignored)
