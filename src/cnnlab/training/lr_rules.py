"""Reading a learning-rate range test's curve: pure functions of ``(lrs, losses)``, no torch.

The range test (:mod:`cnnlab.training.lr_find`) records one loss per learning rate of an
exponential sweep; this module turns that curve into suggestions, each by a named rule, all
computed on the *smoothed* curve as fastai's ``lr_find`` does (fastai/callback/schedule.py):

- :func:`smooth`: the exponential moving average of the losses with bias correction
  (``avg = beta * avg + (1 - beta) * loss``; ``smoothed_i = avg / (1 - beta**(i+1))``, beta 0.98),
  fastai's ``AvgSmoothLoss``;
- ``steepest`` (:func:`steepest`): the learning rate where the loss falls fastest against
  ``log(lr)``: the forward difference ``(loss[i+1] - loss[i]) / (log lr[i+1] - log lr[i])`` is most
  negative at ``i``, and ``lr[i]`` is suggested (fastai's ``steep``);
- ``minimum/10`` (:func:`minimum_over_10`): the learning rate of the lowest loss, divided by 10
  (fastai's ``minimum``: the minimum is already too large to train at);
- ``valley`` (:func:`valley`): fastai's default since 2.4 (Zachary Mueller, fastai PR #3377; the
  rule was proposed by ESRI on the fast.ai forums, "Automated learning rate suggester", thread
  44199): the longest descending stretch of the curve -- the longest strictly decreasing
  subsequence of the losses -- and a point inside it, see :func:`valley`.

:func:`suggest` applies every rule to the part of the curve fastai reads: without the first
``num_iter // 10`` points (the loss has not moved yet) and the last 5 (where it blows up).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from cnnlab.errors import CnnlabValueError, UnknownNameError

__all__ = ["RULES", "DEFAULT_RULE", "BETA", "SKIP_END", "check_rule", "check_sweep", "sweep_lrs", "smooth",
           "steepest", "minimum_over_10", "valley", "valley_index", "analysis_window", "suggest"]

RULES = ("steepest", "minimum/10", "valley")
DEFAULT_RULE = "valley"  # fastai's default, and `cnnlab train --lr find`'s
BETA = 0.98  # fastai's AvgSmoothLoss
SKIP_END = 5  # points left out at the end of the curve before the rules read it (fastai's lr_find)


def check_rule(rule: str) -> str:
    """``rule`` if it is one of :data:`RULES`, else an :class:`UnknownNameError` with the close names."""
    if rule not in RULES:
        raise UnknownNameError("lr-find rule", rule, RULES)
    return rule


def check_sweep(start_lr: float, end_lr: float, num_iter: int) -> None:
    """One line for a sweep that cannot run: learning rates not positive and finite, ``start_lr >=
    end_lr``, fewer than 2 steps."""
    for flag, value in (("--start-lr", start_lr), ("--end-lr", end_lr)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise CnnlabValueError(f"{flag} must be a positive finite learning rate, got {value!r}")
    if start_lr >= end_lr:
        raise CnnlabValueError(f"--start-lr must be below --end-lr (the sweep goes up), got --start-lr {start_lr:g} "
                               f"and --end-lr {end_lr:g}")
    if isinstance(num_iter, bool) or not isinstance(num_iter, int) or num_iter < 2:
        raise CnnlabValueError(f"--num-iter must be an integer of at least 2 (a sweep needs two learning rates), "
                               f"got {num_iter!r}")


def sweep_lrs(start_lr: float, end_lr: float, num_iter: int) -> list[float]:
    """The exponential sweep: ``start_lr * (end_lr / start_lr) ** (i / (num_iter - 1))``, i = 0 .. num_iter-1,
    so the first step trains at ``start_lr`` and the last at ``end_lr``."""
    check_sweep(start_lr, end_lr, num_iter)
    ratio = end_lr / start_lr
    return [start_lr * ratio ** (i / (num_iter - 1)) for i in range(num_iter - 1)] + [float(end_lr)]


def smooth(losses: Sequence[float], beta: float = BETA) -> list[float]:
    """The bias-corrected exponential moving average of ``losses`` (fastai's ``AvgSmoothLoss``)."""
    average, out = 0.0, []
    for i, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * float(loss)
        out.append(average / (1 - beta ** i))
    return out


def _curve(lrs: Sequence[float], losses: Sequence[float], least: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise CnnlabValueError(f"lrs and losses must be two lists of the same length, got {len(lrs)} and {len(losses)}")
    if len(x) < least:
        raise CnnlabValueError(f"this rule needs at least {least} points of the curve, got {len(x)}")
    return x, y


def steepest(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """``lrs[i]`` where ``(losses[i+1] - losses[i]) / (log lrs[i+1] - log lrs[i])`` is most negative
    (the first such ``i`` on a tie)."""
    x, y = _curve(lrs, losses, 2)
    slopes = np.diff(y) / np.diff(np.log(x))
    return float(x[int(np.argmin(slopes))])


def minimum_over_10(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The learning rate of the lowest loss (the first on a tie), divided by 10."""
    x, y = _curve(lrs, losses, 1)
    return float(x[int(np.argmin(y))]) / 10


def valley_index(losses: Sequence[float]) -> int:
    """The index :func:`valley` suggests.

    ``lds[i]`` is the length of the longest strictly decreasing subsequence ending at ``i``
    (``1 + max(lds[j] for j < i if losses[j] > losses[i])``). The valley ends at the first ``i``
    with the largest ``lds`` (``end``) and starts ``lds[end]`` points before it (``start = end -
    lds[end]``, fastai's convention: one before the first point when the stretch is contiguous).
    The suggestion is ``start + floor(L/3) + floor(L/3 / 2)`` with ``L = end - start``: the middle
    of the valley's second third. fastai's text calls this "roughly 2/3 through the longest
    valley"; its formula, kept here so that both agree, lands about halfway along it. Where fastai's
    index would be -1 (a valley of 1 or 2 points at the very start, which Python would read as the
    last point) it is 0 here.
    """
    y = np.asarray(losses, dtype=float)
    if y.ndim != 1 or len(y) == 0:
        raise CnnlabValueError("valley needs at least 1 point of the curve")
    lds = np.ones(len(y), dtype=int)
    for i in range(1, len(y)):
        higher = y[:i] > y[i]
        if higher.any():
            lds[i] = int(lds[:i][higher].max()) + 1
    end = int(np.argmax(lds))  # the first index of the longest
    start = end - int(lds[end])
    third = (end - start) / 3
    return max(0, start + int(third) + int(third / 2))


def valley(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The learning rate at :func:`valley_index` of ``losses``."""
    x, y = _curve(lrs, losses, 1)
    return float(x[valley_index(y)])


RULE_FUNCTIONS = {"steepest": steepest, "minimum/10": minimum_over_10, "valley": valley}


def analysis_window(points: int, num_iter: int) -> tuple[int, int]:
    """``(first, stop)``: the points the rules read, fastai's ``[num_iter // 10 : -5]``; the whole curve
    when that would leave fewer than 2 points (a short sweep, or one stopped early)."""
    first, stop = num_iter // 10, points - SKIP_END
    return (first, stop) if stop - first >= 2 else (0, points)


def suggest(lrs: Sequence[float], smoothed: Sequence[float], num_iter: int | None = None) -> dict[str, float]:
    """Every rule's suggestion (rule -> learning rate) on :func:`analysis_window` of the smoothed
    curve (``num_iter``: the sweep's planned steps, default ``len(lrs)``)."""
    first, stop = analysis_window(len(lrs), len(lrs) if num_iter is None else num_iter)
    x, y = list(lrs)[first:stop], list(smoothed)[first:stop]
    return {rule: RULE_FUNCTIONS[rule](x, y) for rule in RULES}
