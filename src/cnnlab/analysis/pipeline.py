"""The Canziani analysis of one model (:func:`analyze`), of registry models
(:func:`analyze_models`), and ``cnnlab analyze`` as one library call (:func:`run_analyze`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
import torch.nn as nn

from cnnlab.analysis.canziani import (CANZIANI_NETWORKS, MODERN_NETWORKS, canziani_section, check_canziani,
                                      paper_accuracies)
from cnnlab.analysis.charts import analysis_charts
from cnnlab.analysis.estimate import StepSettings
from cnnlab.analysis.html import write_html
from cnnlab.analysis.measure import measure_inference_peak
from cnnlab.analysis.memory import activation_memory, cuda_peaks, to_meta
from cnnlab.analysis.ops import count_ops, device_of
from cnnlab.analysis.report import ModelReport, Report, run_accuracies
from cnnlab.analysis.sources import check_model_specs, resolve_model
from cnnlab.analysis.timing import machine_info, raise_roof, roof_measurements, time_model
from cnnlab.analysis.training import memory_curves, peaks_by_batch
from cnnlab.errors import CnnlabError, check_shape, check_type
from cnnlab.models import list_models
from cnnlab.parsing import parse_int_list, parse_shape
from cnnlab.paths import check_output
from cnnlab.runtime import resolve_device
from cnnlab.trace import trace

__all__ = ["analyze", "analyze_models", "run_analyze"]

DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


def _per_layer(model: nn.Module, input_shape: Sequence[int], name: str) -> list[dict]:
    """The layer table of :mod:`cnnlab.summary` (one row per leaf call), from the tracer."""
    return [{"layer": c.name, "type": c.type, "output": list(c.output_shape), "params": c.params, "macs": c.macs}
            for c in trace(model, input_shape).layers()]


def analyze(
    model: nn.Module,
    input_shape: Sequence[int],
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    device: str | torch.device = "cpu",
    *,
    name: str | None = None,
    timing: bool = True,
    repeats: int = 10,
    per_layer: bool = False,
    accuracy: float | None = None,
    accuracy_source: str | None = None,
    roof_gflops: float | None = None,
    meta_model: nn.Module | None = None,
) -> Report:
    """Analyse one model (any ``nn.Module``); see :mod:`cnnlab.analysis` for what is measured."""
    check_type(model, nn.Module, "model", "an nn.Module (e.g. cnnlab.create_model('convnet'))")
    input_shape = check_shape(input_shape, "input_shape", (1, 3))
    batch_sizes = check_shape(batch_sizes, "batch_sizes", None)
    device = torch.device(device)
    roof = _roof(device, timing, roof_gflops)
    report = _analyze_one(model, list(input_shape), batch_sizes, device, name=name or type(model).__name__,
                          timing=timing, repeats=repeats, per_layer=per_layer, accuracy=accuracy,
                          accuracy_source=accuracy_source, roof=roof and roof["gflops"], meta_model=meta_model)
    return _report([report], device, roof, batch_sizes)


def _roof(device: torch.device, timing: bool, given: float | None = None) -> dict | None:
    if given is not None:
        return {"gflops": given, "measurements": {}, "source": "given"}
    return roof_measurements(device) if timing else None


def _report(reports: list[ModelReport], device: torch.device, roof: dict | None, batch_sizes) -> Report:
    if roof is not None:
        roof = raise_roof(reports, roof)
    return Report(reports, machine_info(device, roof and roof["gflops"], roof), list(batch_sizes))


def _memory_estimates(meta: nn.Module, input_shape, memory: list[dict], device: torch.device) -> int:
    """Estimated peaks of a training step and of inference at every batch size (into ``memory``);
    returns the training FLOPs per image (forward + backward)."""
    settings = StepSettings(device="cuda" if device.type == "cuda" else "cpu")
    sizes = [m["batch"] for m in memory]
    try:
        flops, train, infer = memory_curves(meta, input_shape, sizes, settings)
    except CnnlabError:
        return 0
    except ValueError:  # the model refuses a training batch (batch norm on 1x1 maps at batch 1): inference only
        flops, train, infer = 0, {}, peaks_by_batch(meta, input_shape, sizes, settings, train=False)
    for m in memory:
        m["inference_peak_bytes"] = infer[m["batch"]]
        if m["batch"] in train:
            m["training_peak_bytes"] = train[m["batch"]]
    return flops


def _measure_inference(real: nn.Module, input_shape, memory: list[dict], device: torch.device) -> None:
    settings = StepSettings(device="cuda" if device.type == "cuda" else "cpu")
    for m in memory:
        got = measure_inference_peak(real, input_shape, m["batch"], settings)
        m["measured_inference_peak_bytes"], m["measured_method"] = got.peak_bytes, got.method


def _analyze_one(model, input_shape, batch_sizes, device, *, name, timing, repeats, per_layer, accuracy,
                 accuracy_source, roof, meta_model=None, estimates: bool = True) -> ModelReport:
    meta = meta_model if meta_model is not None else to_meta(model)
    counter = count_ops(meta, input_shape)
    params = list(model.parameters())
    n_params = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    memory = activation_memory(meta, input_shape, batch_sizes)
    rep = ModelReport(
        name=name, input_shape=list(input_shape), params=n_params, trainable_params=trainable,
        non_trainable_params=n_params - trainable, buffers=sum(b.numel() for b in model.buffers()),
        param_bytes=sum(p.numel() * p.element_size() for p in params), macs=counter.macs, flops=2 * counter.macs,
        other_ops=dict(sorted(counter.other.items())), unsupported=sorted(counter.unsupported), memory=memory,
        accuracy=accuracy, accuracy_source=accuracy_source,
        per_layer=_per_layer(meta, input_shape, name) if per_layer else None,
    )
    if estimates:  # training FLOPs, simulated training and inference peaks
        rep.training_flops = _memory_estimates(meta, input_shape, rep.memory, device)
    if timing and device_of(model).type != "meta":
        real = model.to(device)
        rep.timing = time_model(real, input_shape, batch_sizes, device, repeats, counter.macs, roof)
        _measure_inference(real, input_shape, rep.memory, device)
        if device.type == "cuda":
            for mem in rep.memory:
                mem.update(cuda_peaks(real, input_shape, mem["batch"], device))
    return rep


def analyze_models(
    names: Sequence[str],
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    device: str | torch.device = "cpu",
    *,
    input_shape: Sequence[int] | None = None,
    timing: bool = True,
    repeats: int = 10,
    per_layer: bool = False,
    run_dirs: Sequence[str | os.PathLike] = (),
    on_model: Callable[[ModelReport], None] | None = None,
    estimates: bool = True,
    fallback_accuracies: Mapping[str, tuple[float, str]] | None = None,
) -> Report:
    """Analyse models by name -- registry names, ``torchvision:NAME`` or ``path/file.py:Class`` -- at their
    default input (or ``input_shape``); ``estimates=False`` leaves out the simulated training and inference
    peaks and the training FLOPs (counts only). ``fallback_accuracies`` ({name: (top-1, source)}) serve
    where neither a run directory nor documented weights give one."""
    device = torch.device(device)
    check_model_specs(names)  # unknown names fail before any work
    accuracies = run_accuracies(run_dirs)
    roof = _roof(device, timing)
    reports = []
    for spec in names:
        src = resolve_model(spec, input_shape, accuracies, fallback_accuracies)
        meta = src.build(True)
        model = src.build(False) if timing else meta
        rep = _analyze_one(model, src.input_shape, batch_sizes, device, name=src.name, timing=timing,
                           repeats=repeats, per_layer=per_layer, accuracy=src.accuracy,
                           accuracy_source=src.accuracy_source, roof=roof and roof["gflops"], meta_model=meta,
                           estimates=estimates)
        reports.append(rep)
        del model
        if on_model is not None:
            on_model(rep)
    return _report(reports, device, roof, batch_sizes)


def _model_names(models: Sequence[str], canziani: bool, modern: bool) -> list[str]:
    """The models named, after the paper's 14 (``canziani``) and the later classifiers (``modern``)."""
    if canziani:
        check_canziani()  # one line naming the paper's networks the zoo lacks
    sets = (list(CANZIANI_NETWORKS) if canziani else []) + (list(MODERN_NETWORKS) if modern else [])
    names = sets + [m for m in models if m not in sets]
    return names or list_models()


