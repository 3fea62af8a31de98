"""Time to accuracy: cnnlab's MNIST recipes beside the naive peer, in one process.

The peer is ``../shared/bench/naive_mnist.py`` itself (a plain in-memory PyTorch loop: 3-conv BatchNorm
net, SGD-Nesterov + OneCycle, label smoothing, batch 256, 2 epochs), executed with ``runpy`` in this
process for every seed, so both sides share the interpreter, the thread pool and the machine's mood.
After an untimed warm-up (a few steps of each), every seed runs the peer and every recipe, the
order alternating from seed to seed. A recipe runs
through ``cnnlab.training.Trainer`` exactly as ``cnnlab train --recipe NAME --seed S`` would, without
a run directory.

Training seconds: the optimizer steps only -- for both sides data decoding and the test pass are
outside the clock (the peer's own ``time.perf_counter`` brackets its loop; cnnlab's
``TrainResult.train_seconds``). GFLOP/s = training FLOPs (forward + backward of every conv and linear
layer, ``cnnlab.analysis.training.training_cost``) / training seconds, beside the float32 roof of
``cnnlab.analysis.timing.roof_measurements`` (bf16 recipes can exceed a float32 roof).

    CNNLAB_DATA=../shared/data .venv/bin/python benchmarks/bench_recipes.py \\
        [--recipes mnist-fast,mnist-best] [--seeds 0,1,2,3,4] [--best-seeds 0,1,2] [--png time_to_accuracy.png]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import runpy
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab.analysis.estimate import StepSettings
from cnnlab.analysis.timing import roof_measurements
from cnnlab.analysis.training import training_cost
from cnnlab.runtime import machine_line
from cnnlab.training import Trainer
from cnnlab.training.recipes import recipe_config

REPO = Path(__file__).resolve().parents[1]
PEER = REPO.parent / "shared" / "bench" / "naive_mnist.py"
PEER_ARGS = ("2", "16", "256")  # epochs, width, batch: the peer
PEER_LINE = re.compile(r": ([\d.]+)% in ([\d.]+) s training")


def run_peer(path: Path, seed: int, epochs: str = PEER_ARGS[0]) -> dict:
    """The peer's script, run in this process; its printed line parsed."""
    argv, out = sys.argv, io.StringIO()
    sys.argv = [str(path), epochs, *PEER_ARGS[1:], str(seed)]
    try:
        with contextlib.redirect_stdout(out):
            scope = runpy.run_path(str(path), run_name="__main__")
    finally:
        sys.argv = argv
    match = PEER_LINE.search(out.getvalue())
    if match is None:
        raise RuntimeError(f"unexpected peer output: {out.getvalue()!r}")
    images = scope["steps"] * scope["bs"]
    return {"acc": float(match.group(1)), "seconds": float(match.group(2)), "images": images,
            "flops_per_image": _flops_per_image(scope["net"](scope["w"]), False)}


def _cost(model: torch.nn.Module, amp: bool):
    return training_cost(model, (1, 28, 28), 1, StepSettings(optimizer="nesterov", amp=amp))


def _flops_per_image(model: torch.nn.Module, amp: bool) -> int:
    return _cost(model, amp).training_flops


def _extra_views(trainer: Trainer) -> int:
    """How many extra views the run's test-time augmentation passes through the model on the test set
    (4 shifts per image, or per unsure image with ``--tta-margin``; 9 with flips)."""
    from cnnlab.data import iterate_batches
    from cnnlab.training.tta import tta_views

    c, p = trainer.config, trainer.parts
    per_image = len(tta_views(torch.zeros(1, 1, 2, 2), trainer.tta)[0]) - 1
    if c.tta_margin is None or c.tta_margin >= 1:
        return per_image * len(trainer.test_data)
    model, unsure = trainer.eval_model.eval(), 0
    with torch.inference_mode():
        for x, _ in iterate_batches(trainer.test_data, c.eval_batch_size, memory_format=p.prep.memory_format,
                                    normalize=p.prep.normalize):
            top2 = model(x).float().softmax(1).topk(2, dim=1).values
            unsure += int((top2[:, 0] - top2[:, 1] < c.tta_margin).sum())
    return per_image * unsure


