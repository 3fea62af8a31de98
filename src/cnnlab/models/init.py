"""Weight initialisation schemes of the lecture's cnn-with-diff-init notebooks."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from cnnlab.errors import UnknownNameError

__all__ = ["INITS", "init_weights"]


def _normal(w: torch.Tensor) -> None:
    nn.init.normal_(w, mean=0.0, std=0.1)


def _uniform(w: torch.Tensor) -> None:
    nn.init.uniform_(w, -0.1, 0.1)


INITS: dict[str, Callable[[torch.Tensor], None] | None] = {
    "default": None,  # PyTorch's own (kaiming_uniform_ with a=sqrt(5))
    "normal": _normal,  # N(0, 0.1)
    "uniform": _uniform,  # U(-0.1, 0.1)
    "xavier_normal": nn.init.xavier_normal_,
    "xavier_uniform": nn.init.xavier_uniform_,
    "kaiming_normal": nn.init.kaiming_normal_,
    "kaiming_uniform": nn.init.kaiming_uniform_,
}


@torch.no_grad()
def init_weights(model: nn.Module, scheme: str = "default") -> nn.Module:
    """Re-initialise every Conv2d and Linear weight with ``scheme`` and zero their biases,
    as the notebooks' ``weights_init`` does. ``default`` leaves the model as built."""
    if scheme not in INITS:
        raise UnknownNameError("init", scheme, INITS)
    fn = INITS[scheme]
    if fn is None:
        return model
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fn(m.weight)
            if m.bias is not None:
                m.bias.zero_()
    return model
