"""Where and how tensors run: device choice, determinism, memory format, timing, machine facts.

Everything that depends on the machine rather than on the lecture lives here, so that the
training loop, the analysis, the convolution lab and the benchmark scripts share one device
rule, one determinism switch and one timing loop (warm-up, synchronise, median).
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from cnnlab import __version__, allocator
from cnnlab.errors import CnnlabError
from cnnlab.trace import trace  # the one shape recorder (tests/test_layout.py)

__all__ = [
    "resolve_device",
    "determinism",
    "memory_format_for",
    "FORWARD_BYTES",
    "forward_batch_size",
    "sync",
    "Timing",
    "time_fn",
    "available_memory_bytes",
    "is_out_of_memory",
    "explain_out_of_memory",
    "cpu_name",
    "machine_line",
    "environment_info",
]


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU. Asking for CUDA without one is a user error."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CnnlabError(f"--device must be auto, cpu or cuda, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CnnlabError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto")
    return device


@contextlib.contextmanager
def determinism(enabled: bool, device: torch.device) -> Iterator[None]:
    """The lecture's ``cudnn.deterministic = True`` and more, restored on exit.

    On: ``torch.use_deterministic_algorithms(True)``, cuDNN deterministic, benchmark off.
    Off: cuDNN benchmark on (picks the fastest algorithm per shape at run time).
    """
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    if enabled:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
        # On CUDA a few backward kernels (e.g. adaptive average pooling) have no deterministic
        # version; warn there instead of failing. On the CPU every op we use is deterministic.
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic = saved[2]
        torch.backends.cudnn.benchmark = saved[3]


def memory_format_for(channels_last: bool | None, device: torch.device) -> torch.memory_format:
    """channels_last when asked for, or by default on the CPU (where oneDNN prefers NHWC)."""
    use = channels_last if channels_last is not None else device.type == "cpu"
    return torch.channels_last if use else torch.contiguous_format


# One layer's output for a whole forward-only batch on the CPU: above this, a larger batch is slower
# per image and only costs memory (ResNet-18, 64 px, 2 AMD EPYC cores: 627 images/s at batch 128,
# 32 MiB per layer, against 411 at 512; the lecture ConvNet's 512 uses 6 MiB and stays).
FORWARD_BYTES = 32 * 2**20


def forward_batch_size(model: torch.nn.Module, sample_shape: tuple[int, ...], batch_size: int,
                       device: torch.device) -> int:
    """The batch for forward-only passes of ``model`` (in eval mode) on ``C x H x W`` inputs: ``batch_size``
    on a GPU; on the CPU ``batch_size`` halved until the largest output of any one module for the
    whole batch fits in :data:`FORWARD_BYTES`. One forward pass of a single zero image finds the sizes."""
    if device.type != "cpu" or batch_size <= 1:
        return batch_size
    calls = trace(model, tuple(sample_shape)).layers()
    element = next((p.element_size() for p in model.parameters()), 4)
    largest = max((math.prod(c.output_shape) for c in calls), default=0) * element
    while batch_size > 1 and batch_size * largest > FORWARD_BYTES:
        batch_size //= 2
    return batch_size


def sync(device: torch.device | str) -> None:
    """Wait for queued GPU work, so a wall-clock reading covers it (no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """Seconds of the timed calls of :func:`time_fn` (warm-up excluded)."""

    times: list[float]
    warmup_s: float
    result: Any = None  # what the last call returned

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)


def time_fn(fn: Callable[[], Any], device: torch.device | str = "cpu", *, repeats: int = 5, warmup: int = 1,
            budget_s: float | None = None) -> Timing:
    """The one timing loop of cnnlab: ``warmup`` untimed calls, then ``repeats`` timed ones,
    each followed by a device synchronisation. Read ``.median``.

    ``budget_s``: if the warm-up alone took longer than this, time a single call (slow cases
    of a teaching algorithm should not stall a benchmark).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    start = time.perf_counter()
    result = None
    for _ in range(warmup):
        result = fn()
        sync(device)
    warmup_s = time.perf_counter() - start
    if budget_s is not None and warmup and warmup_s > budget_s:
        repeats = 1
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return Timing(times, warmup_s, result)


def available_memory_bytes() -> int | None:
    """Memory the system can still give this process (MemAvailable of /proc/meminfo), or None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (CPU or GPU) rather than a bug."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())


@contextlib.contextmanager
def explain_out_of_memory(doing: str, hint: str = "try a smaller --batch-size or --input-size (`cnnlab summary "
                                                  "MODEL --train --fit-memory SIZE` finds the largest batch that fits)"
                          ) -> Iterator[None]:
    """Turn an allocation failure inside the block into one line saying what ran out and what to do."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        free = available_memory_bytes()
        have = f" ({free / 2**30:.1f} GiB available)" if free is not None else ""
        raise CnnlabError(f"out of memory while {doing}{have}; {hint}") from None


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line(device: torch.device | str = "cpu") -> str:
    """One line for every benchmark's header: machine, device, torch version, threads."""
    device = torch.device(device)
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} logical CPUs)"
    return (f"{platform.machine()} {cpu_name()}; device {dev}; torch {torch.__version__}; "
            f"threads {torch.get_num_threads()}; oneDNN {torch.backends.mkldnn.is_available()}")


def environment_info(device: torch.device) -> dict[str, Any]:
    """Versions, processor, threads, device and the C allocator's policy (:mod:`cnnlab.allocator`),
    as saved in a run's ``config.json``."""
    info: dict[str, Any] = {
        "cnnlab_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "processor": cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "malloc": {**allocator.state().to_dict(), "large_blocks_mmapped": allocator.serves_by_mmap(64 << 20)},
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cudnn_version"] = torch.backends.cudnn.version()
    return info

