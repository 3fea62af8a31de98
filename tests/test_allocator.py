"""The process's memory as the operating system sees it (issue 23): the C allocator's policy that the
``cnnlab`` command sets at start-up, the process's RSS beside the allocator's peak in
``summary --train --measure``, and ``--fit-memory`` answering for the RSS, checked against a real
process at the batch it picks. Timings are the benchmark's (benchmarks/bench_allocator.py), not these
tests'."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cnnlab import allocator
from test_cli import cnnlab, cnnlab_in_process

GLIBC = allocator._allocator()[1]
needs_glibc = pytest.mark.skipif(not GLIBC, reason="the policy is set on glibc's malloc only")


def _probe(env: dict[str, str]) -> dict:
    """A fresh interpreter that applies the policy as the cnnlab command does (no torch): its state, and
    whether a 64 MiB block is its own mmap."""
    code = ("import json; from cnnlab import allocator; s = allocator.apply(); "
            "print(json.dumps({**s.to_dict(), 'mmapped': allocator.serves_by_mmap(64 << 20)}))")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != allocator.ENV}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**clean, **env},
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_policies_parse_and_bad_ones_change_nothing():
    assert allocator.parse_policy("lean") == ("lean", {"mmap_threshold": 65536})
    assert allocator.parse_policy("mmap_threshold=0x10000, arena_max=2")[1] == {"mmap_threshold": 65536,
                                                                               "arena_max": 2}
    for bad in ("leen", "mmap_threshold", "mmap_threshold=lots", "colour=3", ""):
        with pytest.raises(ValueError, match="CNNLAB_MALLOC"):
            allocator.parse_policy(bad)
    state = allocator._apply("leen", {})  # a typo leaves glibc alone and says why; nothing is called
    assert not state.applied and "is not a policy" in state.reason and state.name == "default"


def test_a_preloaded_malloc_is_a_policy_by_name(monkeypatch):
    assert allocator.parse_policy("tcmalloc") == ("tcmalloc", {})
    assert allocator.parse_policy("jemalloc") == ("jemalloc", {})
    monkeypatch.setattr(allocator, "_preloaded", lambda: None)
    monkeypatch.setattr(allocator, "preload_library", lambda name: None)
    state = allocator._apply("tcmalloc", {})  # not installed: glibc's own settings, and how to install it
    assert not state.applied and state.name == "default" and "apt install libtcmalloc-minimal4" in state.reason
    monkeypatch.setattr(allocator, "preload_library", lambda name: "libjemalloc.so.2")
    assert "did not load" in allocator._apply("jemalloc", {allocator._EXEC_MARK: "1"}).reason
    calls = []
    monkeypatch.setattr(allocator.os, "execve", lambda *a: calls.append(a))
    allocator.exec_preloaded({allocator.ENV: "fast"})  # nothing to load
    allocator.exec_preloaded({allocator.ENV: "jemalloc", allocator._EXEC_MARK: "1"})  # started once already
    assert calls == []
    allocator.exec_preloaded({allocator.ENV: "jemalloc", "LD_PRELOAD": "libmine.so"})
    (exe, argv, env), = calls
    assert exe == sys.executable and argv[1:] == sys.orig_argv[1:]
    assert env["LD_PRELOAD"] == "libjemalloc.so.2 libmine.so" and env[allocator._EXEC_MARK] == "1"
    monkeypatch.setattr(allocator, "preload_library", lambda name: "libtcmalloc_minimal.so.4")
    allocator.exec_preloaded({allocator.ENV: "tcmalloc"})
    assert int(calls[-1][2]["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"]) >= 1 << 40  # no line per large block


@pytest.mark.skipif(not sys.platform.startswith("linux") or allocator.preload_library("tcmalloc") is None,
                    reason="tcmalloc is not installed (Debian: libtcmalloc-minimal4)")
def test_the_cnnlab_command_starts_again_on_tcmalloc():
    """``CNNLAB_MALLOC=tcmalloc``: the command re-executes itself with the library preloaded, and
    ``--fit-memory`` then predicts the RSS with tcmalloc's measured figures."""
    proc = cnnlab("summary", "convnet", "--train", "--fit-memory", "1GiB", "--format", "json",
                  env={allocator.ENV: "tcmalloc"})
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    resident = json.loads(proc.stdout)["fit"]["resident"]
    assert resident["figures"] == "tcmalloc" and resident["allocator"].startswith("tcmalloc (preloaded)"), resident


