"""The recipes on a GPU, and the lecture's cuDNN claim put to the test, in one script (< 3 min on an H200).

1. ``mnist-fast`` (3 seeds, eager; 1 seed with ``--compile``) and ``mnist-best`` (1 seed) on CUDA, data
   held on the device, exactly as ``cnnlab train --recipe NAME --device cuda`` runs them (``amp`` is
   float16 with a GradScaler there); two deterministic runs of mnist-fast seed 0 compared bit for bit.
2. The lecture: "cudnn.deterministic = True ... speed is about the same, often even a bit faster,
   sometimes a bit slower". Every model of the zoo at its default input, a few training steps (SGD,
   batch ``--batch``) timed with ``cudnn.deterministic=True, benchmark=False`` (cnnlab's
   ``--deterministic``) and with ``deterministic=False, benchmark=True`` (``--no-deterministic``),
   interleaved, median of the timed steps after warm-up (cuDNN's autotuning happens in the warm-up).

    CNNLAB_DATA=../shared/data .venv/bin/python benchmarks/gpu_recipes.py [--out gpu_recipes.json]
    .venv/bin/python benchmarks/gpu_recipes.py --device cpu --quick    # a smoke run of the same code

Results are printed as Markdown tables and written as JSON to ``--out`` (default ``$OUT/gpu_recipes.json``
when ``$OUT`` is set).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import cnnlab
from cnnlab.runtime import determinism, machine_line, time_fn
from cnnlab.training import Trainer
from cnnlab.training.recipes import recipe_config


def run_recipe(name: str, seed: int, device: str, overrides: dict) -> dict:
    trainer = Trainer(recipe_config(name, {"device": device, "seed": seed, **overrides}))
    result = trainer.fit()
    return {"recipe": name, "seed": seed, "compile": trainer.config.compile, "test_acc": result.test_acc,
            "train_seconds": result.train_seconds, "compile_seconds": result.compile_seconds,
            "per_epoch": [r.test_acc for r in result.history],
            "weights": {k: v.detach().cpu() for k, v in result.model.state_dict().items()}}


def recipes_part(device: str, quick: bool, plan: list[tuple[str, int, dict]], check_repeat: bool) -> list[dict]:
    small = {"epochs": 0.05} if quick else {}
    rows = []
    for name, seed, extra in plan:
        row = run_recipe(name, seed, device, {**small, **extra})
        rows.append(row)
        print(f"  {name} seed {seed}{' compiled' if row['compile'] else ''}: {row['test_acc']:.2f}% in "
              f"{row['train_seconds']:.2f} s training (compile {row['compile_seconds']:.1f} s)", flush=True)
    if check_repeat:
        again = run_recipe(*plan[0][:2], device, {**small, **plan[0][2]})
        first = rows[0]["weights"]
        bitwise = all(torch.equal(first[k], again["weights"][k]) for k in first)
        print(f"  {plan[0][0]} seed {plan[0][1]} twice, deterministic: weights bitwise equal: {bitwise}")
        rows.append({"recipe": plan[0][0], "seed": plan[0][1], "repeat_bitwise_equal": bitwise})
    for row in rows:
        row.pop("weights", None)
    return rows


def step_time(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, deterministic: bool,
              repeats: int) -> float:
    """Median seconds of one SGD training step under the cuDNN setting (warm-up: 2 steps)."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with determinism(deterministic, device):
        return time_fn(step, device, repeats=repeats, warmup=2).median


