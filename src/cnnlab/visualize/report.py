"""``cnnlab report``: one self-contained HTML page about a trained model -- learning curves, confusion
matrix, per-class precision/recall, the most confident mistakes, filters, the layer table, and for a
few test images their feature maps (click a cell: its receptive field appears on the image) and
Grad-CAM, and whether those maps can be trusted (:mod:`cnnlab.visualize.trust`). Everything is embedded (PNG data URIs, inline CSS and JavaScript): no network."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnlab.data import iterate_batches
from cnnlab.errors import CnnlabError
from cnnlab.figures import array_to_png, colorize, confusion_figure, heat_overlay, png_data_url, reliability_figure, \
    uint8_image
from cnnlab.runs import confusion_counts, per_class_metrics
from cnnlab.runs.interpret import confused_pairs, expected_calibration_error, reliability_bins
from cnnlab.summary import summarize
from cnnlab.trace import trace
from cnnlab.visualize.attribution import grad_cam
from cnnlab.visualize.featuremaps import feature_maps
from cnnlab.visualize.filters import filters_figure
from cnnlab.visualize.layers import check_image, choice_from_trace, layers_from_trace
from cnnlab.visualize.report_html import render_report
from cnnlab.visualize.source import load_test_split, resolve, take, to_model_input, writing
from cnnlab.visualize.trust import report_trust

__all__ = ["ReportResult", "Scores", "score_split", "sample_views", "build_report"]

MAX_MISTAKES = 12
MAX_CONFUSED = 8
MAX_REPORT_CHANNELS = 16
TRUST_IMAGES = 4  # the trust section's images: a few, so the report stays quick


@dataclass
class Scores:
    probs: torch.Tensor  # (N, K) softmax probabilities
    labels: torch.Tensor  # (N,)
    confusion: torch.Tensor  # (K, K), rows: true class

    @property
    def predicted(self) -> torch.Tensor:
        return self.probs.argmax(dim=1)

    @property
    def accuracy(self) -> float:
        return 100.0 * float(self.confusion.diagonal().sum()) / max(int(self.confusion.sum()), 1)


@dataclass
class ReportResult:
    path: Path
    sections: list[str] = field(default_factory=list)
    accuracy: float | None = None
    scored: int = 0
    description: str = ""  # which model


@torch.inference_mode()
def score_split(subject, data, batch_size: int = 256) -> Scores:
    """Softmax probabilities of every image of ``data``, prepared as in training."""
    k = len(subject.classes)
    probs, labels = [], []
    for x, y in iterate_batches(data, batch_size, device=subject.device, normalize=subject.normalize):
        probs.append(torch.softmax(subject.model(x).float(), dim=1).cpu())
        labels.append(y.cpu())
    p, y = torch.cat(probs), torch.cat(labels)
    if p.shape[1] != k:
        raise CnnlabError(f"the model gives {p.shape[1]} classes but the dataset has {k}")
    return Scores(p, y, confusion_counts(y, p.argmax(1), k))


def _mistakes(data, scores: Scores, classes: list[str]) -> list[dict]:
    wrong = (scores.predicted != scores.labels).nonzero().flatten()
    confidence = scores.probs.max(dim=1).values[wrong]
    order = wrong[confidence.argsort(descending=True)][:MAX_MISTAKES].tolist()
    images = take(data, order)[0] if order else None
    out = []
    for n, i in enumerate(order):
        pixels = images[n].float() / 255.0
        scale = max(1, 96 // pixels.shape[-1])
        out.append({"index": i, "uri": png_data_url(array_to_png(uint8_image(pixels), scale)),
                    "true": classes[int(scores.labels[i])], "pred": classes[int(scores.predicted[i])],
                    "p": float(scores.probs[i].max())})
    return out


def _cam_overlay(pixels: torch.Tensor, cam: torch.Tensor) -> bytes:
    return array_to_png(heat_overlay(pixels, cam), max(1, 168 // pixels.shape[-1]))


def _layer_views(subject, x: torch.Tensor, names: list[str], rfs: dict) -> list[dict]:
    views = []
    for name, fmap in feature_maps(subject.model, x, names).items():
        if fmap.dim() != 3:
            continue
        c, h, w = fmap.shape
        shown = fmap[:MAX_REPORT_CHANNELS].float().cpu()
        lo, hi = float(shown.min()), float(shown.max())
        rf = rfs.get(name)
        rows = None if rf is None else [list(rf.height.interval(y, subject.input_shape[1])) for y in range(h)]
        cols = None if rf is None else [list(rf.width.interval(x_, subject.input_shape[2])) for x_ in range(w)]
        views.append({"name": name, "shape": (c, h, w), "rows": rows, "cols": cols,
                      "rf": None if rf is None else (rf.size[0], rf.jump[0]),
                      "maps": [png_data_url(array_to_png(colorize(m, "viridis", lo, hi))) for m in shown]})
    return views


def sample_views(subject, data, indices: list[int], scores: Scores | None) -> list[dict]:
    """Per test image: the input, prediction, Grad-CAM overlay, and clickable feature maps with the
    receptive-field intervals of every row and column of each map (from :mod:`cnnlab.trace`)."""
    model = subject.model
    probe = check_image(model, torch.zeros((1, *subject.input_shape), device=subject.device))
    traced = trace(model, probe)  # one pass: receptive fields, the default layers, Grad-CAM's layer
    rfs, outputs = traced.receptive_fields(), traced.outputs()
    names, choice = layers_from_trace(model, outputs), choice_from_trace(model, outputs, tuple(probe.shape[1:]))
    samples = []
    images, labels = take(data, indices) if indices else (None, None)
    for n, i in enumerate(indices):
        pixels = images[n].float() / 255.0
        x = to_model_input(pixels, subject)
        cam = grad_cam(model, x, choice.name)[0].cpu()
        with torch.no_grad():
            probs = torch.softmax(model(x), dim=1)[0].cpu()
        pred = int(probs.argmax())
        samples.append({"index": i, "label": subject.classes[int(labels[n])], "pred": subject.classes[pred],
                        "p": float(probs[pred]), "hw": tuple(pixels.shape[-2:]),
                        "input": png_data_url(array_to_png(uint8_image(pixels), max(1, 168 // pixels.shape[-1]))),
                        "cam": png_data_url(_cam_overlay(pixels, cam)), "cam_layer": choice.name,
                        "layers": _layer_views(subject, x, names, rfs)})
    return samples


def build_report(subject, n_images: int = 4, max_eval: int | None = None, out: str | Path | None = None
                 ) -> ReportResult:
    """Write the report of ``subject`` (a run, or a model name with ``--dataset``) to ``out``
    (default ``RUN/report.html``, or ``report-MODEL.html``). Into the run directory it holds the
    run's lock for the whole report, refuses if model.pt changed since the subject was loaded, and
    records which model.pt the page shows (``RUN/derived.json``)."""
    subject, _ = resolve(subject, need_image=False)
    if n_images < 0 or (max_eval is not None and max_eval < 1):
        raise CnnlabError("--images must be >= 0 and --max-eval >= 1")
    if subject.dataset is None:
        raise CnnlabError(f"{subject.name} is a model name: pass --dataset NAME so the report has test images")
    path = Path(out) if out is not None else (subject.run_dir / "report.html" if subject.run_dir is not None
                                               else Path(f"report-{subject.name}.html"))
    with writing(subject, path, "report") as output:  # into the run: its lock, before any work
        result = _write_report(subject, n_images, max_eval, path)
        output.record(path)
    return result


def _write_report(subject, n_images: int, max_eval: int | None, path: Path) -> ReportResult:
    data = load_test_split(subject, count=max_eval)
    if subject.run is None and len(data.classes) == len(subject.classes):
        subject.classes = list(data.classes)  # a model name with --dataset: the dataset's class names
    scores = score_split(subject, data)
    classes = subject.classes
    parts = {
        "scores": scores, "per_class": _per_class(scores, classes), "mistakes": _mistakes(data, scores, classes),
        "confusion": png_data_url(confusion_figure(scores.confusion.numpy(), classes, title=f"{subject.name} (test)")),
        "filters": png_data_url(filters_figure(subject.model)[1], tight=True),
        "curves": _curves(subject), "calibration": _calibration(scores, classes, subject.name),
        "summary": summarize(subject.model, subject.input_shape, name=subject.name),
        "samples": sample_views(subject, data, list(range(min(n_images, len(data)))), scores),
        "trust": report_trust(subject, min(n_images, TRUST_IMAGES)) if n_images and len(data) else None,
    }
    sections = render_report(subject, parts, path)
    return ReportResult(path, sections, scores.accuracy, len(data), subject.description)


def _per_class(scores: Scores, classes: list[str]) -> list[dict]:
    return per_class_metrics(scores.confusion, classes)


def _calibration(scores: Scores, classes: list[str], name: str) -> dict:
    """The cheap part of ``cnnlab interpret`` from the probabilities already scored: ECE, the
    reliability diagram, the most confused pairs (no further forward pass)."""
    bins = reliability_bins(scores.probs, scores.labels)
    ece = expected_calibration_error(scores.probs, scores.labels)
    return {"ece": ece, "confused": confused_pairs(scores.confusion, classes, top=MAX_CONFUSED),
            "reliability": png_data_url(reliability_figure(bins, f"{name} (test)", ece=ece))}


def _curves(subject) -> str | None:
    if subject.run_dir is None or not (subject.run_dir / "curves.png").is_file():
        return None
    return png_data_url((subject.run_dir / "curves.png").read_bytes())
