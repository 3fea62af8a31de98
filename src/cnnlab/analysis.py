"""The Canziani, Paszke & Culurciello (2016) analysis for any model.

"An analysis of deep neural network models for practical applications" (arXiv:1605.07678)
compares architectures by accuracy, operations, parameters, inference time vs batch size and
memory. :func:`analyze` measures all of these for any ``nn.Module``:

- parameters: total, trainable, non-trainable; buffers separately
- operations for one image, counted on the ``meta`` device by intercepting every ATen op:
  MACs of convolutions and matrix products (FLOPs = 2 x MACs), and, listed apart, the element
  operations of pooling, activations, normalisation and residual adds. Ops it does not know are
  listed by name (with the module that ran them), never silently counted as zero.
- memory: parameter bytes; activation bytes per batch size, forward-only (every tensor the
  forward pass produces) and training (tensors saved for backward), computed on ``meta``; on
  CUDA also the measured peak (``torch.cuda.max_memory_allocated``)
- time per batch size: median of ``repeats`` timed runs after warm-up, achieved GFLOP/s and its
  fraction of the machine's roof (a large float32 matrix multiply timed in the same run)
- accuracy: from cnnlab run directories, or torchvision's documented ImageNet top-1
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["ModelReport", "Report", "analyze", "analyze_models", "count_ops", "IMAGENET_TOP1", "measure_roof"]

# torchvision's documented ImageNet-1k top-1 accuracy (%) of its IMAGENET1K_V1 weights
# (https://pytorch.org/vision/stable/models.html, "Table of all available classification weights").
IMAGENET_TOP1 = {
    "vgg11": 69.020, "vgg11_bn": 70.370, "vgg13": 69.928, "vgg13_bn": 71.586, "vgg16": 71.592,
    "vgg16_bn": 73.360, "vgg19": 72.376, "vgg19_bn": 74.218, "resnet18": 69.758, "resnet34": 73.314,
    "resnet50": 76.130, "resnet101": 77.374, "resnet152": 78.312,
}
IMAGENET_SOURCE = "torchvision IMAGENET1K_V1 weights, documented top-1"

# ATen ops that move or view memory but compute nothing
_FREE = {
    "aten.empty", "aten.empty_like", "aten.empty_strided", "aten.zeros", "aten.zeros_like", "aten.ones", "aten.ones_like",
    "aten.view", "aten._unsafe_view", "aten.reshape", "aten.t", "aten.transpose", "aten.permute", "aten.expand",
    "aten.detach", "aten.clone", "aten.contiguous", "aten.flatten", "aten.squeeze", "aten.unsqueeze", "aten.slice",
    "aten.select", "aten.cat", "aten.stack", "aten.constant_pad_nd", "aten._to_copy", "aten.copy_", "aten.alias",
    "aten.lift_fresh", "aten.split", "aten.chunk", "aten.as_strided", "aten.new_empty", "aten.new_zeros", "aten.fill_",
    "aten.zero_", "aten.dropout", "aten.native_dropout", "aten.feature_dropout", "aten.unbind", "aten.index",
}
_ELEMENTWISE = {  # category, ops per output element
    "aten.relu": ("activation", 1), "aten.relu_": ("activation", 1), "aten.threshold": ("activation", 1),
    "aten.hardtanh": ("activation", 1), "aten.hardtanh_": ("activation", 1), "aten.sigmoid": ("activation", 1),
    "aten.tanh": ("activation", 1), "aten.gelu": ("activation", 1), "aten.silu": ("activation", 1),
    "aten.silu_": ("activation", 1), "aten.leaky_relu": ("activation", 1), "aten.leaky_relu_": ("activation", 1),
    "aten.add": ("add", 1), "aten.add_": ("add", 1), "aten.sub": ("add", 1), "aten.mul": ("elementwise", 1),
    "aten.mul_": ("elementwise", 1), "aten.div": ("elementwise", 1), "aten.div_": ("elementwise", 1),
    "aten.pow": ("elementwise", 1), "aten._softmax": ("activation", 3), "aten._log_softmax": ("activation", 3),
    "aten.native_batch_norm": ("norm", 2), "aten._native_batch_norm_legit_no_training": ("norm", 2),
    "aten._native_batch_norm_legit": ("norm", 2), "aten.native_layer_norm": ("norm", 5),
}


def _numel(shape: Sequence[int]) -> int:
    return math.prod(int(s) for s in shape)


class _OpCounter(TorchDispatchMode):
    """Counts MACs and element ops of every ATen op run under it (batch of one image)."""

    def __init__(self, module_stack: list[str]):
        super().__init__()
        self.stack = module_stack
        self.macs = 0
        self.other: dict[str, int] = {}
        self.unsupported: set[str] = set()
        self.macs_by_module: dict[str, int] = {}

    def _add(self, category: str, n: int) -> None:
        self.other[category] = self.other.get(category, 0) + int(n)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = str(func.overloadpacket)
        where = self.stack[-1] if self.stack else "model"
        first = out[0] if isinstance(out, (tuple, list)) else out
        if name == "aten.convolution":
            x, w = args[0], args[1]
            transposed = bool(args[6]) if len(args) > 6 else False
            k = _numel(w.shape[2:])
            # weight is (C_out, C_in/groups, k, k), or (C_in, C_out/groups, k, k) when transposed
            macs = _numel((x if transposed else first).shape) * w.shape[1] * k
            self.macs += macs
            self.macs_by_module[where] = self.macs_by_module.get(where, 0) + macs
        elif name in ("aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm"):
            a, b = (args[1], args[2]) if name in ("aten.addmm", "aten.baddbmm") else (args[0], args[1])
            macs = _numel(first.shape) * a.shape[-1]
            self.macs += macs
            self.macs_by_module[where] = self.macs_by_module.get(where, 0) + macs
        elif name in ("aten.max_pool2d_with_indices", "aten.max_pool2d", "aten.avg_pool2d", "aten.avg_pool3d"):
            kernel = args[1]
            self._add("pool", _numel(first.shape) * _numel(kernel if isinstance(kernel, (list, tuple)) else [kernel]))
        elif name in ("aten._adaptive_avg_pool2d", "aten.adaptive_max_pool2d", "aten.mean", "aten.sum"):
            self._add("pool", _numel(args[0].shape))
        elif name in _ELEMENTWISE:
            category, per = _ELEMENTWISE[name]
            self._add(category, per * _numel(first.shape))
        elif name not in _FREE:
            self.unsupported.add(f"{where} ({name})")
        return out


def count_ops(model: nn.Module, input_shape: Sequence[int]) -> _OpCounter:
    """Run one image of ``input_shape`` (C, H, W) through ``model`` under the op counter.

    The model should live on the ``meta`` device (no memory, no arithmetic); it runs in eval mode.
    """
    device = _device_of(model)
    stack: list[str] = []
    counter = _OpCounter(stack)
    handles = []

    def enter(m: nn.Module, inputs: Any) -> None:
        stack.append(type(m).__name__)

    def leave(m: nn.Module, inputs: Any, output: Any) -> None:  # returns None: the output is kept
        stack.pop()

    for mod in model.modules():
        handles.append(mod.register_forward_pre_hook(enter))
        handles.append(mod.register_forward_hook(leave))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(torch.empty((1, *input_shape), device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return counter


def _device_of(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def activation_bytes(model: nn.Module, input_shape: Sequence[int], batch: int) -> tuple[int, int]:
    """(forward-only, training) activation bytes for one batch, computed on the ``meta`` device.

    Forward-only: every distinct tensor the leaf modules produce (what a forward pass writes if
    nothing were freed; in-place outputs counted once). Training: the tensors autograd saves for
    backward, parameters excluded.
    """
    meta = _to_meta(model)
    produced: dict[int, int] = {}
    alive: list[torch.Tensor] = []  # keep outputs alive so ids stay unique

    def on_output(m, i, o):
        if next(m.children(), None) is None:
            for t in (o if isinstance(o, (tuple, list)) else (o,)):
                if isinstance(t, torch.Tensor):
                    produced[id(t)] = t.numel() * t.element_size()
                    alive.append(t)

    handles = [m.register_forward_hook(on_output) for m in meta.modules()]
    x = torch.empty((batch, *input_shape), device="meta")
    was_training = meta.training
    try:
        meta.eval()
        with torch.no_grad():
            meta(x)
    finally:
        for h in handles:
            h.remove()
    params = {id(p) for p in meta.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor):
        base = t._base if t._base is not None else t
        if id(base) not in params and id(t) not in params:
            saved[id(base)] = base.numel() * base.element_size()
            alive.append(base)
        return t

    meta.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            meta(x)
    finally:
        meta.train(was_training)
    return sum(produced.values()), sum(saved.values())


def activation_memory(model: nn.Module, input_shape: Sequence[int], batch_sizes: Sequence[int]) -> list[dict]:
    """:func:`activation_bytes` per batch size. Activations grow linearly with the batch, so two
    meta passes (batch 1 and 2) give every size: bytes(b) = bytes(1) + (b - 1) * (bytes(2) - bytes(1))."""
    f1, t1 = activation_bytes(model, input_shape, 1)
    f2, t2 = activation_bytes(model, input_shape, 2)
    return [{"batch": b, "forward_bytes": f1 + (b - 1) * (f2 - f1), "training_bytes": t1 + (b - 1) * (t2 - t1)}
            for b in batch_sizes]


def _to_meta(model: nn.Module) -> nn.Module:
    if _device_of(model).type == "meta":
        return model
    import copy

    meta = copy.deepcopy(model).to("meta")  # deepcopy of a small module; registry models come on meta
    return meta


@dataclass
class ModelReport:
    name: str
    input_shape: list[int]
    params: int
    trainable_params: int
    non_trainable_params: int
    buffers: int
    param_bytes: int
    macs: int  # conv + linear multiply-accumulates, one image
    flops: int  # 2 x macs
    other_ops: dict[str, int] = field(default_factory=dict)  # pool / activation / norm / add elements, one image
    unsupported: list[str] = field(default_factory=list)
    memory: list[dict] = field(default_factory=list)  # per batch size: forward_bytes, training_bytes[, cuda_peak_*]
    timing: list[dict] = field(default_factory=list)  # per batch size: ms_per_batch, ms_per_image, images_per_s, ...
    accuracy: float | None = None
    accuracy_source: str | None = None
    per_layer: list[dict] | None = None

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


@dataclass
class Report:
    models: list[ModelReport]
    machine: dict[str, Any]
    convention: str = "MACs = multiply-accumulates of conv and linear layers for one image; FLOPs = 2 x MACs; " \
                      "pooling, activation, normalisation and add element-ops are listed apart (other_ops)"

    def to_dict(self) -> dict[str, Any]:
        return {"machine": self.machine, "convention": self.convention, "models": [asdict(m) for m in self.models]}

    def to_rows(self) -> list[dict[str, Any]]:
        """One flat row per model (batch-size columns for time and memory)."""
        rows = []
        for m in self.models:
            row: dict[str, Any] = {
                "name": m.name, "input": "x".join(map(str, m.input_shape)), "params": m.params,
                "trainable_params": m.trainable_params, "buffers": m.buffers, "param_MB": m.param_bytes / 2**20,
                "macs": m.macs, "flops": m.flops, "gmacs": m.gmacs, "accuracy": m.accuracy,
                "accuracy_source": m.accuracy_source, "unsupported": "; ".join(m.unsupported),
            }
            for k, v in m.other_ops.items():
                row[f"{k}_ops"] = v
            for mem in m.memory:
                b = mem["batch"]
                row[f"act_fwd_MB@{b}"] = mem["forward_bytes"] / 2**20
                row[f"act_train_MB@{b}"] = mem["training_bytes"] / 2**20
            for t in m.timing:
                b = t["batch"]
                row[f"ms_per_image@{b}"] = t["ms_per_image"]
                row[f"images_per_s@{b}"] = t["images_per_s"]
                row[f"gflops@{b}"] = t["gflops"]
            rows.append(row)
        return rows

    def to_frame(self):
        """A pandas DataFrame with :meth:`to_rows` (pandas is a dependency of cnnlab)."""
        import pandas as pd

        return pd.DataFrame(self.to_rows())

    def to_csv(self) -> str:
        rows = self.to_rows()
        keys: list[str] = []
        for r in rows:
            keys += [k for k in r if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()

    def to_json(self) -> str:
        """A list with one object per model (``name``, ``params``, ``macs``, ``flops``, ...)."""
        return json.dumps([{**asdict(m), "machine": self.machine} for m in self.models], indent=2)


def machine_info(device: torch.device, roof_gflops: float | None) -> dict[str, Any]:
    from cnnlab.conv.bench import machine_line

    return {"description": machine_line(device), "device": str(device), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "roof_gflops": roof_gflops, "cpu_count": os.cpu_count()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_roof(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a large float32 matrix multiply (the best of torch.matmul and, on the CPU, oneDNN's GEMM)."""
    from cnnlab.conv.algorithms import gemm

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = 0.0
    fns = [lambda: a @ b] + ([lambda: gemm(a, b)] if device.type == "cpu" else [])
    with torch.inference_mode():
        for fn in fns:
            fn()
            _sync(device)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                _sync(device)
                times.append(time.perf_counter() - start)
            best = max(best, 2 * n**3 / statistics.median(times) / 1e9)
    return best


