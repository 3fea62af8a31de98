"""``cnnlab.optimize(model, mode, example_input)``: the same function, computed faster.

======================  =====================================================================
mode                    what runs
======================  =====================================================================
``eager``               the model as it is (eval, no autograd): the reference
``channels_last``       conv/BN folded, NHWC tensors (oneDNN's fast layout)
``compile``             ``torch.compile`` (Inductor) with frozen weights, channels-last
``bf16``                ``compile`` under bf16 autocast; CPUs with AVX-512-BF16/AMX, or CUDA
``fp16``                ``compile`` under fp16 autocast; CUDA only
``onnxruntime``         the model exported to ONNX, run by ONNX Runtime (fp32, CPU)
``int8``                ONNX Runtime static QDQ int8, calibrated on ``calibration`` (CPU)
``auto``                builds every mode this machine runs, keeps those within the accuracy
                        budget on the calibration batches, returns the fastest measured
======================  =====================================================================

A mode the machine cannot run is refused with one line (:class:`~cnnlab.errors.CnnlabError`).
Accuracy budget: fp32 modes within 1e-4 of eager relative to its largest logit; bf16, fp16 and
int8 agree with eager's top-1 on >= 99% of inputs (docs/BENCHMARKS.md has the trained-run figures).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError, CnnlabTypeError, CnnlabValueError, UnknownNameError, check_type
from cnnlab.inference.capability import bf16_support, fp16_support, onnxruntime_support
from cnnlab.inference.modules import ChannelsLastModule, CompiledModule, EagerModule, InferenceModule
from cnnlab.inference.onnx import OnnxRuntimeModule, export_onnx_bytes, quantize_int8
from cnnlab.runtime import time_fn

__all__ = ["MODES", "PRECISION", "AUTO_CANDIDATES", "FP32_TOLERANCE", "MIN_AGREEMENT", "optimize", "mode_support",
           "check_mode",
           "calibration_batches", "relative_error", "top1_agreement"]

MODES = ("eager", "channels_last", "compile", "bf16", "fp16", "onnxruntime", "int8", "auto")
PRECISION = {"eager": "fp32", "channels_last": "fp32", "compile": "fp32", "onnxruntime": "fp32", "bf16": "bf16",
             "fp16": "fp16", "int8": "int8", "auto": "auto"}
# what ``auto`` tries, fastest first as measured here (it times them anyway)
AUTO_CANDIDATES = ("int8", "bf16", "fp16", "onnxruntime", "compile", "channels_last", "eager")
FP32_TOLERANCE = 1e-4  # max |y - y_eager| / max |y_eager| for the fp32 modes
MIN_AGREEMENT = 0.99  # top-1 agreement with eager fp32 for bf16, fp16 and int8
LOSSY_MARGIN = 1.1  # auto takes a lower precision only where it beats the fastest fp32 mode by 10%
CALIBRATION_CHUNK = 32  # a calibration tensor is fed in batches of this many


def mode_support(mode: str, device: torch.device | str = "cpu") -> tuple[bool, str]:
    """(whether ``mode`` runs on ``device`` on this machine, the one-line reason when not)."""
    device = torch.device(device)
    if mode not in MODES:
        raise UnknownNameError("optimize mode", mode, MODES)
    if mode == "bf16":
        return bf16_support(device)
    if mode == "fp16":
        return fp16_support(device)
    if mode in ("int8", "onnxruntime"):
        return onnxruntime_support(device, mode)
    return True, ""


def check_mode(mode: str, device: torch.device | str = "cpu") -> None:
    """Raise the one-line :class:`CnnlabError` of :func:`mode_support` (before any work is done)."""
    ok, reason = mode_support(mode, device)
    if not ok:
        raise CnnlabError(reason)


def calibration_batches(calibration: Any) -> list[torch.Tensor]:
    """Calibration inputs as a list of CPU float batches: a tensor (N, C, H, W) is cut into
    batches of 32; an iterable yields tensors or ``(x, y, ...)`` tuples (a DataLoader)."""
    if isinstance(calibration, torch.Tensor):
        return [b.detach().cpu().float() for b in calibration.split(CALIBRATION_CHUNK)]
    if isinstance(calibration, (str, bytes)) or not hasattr(calibration, "__iter__"):
        raise CnnlabTypeError(f"calibration must be a tensor (N, C, H, W) or an iterable of batches or (x, y) pairs "
                              f"(a DataLoader), got {type(calibration).__name__}")
    batches = []
    for item in calibration:
        x = item[0] if isinstance(item, (tuple, list)) and item else item
        if not isinstance(x, torch.Tensor):
            raise CnnlabTypeError(f"calibration batches must be tensors or (x, y) pairs, got {type(x).__name__}")
        batches.append(x.detach().cpu().float())
    if not batches:
        raise CnnlabValueError("calibration holds no batches; give a few hundred representative images")
    return batches


def _check_arguments(model: Any, mode: Any, example: Any, calibration: Any) -> None:
    """The arguments of :func:`optimize`, each wrong one in one sentence before any work."""
    check_type(model, nn.Module, "model", "an nn.Module (e.g. cnnlab.create_model('convnet'))")
    check_type(mode, str, "mode", f"a mode name ({', '.join(MODES)})")
    if not isinstance(example, torch.Tensor):
        hint = "; pass the tensor itself, e.g. x, not (x, x)" if isinstance(example, (tuple, list)) else ""
        raise CnnlabTypeError(f"example_input must be one tensor, a batch of images (N, C, H, W), got a "
                              f"{type(example).__name__}{hint}")
    if example.dim() != 4 or example.shape[0] < 1:
        raise CnnlabValueError(f"example_input must be a batch of images (N, C, H, W), got shape "
                               f"{tuple(example.shape)}" + ("; add the batch dimension: x.unsqueeze(0)"
                                                            if example.dim() == 3 else ""))
    if not example.is_floating_point():
        raise CnnlabTypeError(f"example_input must be a floating-point tensor (as the model's inputs), got "
                              f"{example.dtype}; convert it, e.g. x.float() / 255")
    if isinstance(calibration, torch.Tensor) and tuple(calibration.shape[1:]) != tuple(example.shape[1:]):
        raise CnnlabValueError(f"calibration images {tuple(calibration.shape)} must have the example's image shape "
                               f"(N, {', '.join(map(str, example.shape[1:]))})")
    if calibration is not None and not isinstance(calibration, torch.Tensor) and (
            isinstance(calibration, (str, bytes)) or not hasattr(calibration, "__iter__")):
        calibration_batches(calibration)  # its one-line TypeError
    try:
        with torch.no_grad():
            copy.deepcopy(model).eval()(example[:1])
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CnnlabValueError(f"the model cannot run on example_input of shape {tuple(example.shape)} "
                               f"({example.device}): {first}") from None


def _logits(out: Any) -> torch.Tensor:
    return (out[0] if isinstance(out, (tuple, list)) else out).float()


def relative_error(out: Any, ref: Any) -> float:
    """max |out - ref| / max |ref| (on the first output where there are several)."""
    out, ref = _logits(out), _logits(ref)
    return float((out.cpu() - ref.cpu()).abs().max() / ref.abs().max().clamp_min(1e-12))


def top1_agreement(out: Any, ref: Any) -> float:
    """Fraction of rows whose arg-max class is the same."""
    return float((_logits(out).argmax(1).cpu() == _logits(ref).argmax(1).cpu()).float().mean())


def _build(model: nn.Module, mode: str, example: torch.Tensor, calibration: Any) -> nn.Module:
    if mode == "eager":
        return EagerModule(copy.deepcopy(model))
    if mode == "channels_last":
        return ChannelsLastModule(model)
    if mode in ("compile", "bf16", "fp16"):
        autocast = {"compile": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
        return CompiledModule(model, example.device, autocast)
    onnx_model = export_onnx_bytes(model, example)
    if mode == "int8":
        batches = calibration_batches(calibration) if calibration is not None else [example.detach().cpu()]
        onnx_model = quantize_int8(onnx_model, batches)
    module = OnnxRuntimeModule(onnx_model)
    module.mode, module.precision = mode, PRECISION[mode]
    return module


def optimize(model: nn.Module, mode: str, example_input: torch.Tensor, calibration: Any = None) -> nn.Module:
    """``model`` (left untouched) as a module that computes the same function faster.

    Args:
        model: a module taking (N, C, H, W) images, on the device it should run on.
        mode: one of :data:`MODES` (see the table above).
        example_input: a batch of the shape it will see; the first call on it compiles, so
            ``setup_s`` of the result counts the compile (or the calibration) time.
        calibration: for ``int8`` (and ``auto``): representative inputs, a tensor or an iterable
            of batches or ``(x, y)`` pairs (a DataLoader); a few hundred images are enough.
            ``int8`` without it calibrates on ``example_input``. The same batches give the same model.

    Returns:
        an ``nn.Module`` with ``mode``, ``precision`` and ``setup_s``; ``auto`` adds ``chosen``
        (the mode it picked) and ``trials`` (each candidate's ms, error and agreement).
    """
    _check_arguments(model, mode, example_input, calibration)
    device = example_input.device
    check_mode(mode, device)
    if mode == "auto":
        return _auto(model, example_input, calibration)
    start = time.perf_counter()
    module = _build(model, mode, example_input, calibration)
    with torch.no_grad():
        module(example_input)  # the first call compiles (static shapes) or warms the session
    module.setup_s = time.perf_counter() - start
    return module


def _check_inputs(example: torch.Tensor, calibration: Any) -> list[torch.Tensor]:
    """The calibration images in batches of the example's size (what the compiled candidates were
    compiled for: checking them costs no further compile); the example itself without calibration."""
    if calibration is None:
        return [example]
    images = torch.cat(calibration_batches(calibration)).to(example.device)
    chunks = list(images.split(example.shape[0]))
    return chunks[:-1] if len(chunks) > 1 and len(chunks[-1]) < example.shape[0] else chunks


def _within_budget(mode: str, outs: list, refs: list) -> tuple[bool, float, float]:
    error = max(relative_error(o, r) for o, r in zip(outs, refs))
    n = sum(len(_logits(r)) for r in refs)
    agreement = sum(top1_agreement(o, r) * len(_logits(r)) for o, r in zip(outs, refs)) / n
    ok = error <= FP32_TOLERANCE if PRECISION[mode] == "fp32" else agreement >= MIN_AGREEMENT
    return ok, error, agreement


def _auto(model: nn.Module, example: torch.Tensor, calibration: Any, repeats: int = 5) -> nn.Module:
    """Build every candidate this machine runs, drop those outside the accuracy budget on the
    calibration batches (or the example), time the rest on the example, keep the fastest (a
    lower precision only where it beats the fastest fp32 mode by ``LOSSY_MARGIN``)."""
    start = time.perf_counter()
    inputs = _check_inputs(example, calibration)
    reference = EagerModule(copy.deepcopy(model))
    refs = [reference(x) for x in inputs]
    best: dict[bool, tuple[float, nn.Module]] = {}  # fp32 or not -> (ms, module)
    trials = []
    for mode in AUTO_CANDIDATES:
        if not mode_support(mode, example.device)[0] or (mode == "int8" and calibration is None):
            continue  # int8 is only chosen when calibration data can check it
        module = optimize(model, mode, example, calibration)
        ok, error, agreement = _within_budget(mode, [module(x) for x in inputs], refs)
        ms = time_fn(lambda: module(example), example.device, repeats=repeats).median * 1e3 if ok else None
        trials.append({"mode": mode, "ms": ms, "relative_error": error, "agreement": agreement, "within_budget": ok})
        exact = PRECISION[mode] == "fp32"
        if ok and ms < best.get(exact, (float("inf"), None))[0]:
            best[exact] = (ms, module)
    fp32_ms, chosen = best[True]  # eager is always within budget
    if False in best and best[False][0] * LOSSY_MARGIN < fp32_ms:
        chosen = best[False][1]
    auto = _AutoModule(chosen, trials)
    auto.setup_s = time.perf_counter() - start
    return auto


class _AutoModule(InferenceModule):
    """The fastest candidate ``auto`` found; ``chosen`` names it, ``trials`` lists them all."""

    mode = "auto"

    def __init__(self, module: nn.Module, trials: list[dict[str, Any]]):
        super().__init__()
        self.module = module
        self.chosen = getattr(module, "mode", "eager")
        self.precision = getattr(module, "precision", "fp32")
        self.trials = trials

    def forward(self, x: torch.Tensor):
        return self.module(x)

    def extra_repr(self) -> str:
        return f"chosen={self.chosen}, precision={self.precision}"
