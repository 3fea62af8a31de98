"""`cnnlab export RUN_DIR --format onnx`: an ONNX file checked against onnxruntime."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import torch

from cnnlab.data import normalization
from cnnlab.errors import CnnlabError, RunDirError
from cnnlab.runs import load_run


class _Normalize(torch.nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

__all__ = ["export_onnx"]

TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| on the logits


def export_onnx(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *, overwrite: bool = False,
                check_batch: int = 3, seed: int = 0) -> tuple[Path, float]:
    """Export a run's model (dynamic batch size, input ``images`` NCHW float in [0, 1], output
    ``logits``) and check it with onnxruntime. Returns (path, max abs difference)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise CnnlabError("ONNX export needs onnx, onnxscript and onnxruntime: pip install 'cnnlab[onnx]'") from None
    run = load_run(run_dir, "cpu")
    path = Path(out) if out is not None else run.path / "model.onnx"
    if path.exists() and not overwrite:
        raise RunDirError(f"{path} already exists; pass --overwrite or choose another --out")
    model = run.model.to(memory_format=torch.contiguous_format).eval()
    stats = normalization(run.config.dataset, run.config.normalize)
    if stats is not None:  # the ONNX file takes [0, 1] images, like the run's data before Normalize
        model = torch.nn.Sequential(_Normalize(*stats), model).eval()
    c, h, w = run.input_shape
    example = torch.rand(2, c, h, w, generator=torch.Generator().manual_seed(seed))
    batch = torch.export.Dim("batch", min=1, max=65536)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            # external_data=False: the weights live inside the .onnx file, which can be copied alone
            torch.onnx.export(model, (example,), str(tmp), input_names=["images"], output_names=["logits"],
                              dynamic_shapes=({0: batch},), dynamo=True, external_data=False)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        x = torch.rand(check_batch, c, h, w, generator=torch.Generator().manual_seed(seed + 1))
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {"images": x.numpy()})[0]
        diff = float(abs(got - expected).max())
        if diff > TOLERANCE:
            raise CnnlabError(f"the exported model differs from PyTorch by {diff:.2e} (> {TOLERANCE:g}); not written")
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".data")):
            if leftover.exists():
                leftover.unlink()
    return path, diff
