"""Inference time per batch size and the machine's roof, through :func:`cnnlab.runtime.time_fn`
(warm-up, synchronise, median), and the machine facts every report carries."""

from __future__ import annotations

import os
import platform
from typing import Any, Sequence

import torch
import torch.nn as nn

from cnnlab.runtime import machine_line, time_fn

__all__ = ["measure_roof", "time_model", "machine_info"]


def machine_info(device: torch.device, roof_gflops: float | None) -> dict[str, Any]:
    """Machine, device, torch, threads and roof of a report (``Report.machine``)."""
    return {"description": machine_line(device), "device": str(device), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "roof_gflops": roof_gflops, "cpu_count": os.cpu_count()}


def measure_roof(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a large float32 matrix multiply (the best of torch.matmul and, on the CPU, oneDNN's GEMM)."""
    from cnnlab.conv.algorithms import gemm

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = 0.0
    fns = [lambda: a @ b] + ([lambda: gemm(a, b)] if device.type == "cpu" else [])
    with torch.inference_mode():
        for fn in fns:
            seconds = time_fn(fn, device, repeats=repeats, warmup=1).median
            best = max(best, 2 * n**3 / seconds / 1e9)
    return best


def time_model(model: nn.Module, input_shape: Sequence[int], batch_sizes: Sequence[int], device: torch.device,
               repeats: int, macs: int, roof: float | None, warmup: int = 2) -> list[dict]:
    """Median seconds of ``repeats`` forward passes per batch size (eval mode, inference mode),
    with images/s, achieved GFLOP/s (2 x ``macs`` per image) and its fraction of ``roof``."""
    out = []
    model.eval()
    for batch in batch_sizes:
        x = torch.randn((batch, *input_shape), device=device)
        with torch.inference_mode():
            s = time_fn(lambda: model(x), device, repeats=repeats, warmup=warmup).median
        gflops = 2 * macs * batch / s / 1e9
        out.append({"batch": batch, "ms_per_batch": 1e3 * s, "ms_per_image": 1e3 * s / batch,
                    "images_per_s": batch / s, "gflops": gflops, "roof_fraction": gflops / roof if roof else None,
                    "repeats": repeats})
    return out
