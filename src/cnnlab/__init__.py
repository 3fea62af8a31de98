"""cnnlab: the CNN lecture (Raschka, STAT 479 L13) as runnable, tested, fast software.

The top-level names are imported on first use (PEP 562), so ``import cnnlab`` -- and
commands such as ``cnnlab --help`` or ``cnnlab arith`` -- do not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS = {
    "arithmetic": "cnnlab.arithmetic",
    "create_model": "cnnlab.models",
    "get_model_info": "cnnlab.models",
    "list_models": "cnnlab.models",
    "register_model": "cnnlab.models",
    "load_weights": "cnnlab.models",
    "with_probas": "cnnlab.models",
    "WithProbas": "cnnlab.models",
    "summarize": "cnnlab.summary",
    "summarize_model": "cnnlab.summary",
    "analyze": "cnnlab.analysis",
    "TrainConfig": "cnnlab.training",
    "optimize": "cnnlab.inference",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
    if name == "arithmetic":
        return importlib.import_module(module)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
