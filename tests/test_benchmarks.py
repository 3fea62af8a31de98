"""The benchmark scripts still run against the library they measure (bench_recipes.py once called
attributes the layout step had moved, and nothing noticed): each imports, and the time-to-accuracy
benchmark runs one tiny recipe and one tiny peer. No timing is asserted."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from conftest import REPO

BENCHMARKS = sorted((REPO / "benchmarks").glob("*.py"))


def load(path: Path):
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_each_benchmark_imports(path):
    module = load(path)
    assert module.__doc__, f"{path.name} says what it measures"


def test_time_to_accuracy_runs_a_recipe_and_the_peer(mnist_root, monkeypatch):
    bench = load(REPO / "benchmarks" / "bench_recipes.py")
    monkeypatch.setenv("CNNLAB_DATA", str(mnist_root))
    row = bench.run_recipe("mnist-fastest", 0, {"epochs": 0.01})
    assert 0 < row["acc"] <= 100 and row["seconds"] >= row["train_seconds"] > 0
    assert row["images"] == 2 * 256 and row["flops_per_image"] > 0  # 1% of 60,000 images: 2 whole batches of 256
    assert row["tta_gflop"] >= 0 and row["tta_seconds"] >= 0
    peer_script = mnist_root.parent / "bench" / "naive_mnist.py"  # ../shared/bench beside ../shared/data
    if not peer_script.exists():
        pytest.skip(f"the naive peer is not at {peer_script}")
    peer = bench.run_peer(peer_script, 0, epochs="0.01")
    assert 0 < peer["acc"] <= 100 and peer["images"] == 2 * 256