def test_a_users_own_malloc_settings_win():
    state = allocator._apply(None, {"MALLOC_ARENA_MAX": "2"})
    if GLIBC:
        assert not state.applied and state.reason == "MALLOC_ARENA_MAX is set in the environment"
    state = allocator._apply(None, {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"})
    assert not state.applied and (not GLIBC or "GLIBC_TUNABLES" in state.reason)


@needs_glibc
def test_the_policy_changes_what_malloc_does():
    """Measured, not assumed: under cnnlab's default policy a 64 MiB block comes from the heap (kept for the
    next step), under glibc's own settings it is mmapped (and unmapped on free); lean maps blocks from 64 KiB."""
    default = _probe({allocator.ENV: "default"})
    ours = _probe({})
    assert not default["applied"] and default["mmapped"] is True
    assert ours["applied"] and ours["policy"] == allocator.DEFAULT_POLICY
    assert ours["mmapped"] is (allocator.POLICIES[allocator.DEFAULT_POLICY].get("mmap_max", 1) != 0)
    lean = _probe({allocator.ENV: "lean"})
    assert lean["applied"] and lean["settings"] == {"mmap_threshold": 65536} and lean["mmapped"] is True
    assert not _probe({allocator.ENV: "fast", "MALLOC_MMAP_THRESHOLD_": "131072"})["applied"]


@needs_glibc
def test_cnnlab_train_runs_under_the_policy(tmp_path):
    out = tmp_path / "run"
    proc = cnnlab("train", "--dataset", "digits", "--epochs", "1", "--batch-size", "256", "-q", "--out", str(out),
                  env={allocator.ENV: ""})
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    malloc = json.loads((out / "config.json").read_text())["environment"]["malloc"]
    assert malloc["applied"] and malloc["policy"] == allocator.DEFAULT_POLICY, malloc
    # probed inside the training process, after torch loaded: the policy's behaviour, not only its name
    assert malloc["large_blocks_mmapped"] is (allocator.POLICIES[allocator.DEFAULT_POLICY].get("mmap_max", 1) != 0)
    result = json.loads((out / "result.json").read_text())
    assert result["peak_rss_bytes"] > 100 * 2**20  # torch alone is more


def test_rss_is_read():
    now, peak = allocator.rss_bytes(), allocator.peak_rss_bytes()
    assert peak > 0 and (now is None or 0 < now <= peak)


def test_measure_shows_the_allocators_peak_and_the_process_rss():
    proc = cnnlab_in_process("summary", "convnet", "--train", "--measure", "--batch-size", "32")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "Measured peak" in text and "torch.profiler" in text
    assert "The process's resident memory (RSS, what the operating system sees) peaked at" in text
    assert "process RSS peak during the steps (measured)" in text
    proc = cnnlab_in_process("summary", "convnet", "--train", "--measure", "--batch-size", "32", "--format", "json")
    mem = json.loads(proc.stdout)["memory"]
    assert mem["measured_rss_peak_bytes"] >= mem["measured_rss_before_bytes"] > 0
    assert mem["measured_rss_peak_bytes"] > mem["measured_peak_bytes"]  # Python and torch are resident too


def test_fit_memory_answers_for_the_process_and_a_real_process_agrees():
    """``--fit-memory`` on the CPU picks a batch for the process's RSS; a fresh ``cnnlab`` process that
    runs two training steps at that batch measures its RSS within 15% of the prediction."""
    proc = cnnlab("summary", "convnet", "--train", "--fit-memory", "1GiB", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    fit = json.loads(proc.stdout)["fit"]
    assert fit["memory"] == "process" and fit["rss_bytes"] <= 2**30 < fit["next_rss_bytes"]
    assert fit["resident"]["runtime_bytes"] > 100 * 2**20 and fit["batch_size"] > 256
    proc = cnnlab("summary", "convnet", "--train", "--measure", "--batch-size", str(fit["batch_size"]),
                  "--format", "json")
    assert proc.returncode == 0, proc.stderr
    measured = json.loads(proc.stdout)["memory"]["measured_rss_peak_bytes"]
    assert abs(measured - fit["rss_bytes"]) <= 0.15 * fit["rss_bytes"], (measured, fit["rss_bytes"])


def test_fit_memory_says_which_memory():
    proc = cnnlab_in_process("summary", "convnet", "--train", "--fit-memory", "2GiB")
    text = " ".join(proc.stdout.split())
    assert "of the process's resident memory (RSS)" in text and "predicted RSS" in text
    assert "A dataset held in memory comes on top" in text
    proc = cnnlab_in_process("summary", "convnet", "--fit-memory", "4MiB", "--fit-for", "tensors")
    text = " ".join(proc.stdout.split())
    assert proc.returncode == 0 and "for the tensors alone" in text and "estimated peak" in text
    proc = cnnlab_in_process("summary", "convnet", "--fit-memory", "4MiB")
    assert proc.returncode == 2 and "even a batch of 1 needs" in proc.stderr and "before any tensor" in proc.stderr
