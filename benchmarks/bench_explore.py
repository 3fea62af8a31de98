"""How fast `cnnlab explore` answers: server time per request (the app in this process through Starlette's
test client: routing, the library call, JSON encoding; no network), median of 20 after warm-up, for the
lecture's ConvNet at 28 px and ResNet-18 at 224 px (random weights: the time does not depend on them), beside
the model's bare forward pass timed in the same process (the peer: what any answer must cost at least).
Then, against a real server (uvicorn, a subprocess): the page's first load after the server prints its URL,
and how many predictions per second a drawing gets over HTTP (one request in flight, as the page sends them).

    .venv/bin/python benchmarks/bench_explore.py [--repeats 20] [--skip-server]

Goals (issue 19, 2-core CPU): ConvNet predict <= 20 ms, cell <= 30 ms, layers <= 250 ms; ResNet-18 predict
<= 150 ms, cell <= 150 ms, layers <= 1.5 s; first load <= 1 s; >= 10 predictions/s while drawing.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

import numpy as np
import torch
from fastapi.testclient import TestClient
from PIL import Image

from cnnlab.app import Catalog, create_app

GOALS = {("convnet", "predict"): 0.020, ("convnet", "cell"): 0.030, ("convnet", "layers"): 0.250,
         ("resnet18", "predict"): 0.150, ("resnet18", "cell"): 0.150, ("resnet18", "layers"): 1.5}
CELLS = {"convnet": {"layer": "conv_2", "channel": 3, "y": 7, "x": 7},
         "resnet18": {"layer": "layer2.0.conv1", "channel": 5, "y": 14, "x": 14}}


def drawing(side: int, channels: int) -> str:
    """A canvas-like PNG data URL: a white stroke on black."""
    image = np.zeros((side, side), dtype=np.uint8)
    image[side // 5: 4 * side // 5, side // 2 - side // 20: side // 2 + side // 20] = 255
    picture = Image.fromarray(image).convert("RGB" if channels == 3 else "L")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def timed(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def in_process(model: str, repeats: int) -> list[tuple[str, float]]:
    client = TestClient(create_app(Catalog.open(model), host="127.0.0.1", port=8765), base_url="http://127.0.0.1:8765")
    subject = client.get(f"/api/subjects/{model}").json()
    c, side, _ = subject["input_shape"]
    image = drawing(side, c)
    bodies = {"predict": {"image": image}, "cell": {"image": image, **CELLS[model]}, "layers": {"image": image}}
    rows = []
    loaded = client.app.state.catalog.entries[model].subject
    x = torch.zeros((1, c, side, side))
    with torch.inference_mode():
        rows.append(("bare forward (peer)", timed(lambda: loaded.model(x), repeats)))
    for name, body in bodies.items():
        def call(name=name, body=body):
            response = client.post(f"/api/subjects/{model}/{name}", json=body)
            assert response.status_code == 200, response.text
        rows.append((name, timed(call, repeats)))
    return rows


def fetch(url: str, body: dict | None = None) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


def server_figures(seconds: float = 3.0) -> tuple[float, float]:
    """(first load in s: the page, its script and the first answers after the URL is printed; predictions/s)."""
    proc = subprocess.Popen([sys.executable, "-m", "cnnlab", "explore", "convnet", "--port", "0", "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = proc.stdout.readline().split(": ", 1)[1].strip()
        start = time.perf_counter()
        fetch(url)
        fetch(url + "static/chart.umd.min.js")
        fetch(url + "api/subjects")
        fetch(url + "api/subjects/convnet")
        image = drawing(280, 1)
        fetch(url + "api/subjects/convnet/predict", {"image": image})
        first_load = time.perf_counter() - start
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            fetch(url + "api/subjects/convnet/predict", {"image": image})
            count += 1
        return first_load, count / (time.perf_counter() - start)
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the server stops cleanly
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--skip-server", action="store_true", help="only the in-process request times")
    args = parser.parse_args()
    print(f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, {torch.get_num_threads()} torch "
          f"threads; Python {platform.python_version()}, torch {torch.__version__}; median of {args.repeats}")
    print("| model | request | median ms | goal ms | ratio to bare forward |")
    print("|---|---|---:|---:|---:|")
    for model in ("convnet", "resnet18"):
        rows = in_process(model, args.repeats)
        bare = rows[0][1]
        for name, seconds in rows:
            goal = GOALS.get((model, name))
            verdict = "" if goal is None else f"{goal * 1000:.0f}" + (" (met)" if seconds <= goal else " (MISSED)")
            print(f"| {model} | {name} | {seconds * 1000:.1f} | {verdict} | {seconds / bare:.1f}x |")
    if not args.skip_server:
        first_load, rate = server_figures()
        print(f"first load after the URL is printed (page, Chart.js, subjects, subject, first predict): "
              f"{first_load * 1000:.0f} ms (goal <= 1000)")
        print(f"predictions per second while drawing (280x280 PNG over HTTP, one in flight): {rate:.0f} (goal >= 10)")


if __name__ == "__main__":
    main()
