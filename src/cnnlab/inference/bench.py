"""``cnnlab bench infer``: every optimize mode against eager fp32 and ONNX Runtime, per model
and batch size, timed interleaved in one process through :func:`cnnlab.runtime.time_fn`.

Each round calls every contender once, in a new seeded random order after a 5 ms pause each (so
no contender always follows the same one: PyTorch's OpenMP threads spin for a while after a call
and would slow whichever ONNX Runtime session came next), and load from other processes hits all
of them alike; a row reports the median ms per batch and the median of
the per-round ratios to eager fp32 (``x_eager``) and to the ONNX Runtime peer of the same
precision (``x_ort``). For a run directory it also scores every contender on the run's test split:
test accuracy and top-1 agreement with eager fp32.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.inference.modes import MODES, PRECISION, mode_support, optimize
from cnnlab.inference.onnx import export_onnx_bytes
from cnnlab.inference.peers import PEERS, ort_peer
from cnnlab.inference.runs import predict_labels, run_calibration
from cnnlab.models import create_model, get_model_info
from cnnlab.parsing import MAX_INT
from cnnlab.runs import load_run
from cnnlab.runtime import machine_line, resolve_device, time_fn

__all__ = ["DEFAULT_MODES", "bench_infer", "parse_names", "parse_batch_sizes"]

DEFAULT_MODES = {"cpu": ("eager", "channels_last", "compile", "bf16", "onnxruntime", "int8"),
                 "cuda": ("eager", "channels_last", "compile", "bf16", "fp16")}
MODEL_CALIBRATION_IMAGES = 32  # a model name has random weights: calibration only has to be representative in shape


@dataclass
class _Target:
    label: str
    model: nn.Module
    shape: tuple[int, int, int]
    calibration: list[torch.Tensor]
    test: Any = None  # a run's test split (BatchSource)
    normalize: Any = None
    eval_batch: int = 512
    contenders: dict[str, Callable] = field(default_factory=dict)


def parse_names(value: str | Sequence[str]) -> list[str]:
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    return [n for n in names if n]


def parse_batch_sizes(value: str | Sequence[int]) -> list[int]:
    try:
        sizes = [int(v) for v in parse_names(value)] if isinstance(value, str) else [int(v) for v in value]
    except ValueError:
        raise CnnlabError(f"--batch-sizes takes comma-separated positive integers (e.g. 1,16,64), got {value!r}") from None
    if not sizes or any(s < 1 or s > MAX_INT for s in sizes):
        raise CnnlabError(f"--batch-sizes takes comma-separated positive integers at most 2**63-1 (e.g. 1,16,64), "
                          f"got {value!r}")
    return sizes


def _target(spec: str, device: torch.device, *, input_size: int | None, data_dir: str | None, seed: int,
            calibration_images: int) -> _Target:
    """A run directory (its model, test split and training images) or a model name (random weights)."""
    if Path(spec).is_dir() or "/" in spec:
        run = load_run(spec, device)
        calibration = run_calibration(run, data_dir, images=calibration_images, seed=seed)
        return _Target(str(spec), run.model, run.input_shape, calibration, run.split("test", data_dir),
                       run.preprocessing.normalize, run.config.eval_batch_size)
    torch.manual_seed(seed)
    model = create_model(spec, input_size=input_size).to(device).eval()
    info = get_model_info(spec)
    shape = (info.in_channels, input_size or info.input_size, input_size or info.input_size)
    gen = torch.Generator().manual_seed(seed)
    calibration = list(torch.rand(min(calibration_images, MODEL_CALIBRATION_IMAGES), *shape, generator=gen).split(8))
    return _Target(spec, model, shape, calibration)


def _build(target: _Target, name: str, x: torch.Tensor, threads: int) -> tuple[Callable, float]:
    """A contender ready to run on ``x``, and the seconds it took (export, calibration, compile)."""
    start = time.perf_counter()
    if name in PEERS:
        fn = ort_peer(name, export_onnx_bytes(target.model, x), target.calibration, threads)
    else:
        fn = optimize(target.model, name, x.to(next(target.model.parameters()).device), target.calibration)
    with torch.no_grad():
        fn(x)
    return fn, time.perf_counter() - start


PAUSE_S = 0.005  # before each timed call: the previous contender's threads stop spinning


def _time_round_robin(fns: dict[str, Callable], x: torch.Tensor, device: torch.device, repeats: int,
                      warmup: int, seed: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in fns}
    names, gen = list(fns), torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        for fn in fns.values():
            time_fn(lambda: fn(x), device, repeats=1, warmup=warmup)
        for _ in range(repeats):
            for i in torch.randperm(len(names), generator=gen).tolist():
                time.sleep(PAUSE_S)
                times[names[i]] += time_fn(lambda: fns[names[i]](x), device, repeats=1, warmup=0).times
    return times


def _ratio(times: dict[str, list[float]], peer: str | None, name: str) -> float | None:
    if peer is None or peer not in times:
        return None
    return statistics.median(p / t for p, t in zip(times[peer], times[name]))


def _peer_of(name: str, precision: str) -> str | None:
    if name in PEERS:
        return None
    return "ort-int8" if precision == "int8" else "ort-fp32"


def _accuracy(target: _Target, fns: dict[str, Callable]) -> dict[str, tuple[float, float]]:
    """Per contender: (test accuracy %, top-1 agreement with eager fp32 %) on the run's test split."""
    scores: dict[str, tuple[float, float]] = {}
    reference = None
    for name, fn in fns.items():  # eager comes first
        preds, labels = predict_labels(fn, target.test, target.eval_batch, target.normalize)
        reference = preds if reference is None else reference
        scores[name] = (100.0 * float((preds == labels).float().mean()), 100.0 * float((preds == reference).float().mean()))
    return scores


