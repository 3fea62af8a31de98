"""What this machine can run fast: the checks behind "bf16 needs AVX-512-BF16 or AMX" and
"int8 runs on the CPU". Each check answers (available, reason) so that a mode the machine
cannot run is refused with one line saying why and what to use instead."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import torch

__all__ = ["cpu_flags", "cpu_capability", "bf16_support", "onnxruntime_support", "fp16_support"]

_AVX512_OR_BETTER = ("AVX512", "AVX512_VNNI", "AVX512_BF16", "AMX", "AMX_BF16", "AMX_FP16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The ``flags`` of /proc/cpuinfo (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_capability() -> str:
    """ATen's vector ISA (``AVX512``, ``AVX2``, ...; ``ATEN_CPU_CAPABILITY`` lowers it)."""
    return str(torch.backends.cpu.get_cpu_capability()).upper()


def _has_native_bf16() -> bool:
    """AVX-512-BF16 or AMX-BF16, as PyTorch's cpuinfo (else /proc/cpuinfo) sees it."""
    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    for probe in probes:
        try:
            if probe is not None and probe():
                return True
        except RuntimeError:
            pass
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def bf16_support(device: torch.device) -> tuple[bool, str]:
    """bf16 pays where the hardware multiplies bf16 natively: a CUDA GPU that supports it, or a
    CPU with AVX-512-BF16 or AMX (elsewhere oneDNN emulates it, slower than fp32)."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return True, ""
        return False, f"bf16 needs a GPU that supports it ({torch.cuda.get_device_name(device)} does not); use fp16"
    capability = cpu_capability()
    if capability in _AVX512_OR_BETTER and _has_native_bf16():
        return True, ""
    return False, (f"bf16 needs a CPU with AVX-512-BF16 or AMX (this one: {capability}, without native bf16), "
                   f"where it would run slower than fp32; use compile or int8")


def fp16_support(device: torch.device) -> tuple[bool, str]:
    """fp16 autocast on CUDA; on the CPU there are no fast fp16 convolutions (use bf16)."""
    if device.type == "cuda":
        return True, ""
    return False, "fp16 runs on CUDA only (the CPU has no fast fp16 convolutions); on the CPU use bf16 or int8"


def onnxruntime_support(device: torch.device, mode: str) -> tuple[bool, str]:
    """ONNX Runtime's CPU engine: installed, and the model on the CPU."""
    if device.type != "cpu":
        other = "bf16 or fp16" if mode == "int8" else "compile"
        return False, f"{mode} runs on the CPU (ONNX Runtime's CPU engine), not on {device.type}; use {other} there"
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnxscript") is None:
        return False, f"{mode} needs onnx, onnxscript and onnxruntime: pip install 'cnnlab[onnx]'"
    return True, ""
