"""What a trained model gets wrong, and how far its confidence can be trusted: the numbers behind
``cnnlab interpret`` (the pictures are drawn by :mod:`cnnlab.visualize.interpret`).

- :func:`per_class_accuracy`, :func:`confused_pairs`: read off the one confusion matrix
  (:func:`cnnlab.runs.scores.confusion_counts`; rows: true class)
- :func:`top_losses`: the test items with the highest cross-entropy
- calibration (Guo, Pleiss, Sun & Weinberger 2017, "On Calibration of Modern Neural Networks",
  ICML, arXiv:1706.04599): :func:`reliability_bins` (M equal-width confidence bins
  ``B_m = ((m-1)/M, m/M]``, the first closed at 0), :func:`expected_calibration_error`
  ``ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|`` and temperature scaling
  (:func:`fit_temperature`: one scalar T > 0 dividing the logits, fitted by L-BFGS on the
  negative log-likelihood of the validation logits; the argmax, hence the accuracy, is unchanged)
- :func:`interpret_logits`: all of it from a split's logits and labels -> :class:`Interpretation`
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from cnnlab.errors import CnnlabError
from cnnlab.runs.scores import confusion_counts

__all__ = ["N_BINS", "per_class_accuracy", "confused_pairs", "top_losses", "reliability_bins",
           "expected_calibration_error", "negative_log_likelihood", "fit_temperature", "Calibration",
           "TemperatureScaling", "Interpretation", "calibration_of", "interpret_logits"]

N_BINS = 15  # Guo et al. 2017 use M = 15 bins


def per_class_accuracy(confusion: torch.Tensor, classes: Sequence[str]) -> list[dict[str, Any]]:
    """Per class (rows of ``confusion``: true class): correct, support, accuracy in % (None without support)."""
    rows = []
    for i, name in enumerate(classes):
        correct, support = int(confusion[i, i]), int(confusion[i].sum())
        rows.append({"class": name, "correct": correct, "support": support,
                     "accuracy": 100.0 * correct / support if support else None})
    return rows


def confused_pairs(confusion: torch.Tensor, classes: Sequence[str], top: int | None = None) -> list[dict[str, Any]]:
    """The off-diagonal cells with a count, most first (ties: by true, then predicted class index):
    ``{"true", "predicted", "count", "reverse"}``, ``reverse`` being the count of the opposite
    direction (predicted taken for true), so each pair is read both ways."""
    k = confusion.shape[0]
    cells = [(-int(confusion[i, j]), i, j) for i in range(k) for j in range(k) if i != j and int(confusion[i, j])]
    cells.sort()
    return [{"true": classes[i], "predicted": classes[j], "count": -n, "reverse": int(confusion[j, i])}
            for n, i, j in cells[:top]]


def top_losses(logits: torch.Tensor, labels: torch.Tensor, n: int) -> list[dict[str, Any]]:
    """The ``n`` items with the highest cross-entropy, highest first: index, label, predicted,
    loss, the probability of the prediction and of the true class."""
    losses = F.cross_entropy(logits.double(), labels, reduction="none")
    probs = torch.softmax(logits.double(), dim=1)
    order = torch.argsort(losses, descending=True, stable=True)[:n]
    return [{"index": int(i), "label": int(labels[i]), "predicted": int(probs[i].argmax()), "loss": float(losses[i]),
             "p_predicted": float(probs[i].max()), "p_true": float(probs[i, labels[i]])} for i in order]


def _confidence_correct(probs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    confidence, predicted = probs.double().max(dim=1)
    return confidence, (predicted == labels).double()


def reliability_bins(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = N_BINS) -> list[dict[str, Any]]:
    """The reliability diagram's bins over the confidence (max probability): ``n_bins`` equal
    widths on [0, 1], bin m holding confidences in ``(m/M, (m+1)/M]`` (the first also 0), each
    with its count, accuracy and mean confidence (None for an empty bin)."""
    if n_bins < 1:
        raise CnnlabError(f"the reliability diagram needs at least 1 bin, got {n_bins}")
    confidence, correct = _confidence_correct(probs, labels)
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)
    index = torch.searchsorted(edges[1:-1], confidence, right=False)  # as sklearn's calibration_curve
    counts = torch.bincount(index, minlength=n_bins)
    hits = torch.bincount(index, weights=correct, minlength=n_bins)
    sums = torch.bincount(index, weights=confidence, minlength=n_bins)
    return [{"low": float(edges[m]), "high": float(edges[m + 1]), "count": int(counts[m]),
             "accuracy": float(hits[m] / counts[m]) if counts[m] else None,
             "confidence": float(sums[m] / counts[m]) if counts[m] else None} for m in range(n_bins)]


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = N_BINS) -> float:
    """ECE (Guo et al. 2017, eq. 3): ``sum_m |B_m| / n * |acc(B_m) - conf(B_m)|`` over
    :func:`reliability_bins`; a fraction in [0, 1]."""
    n = len(labels)
    if n == 0:
        raise CnnlabError("the expected calibration error needs at least one scored item")
    return sum(b["count"] / n * abs(b["accuracy"] - b["confidence"])
               for b in reliability_bins(probs, labels, n_bins) if b["count"])


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean cross-entropy of ``softmax(logits / temperature)`` (nats)."""
    return float(F.cross_entropy(logits.double() / temperature, labels))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 200) -> float:
    """Temperature scaling (Guo et al. 2017, section 4.2): the T > 0 minimising the NLL of
    ``softmax(logits / T)`` on ``labels``, by L-BFGS (strong Wolfe line search) over log T from T = 1."""
    z, y = logits.detach().double().clone(), labels.detach().clone()  # not inference tensors
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-10, tolerance_change=1e-12)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    t = float(log_t.detach().exp())
    if not (t > 0 and t < float("inf")):
        raise CnnlabError("temperature scaling did not converge on the validation split (its logits are degenerate)")
    return t


