"""ONNX Runtime as an inference engine behind an ``nn.Module``: fp32, and int8 by static QDQ
quantization (calibrated on sample batches).

Measured on this project's 2-core AVX-512 machine (docs/BENCHMARKS.md), ONNX Runtime's int8
QDQ kernels (VNNI) beat every PyTorch int8 path: torchao's PT2E + x86 Inductor quantizer ran
about half as fast and took minutes to calibrate and compile. So ``cnnlab.optimize(model,
"int8")`` exports the model to ONNX, quantizes it here and wraps the session in
:class:`OnnxRuntimeModule`, which takes and returns torch tensors.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError
from cnnlab.inference.capability import cpu_flags
from cnnlab.inference.modules import InferenceModule

__all__ = ["export_onnx_bytes", "make_session", "OnnxRuntimeModule", "quantize_int8", "INPUT", "OUTPUT"]

INPUT, OUTPUT = "images", "logits"


def export_onnx_bytes(model: nn.Module, example: torch.Tensor) -> bytes:
    """``model`` (eval, on the CPU) as a self-contained ONNX model with a dynamic batch size:
    input ``images`` (N, C, H, W) float32, output ``logits``."""
    model = copy.deepcopy(model).cpu().eval().to(memory_format=torch.contiguous_format)
    x = example.detach().cpu().float().contiguous()
    if x.shape[0] < 2:  # a batch of 1 would let the exporter specialise the batch dimension to 1
        x = torch.cat([x, x])
    batch = torch.export.Dim("batch", min=1, max=65536)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(model, (x,), None, input_names=[INPUT], output_names=[OUTPUT],
                                        dynamic_shapes=({0: batch},), dynamo=True, external_data=False)
        except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds; say which model
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise CnnlabError(f"{type(model).__name__} cannot be exported to ONNX ({first}); "
                              f"use an optimize mode that stays in PyTorch (compile, channels_last)") from None
    return program.model_proto.SerializeToString()


def make_session(model: bytes, threads: int | None = None):
    """A CPU ``InferenceSession`` using ``threads`` intra-op threads (default: torch's count)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: the CLI's stderr stays clean
    # no busy-waiting between calls: spinning threads would steal the cores from PyTorch's next call
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class OnnxRuntimeModule(InferenceModule):
    """An ONNX Runtime session that behaves like the ``nn.Module`` it was exported from:
    torch tensors in (any memory format; moved to the CPU as float32), torch tensors out.

    ``onnx_model`` holds the serialized model (``Path("m.onnx").write_bytes(m.onnx_model)``).
    """

    def __init__(self, onnx_model: bytes, threads: int | None = None):
        super().__init__()
        self.mode = "onnxruntime"
        self.onnx_model = onnx_model
        self.session = make_session(onnx_model, threads)
        self._outputs = [o.name for o in self.session.get_outputs()]

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        outs = self.session.run(self._outputs, {INPUT: array})
        tensors = tuple(torch.from_numpy(o) for o in outs)
        return tensors[0] if len(tensors) == 1 else tensors

    def __deepcopy__(self, memo) -> "OnnxRuntimeModule":  # a session cannot be copied: open another
        copied = OnnxRuntimeModule(self.onnx_model, self.session.get_session_options().intra_op_num_threads)
        copied.mode, copied.precision, copied.setup_s = self.mode, self.precision, self.setup_s
        return copied

    def extra_repr(self) -> str:
        return f"mode={self.mode}, precision={self.precision}, onnxruntime CPU, {len(self.onnx_model) / 2**20:.1f} MiB"


class _BatchReader:
    """ONNX Runtime's ``CalibrationDataReader``: one ``{images: array}`` per calibration batch."""

    def __init__(self, batches: Sequence[torch.Tensor]):
        self._it = iter(batches)

    def get_next(self):
        batch = next(self._it, None)
        return None if batch is None else {INPUT: batch.detach().cpu().float().contiguous().numpy()}


def _vnni() -> bool:
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def _last_layer(path: Path) -> list[str]:
    """The name of the graph's last Conv/Gemm/MatMul node: the classifier head."""
    import onnx

    layers = [n.name for n in onnx.load(str(path)).graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    return layers[-1:]


def quantize_int8(onnx_model: bytes, calibration: Iterable[torch.Tensor], *, per_channel: bool = True,
                  reduce_range: bool | None = None, keep_head_fp32: bool = True) -> bytes:
    """Post-training static quantization (QDQ format) of an fp32 ONNX model: weights int8 per
    output channel, activations uint8 with ranges from the min/max seen on ``calibration``
    (deterministic: the same batches give the same model, byte for byte).

    ``keep_head_fp32``: the last layer (the classifier, a tiny share of the work) stays fp32, as
    common PTQ recipes do: measured on trained runs it halves the top-1 disagreements with fp32.
    ``reduce_range`` (7-bit weights) defaults to on only where the CPU lacks VNNI, as ONNX
    Runtime advises for x86.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = list(calibration)
    if not batches:
        raise CnnlabError("int8 quantization needs at least one calibration batch")
    reduce_range = (not _vnni()) if reduce_range is None else reduce_range
    with tempfile.TemporaryDirectory(prefix="cnnlab-int8-") as tmp, warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        src, pre, dst = (Path(tmp) / name for name in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        src.write_bytes(onnx_model)
        logging.disable(logging.WARNING)  # its progress and advice go to the root logger (stderr)
        try:
            quant_pre_process(str(src), str(pre))  # shape inference + graph fusions, as ONNX Runtime advises
            quantize_static(str(pre), str(dst), _BatchReader(batches), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                            nodes_to_exclude=_last_layer(pre) if keep_head_fp32 else None)
        finally:
            logging.disable(logging.NOTSET)
        return dst.read_bytes()
