"""Lookahead (Zhang, Lucas, Hinton & Ba 2019, "Lookahead Optimizer: k steps forward, 1 step back",
arXiv:1907.08610) around any optimizer.

The inner optimizer moves the ("fast") weights as usual; every ``k`` steps the slow weights move
``alpha`` of the way towards them and the fast weights restart from there::

    slow += alpha * (fast - slow);  fast = slow

The inner optimizer's state (momentum) is kept, as in the paper's and timm's implementations.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

__all__ = ["Lookahead"]


class Lookahead:
    """Slow weights of ``model``'s trainable parameters; call :meth:`step` after every optimizer step."""

    def __init__(self, model: nn.Module, k: int, alpha: float = 0.5):
        if k < 1 or not 0 < alpha <= 1:
            raise ValueError(f"Lookahead needs k >= 1 and alpha in (0, 1], got k={k}, alpha={alpha}")
        self.k, self.alpha = k, alpha
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.slow = [p.detach().clone() for p in self.params]
        self.steps = 0

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        if self.steps % self.k:
            return
        for fast, slow in zip(self.params, self.slow):
            slow.add_(fast - slow, alpha=self.alpha)
            fast.copy_(slow)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "slow": [s.cpu() for s in self.slow]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        for slow, saved in zip(self.slow, state["slow"]):
            slow.copy_(saved)