def time_model(model: nn.Module, input_shape: Sequence[int], batch_sizes: Sequence[int], device: torch.device,
               repeats: int, macs: int, roof: float | None, warmup: int = 2) -> list[dict]:
    out = []
    model.eval()
    for batch in batch_sizes:
        x = torch.randn((batch, *input_shape), device=device)
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            _sync(device)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                model(x)
                _sync(device)
                times.append(time.perf_counter() - start)
        s = statistics.median(times)
        gflops = 2 * macs * batch / s / 1e9
        out.append({"batch": batch, "ms_per_batch": 1e3 * s, "ms_per_image": 1e3 * s / batch,
                    "images_per_s": batch / s, "gflops": gflops, "roof_fraction": gflops / roof if roof else None,
                    "repeats": repeats})
    return out


def _per_layer(model: nn.Module, input_shape: Sequence[int], name: str) -> list[dict]:
    from cnnlab.summary import summarize

    return [{"layer": r.name, "type": r.type, "output": r.output_shape, "params": r.params, "macs": r.macs}
            for r in summarize(model, input_shape, name=name).layers]


def analyze(
    model: nn.Module,
    input_shape: Sequence[int],
    batch_sizes: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
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
) -> "Report":
    """Analyse one model (any ``nn.Module``); see the module docstring for what is measured."""
    device = torch.device(device)
    roof = roof_gflops if roof_gflops is not None or not timing else measure_roof(device)
    report = _analyze_one(model, list(input_shape), batch_sizes, device, name or type(model).__name__, timing,
                          repeats, per_layer, accuracy, accuracy_source, roof, meta_model)
    return Report([report], machine_info(device, roof))


