"""What :func:`cnnlab.analysis.analyze` returns: one :class:`ModelReport` per model inside a
:class:`Report`, with flat rows, CSV, JSON and a pandas frame; and where accuracies come from."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable


from cnnlab.analysis.html import report_html
from cnnlab.errors import RunDirError
from cnnlab.paths import check_folder
from cnnlab.runs import read_run_config, read_test_accuracy, run_dirs_under

__all__ = ["ModelReport", "Report", "IMAGENET_TOP1", "IMAGENET_SOURCE", "run_accuracies"]

# torchvision's documented ImageNet-1k top-1 accuracy (%) of its IMAGENET1K_V1 weights
# (https://pytorch.org/vision/stable/models.html, "Table of all available classification weights").
IMAGENET_TOP1 = {
    "vgg11": 69.020, "vgg11_bn": 70.370, "vgg13": 69.928, "vgg13_bn": 71.586, "vgg16": 71.592,
    "vgg16_bn": 73.360, "vgg19": 72.376, "vgg19_bn": 74.218, "resnet18": 69.758, "resnet34": 73.314,
    "resnet50": 76.130, "resnet101": 77.374, "resnet152": 78.312,
}
IMAGENET_SOURCE = "torchvision IMAGENET1K_V1 weights, documented top-1"


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
    # per batch size: forward_bytes (every output of the forward pass, nothing freed), training_bytes (the
    # tensors saved for backward), training_peak_bytes / inference_peak_bytes (estimated whole peaks, weights
    # and batch included), measured_inference_peak_bytes (where timed)[, cuda_peak_*]
    memory: list[dict] = field(default_factory=list)
    timing: list[dict] = field(default_factory=list)  # per batch size: ms_per_batch, ms_per_image, images_per_s, ...
    accuracy: float | None = None
    accuracy_source: str | None = None
    per_layer: list[dict] | None = None
    training_flops: int = 0  # forward + backward FLOPs of one image in a training step (conv and linear layers)

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


@dataclass
class Report:
    models: list[ModelReport]
    machine: dict[str, Any]
    batch_sizes: list[int] = field(default_factory=list)  # the batch sizes measured, in order
    canziani: dict[str, Any] | None = None  # --canziani / --modern: the paper beside ours, the findings
    convention: str = "MACs = multiply-accumulates of conv and linear layers for one image; FLOPs = 2 x MACs; " \
                      "pooling, activation, normalisation and add element-ops are listed apart (other_ops)"

    def _repr_html_(self) -> str:
        """In a notebook: the page of ``cnnlab analyze --html`` inline (findings, the table, the four charts)."""
        return report_html(self)

    def to_dict(self) -> dict[str, Any]:
        out = {"machine": self.machine, "convention": self.convention, "models": [asdict(m) for m in self.models]}
        if self.canziani is not None:
            out["canziani"] = self.canziani
        return out

    def to_rows(self) -> list[dict[str, Any]]:
        """One flat row per model (batch-size columns for time and memory)."""
        rows = []
        for m in self.models:
            row: dict[str, Any] = {
                "name": m.name, "input": "x".join(map(str, m.input_shape)), "params": m.params,
                "trainable_params": m.trainable_params, "buffers": m.buffers, "param_MiB": m.param_bytes / 2**20,
                "macs": m.macs, "flops": m.flops, "gmacs": m.gmacs, "train_gflops_per_image": m.training_flops / 1e9,
                "accuracy": m.accuracy, "accuracy_source": m.accuracy_source, "unsupported": "; ".join(m.unsupported),
            }
            for k, v in m.other_ops.items():
                row[f"{k}_ops"] = v
            for mem in m.memory:
                b = mem["batch"]
                row[f"activations_all_outputs_MiB@{b}"] = mem["forward_bytes"] / 2**20
                row[f"activations_saved_for_backward_MiB@{b}"] = mem["training_bytes"] / 2**20
                for key, col in (("training_peak_bytes", "train_peak"), ("inference_peak_bytes", "infer_peak"),
                                 ("measured_inference_peak_bytes", "infer_peak_measured")):
                    if mem.get(key) is not None:
                        row[f"{col}_MiB@{b}"] = mem[key] / 2**20
            for t in m.timing:
                b = t["batch"]
                row[f"ms_per_image@{b}"] = t["ms_per_image"]
                row[f"images_per_s@{b}"] = t["images_per_s"]
                row[f"gflops@{b}"] = t["gflops"]
            rows.append(row)
        return rows

    def to_frame(self):
        """A pandas DataFrame with :meth:`to_rows` (pandas is a dependency of cnnlab)."""
        import pandas as pd  # ~0.5 s to import, paid by the callers of to_frame() alone

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


def run_accuracies(run_dirs: Iterable[str | os.PathLike]) -> dict[str, tuple[float, str]]:
    """Best test accuracy per model name found in cnnlab run directories (metrics.csv)."""
    found: dict[str, tuple[float, str]] = {}
    for run_dir in map(Path, run_dirs):
        if not os.path.lexists(run_dir):
            raise RunDirError(f"--runs {run_dir} does not exist: no cnnlab run directory (config.json) there")
        dirs = run_dirs_under(check_folder(run_dir, "--runs"))
        if not dirs:
            raise RunDirError(f"--runs {run_dir}: no cnnlab run directory (config.json) there or one level below")
        for d in dirs:
            config, acc = read_run_config(d), read_test_accuracy(d)
            if acc is None or not isinstance(config.get("model"), str):
                continue
            name = config["model"]
            if name not in found or acc > found[name][0]:
                found[name] = (acc, f"{config.get('dataset')} test, run {d}")
    return found
