"""CUDA checks of the cost accounting (issue 11), for a machine with a GPU; under a minute on a big one.

1. The estimated training peak (``training_cost(..., StepSettings(device="cuda"))``: the simulated
   step with 512-byte blocks and cuBLAS's workspace) against ``torch.cuda.max_memory_allocated`` of
   two real steps (the larger; deterministic cuDNN as ``cnnlab train`` runs), for a few models,
   optimizers and float16 autocast; the estimated inference peak against the measured one.
2. ``cnnlab summary resnet18 --train --measure --device cuda`` in a subprocess: exit 0, and it
   names the method.
3. ``--fit-memory`` on CUDA: the batch fitted to 1 GiB, run for real, stays within 1 GiB.

    .venv/bin/python benchmarks/gpu_costs.py
"""

from __future__ import annotations

import subprocess
import sys
import time

import torch

import cnnlab
from cnnlab.analysis.estimate import StepSettings
from cnnlab.analysis.measure import measure_inference_peak, measure_training_peak
from cnnlab.analysis.fit import fit_batch_size
from cnnlab.analysis.training import inference_peak, training_cost

MiB = 2**20
CASES = [("convnet", 256, "sgd", False), ("convnet", 256, "adam", True), ("resnet18", 32, "sgd", False),
         ("resnet18", 32, "adam", False), ("resnet18", 32, "momentum", True), ("resnet50", 16, "sgd", False),
         ("resnet50", 16, "adamw", True), ("vgg11", 8, "sgd", False), ("vgg11", 8, "adam", False)]


def meta(name: str):
    with torch.device("meta"):
        return cnnlab.create_model(name)


def training_rows() -> float:
    print("| model | batch | optimizer | amp | estimate MiB | measured MiB (steps) | error | inference est / measured MiB |")
    print("|---|---:|---|---|---:|---:|---:|---:|")
    worst = 0.0
    for name, batch, opt, amp in CASES:
        model, shape = meta(name), cnnlab.get_model_info(name).input_shape
        settings = StepSettings(optimizer=opt, amp=amp, device="cuda")
        est = training_cost(model, shape, batch, settings).memory.peak_bytes
        got = measure_training_peak(model, shape, batch, settings)
        torch.cuda.empty_cache()
        infer_est = inference_peak(model, shape, batch, settings)
        infer = measure_inference_peak(model, shape, batch, settings).peak_bytes
        torch.cuda.empty_cache()
        err = (est - got.peak_bytes) / got.peak_bytes
        worst = max(worst, abs(err))
        steps = ", ".join(f"{s / MiB:.1f}" for s in got.steps)
        print(f"| {name} | {batch} | {opt} | {amp} | {est / MiB:.1f} | {got.peak_bytes / MiB:.1f} ({steps}) | "
              f"{100 * err:+.1f}% | {infer_est / MiB:.1f} / {infer / MiB:.1f} |", flush=True)
    return worst


def cli_check() -> None:
    proc = subprocess.run([sys.executable, "-m", "cnnlab", "summary", "resnet18", "--train", "--measure", "--device",
                           "cuda", "--batch-size", "16"], capture_output=True, text=True, timeout=300)
    tail = [line for line in proc.stdout.splitlines() if "Measured" in line or "peak of the step" in line]
    print(f"cnnlab summary resnet18 --train --measure --device cuda: exit {proc.returncode}; " + " | ".join(tail))
    if proc.returncode != 0:
        print(proc.stderr[-2000:])


def fit_check() -> None:
    model, shape = meta("resnet18"), (3, 224, 224)
    fit = fit_batch_size(model, shape, "1GiB", StepSettings(device="cuda"))
    got = measure_training_peak(model, shape, fit.batch_size, fit.settings)
    torch.cuda.empty_cache()
    ok = "within" if got.peak_bytes <= fit.budget_bytes else "OVER"
    print(f"--fit-memory 1GiB (resnet18, sgd, cuda): batch {fit.batch_size}, estimated {fit.peak_bytes / MiB:.1f} MiB, "
          f"measured {got.peak_bytes / MiB:.1f} MiB: {ok} the budget")


def main() -> None:
    assert torch.cuda.is_available(), "no CUDA device"
    start = time.perf_counter()
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
          f"{torch.cuda.get_device_name(0)}")
    worst = training_rows()
    print(f"largest |error| of the training estimate on CUDA: {100 * worst:.1f}%")
    fit_check()
    cli_check()
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
