"""Inference time per batch size and the machine's roof, through :func:`cnnlab.runtime.time_fn`
(warm-up, synchronise, median), and the machine facts every report carries.

The roof is the best float32 throughput measured in the same run: several matrix-multiply sizes
(``torch.matmul`` and, on the CPU, oneDNN's GEMM) and two 3x3 convolutions, each timed by its
*fastest* run (the roof is what the machine can do, not what it did on average while others used
it). The theoretical peak (cores x clock x FLOPs per cycle from the vector width) is stated beside
it. A model measured above the roof raises it (:func:`raise_roof`), so no fraction exceeds 100%.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.conv.algorithms import gemm
from cnnlab.runtime import machine_line, time_fn

__all__ = ["measure_roof", "roof_measurements", "theoretical_peak", "raise_roof", "time_model", "machine_info"]

GEMM_SIZES = (1024, 2048)
CONV_SHAPES = ((256, 28, 8), (128, 56, 8))  # (channels in = out, side, batch): 3x3, padding 1


def machine_info(device: torch.device, roof_gflops: float | None, roof: dict[str, Any] | None = None) -> dict[str, Any]:
    """Machine, device, torch, threads and roof of a report (``Report.machine``)."""
    info = {"description": machine_line(device), "device": str(device), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "roof_gflops": roof_gflops, "cpu_count": os.cpu_count()}
    if roof:
        info["roof_measurements"] = roof.get("measurements", {})
        info["roof_source"] = roof.get("source")
    peak = theoretical_peak(device)
    if peak:
        info["theoretical_peak_gflops"], info["theoretical_peak_formula"] = peak["gflops"], peak["formula"]
    return info


def _cpu_ghz() -> float | None:
    try:
        khz = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text().strip()
        return int(khz) / 1e6
    except (OSError, ValueError):
        pass
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    mhz = re.findall(r"^cpu MHz\s*:\s*([0-9.]+)", text, re.M)
    return max(float(m) for m in mhz) / 1e3 if mhz else None


def theoretical_peak(device: torch.device) -> dict[str, Any] | None:
    """float32 peak of the CPU: cores x clock x 2 FMA units x 2 FLOPs x lanes (16 with AVX-512, 8
    with AVX2); None on CUDA or where the clock is unknown. An upper bound: cores that split 512-bit
    operations into two halves (AMD Zen 4) or lower their clock under vector load reach less."""
    if torch.device(device).type != "cpu":
        return None
    ghz = _cpu_ghz()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    lanes, isa = (16, "AVX-512") if "avx512f" in flags else (8, "AVX2") if "avx2" in flags else (4, "SSE")
    cores = torch.get_num_threads()
    if ghz is None:
        return None
    gflops = cores * ghz * 2 * 2 * lanes
    return {"gflops": gflops, "formula": f"{cores} cores x {ghz:.2f} GHz x 2 FMA units x 2 FLOPs x {lanes} float32 "
                                         f"lanes ({isa}) = {gflops:.0f} GFLOP/s"}


def roof_measurements(device: torch.device, repeats: int = 3) -> dict[str, Any]:
    """GFLOP/s of each roof candidate (best of ``repeats`` runs) and the best: ``{"measurements",
    "gflops", "source"}``."""
    device = torch.device(device)
    found: dict[str, float] = {}
    with torch.inference_mode():
        for n in GEMM_SIZES:
            a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
            fns = {"torch.matmul": lambda: a @ b}
            if device.type == "cpu":
                fns["oneDNN GEMM"] = lambda: gemm(a, b)
            for label, fn in fns.items():
                seconds = time_fn(fn, device, repeats=repeats, warmup=1).best
                found[f"{label} {n}^3"] = 2 * n**3 / seconds / 1e9
        for c, side, batch in CONV_SHAPES:
            x = torch.randn(batch, c, side, side, device=device).contiguous(memory_format=torch.channels_last)
            w = torch.randn(c, c, 3, 3, device=device).contiguous(memory_format=torch.channels_last)
            seconds = time_fn(lambda: F.conv2d(x, w, padding=1), device, repeats=repeats, warmup=1).best
            found[f"conv3x3 {c}ch {side}x{side} batch {batch}"] = 2 * batch * c * c * 9 * side * side / seconds / 1e9
    best = max(found, key=found.get)
    return {"measurements": found, "gflops": found[best], "source": best}


def measure_roof(device: torch.device, repeats: int = 3) -> float:
    """The best float32 GFLOP/s of :func:`roof_measurements`."""
    return roof_measurements(device, repeats)["gflops"]


def raise_roof(reports: Sequence[Any], roof: dict[str, Any]) -> dict[str, Any]:
    """A model that ran faster than the roof measurements raises the roof to its own GFLOP/s; then
    every timing's ``roof_fraction`` is recomputed (so none exceeds 1)."""
    for rep in reports:
        for t in rep.timing:
            if t["gflops"] > roof["gflops"]:
                roof = {**roof, "gflops": t["gflops"], "source": f"{rep.name} at batch {t['batch']} (above the measurements)"}
    for rep in reports:
        for t in rep.timing:
            t["roof_fraction"] = t["gflops"] / roof["gflops"]
    return roof


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
