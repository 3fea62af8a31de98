"""Model randomization (Adebayo et al. 2018, "Sanity checks for saliency maps"): re-initialise a
network's layers from the logits down, one more group per step (cascading), or one group at a time
(independent), and see whether a saliency method's map changes. A map that stays the same on a
network whose weights are random says nothing about what the network learned.

Every randomized model is a deep copy: the caller's model is never changed. A layer is re-initialised
by its own ``reset_parameters()`` (as when it was built: PyTorch's default init; a BatchNorm back to
weight 1, bias 0 and fresh running statistics) under a generator seeded from the seed and the layer's
name, so the cascading and the independent variant give a layer the same random weights.
"""

from __future__ import annotations

import copy
import zlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError
from cnnlab.trace import trace
from cnnlab.visualize.layers import get_layer, is_block

__all__ = ["CascadeStep", "parameter_layers", "cascade_steps", "independent_steps", "independent_of", "reinitialize",
           "randomized_copy", "randomized_models", "MAX_CASCADE_STEPS"]

MAX_CASCADE_STEPS = 8  # more groups of layers than this (a ResNet's blocks): contiguous groups are merged

@dataclass(frozen=True)
class CascadeStep:
    """One column of the cascade: the layers re-initialised at this step (``added``) and, cascading,
    all re-initialised so far (``randomized``; the same as ``added`` for the independent variant)."""

    label: str  # the group's name: "linear_1", "layer4.1", "layer3.0..layer3.1"
    added: tuple[str, ...]
    randomized: tuple[str, ...]

def parameter_layers(model: nn.Module, x: torch.Tensor) -> list[str]:
    """The modules that hold parameters of their own, in the order the forward pass calls them
    (a module never called changes nothing and is left out)."""
    owners = {name for name, m in model.named_modules() if name and next(m.parameters(recurse=False), None) is not None}
    called = [o.name for o in trace(model, x[:1]).outputs() if o.name in owners]
    if not called:
        raise CnnlabError(f"{type(model).__name__} has no layer with parameters: there is nothing to randomize")
    return called


def _group(model: nn.Module, name: str) -> str:
    """The building block a layer belongs to (its outermost ancestor that is a block, a residual
    block say), or the layer itself."""
    modules = dict(model.named_modules())
    parts = name.split(".")
    for i in range(1, len(parts)):
        prefix = ".".join(parts[:i])
        if is_block(modules[prefix]):
            return prefix
    return name

def _units(model: nn.Module, x: torch.Tensor, max_steps: int) -> list[tuple[str, tuple[str, ...]]]:
    """(label, layers) groups from the logits down: one per block or lone layer, merged into at most
    ``max_steps`` contiguous groups."""
    groups: dict[str, list[str]] = {}
    for name in reversed(parameter_layers(model, x)):
        groups.setdefault(_group(model, name), []).append(name)
    units = [(label, tuple(names)) for label, names in groups.items()]
    if len(units) <= max_steps:
        return units
    bounds = [round(i * len(units) / max_steps) for i in range(max_steps + 1)]
    merged = []
    for lo, hi in zip(bounds, bounds[1:]):
        part = units[lo:hi]
        label = part[0][0] if len(part) == 1 else f"{part[0][0]}..{part[-1][0]}"
        merged.append((label, tuple(n for _, names in part for n in names)))
    return merged

def cascade_steps(model: nn.Module, x: torch.Tensor, max_steps: int = MAX_CASCADE_STEPS) -> list[CascadeStep]:
    """The cascading randomization's steps, logits first: step k re-initialises its group and keeps
    the groups of the steps before it random."""
    if max_steps < 1:
        raise CnnlabError(f"the cascade needs at least 1 step, got {max_steps}")
    steps, done = [], ()
    for label, names in _units(model, x, max_steps):
        done = (*done, *names)
        steps.append(CascadeStep(label, names, done))
    return steps

def independent_steps(model: nn.Module, x: torch.Tensor, max_steps: int = MAX_CASCADE_STEPS) -> list[CascadeStep]:
    """The independent variant: each group re-initialised alone, the rest of the network as trained."""
    return independent_of(cascade_steps(model, x, max_steps))


def independent_of(steps: Sequence[CascadeStep]) -> list[CascadeStep]:
    """The independent variant of a cascade already made: the same groups, each alone."""
    return [CascadeStep(s.label, s.added, s.added) for s in steps]


def _layer_seed(seed: int, name: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (1 << 63)

def reinitialize(model: nn.Module, names: Sequence[str], seed: int = 0) -> nn.Module:
    """Re-initialise the named layers of ``model`` in place (their ``reset_parameters()``, under a
    generator seeded by ``seed`` and the name; a layer without one: each of its own parameters drawn
    from a normal of its current spread); the global random state is left as it was."""
    for name in names:
        module = get_layer(model, name)
        devices = sorted({p.device.index or 0 for p in module.parameters(recurse=False) if p.device.type == "cuda"})
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(_layer_seed(seed, name))
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
            else:
                for p in module.parameters(recurse=False):
                    spread = float(p.float().std()) if p.numel() > 1 else 1.0
                    p.normal_(0.0, spread if spread > 0 else 1.0)
    return model

def randomized_copy(model: nn.Module, names: Sequence[str], seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` with the named layers re-initialised (:func:`reinitialize`); the
    model given is not changed."""
    return reinitialize(copy.deepcopy(model), names, seed)

def randomized_models(model: nn.Module, steps: Sequence[CascadeStep], seed: int = 0,
                      cascading: bool = True) -> Iterator[tuple[CascadeStep, nn.Module]]:
    """Each step with its randomized model: cascading, one copy re-initialised a group further per
    step (the copy yielded changes as the iteration goes on); independent, a fresh copy per step."""
    if cascading:
        work = copy.deepcopy(model)
        for step in steps:
            yield step, reinitialize(work, step.added, seed)
    else:
        for step in steps:
            yield step, randomized_copy(model, step.added, seed)