def run_recipe(name: str, seed: int, overrides: dict) -> dict:
    """One recipe, one seed: accuracy (as the recipe scores it, and without TTA), seconds, curve.

    ``seconds`` is the optimizer steps' time plus, for a recipe with test-time augmentation, what
    the augmentation adds to the final test pass (that pass timed with and without it, the median of
    three each): the peer's plain test pass is outside its clock, so only the extra views count."""
    trainer = Trainer(recipe_config(name, {**overrides, "seed": seed}))
    result = trainer.fit()
    c = trainer.config
    plain_s, plain = _timed(lambda: trainer.score(trainer.test_data, tta=False))
    tta_extra = 0.0
    if trainer.tta:
        tta_s, _ = _timed(lambda: trainer.score(trainer.test_data))
        tta_extra = max(0.0, tta_s - plain_s)
    extra_views = _extra_views(trainer) if trainer.tta else 0
    n_train = len(trainer.train_data)
    images = sum(min(n_train, trainer.steps_in_epoch(e) * c.batch_size) for e in range(1, c.epoch_count + 1))
    curve, elapsed = [], 0.0
    for record in result.history:
        elapsed += record.seconds
        curve.append((elapsed, record.test_acc))
    curve[-1] = (elapsed + tta_extra, curve[-1][1])  # the run's end: its TTA's extra pass counted, as in the table
    return {"acc": result.test_acc, "plain": 100.0 * plain[0] / plain[1], "seconds": result.train_seconds + tta_extra,
            "tta_seconds": tta_extra, "train_seconds": result.train_seconds,
            "tta_gflop": extra_views * _cost(trainer.model, c.amp).forward_flops / 1e9,
            "images": images, "curve": curve, "flops_per_image": _flops_per_image(trainer.model, c.amp),
            "tta": trainer.tta}


