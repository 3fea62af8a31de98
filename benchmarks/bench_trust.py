"""How long `cnnlab trust` takes, end to end (test images loaded, Grad-CAM + saliency + integrated
gradients, cascading and independent randomization, deletion / insertion with the random and
centre maps, the figures and trust.json written): the two goals of issue 20.

- the lecture ConvNet on MNIST (28 px), 32 images, three methods: goal <= 30 s on a 2-core CPU
- ResNet-18 at 224 px (MNIST resized, 3 channels), 8 images, three methods: goal <= 3 min

Timing is the same with trained or random weights (the same passes run), so both use a registry
model with random weights. A figure for docs/BENCHMARKS.md, never a pass/fail threshold.

    .venv/bin/python benchmarks/bench_trust.py [--repeats 3] [--only convnet|resnet18]
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from cnnlab.runtime import machine_line, time_fn
from cnnlab.visualize.source import load_subject
from cnnlab.visualize.trust import TrustSettings, check_trust

CASES = {
    "convnet": (dict(source="convnet", dataset="mnist"), 32, 30.0),
    "resnet18": (dict(source="resnet18", dataset="mnist", input_size=224, in_channels=3, num_classes=10), 8, 180.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=sorted(CASES), default=None)
    args = parser.parse_args()
    print(machine_line())
    print("| model | images | methods | median s | min-max s | runs | goal s |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for name, (source, n, goal) in CASES.items():
        if args.only not in (None, name):
            continue
        torch.manual_seed(0)
        subject = load_subject(**source)
        settings = TrustSettings(n_images=n)
        with tempfile.TemporaryDirectory() as out:
            timing = time_fn(lambda: check_trust(subject, settings, out=out), repeats=args.repeats, warmup=1,
                             budget_s=goal)
        times = timing.times
        verdict = "within" if timing.median <= goal else "OVER"
        print(f"| {name} | {n} | gradcam, saliency, ig | {timing.median:.1f} | {min(times):.1f}-{max(times):.1f} | "
              f"{len(times)} | {goal:g} ({verdict}) |")


if __name__ == "__main__":
    main()