@dataclass
class Calibration:
    """A split's calibration: ECE (fraction), NLL (nats), accuracy (%), the reliability bins."""

    ece: float
    nll: float
    accuracy: float
    bins: list[dict[str, Any]]


@dataclass
class TemperatureScaling:
    """T fitted on the validation split, and the test split before and after dividing by it."""

    temperature: float
    val_nll_before: float
    val_nll_after: float
    before: Calibration
    after: Calibration


def calibration_of(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0,
                   n_bins: int = N_BINS) -> Calibration:
    probs = torch.softmax(logits.double() / temperature, dim=1)
    accuracy = 100.0 * float((probs.argmax(1) == labels).double().mean())
    return Calibration(expected_calibration_error(probs, labels, n_bins),
                       negative_log_likelihood(logits, labels, temperature), accuracy,
                       reliability_bins(probs, labels, n_bins))


@dataclass
class Interpretation:
    """What ``cnnlab interpret`` reports about one split of a run (``to_dict()`` for JSON)."""

    run: str
    split: str
    classes: list[str]
    accuracy: float
    total: int
    per_class: list[dict[str, Any]]
    confused: list[dict[str, Any]]
    top_losses: list[dict[str, Any]]
    calibration: Calibration
    temperature: TemperatureScaling | None = None
    notes: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # what was drawn: "gallery", "reliability" -> path

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def interpret_logits(logits: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], *, run: str = "",
                     split: str = "test", top: int = 16, val: tuple[torch.Tensor, torch.Tensor] | None = None,
                     n_bins: int = N_BINS) -> Interpretation:
    """Everything but the pictures, from a split's ``logits`` (N, K) and ``labels`` (N,);
    ``val``: the validation split's (logits, labels) to fit a temperature on."""
    if top < 1:
        raise CnnlabError(f"--top-losses must be a positive integer, got {top}")
    if logits.dim() != 2 or logits.shape[0] != labels.shape[0] or logits.shape[1] != len(classes):
        raise CnnlabError(f"logits of shape {tuple(logits.shape)} do not match {len(labels)} labels of "
                          f"{len(classes)} classes")
    confusion = confusion_counts(labels, logits.argmax(dim=1), len(classes))
    calibration = calibration_of(logits, labels, n_bins=n_bins)
    scaling = None
    if val is not None:
        t = fit_temperature(*val)
        scaling = TemperatureScaling(t, negative_log_likelihood(*val), negative_log_likelihood(*val, temperature=t),
                                     calibration, calibration_of(logits, labels, t, n_bins))
    losses = [r | {"label": classes[r["label"]], "predicted": classes[r["predicted"]]}
              for r in top_losses(logits, labels, top)]
    return Interpretation(run, split, list(classes), calibration.accuracy, len(labels),
                          per_class_accuracy(confusion, classes), confused_pairs(confusion, classes), losses,
                          calibration, scaling)
