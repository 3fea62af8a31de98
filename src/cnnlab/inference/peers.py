"""The peers ``cnnlab bench infer`` times beside cnnlab's modes: ONNX Runtime as a user calls it
out of the box -- the model exported once, an ``InferenceSession`` with the same thread count,
numpy in and out; int8 by ``quantize_static`` with ONNX Runtime's default settings (QDQ,
per-tensor, signed 8-bit activations and weights, MinMax) on the same calibration batches."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch

from cnnlab.inference.onnx import _BatchReader

__all__ = ["PEERS", "ort_peer"]

PEERS = {"ort-fp32": "fp32", "ort-int8": "int8"}  # peer -> the precision it is compared in


def _session(model: bytes, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    # no busy-waiting between calls: spinning threads would steal the cores from PyTorch's next call
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _quantize_defaults(onnx_model: bytes, calibration: Sequence[torch.Tensor]) -> bytes:
    from onnxruntime.quantization import quantize_static

    with tempfile.TemporaryDirectory(prefix="cnnlab-peer-") as tmp, warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(onnx_model)
        logging.disable(logging.WARNING)  # its advice to pre-process goes to the root logger (stderr)
        try:
            quantize_static(str(src), str(dst), _BatchReader(list(calibration)))
        finally:
            logging.disable(logging.NOTSET)
        return dst.read_bytes()


def ort_peer(name: str, onnx_model: bytes, calibration: Sequence[torch.Tensor],
             threads: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable ``x -> logits`` running the peer ``name`` (``ort-fp32`` or ``ort-int8``)."""
    if name == "ort-int8":
        onnx_model = _quantize_defaults(onnx_model, calibration)
    session = _session(onnx_model, threads or torch.get_num_threads())
    input_name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {input_name: x.numpy()})[0])

    return run
