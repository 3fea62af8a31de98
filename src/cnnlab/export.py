"""`cnnlab export RUN_DIR --format onnx [--quantize int8]`: an ONNX file checked against onnxruntime."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from cnnlab.errors import CnnlabError, RunDirError
from cnnlab.inference.onnx import OnnxRuntimeModule, export_onnx_bytes, quantize_int8
from cnnlab.inference.runs import predict_labels, run_calibration
from cnnlab.runs import LoadedRun, RunOutput, load_run
from cnnlab.storage import atomic_write


class _Normalize(torch.nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

__all__ = ["export_onnx", "export_onnx_int8"]

TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| on the logits
INT8_AGREEMENT = 0.99  # min top-1 agreement of the int8 model with PyTorch fp32 on test images


def _need_onnxruntime() -> None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise CnnlabError("ONNX export needs onnx, onnxscript and onnxruntime: pip install 'cnnlab[onnx]'") from None


def _model_taking_unit_images(run: LoadedRun) -> torch.nn.Module:
    """The run's model, normalising its input itself where the run's data was normalised."""
    model = run.model.to(memory_format=torch.contiguous_format).eval()
    stats = run.preprocessing.normalize
    if stats is not None:  # the ONNX file takes [0, 1] images, like the run's data before Normalize
        model = torch.nn.Sequential(_Normalize(*stats), model).eval()
    return model


def _export_path(run_dir: str | os.PathLike, out: str | os.PathLike | None, default_name: str,
                 overwrite: bool) -> Path:
    """The file to write: ``out`` or ``RUN/default_name``; an existing one only with ``overwrite``."""
    path = Path(out) if out is not None else Path(run_dir) / default_name
    if path.exists() and not overwrite:
        load_run(run_dir, "cpu")  # a run that cannot be read says so first
        raise RunDirError(f"{path} already exists; pass --overwrite or choose another --out")
    return path


def export_onnx(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *, overwrite: bool = False,
                check_batch: int = 3, seed: int = 0) -> tuple[Path, float]:
    """Export a run's model (dynamic batch size, input ``images`` NCHW float in [0, 1], output
    ``logits``) and check it with onnxruntime. Returns (path, max abs difference).

    Into the run directory (the default) it holds the run's lock while it reads model.pt and
    writes, and records which model.pt the file came from (:class:`cnnlab.runs.RunOutput`)."""
    _need_onnxruntime()
    path = _export_path(run_dir, out, "model.onnx", overwrite)
    with RunOutput(run_dir, path, "export") as output:
        run = load_run(run_dir, "cpu")
        model = _model_taking_unit_images(run)
        c, h, w = run.input_shape
        onnx_model = export_onnx_bytes(model, torch.rand(2, c, h, w, generator=torch.Generator().manual_seed(seed)))
        x = torch.rand(check_batch, c, h, w, generator=torch.Generator().manual_seed(seed + 1))
        with torch.no_grad():
            diff = float((OnnxRuntimeModule(onnx_model)(x) - model(x)).abs().max())
        if diff > TOLERANCE:
            raise CnnlabError(f"the exported model differs from PyTorch by {diff:.2e} (> {TOLERANCE:g}); not written")
        atomic_write(path, onnx_model)  # one file, weights inside: it can be copied alone
        output.record(path, run=run)
    return path, diff


def export_onnx_int8(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *, overwrite: bool = False,
                     data_dir: str | None = None, calibration_images: int = 256, seed: int = 0,
                     check_images: int = 1000) -> tuple[Path, float, int]:
    """Export a run's model as int8 ONNX (static QDQ, calibrated on ``calibration_images`` training
    images drawn with ``seed``; same input and output as :func:`export_onnx`), checked with
    onnxruntime on the first ``check_images`` test images: written (atomically, weights inside)
    only if its top-1 agrees with PyTorch fp32 on >= 99% of them. Returns (path, agreement, checked).
    Locked and recorded as :func:`export_onnx`."""
    _need_onnxruntime()
    path = _export_path(run_dir, out, "model.int8.onnx", overwrite)
    with RunOutput(run_dir, path, "export --quantize int8") as output:
        run = load_run(run_dir, "cpu")
        model = _model_taking_unit_images(run)
        calibration = run_calibration(run, data_dir, images=calibration_images, seed=seed, normalized=False)
        onnx_int8 = quantize_int8(export_onnx_bytes(model, calibration[0]), calibration)
        test = run.split("test", data_dir)
        test = test.subset(torch.arange(min(check_images, len(test))))
        got, _ = predict_labels(OnnxRuntimeModule(onnx_int8), test, 256)
        expected, _ = predict_labels(model, test, 256)
        agreement = float((got == expected).float().mean())
        if agreement < INT8_AGREEMENT:
            raise CnnlabError(f"the int8 model agrees with PyTorch on only {100 * agreement:.2f}% of {len(test)} "
                              f"test images (< {100 * INT8_AGREEMENT:.0f}%); not written")
        atomic_write(path, onnx_int8)
        output.record(path, run=run)
    return path, agreement, len(test)
