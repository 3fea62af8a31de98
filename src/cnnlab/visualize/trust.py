"""Can you trust the picture? ``cnnlab trust``: the evidence for or against every saliency map cnnlab
draws, on a run's test images.

- **Model randomization** (Adebayo et al. 2018): the layers re-initialised from the logits down, one
  group more per step (cascading), and one group at a time (independent); per step the Spearman rank
  correlation of ``|map|`` and the SSIM against the original map, mean and spread over the images.
  A map that hardly changes on a network with random weights shows the image, not the model.
- **Data randomization** (``--twin``): the maps of a run beside those of its ``--shuffle-labels`` twin,
  a network that memorised random labels (Zhang et al. 2017).
- **Faithfulness** (Petsiuk et al. 2018): deletion and insertion curves and their areas, each method
  beside a random map and a centre-bias map on the same images, with a named baseline.
- **A measured layer** (``layer="best"``): Grad-CAM's candidate layers ranked by deletion area,
  beside the rule's pick ("the last layer with spatial extent > 1").

The parts: :mod:`trust_metrics` (Spearman, SSIM, the curves), :mod:`trust_randomize` (the
randomized copies), :mod:`trust_checks` (the checks on tensors), :mod:`trust_figures`.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from cnnlab.display import display_html, table
from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.figures import png_data_url
from cnnlab.storage import atomic_write
from cnnlab.visualize.attribution import resolve_targets
from cnnlab.visualize.layers import get_layer
from cnnlab.visualize.source import Subject, load_subject, load_test_split, resolve, take, to_model_input, writing
from cnnlab.visualize.trust_checks import (METHOD_TITLES, METHODS, MapMaker, StepScore, candidate_layers, compare_maps,
                                           faithfulness, parse_trust_methods, randomization_check, rank_layers)
from cnnlab.visualize.trust_figures import plot_cascade, plot_cascade_scores, plot_faithfulness
from cnnlab.visualize.trust_metrics import BASELINES, Curves
from cnnlab.visualize.trust_randomize import MAX_CASCADE_STEPS, cascade_steps, independent_of

__all__ = ["TrustResult", "TrustSettings", "check_trust", "trust_images", "default_trust_dir", "load_twin", "report_trust", "METHODS", "BASELINES"]


@dataclass
class TrustSettings:
    """What ``cnnlab trust`` measures: the methods, how many test images (a seeded choice), Grad-CAM's
    layer (None: the rule's; "best": measured; or a name), the perturbation baseline and steps."""

    methods: str | Sequence[str] = METHODS
    n_images: int = 8
    layer: str | None = None
    baseline: str = "zero"
    steps: int = 16  # deletion / insertion steps
    ig_steps: int = 8  # integrated gradients' steps per map (Gauss-Legendre): one map per image, step and method
    max_cascade: int = MAX_CASCADE_STEPS
    independent: bool = False  # also one layer at a time (--independent): doubles the randomized maps
    seed: int = 0

    def check(self) -> tuple[str, ...]:
        for flag, value in (("--images", self.n_images), ("--steps", self.steps), ("--ig-steps", self.ig_steps),
                            ("--max-cascade", self.max_cascade)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CnnlabError(f"{flag} must be a positive integer, got {value!r}")
        if self.baseline not in BASELINES:
            raise UnknownNameError("baseline", self.baseline, BASELINES)
        return parse_trust_methods(self.methods)


@dataclass
class TrustResult:
    methods: tuple[str, ...]
    indices: list[int]  # the test images used
    layer: str  # Grad-CAM's layer used
    rule_layer: str  # the rule's pick
    layer_ranking: list[dict]
    cascade: dict[str, list[StepScore]]
    independent: dict[str, list[StepScore]]
    curves: dict[str, Curves]
    settings: TrustSettings
    twin: dict[str, StepScore] | None = None
    twin_description: str = ""
    twin_shuffled: bool | None = None
    description: str = ""
    paths: dict[str, Path] = field(default_factory=dict)
    shown: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # the first image's map per step (figure)
    pixels: torch.Tensor | None = None  # the first image (figure)

    @property
    def images(self) -> int:
        return len(self.indices)

    def areas(self, name: str) -> tuple[float, float]:
        """(deletion area, insertion area) of a method or reference map, mean over the images."""
        c = self.curves[name]
        return float(c.deletion_area.mean()), float(c.insertion_area.mean())

    HEADERS = ("method", "rho, logits random", "rho, all random", "SSIM, all random", "rho, twin",
               "deletion area", "insertion area")
    EXPLANATION = ("rho: rank correlation of |map| with the trained model's map (1: unchanged). A map that stays "
                   "alike when the weights are random shows the image, not the model. Deletion area: lower is "
                   "better, insertion area: higher is better; a map should beat the random map.")

    def rows(self) -> list[tuple[str, ...]]:
        """The table of ``cnnlab trust``: per method the cascade's scores and the areas; then the reference maps."""
        rows = []
        for m in self.methods:
            steps, (d, i) = self.cascade[m], self.areas(m)
            twin = "" if self.twin is None else f"{self.twin[m].spearman:.2f}"
            rows.append((METHOD_TITLES[m], f"{steps[1].spearman:.2f}", f"{steps[-1].spearman:.2f} +- "
                         f"{steps[-1].spearman_std:.2f}", f"{steps[-1].ssim:.2f}", twin, f"{d:.3f}", f"{i:.3f}"))
        for name in ("random", "centre"):
            d, i = self.areas(name)
            rows.append((f"{name} map", "", "", "", "", f"{d:.3f}", f"{i:.3f}"))
        return rows

    def _repr_html_(self) -> str:
        """In a notebook: the table, the explanation and the figures written (cascade, scores, faithfulness)."""
        figures = [{"url": png_data_url(path.read_bytes()), "caption": name}
                   for name, path in self.paths.items() if path.suffix == ".png" and path.is_file()]
        return display_html(f"Can you trust the maps? {self.description}", lines=[
            f"{self.images} test images; Grad-CAM at {self.layer} (the rule's layer: {self.rule_layer}); "
            f"{self.settings.baseline} baseline", self.EXPLANATION],
            tables=[table(self.HEADERS, self.rows(), range(1, 7))], figures=figures)

    def to_dict(self) -> dict:
        methods = {}
        for m in self.methods:
            (d, i), (rd, ri), (cd, ci) = self.areas(m), self.areas("random"), self.areas("centre")
            methods[m] = {"cascade": [s.to_dict() for s in self.cascade[m]],
                          "independent": [s.to_dict() for s in self.independent.get(m, [])],
                          "deletion_auc": d, "insertion_auc": i, "random_deletion_auc": rd, "random_insertion_auc": ri,
                          "centre_deletion_auc": cd, "centre_insertion_auc": ci,
                          "twin": None if self.twin is None else self.twin[m].to_dict()}
        s = self.settings
        return {"model": self.description, "images": self.images, "indices": self.indices, "methods": methods,
                "layer": self.layer, "rule_layer": self.rule_layer, "layer_ranking": self.layer_ranking,
                "baseline": s.baseline, "steps": s.steps, "ig_steps": s.ig_steps, "seed": s.seed,
                "twin": self.twin_description or None, "twin_shuffled_labels": self.twin_shuffled,
                "files": {k: str(v) for k, v in self.paths.items()}}


def default_trust_dir(subject: Subject) -> Path:
    """``RUN/trust`` for a run, ``trust/MODEL`` for a model name."""
    return subject.run_dir / "trust" if subject.run_dir is not None else Path("trust") / subject.name


def trust_images(subject: Subject, n_images: int, seed: int = 0) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """(indices, pixels (N, C, H, W) in [0, 1], model input) of ``n_images`` test images chosen with ``seed``."""
    if subject.dataset is None:
        raise CnnlabError(f"{subject.name} is a model name: pass --dataset NAME so there are test images to check")
    data = load_test_split(subject)
    if len(data) == 0:
        raise CnnlabError(f"{subject.description} has no test images to check the maps on")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n_images]
    indices = sorted(int(i) for i in order)
    images, _ = take(data, indices)
    pixels = images.float() / 255.0
    return indices, pixels, to_model_input(pixels, subject)


def _choose_layer(subject: Subject, x: torch.Tensor, targets: torch.Tensor, settings: TrustSettings,
                  make: MapMaker) -> tuple[str, str, list[dict]]:
    """(layer used, the rule's pick, the ranking: measured for "best", else empty)."""
    candidates, rule = candidate_layers(subject.model, x)
    if settings.layer == "best":
        ranking = rank_layers(subject.model, x, targets, candidates, make, baseline=settings.baseline,
                              steps=settings.steps)
        return ranking[0]["layer"], rule, ranking
    if settings.layer is not None:
        get_layer(subject.model, settings.layer)
        return settings.layer, rule, []
    return rule, rule, []


def load_twin(subject: Subject, twin: str | os.PathLike) -> Subject:
    """The ``--twin`` run, checked: a run directory whose model takes the same input and classes."""
    if not Path(twin).is_dir() or not (Path(twin) / "config.json").is_file():
        raise CnnlabError(f"--twin {twin} is not a run directory; train one with cnnlab train --shuffle-labels "
                          f"(and the run's other settings)")
    other = load_subject(twin, device=str(subject.device))
    if other.input_shape != subject.input_shape or len(other.classes) != len(subject.classes):
        raise CnnlabError(f"--twin {twin} takes {other.input_shape} with {len(other.classes)} classes, the run "
                          f"{subject.input_shape} with {len(subject.classes)}: train the twin on the same data")
    return other


def _twin(other: Subject, pixels: torch.Tensor, targets: torch.Tensor, methods,
          original: dict[str, torch.Tensor], make: MapMaker) -> tuple[dict[str, StepScore], str, bool]:
    x = to_model_input(pixels, other)
    scores = {m: compare_maps(original[m], make(other.model, x, m, targets).cpu(), "twin") for m in methods}
    shuffled = bool(getattr(other.run.config, "shuffle_labels", False)) if other.run is not None else False
    return scores, other.description, shuffled


def check_trust(subject, settings: TrustSettings | None = None, *, twin: str | os.PathLike | None = None,
                out: str | Path | None = None) -> TrustResult:
    """Run every check of ``cnnlab trust`` on ``subject`` (a run, or a model name with a dataset) and
    write ``cascade.png``, ``cascade-scores.png``, ``faithfulness.png`` and ``trust.json`` into ``out``
    (default ``RUN/trust``), under the run's lock and recorded in its derived.json."""
    settings = settings or TrustSettings()
    methods = settings.check()
    subject = load_subject(subject) if isinstance(subject, (str, os.PathLike)) else resolve(subject, need_image=False)[0]
    other = load_twin(subject, twin) if twin is not None else None
    folder = Path(out) if out is not None else default_trust_dir(subject)
    with writing(subject, folder, "trust") as output:
        result = _measure(subject, settings, methods, other)
        result.paths = _write(result, folder, subject)
        output.record(*result.paths.values())
    return result


def _measure(subject: Subject, settings: TrustSettings, methods: tuple[str, ...], twin: Subject | None
             ) -> TrustResult:
    indices, pixels, x = trust_images(subject, settings.n_images, settings.seed)
    model = subject.model
    targets = resolve_targets(model, x, None)
    make = MapMaker("", to_model_input(torch.zeros_like(pixels[:1]), subject), settings.ig_steps)
    make.layer, rule, ranking = _choose_layer(subject, x, targets, settings, make)
    original = {m: make(model, x, m, targets).cpu() for m in methods}
    steps = cascade_steps(model, x, settings.max_cascade)
    cascade, shown = randomization_check(model, x, targets, methods, steps, make, seed=settings.seed,
                                         original=original)
    independent = {}
    if settings.independent:
        independent = {m: s[1:] for m, s in randomization_check(
            model, x, targets, methods, independent_of(steps), make, seed=settings.seed,
            cascading=False, original=original)[0].items()}
    curves = faithfulness(model, x, targets, original, baseline=settings.baseline, steps=settings.steps,
                          seed=settings.seed)
    if not ranking and "gradcam" in methods:
        ranking = [{"layer": make.layer, "deletion_auc": float(curves["gradcam"].deletion_area.mean()),
                    "insertion_auc": float(curves["gradcam"].insertion_area.mean())}]
    result = TrustResult(methods, indices, make.layer, rule, ranking, cascade, independent, curves, settings,
                         description=subject.description)
    if twin is not None:
        result.twin, result.twin_description, result.twin_shuffled = _twin(twin, pixels, targets, methods, original,
                                                                            make)
    result.shown, result.pixels = shown, pixels[0]  # for the figures
    return result


def _write(result: TrustResult, folder: Path, subject: Subject) -> dict[str, Path]:
    paths = {"cascade": folder / "cascade.png", "cascade_scores": folder / "cascade-scores.png",
             "faithfulness": folder / "faithfulness.png", "json": folder / "trust.json"}
    folder.mkdir(parents=True, exist_ok=True)
    title = (f"{subject.description}: cascading randomization (Adebayo et al. 2018), test image "
             f"#{result.indices[0]}; rho: rank correlation of |map| with the original, mean over {result.images}")
    plot_cascade(result.pixels, result.shown, result.cascade, paths["cascade"], title)
    plot_cascade_scores(result.cascade, result.independent or None, paths["cascade_scores"])
    plot_faithfulness(result.curves, result.settings.baseline, paths["faithfulness"])
    doc = result.to_dict()
    doc["files"] = {k: str(v) for k, v in paths.items()}
    atomic_write(paths["json"], json.dumps(doc, indent=2) + "\n")
    return paths


def report_trust(subject: Subject, n_images: int = 4, seed: int = 0) -> dict:
    """The "Can you trust these maps?" section of ``cnnlab report``, kept cheap: Grad-CAM and saliency
    on a few test images, the cascade only; the figures as data URLs and one row per map."""
    settings = TrustSettings(methods=("gradcam", "saliency"), n_images=n_images, independent=False, seed=seed)
    result = _measure(subject, settings, settings.check(), None)
    figures = {}
    for key, draw in (("cascade", lambda f: plot_cascade(result.pixels, result.shown, result.cascade, f)),
                      ("faithfulness", lambda f: plot_faithfulness(result.curves, settings.baseline, f))):
        buffer = io.BytesIO()
        draw(buffer)
        figures[key] = png_data_url(buffer.getvalue())
    rows = []
    for name in (*result.methods, "random", "centre"):
        d, i = result.areas(name)
        last = result.cascade[name][-1] if name in result.cascade else None
        rows.append({"name": {"random": "random map", "centre": "centre map"}.get(name, name), "deletion": d,
                     "insertion": i, "rho": None if last is None or last.spearman != last.spearman else last.spearman,
                     "ssim": None if last is None else last.ssim})
    return {"images": result.images, "layer": result.layer, "baseline": settings.baseline, "rows": rows, **figures}