def _timed(score, repeats: int = 3) -> tuple[float, tuple[int, int]]:
    """The median seconds of ``repeats`` calls of ``score`` and its (last) result."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = score()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), out


def gflops(row: dict) -> float:
    """Training FLOP/s of the optimizer steps (the TTA's extra pass is not training)."""
    return row["flops_per_image"] * row["images"] / row.get("train_seconds", row["seconds"]) / 1e9


def bf16_roof(repeats: int = 3) -> dict:
    """The bfloat16 roof of this CPU, as :func:`roof_measurements` measures the float32 one: the best
    GFLOP/s of oneDNN's bf16 GEMM (1024^3, 2048^3) and a bf16 3x3 conv (the recipes train under bf16 autocast)."""
    from cnnlab.analysis.timing import time_fn

    found = {}
    with torch.inference_mode():
        for n in (1024, 2048):
            a, b = torch.randn(n, n).bfloat16(), torch.randn(n, n).bfloat16()
            found[f"bf16 matmul {n}^3"] = 2 * n**3 / time_fn(lambda: a @ b, torch.device("cpu"), repeats=repeats,
                                                             warmup=1).best / 1e9
        c, side, batch = 256, 28, 8
        x = torch.randn(batch, c, side, side).bfloat16().contiguous(memory_format=torch.channels_last)
        w = torch.randn(c, c, 3, 3).bfloat16().contiguous(memory_format=torch.channels_last)
        seconds = time_fn(lambda: F.conv2d(x, w, padding=1), torch.device("cpu"), repeats=repeats, warmup=1).best
        found[f"bf16 conv3x3 {c}ch {side}x{side} batch {batch}"] = 2 * batch * c * c * 9 * side * side / seconds / 1e9
    best = max(found, key=found.get)
    return {"gflops": found[best], "source": best}


def print_limits(results: dict[str, dict[int, dict]], roof: dict, bf16: dict) -> None:
    """The floor each contender's arithmetic sets: its run's FLOPs (training, plus the TTA's extra
    forward passes) at the roof, beside its median seconds."""
    print("\n| contender | training GFLOP of the run | + TTA GFLOP | s at the fp32 roof | s at the bf16 roof | "
          "median s | median / bf16 floor |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, rows in results.items():
        r = next(iter(rows.values()))
        work = r["flops_per_image"] * r["images"] / 1e9
        extra = r.get("tta_gflop", 0.0)
        med = statistics.median(x["seconds"] for x in rows.values())
        floor = (work + extra) / bf16["gflops"]
        print(f"| {name} | {work:.0f} | {extra:.1f} | {(work + extra) / roof['gflops']:.2f} | {floor:.2f} | "
              f"{med:.2f} | {med / floor:.1f}x |")
    print(f"bf16 roof: {bf16['gflops']:.0f} GFLOP/s ({bf16['source']})")


def print_table(results: dict[str, dict[int, dict]], roof: dict) -> None:
    peer_median = statistics.median(r["seconds"] for r in results["naive peer"].values())
    print("\n| contender | seed | test accuracy % | without TTA % | training s | peer's median / this | GFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, rows in results.items():
        for seed, r in rows.items():
            plain = f"{r['plain']:.2f}" if "plain" in r else "-"
            print(f"| {name} | {seed} | {r['acc']:.2f} | {plain} | {r['seconds']:.2f} | "
                  f"{peer_median / r['seconds']:.2f}x | {gflops(r):.1f} |")
    print(f"\nroof: {roof['gflops']:.0f} GFLOP/s float32 ({roof['source']})")
    print("\n| contender | seeds | mean accuracy % | min % | median training s | peer's median / median | "
          "median GFLOP/s | % of roof |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, rows in results.items():
        accs = [r["acc"] for r in rows.values()]
        med = statistics.median(r["seconds"] for r in rows.values())
        rate = statistics.median(gflops(r) for r in rows.values())
        print(f"| {name} | {len(rows)} | {statistics.mean(accs):.3f} | {min(accs):.2f} | {med:.2f} | "
              f"{peer_median / med:.2f}x | {rate:.1f} | {100 * rate / roof['gflops']:.0f} |")


def plot(results: dict[str, dict[int, dict]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (name, rows), colour in zip(results.items(), ("tab:gray", "tab:blue", "tab:orange", "tab:green")):
        for i, r in enumerate(rows.values()):
            label = name if i == 0 else None
            if "curve" in r:
                xs, ys = zip(*r["curve"])
                ax.plot(xs, ys, "-o", color=colour, alpha=0.6, markersize=3, label=label)
            else:
                ax.plot([r["seconds"]], [r["acc"]], "s", color=colour, label=label)
    ax.axhline(99.0, color="k", lw=0.5, ls="--")
    ax.set_xscale("log")
    ax.set_ylim(98.0, 99.8)
    ax.set_xlabel("training seconds (optimizer steps; log scale)")
    ax.set_ylabel("MNIST test accuracy after each epoch (%)")
    ax.set_title("Time to accuracy on this machine (one line per seed)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    print(f"wrote {png}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipes", default="mnist-fast,mnist-best")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="seeds of the peer and of every recipe")
    parser.add_argument("--best-seeds", default="0,1,2", help="seeds of mnist-best (the long one)")
    parser.add_argument("--threads", type=int, default=2, help="the peer sets 2 itself")
    parser.add_argument("--peer", type=Path, default=PEER)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting of every recipe (e.g. --set epochs=0.2 for a smoke run)")
    parser.add_argument("--png", type=Path, default=None, help="draw accuracy vs training seconds here")
    args = parser.parse_args()
    import json

    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    seeds = [int(s) for s in args.seeds.split(",")]
    best_seeds = {int(s) for s in args.best_seeds.split(",")}
    torch.set_num_threads(args.threads)
    print(machine_line("cpu"))
    print(f"peer: {args.peer} {' '.join(PEER_ARGS)} SEED; recipes: {args.recipes}; seeds {seeds} "
          f"(mnist-best: {sorted(best_seeds)})")
    names = args.recipes.split(",")
    # warm-up, untimed: a few steps of every contender (oneDNN primitives, allocator, bf16 kernels)
    run_peer(args.peer, 0, epochs="0.05")
    for name in names:
        run_recipe(name, 0, {**overrides, "epochs": 0.05})
    torch.set_num_threads(args.threads)
    results: dict[str, dict[int, dict]] = {"naive peer": {}, **{n: {} for n in names}}
    for i, seed in enumerate(seeds):
        order = ["naive peer", *names] if i % 2 == 0 else [*names, "naive peer"]
        for name in order:
            if name == "mnist-best" and seed not in best_seeds:
                continue
            row = run_peer(args.peer, seed) if name == "naive peer" else run_recipe(name, seed, overrides)
            torch.set_num_threads(args.threads)  # the peer's script sets its own
            results[name][seed] = row
            print(f"  seed {seed}: {name:12s} {row['acc']:.2f}% in {row['seconds']:.2f} s training", flush=True)
    roof = roof_measurements(torch.device("cpu"))
    print_table(results, roof)
    print_limits(results, roof, bf16_roof())
    if args.png:
        plot(results, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
