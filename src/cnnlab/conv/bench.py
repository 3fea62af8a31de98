"""Timing and accuracy of the convolution algorithms on VGG-16's 3x3 layer shapes.

Every algorithm is timed against ``torch.nn.functional.conv2d`` (oneDNN on the CPU, cuDNN on
CUDA) in the same process: one warm-up, then the median of ``runs`` timed calls. Error is
``max |y - y64| / max |y64|`` against ``F.conv2d`` computed in float64 on the CPU.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from cnnlab.conv import conv2d
from cnnlab.machine import cpu_name

__all__ = ["VGG16_LAYERS", "BenchRow", "bench_conv", "cudnn_modes", "error_report", "machine_line"]

# (channels, side) of VGG-16's 3x3 convolutions (in == out channels), one per block
VGG16_LAYERS: list[tuple[int, int]] = [(64, 224), (128, 112), (256, 56), (512, 28), (512, 14)]


@dataclass
class BenchRow:
    layer: str  # "256@56"
    batch: int
    algorithm: str
    ms: float
    gflops: float  # 2 x MACs / time
    ratio: float  # F.conv2d time / this time (> 1: faster than the library)
    max_error: float | None  # normwise, against float64


def machine_line(device: torch.device) -> str:
    cpu = cpu_name()
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} logical CPUs)"
    return (f"{platform.machine()} {cpu}; device {dev}; torch {torch.__version__}; "
            f"threads {torch.get_num_threads()}; oneDNN {torch.backends.mkldnn.is_available()}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], torch.Tensor], device: torch.device, runs: int, budget_s: float = 2.0) -> tuple[float, torch.Tensor]:
    """Median seconds of ``runs`` calls after one warm-up; a slow warm-up (> budget) means one run."""
    start = time.perf_counter()
    out = fn()
    _sync(device)
    if time.perf_counter() - start > budget_s:
        runs = 1
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _max_error(y: torch.Tensor, ref64: torch.Tensor) -> float:
    return float((y.double().cpu() - ref64).abs().max() / ref64.abs().max())


def bench_conv(
    layers: Sequence[tuple[int, int]] = VGG16_LAYERS,
    batch_sizes: Sequence[int] = (1, 8),
    algorithms: Sequence[str] = ("im2col", "fft", "winograd", "winograd4"),
    runs: int = 5,
    device: str | torch.device = "cpu",
    skip: Callable[[str, int, int, int], bool] | None = None,
    on_row: Callable[[BenchRow], None] | None = None,
) -> list[BenchRow]:
    """Time each algorithm on each (layer, batch); ``F.conv2d`` comes first as the reference row."""
    device = torch.device(device)
    rows: list[BenchRow] = []
    gen = torch.Generator().manual_seed(0)
    for channels, side in layers:
        for batch in batch_sizes:
            x = torch.randn(batch, channels, side, side, generator=gen)
            w = torch.randn(channels, channels, 3, 3, generator=gen) / (3 * channels**0.5)
            ref64 = F.conv2d(x.double(), w.double(), padding=1)
            xd, wd = x.to(device), w.to(device)
            macs = batch * channels * channels * 9 * side * side
            layer = f"{channels}@{side}"
            with torch.inference_mode():
                base_s, y = _time(lambda: F.conv2d(xd, wd, padding=1), device, runs)
                contenders = [("F.conv2d", base_s, y)]
                for algorithm in algorithms:
                    if skip is not None and skip(algorithm, channels, side, batch):
                        continue
                    fn = lambda a=algorithm: conv2d(xd, wd, padding=1, algorithm=a)  # noqa: E731
                    s, y = _time(fn, device, runs)
                    contenders.append((algorithm, s, y))
            for name, s, y in contenders:
                row = BenchRow(layer, batch, name, 1e3 * s, 2 * macs / s / 1e9, base_s / s, _max_error(y, ref64))
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    return rows


def cudnn_modes(layers: Sequence[tuple[int, int]] = VGG16_LAYERS, batch_sizes: Sequence[int] = (1, 8),
                runs: int = 10, device: str | torch.device = "cuda") -> list[dict]:
    """F.conv2d on CUDA under cuDNN benchmark on/off x deterministic on/off (ms, median)."""
    device = torch.device(device)
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    out = []
    try:
        for channels, side in layers:
            for batch in batch_sizes:
                x = torch.randn(batch, channels, side, side, device=device)
                w = torch.randn(channels, channels, 3, 3, device=device)
                row = {"layer": f"{channels}@{side}", "batch": batch}
                for bench in (False, True):
                    for det in (False, True):
                        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = bench, det
                        with torch.inference_mode():
                            _time(lambda: F.conv2d(x, w, padding=1), device, 2)  # let benchmark mode search
                            s, _ = _time(lambda: F.conv2d(x, w, padding=1), device, runs)
                        row[f"benchmark={'on' if bench else 'off'}, deterministic={'on' if det else 'off'}"] = 1e3 * s
                out.append(row)
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved
    return out


def error_report(layers: Sequence[tuple[int, int]] = VGG16_LAYERS, batch: int = 1,
                 algorithms: Sequence[str] = ("direct", "im2col", "fft", "winograd", "winograd4"),
                 direct_max_side: int = 28) -> list[dict]:
    """Normwise max error of each float32 algorithm against float64, per layer shape.

    ``direct`` (a Python loop over output positions) runs only where side <= direct_max_side.
    """
    gen = torch.Generator().manual_seed(1)
    report = []
    for channels, side in layers:
        x = torch.randn(batch, channels, side, side, generator=gen)
        w = torch.randn(channels, channels, 3, 3, generator=gen) / (3 * channels**0.5)
        ref64 = F.conv2d(x.double(), w.double(), padding=1)
        row: dict = {"layer": f"{channels}@{side}", "F.conv2d": _max_error(F.conv2d(x, w, padding=1), ref64)}
        with torch.inference_mode():
            for algorithm in algorithms:
                if algorithm == "direct" and side > direct_max_side:
                    row[algorithm] = None
                    continue
                row[algorithm] = _max_error(conv2d(x, w, padding=1, algorithm=algorithm), ref64)
        report.append(row)
    return report


def rows_as_dicts(rows: Sequence[BenchRow]) -> list[dict]:
    return [asdict(r) for r in rows]
