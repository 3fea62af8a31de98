"""Optimizers and learning-rate schedules, built from a :class:`TrainConfig`.

Every schedule is a factor of ``lr`` per optimizer step (a ``LambdaLR`` stepped every batch),
so warm-up composes with any schedule and a resumed run continues it exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError
from cnnlab.training.config import TrainConfig

__all__ = ["build_optimizer", "build_scheduler", "lr_factor"]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), Adam or AdamW over the parameters that are not frozen."""
    params = [p for p in model.parameters() if p.requires_grad]  # frozen tensors stay exactly as loaded
    if not params:
        raise CnnlabError("every parameter is frozen; --freeze fewer modules")
    if config.optimizer == "sgd":
        # on the CPU one fused kernel updates every tensor, not PyTorch's default Python loop over them: the
        # same weights bit for bit (tests/test_training_parts.py), 0.13 -> 0.06 ms per step for convnet_bn
        fused = True if all(p.device.type == "cpu" for p in params) else None
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay, fused=fused)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def lr_factor(step: int, config: TrainConfig, steps_per_epoch: int) -> float:
    """The multiple of ``config.lr`` at optimizer step ``step`` (0-based)."""
    total = config.total_steps(steps_per_epoch)  # --epochs 1.5: the schedule ends with the run
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return (step + 1) / warmup
    if config.schedule == "step":
        return config.gamma ** (step // (config.step_size * steps_per_epoch))
    if config.schedule == "cosine":
        t = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    if config.schedule == "onecycle":  # up for 30% of the steps, then cosine down to lr/1e4 (as OneCycleLR)
        peak = max(warmup, int(0.3 * total))
        if step < peak:
            return 0.04 + 0.96 * (step + 1) / max(1, peak)
        t = (step - peak) / max(1, total - peak)
        return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config, steps_per_epoch))