def zoo_part(device: torch.device, batch: int, repeats: int, budget_s: float, quick: bool) -> list[dict]:
    rows, start = [], time.perf_counter()
    for name in cnnlab.list_models():
        if time.perf_counter() - start > budget_s:
            print(f"  (time budget of {budget_s:.0f} s spent: {name} and later models not timed)")
            break
        info = cnnlab.get_model_info(name)
        side = min(info.input_size, 32) if quick else info.input_size
        torch.manual_seed(0)
        model = cnnlab.create_model(name, input_size=side).to(device)
        x = torch.randn(batch, info.in_channels, side, side, device=device)
        y = torch.randint(0, info.num_classes, (batch,), device=device)
        times = {True: [], False: []}
        for _ in range(2):  # interleaved: deterministic, benchmark, deterministic, benchmark
            for det in (True, False):
                times[det].append(step_time(model, x, y, device, det, repeats))
        det_ms, bench_ms = (1e3 * statistics.median(times[k]) for k in (True, False))
        rows.append({"model": name, "input": f"{info.in_channels}x{side}x{side}", "batch": batch,
                     "deterministic_ms": det_ms, "benchmark_ms": bench_ms, "ratio": det_ms / bench_ms})
        print(f"  {name:22s} {det_ms:8.2f} ms deterministic  {bench_ms:8.2f} ms benchmark  "
              f"deterministic/benchmark {det_ms / bench_ms:.2f}", flush=True)
        del model, x, y
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def print_markdown(recipes: list[dict], zoo: list[dict]) -> None:
    print("\n| recipe | seed | compiled | test accuracy % | training s | compile s |")
    print("|---|---:|---|---:|---:|---:|")
    for r in recipes:
        if "test_acc" in r:
            print(f"| {r['recipe']} | {r['seed']} | {'yes' if r['compile'] else 'no'} | {r['test_acc']:.2f} | "
                  f"{r['train_seconds']:.2f} | {r['compile_seconds']:.1f} |")
    print("\n| model | input | batch | ms/step deterministic | ms/step benchmark | deterministic / benchmark |")
    print("|---|---|---:|---:|---:|---:|")
    for z in zoo:
        print(f"| {z['model']} | {z['input']} | {z['batch']} | {z['deterministic_ms']:.2f} | "
              f"{z['benchmark_ms']:.2f} | {z['ratio']:.2f} |")
    if zoo:
        ratios = [z["ratio"] for z in zoo]
        faster = sum(r < 1 for r in ratios)
        print(f"\ndeterministic/benchmark: median {statistics.median(ratios):.2f}, range {min(ratios):.2f}-"
              f"{max(ratios):.2f}; deterministic faster for {faster} of {len(ratios)} models")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=32, help="batch of the zoo's training steps")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per model and setting")
    parser.add_argument("--zoo-budget", type=float, default=90.0, help="seconds for the zoo part at most")
    parser.add_argument("--compile-after", type=float, default=100.0,
                        help="skip the compiled run if this many seconds have passed before it")
    parser.add_argument("--quick", action="store_true", help="tiny runs (a smoke test of this script)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; run with --device cpu --quick for a smoke test", file=sys.stderr)
        return 2
    start = time.perf_counter()
    print(machine_line(device))
    if device.type == "cuda":
        print(f"cuDNN {torch.backends.cudnn.version()}, CUDA {torch.version.cuda}")
    print("recipes:")
    eager = [("mnist-fast", s, {}) for s in (0, 1, 2)] + [("mnist-best", 0, {})]
    recipes = recipes_part(args.device, args.quick, eager, check_repeat=True)
    print(f"zoo, batch {args.batch}, training steps:")
    zoo = zoo_part(device, 2 if args.quick else args.batch, 2 if args.quick else args.repeats, args.zoo_budget,
                   args.quick)
    if time.perf_counter() - start < args.compile_after:  # compiling (two batch shapes) is the slow part
        print("recipes, compiled:")
        recipes += recipes_part(args.device, args.quick, [("mnist-fast", 0, {"compile": True})], check_repeat=False)
    else:
        print(f"(over {args.compile_after:.0f} s already: the compiled run is skipped)")
    print_markdown(recipes, zoo)
    out = args.out or (Path(os.environ["OUT"]) / "gpu_recipes.json" if os.environ.get("OUT") else None)
    if out is not None:
        out.write_text(json.dumps({"machine": machine_line(device), "recipes": recipes, "zoo": zoo,
                                   "seconds": time.perf_counter() - start}, indent=2))
        print(f"wrote {out}")
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
