"""Models named on the command line: a registry name, or a Python file of the user's own
(``path/to/file.py:ClassName``); ``cnnlab summary`` as one call (:func:`run_summary`) and the
rows of ``cnnlab models`` (:func:`zoo_rows`). Shapes, lists and sizes as typed are read by
:mod:`cnnlab.parsing`.

This module imports torch and the library at its top: the commands import it when they run
(``cnnlab --help`` never loads it).

Model files and torchvision classifiers are built by :mod:`cnnlab.external` (the loaders the
analysis shares).
"""

from __future__ import annotations

from typing import Any

from cnnlab.analysis.sources import guess_input_shape
from cnnlab.analysis.fit import fit_batch_size
from cnnlab.errors import CnnlabError
from cnnlab.external import is_model_file, is_torchvision, load_model_file, torchvision_model
from cnnlab.models import get_model_info, list_models
from cnnlab.parsing import parse_bytes, parse_shape
from cnnlab.summary import summarize, summarize_model

__all__ = ["is_model_file", "load_model_file", "guess_input_shape", "run_summary", "zoo_rows"]


def run_summary(model: str, *, input: str | None = None, num_classes: int | None = None,
                options: dict[str, Any] | None = None, train: bool = False, measure: bool = False,
                fit_memory: str | None = None, eval: bool = False, batch_size: int = 1,
                settings: Any = None, fit_for: str = "process"):
    """``cnnlab summary``: a registry model, ``file.py:Class`` or ``torchvision:NAME``, traced (and costed for
    training, measured, or fitted to a memory budget: ``fit_for`` ``process`` (the process's RSS, on the CPU) or
    ``tensors``) -- every argument checked first."""
    if eval and fit_memory is None:
        raise CnnlabError("--eval goes with --fit-memory (the largest batch for inference)")
    budget = parse_bytes(fit_memory) if fit_memory is not None else None
    if settings is not None:
        settings.check()
    train_kw = dict(train=train or measure, measure=measure, batch_size=batch_size, settings=settings)
    if is_model_file(model) or is_torchvision(model):
        if num_classes is not None or options:
            raise CnnlabError("--num-classes and -o apply to registry models; a model file or a torchvision "
                              "model is built as it is")
        net, name, shape, note = _external(model, input, real=measure)
        result = summarize(net, shape, name=name, **train_kw)
        result.note = note
    else:
        shape = parse_shape(input) if input else None
        result = summarize_model(model, shape, num_classes=num_classes, **train_kw, **(options or {}))
    if budget is not None:
        result.fit = fit_batch_size(result.module, result.input_shape, budget, settings, train=not eval,
                                    memory=fit_for)
    return result


def _external(model: str, input: str | None, real: bool = False):
    """(module, name, input shape, note) of ``file.py:Class`` or ``torchvision:NAME`` (built on the ``meta``
    device unless ``real``: a measured step needs real tensors)."""
    if is_torchvision(model):
        net, info = torchvision_model(model, meta=not real)
        top1 = f"; ImageNet top-1 {info.top1:.2f}% ({info.source})" if info.top1 is not None else ""
        shape = parse_shape(input) if input else (3, info.input_size, info.input_size)
        return net, model, shape, f"the weights' input{top1}" if not input else top1.lstrip("; ") or None
    net, name = load_model_file(model)
    shape, note = (parse_shape(input), None) if input else guess_input_shape(net)
    return net, name, shape, note


def zoo_rows() -> list[dict[str, Any]]:
    """One row per registered model at its default input: family, input, parameters, MACs, paper."""
    rows = []
    for name in list_models():
        info = get_model_info(name)
        s = summarize_model(name)
        rows.append({"name": name, "family": info.family, "input": "x".join(map(str, info.input_shape)),
                     "params": s.total_params, "macs": s.total_macs, "paper": info.paper})
    return rows
