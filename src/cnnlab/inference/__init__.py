"""Fast inference: ``optimize(model, mode, example_input, calibration=None)`` and the
benchmark behind ``cnnlab bench infer``.

- ``modes.py``: ``optimize`` and its modes (eager, channels_last, compile, bf16, fp16, onnxruntime, int8, auto),
  their availability on this machine, the accuracy budget
- ``modules.py``: the modules it returns (eager, channels-last, compiled)
- ``onnx.py``: ONNX Runtime behind an ``nn.Module``; static int8 QDQ quantization
- ``capability.py``: what the CPU/GPU runs fast (AVX-512-BF16, AMX, VNNI, CUDA)
- ``runs.py``: a run directory's model, calibration batches and splits, optimized
- ``bench.py``: every mode against eager and ONNX Runtime, interleaved, through ``runtime.time_fn``
"""

from cnnlab.inference.modules import InferenceModule, fold_batchnorm
from cnnlab.inference.modes import (FP32_TOLERANCE, MIN_AGREEMENT, MODES, PRECISION, calibration_batches, check_mode,
                                   mode_support, optimize, relative_error, top1_agreement)

__all__ = ["optimize", "MODES", "PRECISION", "FP32_TOLERANCE", "MIN_AGREEMENT", "mode_support", "check_mode",
           "calibration_batches", "relative_error", "top1_agreement", "InferenceModule", "fold_batchnorm"]
