"""``--compile``: the training forward (and, through AOTAutograd, its backward) compiled by
``torch.compile``, with the seconds spent compiling measured apart.

Compilation happens inside the first training step of each new input shape (the full batch, then
the smaller last batch of an epoch): :class:`CompileClock` adds up the wall time of the steps during
which TorchDynamo produced a new graph. Evaluation stays eager (no second compilation for eval mode).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
import torch.nn as nn

__all__ = ["compile_module", "CompileClock"]


def compile_module(module: nn.Module) -> nn.Module:
    """``torch.compile(module, dynamic=False)``: one static graph per batch shape (two per run)."""
    # inductor's C++ toolchain probe logs "No CUDA runtime is found" on CPU-only machines; a run's
    # stderr carries nothing but errors
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    return torch.compile(module, dynamic=False)


def _graphs_compiled() -> int:
    # torch._dynamo is one of torch's lazily loaded submodules (1-2 s to import): torch.compile has
    # loaded it before a step runs, and a run without --compile never reads the count
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


class CompileClock:
    """``with clock: step()`` -- adds the step's wall time to ``seconds`` if it compiled a graph."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.seconds = 0.0
        self._start = 0.0
        self._graphs = 0

    def __enter__(self) -> "CompileClock":
        if self.enabled:
            self._graphs = _graphs_compiled()
            self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled and _graphs_compiled() != self._graphs:
            self.seconds += time.perf_counter() - self._start
