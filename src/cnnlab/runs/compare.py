"""Is run B really better than run A? ``cnnlab compare``'s numbers (no pictures: the curves are
drawn by :func:`cnnlab.figures.plot_compare_curves`, the page by :mod:`cnnlab.visualize.comparison`).

- :func:`differing_settings`: only the settings (config.json) that differ between the runs
- :func:`read_curves`: per-epoch accuracies from metrics.csv; final and best accuracies
- :func:`mcnemar_exact`: McNemar's exact test on paired predictions (McNemar 1947; the exact
  form as in Dietterich 1998, "Approximate Statistical Tests for Comparing Supervised
  Classification Learning Algorithms"): with ``b`` items only A gets right and ``c`` only B gets
  right, under H0 ``b ~ Binomial(b + c, 1/2)``; two-sided ``p = min(1, 2 * P[X <= min(b, c)])``
- :func:`bootstrap_difference`: a seeded paired bootstrap percentile interval of acc(B) - acc(A)
- :func:`compare_runs`: all of it for 2+ run directories sharing one test set -> :class:`Comparison`
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from cnnlab.errors import CnnlabError
from cnnlab.runs.format import read_metrics, read_result, read_run_config
from cnnlab.runs.interpret import per_class_accuracy
from cnnlab.runs.run import Run
from cnnlab.runs.scores import confusion_counts, split_logits

__all__ = ["IGNORED_SETTINGS", "McNemar", "Bootstrap", "RunSummary", "Comparison", "differing_settings",
           "read_curves", "mcnemar_exact", "binomial_cdf_half", "bootstrap_difference", "compare_runs"]

IGNORED_SETTINGS = ("out",)  # differs between any two runs: where each was written
CHUNK = 1 << 22  # resampled items per bootstrap block (memory stays ~32 MiB whatever the test size)


@dataclass
class McNemar:
    """b: items A classifies right and B wrong; c: A wrong, B right; p: exact two-sided p-value."""

    b: int
    c: int
    p: float


@dataclass
class Bootstrap:
    """acc(B) - acc(A) in percentage points and its percentile interval over paired resamples."""

    difference: float
    low: float
    high: float
    resamples: int
    seed: int
    level: float = 0.95


@dataclass
class RunSummary:
    run: str
    final_test_acc: float | None
    best_val_acc: float | None
    best_test_acc: float | None
    epochs: int
    test_acc: float  # re-scored now on the shared test split
    per_class: list[dict[str, Any]]
    curves: dict[str, list]  # epoch, train_acc, val_acc, test_acc, train_loss


@dataclass
class Comparison:
    """``cnnlab compare``'s result (``to_dict()`` for JSON). ``per_class_difference``: per class,
    each later run's accuracy minus the first's (percentage points)."""

    runs: list[RunSummary]
    settings: dict[str, list[Any]]  # setting -> its value in each run (only those that differ)
    test_items: int
    per_class_difference: list[dict[str, Any]]
    mcnemar: McNemar | None = None  # two runs only
    bootstrap: Bootstrap | None = None
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def differing_settings(configs: Sequence[dict[str, Any]], ignore: Sequence[str] = IGNORED_SETTINGS
                       ) -> dict[str, list[Any]]:
    """The settings whose value is not the same in every config (a setting one lacks counts as None),
    in the first config's order, then any others sorted; ``ignore``: never listed."""
    keys = list(dict.fromkeys([k for c in configs for k in c]))
    return {k: [c.get(k) for c in configs] for k in keys
            if k not in ignore and any(c.get(k) != configs[0].get(k) for c in configs[1:])}


def read_curves(run_dir: str | os.PathLike) -> dict[str, list]:
    """metrics.csv as columns: epoch, train_acc, val_acc, test_acc (None where not scored), train_loss."""
    rows = read_metrics(run_dir)
    number = lambda v: float(v) if v not in (None, "") else None  # noqa: E731
    return {"epoch": [int(r["epoch"]) for r in rows], "train_acc": [number(r.get("train_acc")) for r in rows],
            "val_acc": [number(r.get("val_acc")) for r in rows], "test_acc": [number(r.get("test_acc")) for r in rows],
            "train_loss": [number(r.get("train_loss")) for r in rows]}