def _analyze_one(model, input_shape, batch_sizes, device, name, timing, repeats, per_layer, accuracy,
                 accuracy_source, roof, meta_model=None) -> ModelReport:
    meta = meta_model if meta_model is not None else _to_meta(model)
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
    if timing and _device_of(model).type != "meta":
        real = model.to(device)
        rep.timing = time_model(real, input_shape, batch_sizes, device, repeats, counter.macs, roof)
        if device.type == "cuda":
            for mem in rep.memory:
                mem.update(_cuda_peaks(real, input_shape, mem["batch"], device))
    return rep


def _cuda_peaks(model: nn.Module, input_shape: Sequence[int], batch: int, device: torch.device) -> dict[str, int]:
    x = torch.randn((batch, *input_shape), device=device)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    with torch.inference_mode():
        model.eval()(x)
    torch.cuda.synchronize(device)
    fwd = torch.cuda.max_memory_allocated(device) - base
    torch.cuda.reset_peak_memory_stats(device)
    model.train()
    model(x).sum().backward()
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize(device)
    train = torch.cuda.max_memory_allocated(device) - base
    model.eval()
    return {"cuda_peak_forward_bytes": fwd, "cuda_peak_training_bytes": train}


def run_accuracies(run_dirs: Iterable[str | os.PathLike]) -> dict[str, tuple[float, str]]:
    """Best test accuracy per model name found in cnnlab run directories (metrics.csv)."""
    from cnnlab.errors import RunDirError

    found: dict[str, tuple[float, str]] = {}
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        dirs = [run_dir] if (run_dir / "config.json").is_file() else sorted(p.parent for p in run_dir.glob("*/config.json"))
        if not dirs:
            raise RunDirError(f"--runs {run_dir}: no cnnlab run directory (config.json) there or one level below")
        for d in dirs:
            config = json.loads((d / "config.json").read_text())["config"]
            result_file = d / "result.json"
            if result_file.is_file():  # the final (selected) model's test accuracy
                accs = [float(json.loads(result_file.read_text())["test_acc"])]
            else:
                with open(d / "metrics.csv") as fh:
                    accs = [float(r["test_acc"]) for r in csv.DictReader(fh) if r.get("test_acc")]
            if accs:
                acc = accs[-1]
                name = config["model"]
                if name not in found or acc > found[name][0]:
                    found[name] = (acc, f"{config['dataset']} test, run {d}")
    return found


