"""Training memory: cnnlab's estimate (a simulated step) against the measured peak of real steps,
and the naive sum of the parts (what a summary that adds parameters, gradients, optimizer state and
activations would say), for the ConvNet, VGG-11, ResNet-18 and ResNet-50 at two batch sizes each.

Estimate: :func:`cnnlab.analysis.training.training_cost` (fake-tensor simulation of the trainer's
step, steady state, plus the CPU kernel workspace rules). Measured: two real steps of the same
model (random weights and inputs) in this process, each step's peak from ``torch.profiler``'s
memory events (the c10 CPU allocator's running total plus the tensor bytes alive at the start);
the table shows the larger (step 2, the steady state). Also the time of the whole zoo's training
summary (``summarize_model(name, train=True)`` for every registered model).

    .venv/bin/python benchmarks/bench_memory.py [--quick] [--optimizers sgd,momentum,adam] [--layouts cl,nchw]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

import cnnlab
from cnnlab.analysis.estimate import StepSettings
from cnnlab.analysis.measure import measure_training_peak
from cnnlab.analysis.training import training_cost
from cnnlab.runtime import cpu_name
from cnnlab.summary import summarize_model

MiB = 2**20
CONFIGS = [("convnet", (128, 1024)), ("vgg11", (2, 8)), ("resnet18", (8, 32)), ("resnet50", (2, 8))]


def row(name: str, batch: int, settings: StepSettings) -> dict:
    with torch.device("meta"):
        model = cnnlab.create_model(name)
    shape = cnnlab.get_model_info(name).input_shape
    start = time.perf_counter()
    cost = training_cost(model, shape, batch, settings)
    est_s = time.perf_counter() - start
    measured = measure_training_peak(model, shape, batch, settings)
    mem = cost.memory
    return {"model": name, "batch": batch, "settings": settings.describe(), "estimate": mem.peak_bytes,
            "measured": measured.peak_bytes, "steps": measured.steps, "sum": mem.sum_bytes, "at": mem.peak_at,
            "est_s": est_s}


def zoo_time() -> float:
    start = time.perf_counter()
    for name in cnnlab.list_models():
        summarize_model(name, train=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="The ConvNet and ResNet-18 only, SGD.")
    ap.add_argument("--optimizers", default="sgd,momentum,adam")
    ap.add_argument("--layouts", default="cl", help="cl (channels-last, the CPU default), nchw, or both: cl,nchw")
    args = ap.parse_args()
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"Python {platform.python_version()}, cnnlab {cnnlab.__version__}")
    print(f"whole zoo, training summary (batch 1, SGD): {zoo_time():.1f} s for {len(cnnlab.list_models())} models")
    configs = [c for c in CONFIGS if c[0] in ("convnet", "resnet18")] if args.quick else CONFIGS
    optimizers = ["sgd"] if args.quick else args.optimizers.split(",")
    print("| model | batch | optimizer, precision, layout | estimate MiB | measured MiB (step 1, 2) | error | "
          "naive sum MiB | sum's error | the peak comes in |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---|")
    worst = 0.0
    for name, batches in configs:
        for batch in batches:
            for layout in args.layouts.split(","):
                for opt in optimizers:
                    r = row(name, batch, StepSettings(optimizer=opt, channels_last=layout == "cl"))
                    err = (r["estimate"] - r["measured"]) / r["measured"]
                    worst = max(worst, abs(err))
                    steps = ", ".join(f"{s / MiB:.1f}" for s in r["steps"])
                    print(f"| {name} | {batch} | {r['settings']} | {r['estimate'] / MiB:.1f} | {steps} | "
                          f"{100 * err:+.1f}% | {r['sum'] / MiB:.1f} | {100 * (r['sum'] - r['measured']) / r['measured']:+.0f}% "
                          f"| {r['at']} |", flush=True)
    print(f"largest |error| of the estimate: {100 * worst:.2f}%")


if __name__ == "__main__":
    main()