def binomial_cdf_half(k: int, n: int) -> float:
    """P[X <= k] for X ~ Binomial(n, 1/2), exactly (integer sums; one rounding at the end)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    term, total = 1, 1  # C(n, 0)
    for i in range(1, k + 1):
        term = term * (n - i + 1) // i
        total += term
    return total / (1 << n)  # Python divides big integers with one correct rounding


def _check_paired(pred_a: torch.Tensor, pred_b: torch.Tensor, labels: torch.Tensor) -> None:
    if not (pred_a.shape == pred_b.shape == labels.shape) or labels.dim() != 1:
        raise CnnlabError(f"paired predictions need equal 1-d lengths, got {tuple(pred_a.shape)}, "
                          f"{tuple(pred_b.shape)} and {tuple(labels.shape)} labels")
    if labels.numel() == 0:
        raise CnnlabError("paired predictions need at least one test item")


def mcnemar_exact(pred_a: Any, pred_b: Any, labels: Any) -> McNemar:
    """McNemar's exact test of two classifiers' predictions on the same items (array-likes of
    class indices): ``b`` = A right and B wrong, ``c`` = A wrong and B right,
    ``p = min(1, 2 * BinomCDF(min(b, c); b + c, 1/2))`` (1 when b + c = 0)."""
    a, b_, y = (torch.as_tensor(v) for v in (pred_a, pred_b, labels))
    _check_paired(a, b_, y)
    right_a, right_b = a == y, b_ == y
    b, c = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    return McNemar(b, c, min(1.0, 2.0 * binomial_cdf_half(min(b, c), b + c)))


def bootstrap_difference(correct_a: Any, correct_b: Any, resamples: int = 2000, seed: int = 0,
                         level: float = 0.95) -> Bootstrap:
    """Percentile interval of ``mean(correct_b) - mean(correct_a)`` (percentage points) over
    ``resamples`` paired resamples of the items (the same drawn items for both runs), drawn by a
    ``torch.Generator`` seeded with ``seed``: the same seed gives the same interval."""
    if resamples < 1:
        raise CnnlabError(f"--bootstrap must be a positive integer, got {resamples}")
    d = torch.as_tensor(correct_b, dtype=torch.float64) - torch.as_tensor(correct_a, dtype=torch.float64)
    n = d.numel()
    if n == 0 or d.shape != torch.as_tensor(correct_a).shape:
        raise CnnlabError("the bootstrap needs two equal, non-empty sets of paired test outcomes")
    generator = torch.Generator().manual_seed(seed)
    means, per_block = [], max(1, CHUNK // n)
    for start in range(0, resamples, per_block):
        rows = min(per_block, resamples - start)
        index = torch.randint(n, (rows, n), generator=generator)
        means.append(d[index].mean(dim=1))
    diffs = 100.0 * torch.cat(means)
    tail = (1.0 - level) / 2
    low, high = torch.quantile(diffs, torch.tensor([tail, 1.0 - tail], dtype=torch.float64)).tolist()
    return Bootstrap(100.0 * float(d.mean()), low, high, resamples, seed, level)


def _test_set_check(runs: list[Run], labels: list[torch.Tensor]) -> None:
    first = runs[0]
    for run, y in zip(runs[1:], labels[1:]):
        why = None
        if run.config.dataset != first.config.dataset:
            why = f"datasets {first.config.dataset} and {run.config.dataset}"
        elif run.classes != first.classes:
            why = "their class names differ"
        elif len(y) != len(labels[0]):
            why = f"test sets of {len(labels[0])} and {len(y)} items"
        elif not torch.equal(y, labels[0]):
            why = "their test labels are not the same items in the same order"
        if why:
            raise CnnlabError(f"{first.path} and {run.path} cannot be paired: {why}; compare runs on the same "
                              f"test set")


def _summary(run: Run, logits: torch.Tensor, labels: torch.Tensor) -> RunSummary:
    curves, result = read_curves(run.path), read_result(run.path)
    tests = [v for v in curves["test_acc"] if v is not None]
    vals = [v for v in curves["val_acc"] if v is not None]
    final = result.get("test_acc") if isinstance(result.get("test_acc"), (int, float)) else (tests[-1] if tests
                                                                                             else None)
    confusion = confusion_counts(labels, logits.argmax(1), len(run.classes))
    return RunSummary(str(run.path), final, result.get("best_val_acc", max(vals) if vals else None),
                      max(tests + ([final] if final is not None else [])) if tests or final is not None else None,
                      len(curves["epoch"]), 100.0 * float(confusion.diagonal().sum()) / len(labels),
                      per_class_accuracy(confusion, run.classes), curves)


def _per_class_difference(summaries: list[RunSummary]) -> list[dict[str, Any]]:
    rows = []
    for i, first in enumerate(summaries[0].per_class):
        others = [s.per_class[i]["accuracy"] for s in summaries[1:]]
        rows.append({"class": first["class"], "support": first["support"], "accuracy": [first["accuracy"], *others],
                     "difference": [None if v is None or first["accuracy"] is None else v - first["accuracy"]
                                    for v in others]})
    return rows


def open_runs(run_dirs: Sequence[str | os.PathLike | Run], device: torch.device | str = "cpu") -> list[Run]:
    """Every run opened (a folder that is not a finished run: one line) before any data is read; a
    :class:`Run` already opened is taken as it is (its model.pt is not read again)."""
    if len(run_dirs) < 2:
        raise CnnlabError(f"compare needs two or more run directories, got {len(run_dirs)}; e.g. cnnlab compare "
                          f"runs/a runs/b")
    return [d if isinstance(d, Run) else Run.open(Path(d), device) for d in run_dirs]


def compare_runs(run_dirs: Sequence[str | os.PathLike | Run], *, seed: int = 0, bootstrap: int = 2000,
                 device: torch.device | str = "cpu", data_dir: str | None = None) -> Comparison:
    """Compare 2+ finished runs on their shared test set; for exactly two, McNemar's exact test and
    the bootstrap interval of acc(second) - acc(first)."""
    if bootstrap < 1:
        raise CnnlabError(f"--bootstrap must be a positive integer, got {bootstrap}")
    runs = open_runs(run_dirs, device)
    if len({r.config.dataset for r in runs}) > 1:
        _test_set_check(runs, [torch.zeros(0)] * len(runs))  # says which datasets, before any data is read
    scored = [split_logits(run, "test", data_dir) for run in runs]
    _test_set_check(runs, [y for _, y in scored])
    summaries = [_summary(run, logits, labels) for run, (logits, labels) in zip(runs, scored)]
    labels = scored[0][1]
    comparison = Comparison(summaries, differing_settings([read_run_config(r.path) or r.config.to_dict()
                                                          for r in runs]),
                            len(labels), _per_class_difference(summaries))
    if len(runs) == 2:
        pred_a, pred_b = (logits.argmax(1) for logits, _ in scored)
        comparison.mcnemar = mcnemar_exact(pred_a, pred_b, labels)
        comparison.bootstrap = bootstrap_difference(pred_a == labels, pred_b == labels, bootstrap, seed)
    return comparison
