"""CUDA checks for benchmarks/gpu_check.sh: device selection, determinism on cuDNN, speed.

1. `cnnlab train` on CUDA: deterministic twice (weights must be bitwise equal), then
   non-deterministic (cudnn.benchmark on); epoch times, test accuracy.
2. The lecture's claim about cuDNN's deterministic mode ("speed is about the same, often even
   a bit faster, sometimes a bit slower"): the same run timed both ways.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import torch

import cnnlab
from cnnlab.data import data_root
from cnnlab.training import TrainConfig, train


def main() -> None:
    assert torch.cuda.is_available(), "no CUDA device"
    print(f"torch {torch.__version__}, cuda {torch.version.cuda}, cudnn {torch.backends.cudnn.version()}, "
          f"device {torch.cuda.get_device_name(0)}, python {platform.python_version()}, cnnlab {cnnlab.__version__}")
    mnist = (data_root() / "MNIST" / "raw").is_dir()
    dataset = "mnist" if mnist else "digits"
    epochs = 5 if mnist else 30
    base = TrainConfig(dataset=dataset, epochs=epochs, device="cuda", download=False)
    print(f"recipe: ConvNet on {dataset}, SGD lr 0.05, batch 128, {epochs} epochs, seed 1")

    runs = {}
    for label, deterministic in (("deterministic", True), ("deterministic again", True), ("cudnn.benchmark", False)):
        start = time.perf_counter()
        result = train(base, write_run_dir=False, deterministic=deterministic)
        seconds = time.perf_counter() - start
        runs[label] = result
        epoch_s = statistics.median(r.seconds for r in result.history)
        print(f"{label:20s} total {seconds:6.2f} s | median epoch (training only) {epoch_s:.3f} s | "
              f"test {result.test_acc:.2f}%")
    a = runs["deterministic"].model.state_dict()
    b = runs["deterministic again"].model.state_dict()
    same = all(torch.equal(a[k], b[k]) for k in a)
    print(f"bitwise-identical weights across two deterministic CUDA runs: {same}")
    d = statistics.median(r.seconds for r in runs["deterministic again"].history)
    nd = statistics.median(r.seconds for r in runs["cudnn.benchmark"].history)
    print(f"deterministic / benchmark epoch time: {d / nd:.2f}x")


if __name__ == "__main__":
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    main()
