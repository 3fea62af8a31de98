"""Timing and accuracy of the convolution algorithms on VGG-16's 3x3 layer shapes.

Every algorithm is timed against ``torch.nn.functional.conv2d`` (oneDNN on the CPU, cuDNN on
CUDA) in the same process by :func:`cnnlab.runtime.time_fn`: one warm-up, then the median of
``runs`` timed calls. :func:`run_bench` is the ``cnnlab bench conv`` command as one call. Error is
``max |y - y64| / max |y64|`` against ``F.conv2d`` computed in float64 on the CPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from cnnlab.analysis.measure import peak_bytes_of
from cnnlab.arithmetic import conv_buffer_bytes
from cnnlab.conv import ALGORITHMS, conv2d
from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.parsing import parse_int_list
from cnnlab.runtime import machine_line, resolve_device, time_fn

__all__ = [
    "VGG16_LAYERS",
    "QUICK_LAYERS",
    "BenchRow",
    "bench_conv",
    "cudnn_modes",
    "error_report",
    "machine_line",
    "rows_as_dicts",
    "run_bench",
]

BUDGET_S = 2.0  # a warm-up slower than this means a single timed run (slow teaching algorithms)

# (channels, side) of VGG-16's 3x3 convolutions (in == out channels), one per block
VGG16_LAYERS: list[tuple[int, int]] = [(64, 224), (128, 112), (256, 56), (512, 28), (512, 14)]
QUICK_LAYERS: list[tuple[int, int]] = [(256, 56), (512, 28), (512, 14)]  # --quick


@dataclass
class BenchRow:
    layer: str  # "256@56"
    batch: int
    algorithm: str
    ms: float
    gflops: float  # 2 x MACs / time
    ratio: float  # F.conv2d time / this time (> 1: faster than the library)
    max_error: float | None  # normwise, against float64
    buffer_bytes: int | None = None  # the algorithm's defining buffer, from cnnlab.arithmetic.conv_buffer_bytes
    measured_bytes: int | None = None  # measured peak of one call beyond its input, weight and output


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
                base = time_fn(lambda: F.conv2d(xd, wd, padding=1), device, repeats=runs, budget_s=BUDGET_S)
                base_s = base.median
                contenders = [("F.conv2d", base_s, base.result)]
                for algorithm in algorithms:
                    if skip is not None and skip(algorithm, channels, side, batch):
                        continue
                    fn = lambda a=algorithm: conv2d(xd, wd, padding=1, algorithm=a)  # noqa: E731
                    timing = time_fn(fn, device, repeats=runs, budget_s=BUDGET_S)
                    contenders.append((algorithm, timing.median, timing.result))
            for name, s, y in contenders:
                row = BenchRow(layer, batch, name, 1e3 * s, 2 * macs / s / 1e9, base_s / s, _max_error(y, ref64),
                               *_memory(name, xd, wd, y, device))
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    return rows


def _memory(name: str, x: torch.Tensor, w: torch.Tensor, y: torch.Tensor, device: torch.device) -> tuple:
    """(computed buffer bytes, measured extra bytes) of one call of algorithm ``name`` -- the lecture's
    "take up much more memory" as a number: what the call needs beyond its input, weight and output."""
    n, c, h, wd = x.shape
    computed = None if name == "F.conv2d" else conv_buffer_bytes(
        name, n, c, w.shape[0], h, wd, kernel=w.shape[-1], m=4 if name == "winograd4" else 2)
    fn = (lambda: F.conv2d(x, w, padding=1)) if name == "F.conv2d" else (lambda: conv2d(x, w, padding=1, algorithm=name))
    with torch.inference_mode():
        peak = peak_bytes_of(fn, [x, w], device)
    return computed, max(0, peak - sum(t.numel() * t.element_size() for t in (x, w, y)))


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
                            fn = lambda: F.conv2d(x, w, padding=1)  # noqa: E731
                            time_fn(fn, device, repeats=2, budget_s=BUDGET_S)  # let benchmark mode search
                            s = time_fn(fn, device, repeats=runs, budget_s=BUDGET_S).median
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


def _direct_or_quick_fft(quick: bool) -> Callable[[str, int, int, int], bool]:
    """Which (algorithm, channels, side, batch) cases to leave out."""

    def skip(algorithm: str, channels: int, side: int, batch: int) -> bool:
        if algorithm == "direct":
            return side > 14 or batch > 1  # a Python loop per output position: teaching speed
        return quick and algorithm == "fft" and batch > 1

    return skip


def run_bench(
    quick: bool = False,
    batch_sizes: str | Sequence[int] = "1,8",
    algorithms: str | Sequence[str] = "im2col,fft,winograd,winograd4",
    runs: int | None = None,
    device: str | torch.device = "cpu",
    errors: bool = True,
    on_row: Callable[[BenchRow], None] | None = None,
) -> dict[str, Any]:
    """``cnnlab bench conv``: check the arguments (one-line :class:`CnnlabError` before any work),
    time every algorithm on VGG-16's 3x3 layers against ``F.conv2d``, and return
    ``{"machine", "rows"[, "cudnn_modes"][, "errors"]}`` (rows as dicts; JSON-ready).

    Args:
        quick: three layers (256@56, 512@28, 512@14), 3 runs, FFT at batch 1 only.
        batch_sizes: ``"1,8"`` or a sequence of ints.
        algorithms: ``"im2col,fft"`` or a sequence of names from :data:`cnnlab.conv.ALGORITHMS`.
        runs: timed runs per case (default 5, ``quick`` 3).
        device: ``cpu``, ``cuda`` or ``auto``; on CUDA cuDNN's modes are timed too.
        errors: add the float64 error report.
        on_row: called with each :class:`BenchRow` as soon as it is measured.
    """
    dev = resolve_device(device)
    names = [a.strip() for a in algorithms.split(",") if a.strip()] if isinstance(algorithms, str) else list(algorithms)
    for name in names:
        if name not in ALGORITHMS:
            raise UnknownNameError("algorithm", name, ALGORITHMS)
    text = batch_sizes if isinstance(batch_sizes, str) else ",".join(str(b) for b in batch_sizes)
    sizes = parse_int_list(text, "--batch-sizes")
    layers = QUICK_LAYERS if quick else VGG16_LAYERS
    runs = (3 if quick else 5) if runs is None else runs  # 0 is a mistake, not the default
    if runs < 1:
        raise CnnlabError(f"--runs must be a positive integer, got {runs}")
    rows = bench_conv(layers, sizes, names, runs=runs, device=dev, skip=_direct_or_quick_fft(quick), on_row=on_row)
    result: dict[str, Any] = {"machine": machine_line(dev), "rows": rows_as_dicts(rows)}
    if dev.type == "cuda":
        result["cudnn_modes"] = cudnn_modes(layers, sizes, device=dev)
    if errors:
        result["errors"] = error_report(layers)
    return result
