"""``cnnlab explore`` as a user runs it: the first line, 32 concurrent requests all answered, Ctrl-C stops it
cleanly; its mistakes are one line, exit code 2."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import extra_module

from test_cli import assert_user_error, cnnlab, cnnlab_in_process

extra_module("fastapi")
extra_module("uvicorn")


def start(*args: str) -> tuple[subprocess.Popen, str]:
    """The server in a subprocess, and the URL of its first line."""
    proc = subprocess.Popen([sys.executable, "-m", "cnnlab", "explore", *args, "--port", "0", "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    first = proc.stdout.readline()
    assert first.startswith("cnnlab explore: http://127.0.0.1:"), (first, proc.poll())
    return proc, first.split(": ", 1)[1].strip()


def call(url: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url.rstrip("/") + path, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_serves_32_concurrent_requests_and_stops_on_ctrl_c():
    proc, url = start("convnet", "--dataset", "digits")
    try:
        jobs = [("/api/subjects/convnet/predict", {"index": i}) for i in range(12)]
        jobs += [("/api/subjects/convnet/cell", {"index": i, "layer": "conv_2", "channel": 1, "y": 3, "x": 3})
                 for i in range(8)]
        jobs += [("/api/subjects/convnet/layers", {"index": i, "channels": 2}) for i in range(6)]
        jobs += [("/api/playground", {"input": 5, "kernel": 3})] * 3
        jobs += [("/api/subjects/convnet/predict", {"image": "junk"})] * 3  # errors in the crowd
        with ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(lambda job: call(url, *job), jobs))
        assert len(answers) == 32
        assert [status for status, _ in answers] == [200] * 29 + [400] * 3
        assert call(url, "/api/subjects")[0] == 200  # still serving
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 130), (proc.returncode, err)
    assert "Traceback" not in err + out


def test_the_first_line_is_the_url_and_a_run_folder_is_served(finished_run: Path):
    proc, url = start(str(finished_run.parent))
    try:
        status, subjects = call(url, "/api/subjects")
        assert status == 200 and [s["id"] for s in subjects] == [finished_run.name]
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


@pytest.mark.parametrize("args,fragments", [
    (["explore", "no/such/runs"], ["no/such/runs", "model name"]),
    (["explore", "convnt"], ["convnt"]),
    (["explore", "convnet", "--port", "70000"], ["--port", "65535"]),
    (["explore", "convnet", "--port", "-1"], ["--port"]),
    (["explore", "convnet", "--token", " "], ["--token"]),
])
def test_mistakes_are_one_line(args, fragments):
    assert_user_error(cnnlab_in_process(*args), *fragments)


def test_an_empty_folder_and_weights_for_a_folder_are_refused(tmp_path: Path, finished_run: Path):
    assert_user_error(cnnlab_in_process("explore", str(tmp_path)), "no finished run")
    assert_user_error(cnnlab_in_process("explore", str(finished_run), "--weights", str(finished_run / "model.pt")),
                      "--weights")


def test_a_busy_port_is_one_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert_user_error(cnnlab_in_process("explore", "convnet", "--port", str(port), "--no-browser"),
                          f"127.0.0.1:{port}", "--port")


def test_without_fastapi_the_command_says_what_to_install():
    code = ("import sys; sys.modules['fastapi'] = None; from cnnlab.cli import run; "
            "sys.exit(run(['explore', 'convnet', '--no-browser']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert_user_error(proc, "pip install 'cnnlab[explore]'")


def test_help_lists_the_options():
    out = cnnlab("explore", "--help")
    assert out.returncode == 0
    for flag in ("--host", "--port", "--no-browser", "--token", "--weights", "--dataset"):
        assert flag in out.stdout
