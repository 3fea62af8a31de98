"""`cnnlab train` (default recipe) against the lecture's own training loop, in one process.

The peer is the lecture notebook's loop (cnn-with-diff-init/default.ipynb) as written:
torchvision ``MNIST`` + ``ToTensor()`` + ``DataLoader(batch_size=128, shuffle=True)``,
the same ConvNet returning ``(logits, probas)``, SGD lr 0.05, 10 epochs, seed 1, a
"Cost" line every 50 batches, train accuracy over the whole train loader after every
epoch, test accuracy at the end. cnnlab runs its whole default job (``train()`` with a
run directory, so config/metrics/checkpoint/plot writing are included, and it scores the
test set every epoch, which the peer does not).

Each contender: one short warm-up, then ``--repeats`` full runs; medians reported.

    CNNLAB_DATA=../shared/data .venv/bin/python benchmarks/bench_train.py [--epochs 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import cnnlab
from cnnlab.data import data_root
from cnnlab.runtime import cpu_name
from cnnlab.training import TrainConfig, train


def lecture_loop(root: str, epochs: int, seed: int = 1, quiet: bool = True) -> tuple[float, float]:
    """The notebook's loop, verbatim in structure. Returns (seconds, test accuracy %)."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    start = time.perf_counter()
    train_dataset = datasets.MNIST(root=root, train=True, transform=transforms.ToTensor(), download=False)
    test_dataset = datasets.MNIST(root=root, train=False, transform=transforms.ToTensor())
    train_loader = DataLoader(dataset=train_dataset, batch_size=128, shuffle=True)
    test_loader = DataLoader(dataset=test_dataset, batch_size=128, shuffle=False)

    torch.manual_seed(seed)
    model = cnnlab.with_probas(cnnlab.create_model("convnet"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)

    def compute_accuracy(model, data_loader):
        correct_pred, num_examples = 0, 0
        for features, targets in data_loader:
            logits, probas = model(features)
            _, predicted_labels = torch.max(probas, 1)
            num_examples += targets.size(0)
            correct_pred += (predicted_labels == targets).sum()
        return correct_pred.float() / num_examples * 100

    for epoch in range(epochs):
        model = model.train()
        for batch_idx, (features, targets) in enumerate(train_loader):
            logits, probas = model(features)
            cost = F.cross_entropy(logits, targets)
            optimizer.zero_grad()
            cost.backward()
            optimizer.step()
            if not batch_idx % 50 and not quiet:
                print(f"Epoch: {epoch + 1:03d}/{epochs:03d} | Batch {batch_idx:03d}/{len(train_loader):03d} | Cost: {cost:.4f}")
            elif not batch_idx % 50:
                float(cost.detach())  # the notebook formats the cost every 50 batches
        model = model.eval()
        with torch.set_grad_enabled(False):
            train_acc = compute_accuracy(model, train_loader)
        if not quiet:
            print(f"Epoch: {epoch + 1:03d}/{epochs:03d} training accuracy: {train_acc:.2f}%")
    with torch.set_grad_enabled(False):
        test_acc = float(compute_accuracy(model, test_loader))
    return time.perf_counter() - start, test_acc


def cnnlab_run(root: str, epochs: int, seed: int = 1, train_eval: str = "running") -> tuple[float, float]:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(epochs=epochs, seed=seed, data_dir=root, out=str(Path(tmp) / "run"), train_eval=train_eval)
        result = train(config)
    return time.perf_counter() - start, result.test_acc


def cnnlab_full_run(root: str, epochs: int, seed: int = 1) -> tuple[float, float]:
    """Same monitoring work as the notebook: a full train-set pass after every epoch."""
    return cnnlab_run(root, epochs, seed, train_eval="full")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=None, help="folder holding MNIST/raw [default: $CNNLAB_DATA]")
    args = parser.parse_args()
    root = str(data_root(args.data_dir))

    print(f"machine: {platform.machine()} {cpu_name()}, {os.cpu_count()} logical CPUs, {platform.platform()}")
    print(f"torch {torch.__version__}, torchvision {__import__('torchvision').__version__}, "
          f"threads {torch.get_num_threads()}, python {platform.python_version()}, cnnlab {cnnlab.__version__}")
    print(f"recipe: ConvNet, MNIST, SGD lr 0.05, batch 128, seed 1, {args.epochs} epochs; {args.repeats} timed runs each")

    # warm-up: one epoch of each (imports, allocator, oneDNN primitive caches)
    contenders = {
        "lecture loop": lecture_loop,
        "cnnlab train": cnnlab_run,
        "cnnlab train --train-eval full": cnnlab_full_run,
    }
    for fn in contenders.values():
        fn(root, 1)

    results: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    for r in range(args.repeats):
        for name, fn in contenders.items():
            gc.collect()  # the previous contender's garbage is not collected on the next one's clock
            seconds, acc = fn(root, args.epochs)
            results[name].append((seconds, acc))
            print(f"  run {r + 1}: {name:31s} {seconds:7.1f} s  test {acc:.2f}%", flush=True)

    med = {name: statistics.median(s for s, _ in runs) for name, runs in results.items()}
    print()
    print("| contender | median wall time (s) | runs (s) | test accuracy (%) | speed-up vs lecture loop |")
    print("|---|---:|---|---|---:|")
    for name, runs in results.items():
        times = ", ".join(f"{s:.1f}" for s, _ in runs)
        accs = ", ".join(f"{a:.2f}" for _, a in runs)
        print(f"| {name} | {med[name]:.1f} | {times} | {accs} | {med['lecture loop'] / med[name]:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
