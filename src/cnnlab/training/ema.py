"""Exponential moving average of the weights (Polyak averaging, as timm's ``ModelEmaV2``).

After every optimizer step ``ema = decay * ema + (1 - decay) * weights`` for each parameter;
buffers (BatchNorm's running statistics) are copied as they are. With ``--ema-decay`` the
averaged copy is what a run evaluates and saves as model.pt; checkpoint.pt keeps both.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn

__all__ = ["WeightEma"]


class WeightEma:
    """An averaged copy of ``model`` (same device and memory format), updated by :meth:`update`."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average: ``ema += (1 - decay) * (weights - ema)``; buffers copied."""
        for averaged, current in zip(self.module.parameters(), model.parameters()):
            averaged.lerp_(current.detach(), 1.0 - self.decay)
        for averaged, current in zip(self.module.buffers(), model.buffers()):
            averaged.copy_(current)

    def state_dict(self) -> dict[str, Any]:
        return {k: v.detach().cpu() for k, v in self.module.state_dict().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state)
