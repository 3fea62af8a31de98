"""The checks of ``cnnlab trust`` on tensors (no files): each method's maps, the randomization
checks scored against the original maps, the faithfulness curves beside a random and a centre-bias
map, and the measured Grad-CAM layer. :mod:`cnnlab.visualize.trust` runs them on a run's test images
and writes the figures and ``trust.json``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.visualize.attribution import METHODS, grad_cam, integrated_gradients, saliency
from cnnlab.visualize.layers import choice_from_trace, layers_from_trace, trace_outputs
from cnnlab.visualize.trust_metrics import Curves, centre_maps, perturbation_curves, random_maps, spearman_abs, ssim
from cnnlab.visualize.trust_randomize import CascadeStep, randomized_models

__all__ = ["METHODS", "METHOD_TITLES", "parse_trust_methods", "MapMaker", "StepScore", "randomization_check",
           "compare_maps", "faithfulness", "map_faithfulness", "candidate_layers", "rank_layers"]

METHOD_TITLES = {"gradcam": "Grad-CAM", "saliency": "saliency", "ig": "integrated gradients"}


def parse_trust_methods(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"gradcam,saliency"`` -> ("gradcam", "saliency"); an unknown name is one line with the closest."""
    names = [m.strip() for m in text.split(",")] if isinstance(text, str) else [str(m).strip() for m in text]
    names = [n for n in names if n]
    if not names:
        raise CnnlabError(f"--methods names no method; choose from {', '.join(METHODS)}")
    for name in names:
        if name not in METHODS:
            raise UnknownNameError("method", name, METHODS)
    return tuple(dict.fromkeys(names))


@dataclass
class MapMaker:
    """How every map of the checks is made: Grad-CAM at ``layer``, integrated gradients from
    ``ig_baseline`` in ``ig_steps`` steps; each map (N, H, W) non-negative."""

    layer: str
    ig_baseline: torch.Tensor | float = 0.0
    ig_steps: int = 16

    def __call__(self, model: nn.Module, x: torch.Tensor, method: str, targets: torch.Tensor,
                 layer: str | None = None) -> torch.Tensor:
        if method == "gradcam":
            return grad_cam(model, x, layer or self.layer, targets)
        if method == "saliency":
            return saliency(model, x, targets)
        if method == "ig":
            return integrated_gradients(model, x, targets, baseline=self.ig_baseline, steps=self.ig_steps).abs().sum(1)
        raise UnknownNameError("method", method, METHODS)


@dataclass
class StepScore:
    """How alike the maps of one step are to the original maps, over the images: mean and spread."""

    label: str  # "original", or the group re-initialised at this step
    randomized: tuple[str, ...]
    spearman: float
    spearman_std: float
    ssim: float
    ssim_std: float
    constant: int = 0  # images left out of the rank correlation: one of their two maps is constant

    def to_dict(self) -> dict:
        clean = (lambda v: None if math.isnan(v) else v)  # JSON has no NaN
        return {"label": self.label, "randomized": list(self.randomized), "spearman": clean(self.spearman),
                "spearman_std": clean(self.spearman_std), "ssim": self.ssim, "ssim_std": self.ssim_std,
                "constant_maps": self.constant}


def compare_maps(original: torch.Tensor, maps: torch.Tensor, label: str = "",
                 randomized: Sequence[str] = ()) -> StepScore:
    """Spearman (of absolute values) and SSIM of each image's map against its original, (N, H, W)
    both: mean and standard deviation over the images (the rank correlation over the images where
    neither map is constant)."""
    rho = torch.tensor([spearman_abs(a, b) for a, b in zip(original, maps)], dtype=torch.float64)
    sim = torch.tensor([ssim(a, b) for a, b in zip(original, maps)], dtype=torch.float64)
    ranked = rho[~rho.isnan()]
    spread = (lambda t: float(t.std(unbiased=False)) if t.numel() > 1 else 0.0)
    mean = float(ranked.mean()) if ranked.numel() else float("nan")
    return StepScore(label, tuple(randomized), mean, spread(ranked), float(sim.mean()), spread(sim),
                     int(rho.numel() - ranked.numel()))


