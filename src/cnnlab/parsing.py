"""What a user types for a shape, a list of integers or a size in bytes, read into numbers (and a
size written back): ``1x28x28``, ``1,8``, ``8GiB``.

Shared by the library's one-call commands (:func:`cnnlab.analysis.run_analyze`,
:func:`cnnlab.conv.bench.run_bench`, :func:`cnnlab.analysis.training.fit_batch_size`) and the
command line; no torch here. A malformed value raises a one-line :class:`CnnlabError` naming the
option it came from.
"""

from __future__ import annotations

import re

from cnnlab.errors import CnnlabError

__all__ = ["MAX_INT", "parse_shape", "parse_int_list", "parse_bytes", "format_bytes"]

MAX_INT = 2**63 - 1  # the largest count or size torch holds (int64): beyond it, refused here, not a traceback there

_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6, "mib": 2**20,
          "g": 2**30, "gb": 10**9, "gib": 2**30, "t": 2**40, "tb": 10**12, "tib": 2**40}


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"1x28x28"`` -> (1, 28, 28)."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1 or max(dims) > MAX_INT:
        raise CnnlabError(f"--input must look like CxHxW with positive integers (e.g. 1x28x28), got {text!r}")
    return dims  # type: ignore[return-value]


def parse_int_list(text: str, name: str) -> list[int]:
    """``"1,8"`` -> [1, 8]; ``name`` is the option named in the error (e.g. ``--batch-sizes``)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1 or max(values) > MAX_INT:
        raise CnnlabError(f"{name} takes comma-separated positive integers (at most 2**63-1), e.g. 1,8; got {text!r}")
    return values


def parse_bytes(text: str | int) -> int:
    """``"8GiB"`` -> 8589934592. KiB/MiB/GiB/TiB (and K/M/G/T) are powers of 1024, kB/MB/GB/TB of 1000."""
    if isinstance(text, int):
        value = text
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
        unit = match.group(2).lower() if match else None
        if unit not in _UNITS:
            raise CnnlabError(f"--fit-memory takes a size such as 8GiB, 512MiB or 2GB; got {text!r}")
        value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise CnnlabError(f"--fit-memory must be a positive size, got {text!r}")
    return value


def format_bytes(n: int | float | None) -> str:
    """Bytes in binary units: ``1.23 GiB``, ``456.7 MiB``, ``12.0 KiB``, ``512 B``."""
    if n is None:
        return "-"
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= 1000 * size // 1024:  # 1000 MiB reads as 0.98 GiB
            return f"{n / size:.2f} {unit}" if unit in ("TiB", "GiB") else f"{n / size:.1f} {unit}"
    return f"{int(n)} B"