def _rows(target: _Target, batch: int, times: dict[str, list[float]], setup: dict[str, float],
          scores: dict[str, tuple[float, float]]) -> list[dict[str, Any]]:
    rows = []
    for name, ts in times.items():
        median = statistics.median(ts)
        fn = target.contenders[name]
        precision = PEERS.get(name) or getattr(fn, "precision", PRECISION[name])  # auto: its chosen mode's
        rows.append({
            "model": target.label, "mode": name, "precision": precision,
            "engine": "onnxruntime" if name in PEERS or getattr(fn, "chosen", name) in ("onnxruntime", "int8")
                      else "pytorch",
            "peer": name in PEERS, "chosen": getattr(fn, "chosen", None), "batch_size": batch,
            "ms_per_batch": 1e3 * median, "images_per_s": batch / median,
            "x_eager": _ratio(times, "eager", name), "x_ort": _ratio(times, _peer_of(name, precision), name),
            "setup_s": setup[name], "test_acc": scores.get(name, (None, None))[0],
            "agreement": scores.get(name, (None, None))[1],
        })
    return rows


def _bench_target(target: _Target, names: list[str], batch_sizes: list[int], device: torch.device, *, repeats: int,
                  warmup: int, threads: int, seed: int, on_row: Callable | None) -> list[dict[str, Any]]:
    gen = torch.Generator().manual_seed(seed)
    timed: list[tuple[int, dict, dict]] = []
    for batch in batch_sizes:
        x = torch.rand(batch, *target.shape, generator=gen).to(device)
        setup: dict[str, float] = {}
        for name in names:
            if name in target.contenders:  # built at an earlier batch size: this size's first call
                setup[name] = time_fn(lambda: target.contenders[name](x), device, repeats=1, warmup=0).times[0]
            else:
                target.contenders[name], setup[name] = _build(target, name, x, threads)
        timed.append((batch, _time_round_robin(target.contenders, x, device, repeats, warmup, seed + batch), setup))
    scores = _accuracy(target, target.contenders) if target.test is not None else {}
    rows = []
    for batch, times, setup in timed:
        for row in _rows(target, batch, times, setup, scores):
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def _contender_names(modes: Sequence[str] | str | None, peers: bool, device: torch.device) -> list[str]:
    names = parse_names(modes) if modes is not None else list(DEFAULT_MODES[device.type])
    for name in names:
        if name not in MODES and name not in PEERS:
            raise UnknownNameError("mode", name, (*MODES, *PEERS))
        ok, reason = mode_support(name, device) if name in MODES else mode_support("onnxruntime", device)
        if not ok:
            raise CnnlabError(reason)
    if peers and device.type == "cpu" and mode_support("onnxruntime", device)[0]:
        names += [p for p in PEERS if p not in names]
    return ["eager", *dict.fromkeys(n for n in names if n != "eager")]


def _check_ranges(**values: int | None) -> None:
    """One line naming the first option outside its range (None: the option's default)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    ranges = {"repeats": (1, None, ""), "warmup": (0, None, ""), "calibration_images": (1, None, ""),
              "input_size": (1, None, ""), "threads": (1, cores, " (the CPU cores this process may use)"),
              "seed": (-2**63, 2**63 - 1, " (seed + batch size goes to torch.manual_seed)")}
    for name, value in values.items():
        lo, hi, why = ranges[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < lo
                                  or (hi is not None and value > hi)):
            wanted = f"an integer in [{lo}, {hi}]{why}" if hi is not None else (
                "a positive integer" if lo == 1 else f"an integer >= {lo}")
            raise CnnlabError(f"--{name.replace('_', '-')} must be {wanted}, got {value!r}")


def bench_infer(targets: Sequence[str], *, modes: Sequence[str] | str | None = None,
                batch_sizes: Sequence[int] | str = (1, 16), peers: bool = True, repeats: int = 7, warmup: int = 2,
                threads: int | None = None, input_size: int | None = None, device: str = "cpu",
                data_dir: str | None = None, calibration_images: int = 256, seed: int = 0,
                on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Time ``modes`` (default: all this machine runs) and the ONNX Runtime peers on each target
    (a run directory or a model name) at each batch size. Returns {"machine", "threads", "rows"}.

    ``setup_s`` of a row: seconds before the contender ran that batch size (export, calibration and
    compile at the first size; a recompile, if any, at later ones).
    """
    dev = resolve_device(device)
    sizes = parse_batch_sizes(batch_sizes)
    names = _contender_names(modes, peers, dev)
    _check_ranges(repeats=repeats, warmup=warmup, threads=threads, calibration_images=calibration_images,
                  input_size=input_size, seed=seed)
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads or saved_threads)
    try:
        result = {"machine": machine_line(dev), "threads": torch.get_num_threads(), "repeats": repeats, "rows": []}
        for spec in targets or ["resnet18"]:
            target = _target(spec, dev, input_size=input_size, data_dir=data_dir, seed=seed,
                             calibration_images=calibration_images)
            result["rows"] += _bench_target(target, names, sizes, dev, repeats=repeats, warmup=warmup,
                                            threads=torch.get_num_threads(), seed=seed, on_row=on_row)
            torch.compiler.reset()  # the next target's compiles start from a clean cache
        return result
    finally:
        torch.set_num_threads(saved_threads)