def randomization_check(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, methods: Sequence[str],
                        steps: Sequence[CascadeStep], make: MapMaker, *, seed: int = 0, cascading: bool = True,
                        original: dict[str, torch.Tensor] | None = None
                        ) -> tuple[dict[str, list[StepScore]], dict[str, list[torch.Tensor]]]:
    """Per method: the scores of every step (the first, "original", the maps against themselves),
    and the first image's map at every step (the figure's row). ``targets`` stay the trained
    model's classes at every step: only the weights change."""
    original = original if original is not None else {m: make(model, x, m, targets).cpu() for m in methods}
    scores = {m: [compare_maps(original[m], original[m], "original")] for m in methods}
    shown = {m: [original[m][0]] for m in methods}
    for step, randomized in randomized_models(model, steps, seed, cascading):
        for m in methods:
            maps = make(randomized, x, m, targets).cpu()
            scores[m].append(compare_maps(original[m], maps, step.label, step.randomized))
            shown[m].append(maps[0])
    return scores, shown


def faithfulness(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, maps: dict[str, torch.Tensor], *,
                 baseline: str = "zero", steps: int = 16, seed: int = 0) -> dict[str, Curves]:
    """Deletion and insertion curves of each map, and of a seeded random map ("random") and a
    centre-bias map ("centre") on the same images (:func:`perturbation_curves`)."""
    n, hw = x.shape[0], tuple(x.shape[-2:])
    every = {**maps, "random": random_maps(n, hw, seed), "centre": centre_maps(n, hw)}
    return {name: perturbation_curves(model, x, m, targets, baseline=baseline, steps=steps)
            for name, m in every.items()}


def candidate_layers(model: nn.Module, x: torch.Tensor) -> tuple[list[str], str]:
    """The layers ``--layer best`` tries (the default feature-map layers whose output is still a map
    larger than 1x1, and the rule's pick), and the rule's pick."""
    outputs = trace_outputs(model, x[:1])
    rule = choice_from_trace(model, outputs, tuple(x.shape[1:])).name
    spatial = {o.name for o in outputs if o.spatial and not o.pass_through}
    names = [n for n in layers_from_trace(model, outputs) if n in spatial]
    return list(dict.fromkeys([*names, rule])), rule


def rank_layers(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, layers: Sequence[str], make: MapMaker, *,
                baseline: str = "zero", steps: int = 16) -> list[dict]:
    """Grad-CAM at each layer scored by its deletion area over the images (lower: the class
    probability falls faster when the map's pixels go: the map points at what the model uses)."""
    rows = []
    for name in layers:
        cam = make(model, x, "gradcam", targets, layer=name).cpu()
        curves = perturbation_curves(model, x, cam, targets, baseline=baseline, steps=steps)
        rows.append({"layer": name, "deletion_auc": float(curves.deletion_area.mean()),
                     "insertion_auc": float(curves.insertion_area.mean())})
    return sorted(rows, key=lambda r: r["deletion_auc"])


def map_faithfulness(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, *,
                     baseline: str = "zero", steps: int = 16, seed: int = 0) -> dict[str, float]:
    """The deletion and insertion areas of ``maps`` (N, H, W) and of a seeded random map, mean over
    the images: ``{"deletion", "insertion", "random_deletion", "random_insertion"}``."""
    n, hw = x.shape[0], tuple(x.shape[-2:])
    own = perturbation_curves(model, x, maps, targets, baseline=baseline, steps=steps)
    chance = perturbation_curves(model, x, random_maps(n, hw, seed), targets, baseline=baseline, steps=steps)
    return {"deletion": float(own.deletion_area.mean()), "insertion": float(own.insertion_area.mean()),
            "random_deletion": float(chance.deletion_area.mean()),
            "random_insertion": float(chance.insertion_area.mean())}