def _batch_sizes(batch_sizes: str | Sequence[int]) -> list[int]:
    text = batch_sizes if isinstance(batch_sizes, str) else ",".join(str(b) for b in batch_sizes)
    return parse_int_list(text, "--batch-sizes")


def _output_paths(charts: str | os.PathLike | None, html: str | os.PathLike | None) -> tuple[Path | None, Path | None]:
    """The chart folder and the HTML file, checked before any work."""
    if charts is not None:
        charts = check_output(charts, "folder", what="--charts", writes="a folder of four PNG charts")
    if html is not None:
        html = check_output(html, "file", what="--html", suffixes=(".html", ".htm"), default_suffix=".html",
                            writes="an HTML page")
    return charts, html


def run_analyze(
    models: Sequence[str] = (),
    *,
    input: str | None = None,
    batch_sizes: str | Sequence[int] = "1,2,4,8,16,32,64",
    repeats: int | None = None,
    quick: bool = False,
    no_timing: bool = False,
    per_layer: bool = False,
    device: str | torch.device = "cpu",
    runs: Sequence[str | os.PathLike] = (),
    charts: str | os.PathLike | None = None,
    html: str | os.PathLike | None = None,
    on_model: Callable[[ModelReport], None] | None = None,
    canziani: bool = False,
    modern: bool = False,
) -> Report:
    """``cnnlab analyze``: check every argument (one-line :class:`CnnlabError` before any work),
    analyse the models (all registered ones if none are named), write the charts and the HTML
    report where asked. ``report.batch_sizes`` holds the sizes measured.

    Args:
        models: registry names, ``torchvision:NAME`` or ``path/file.py:Class``; empty (and neither set):
            every registered model.
        canziani: add the 14 networks of Canziani et al. (2016), with the paper's values beside ours
            (``report.canziani``: the comparison and the findings); refused in one line while the zoo lacks any.
        modern: add later torchvision classifiers (MobileNetV2/V3, EfficientNet-B0/B3, RegNetY, ConvNeXt-T,
            ResNeXt-50, ViT-B/16) and the findings.
        input: ``CxHxW`` for every model (else each model's own).
        batch_sizes: ``"1,2,4"`` or a sequence of ints; ``quick`` makes it ``1,8``.
        repeats: timed runs per batch size (default 10, ``quick`` 3).
        no_timing: counts only (parameters, operations, memory); with ``canziani``/``modern`` also without
            the simulated training and inference peaks (activation memory only), so the 14 take seconds.
        device: ``cpu``, ``cuda`` or ``auto`` (:func:`cnnlab.runtime.resolve_device`).
        runs: run directories to take test accuracies from.
        charts: folder for the four PNG charts; html: file for the self-contained report.
        on_model: called with each :class:`ModelReport` as soon as it is done.
    """
    names = _model_names(list(models), canziani, modern)
    check_model_specs(names)  # unknown names: one line before any work
    sizes = [1, 8] if quick else _batch_sizes(batch_sizes)
    repeats = (3 if quick else 10) if repeats is None else repeats  # 0 is a mistake, not the default
    if repeats < 1:
        raise CnnlabError(f"--repeats must be a positive integer, got {repeats}")
    shape = parse_shape(input) if input else None
    dev = resolve_device(device)
    charts, html = _output_paths(charts, html)
    report = analyze_models(names, sizes, dev, input_shape=shape, timing=not no_timing, repeats=repeats,
                            per_layer=per_layer, run_dirs=runs, on_model=on_model,
                            estimates=not (no_timing and (canziani or modern)),  # the paper's sets: counts only
                            fallback_accuracies=paper_accuracies() if canziani or modern else None)
    if canziani or modern:
        report.canziani = canziani_section(report, [k for k, on in (("canziani", canziani), ("modern", modern)) if on])
    if charts is not None:
        analysis_charts(report, charts)
    if html is not None:
        write_html(report, html)
    return report