def analyze_models(
    names: Sequence[str],
    batch_sizes: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
    device: str | torch.device = "cpu",
    *,
    input_shape: Sequence[int] | None = None,
    timing: bool = True,
    repeats: int = 10,
    per_layer: bool = False,
    run_dirs: Sequence[str | os.PathLike] = (),
    on_model=None,
) -> Report:
    """Analyse registry models at their default input (or ``input_shape``)."""
    from cnnlab.models import create_model, get_model_info

    device = torch.device(device)
    infos = [get_model_info(n) for n in names]  # unknown names fail before any work
    accuracies = run_accuracies(run_dirs)
    roof = measure_roof(device) if timing else None
    reports = []
    for info in infos:
        shape = list(input_shape) if input_shape is not None else list(info.input_shape)
        with torch.device("meta"):
            meta = create_model(info.name, in_channels=shape[0], input_size=shape[1])
        model = create_model(info.name, in_channels=shape[0], input_size=shape[1]) if timing else meta
        acc, source = accuracies.get(info.name, (IMAGENET_TOP1.get(info.name), IMAGENET_SOURCE))
        if info.name not in accuracies and info.name not in IMAGENET_TOP1:
            source = None
        rep = _analyze_one(model, shape, batch_sizes, device, info.name, timing, repeats, per_layer, acc, source,
                           roof, meta_model=meta)
        reports.append(rep)
        del model
        if on_model is not None:
            on_model(rep)
    return Report(reports, machine_info(device, roof))
