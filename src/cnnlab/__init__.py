"""cnnlab: the CNN lecture (Raschka, STAT 479 L13) as runnable, tested, fast software."""

from __future__ import annotations

__version__ = "0.1.0"

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab import arithmetic
from cnnlab.models import create_model, get_model_info, list_models, register_model
from cnnlab.weights import load_weights
from cnnlab.analysis import analyze

__all__ = [
    "__version__",
    "analyze",
    "arithmetic",
    "create_model",
    "get_model_info",
    "list_models",
    "load_weights",
    "register_model",
    "with_probas",
    "WithProbas",
]


class WithProbas(nn.Module):
    """Wraps a logits model so ``forward`` returns ``(logits, probas)`` like the lecture's."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(x)
        return logits, F.softmax(logits, dim=1)


def with_probas(model: nn.Module) -> WithProbas:
    """``(logits, probas)`` view of a model that returns logits (shares its parameters)."""
    return WithProbas(model)
