"""``cnnlab bench infer``: inference modes (compile, bf16, int8, ONNX Runtime ...) timed against
eager fp32 and ONNX Runtime, per model and batch size."""

from __future__ import annotations

from typing import Any

import click

from cnnlab.cli._common import CONTEXT, console, print_json, print_table
from cnnlab.cli.options import NON_NEGATIVE, POSITIVE, data_dir_option, device_option, format_option, \
    input_size_option, seed_option

__all__ = ["bench_infer"]


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@click.command("infer", context_settings=CONTEXT)
@click.argument("targets", nargs=-1, metavar="[RUN|MODEL]...")
@click.option("--modes", default=None, help="Comma-separated: eager, channels_last, compile, bf16, fp16, onnxruntime, "
              "int8, auto, ort-fp32, ort-int8 [default: every mode this machine runs].")
@click.option("--batch-sizes", default="1,16", show_default=True, help="Comma-separated batch sizes.")
@click.option("--peers/--no-peers", default=True, show_default=True,
              help="Also time ONNX Runtime fp32 and int8 (QDQ, its default settings) as peers.")
@click.option("--repeats", type=POSITIVE, default=7, show_default=True,
              help="Timed rounds (every contender once per round).")
@click.option("--warmup", type=NON_NEGATIVE, default=2, show_default=True,
              help="Untimed calls of each contender first.")
@click.option("--threads", type=int, default=None, help="Threads for PyTorch and ONNX Runtime [default: torch's].")
@input_size_option
@click.option("--calibration-images", type=POSITIVE, default=256, show_default=True,
              help="Training images (of a RUN) that calibrate int8, drawn with --seed.")
@seed_option
@data_dir_option
@device_option
@format_option
def bench_infer(targets: tuple[str, ...], modes: str | None, batch_sizes: str, peers: bool, repeats: int, warmup: int,
                threads: int | None, input_size: int | None, calibration_images: int, seed: int,
                data_dir: str | None, device: str, format: str) -> None:
    """Images/s and ms per batch of every optimize mode vs eager fp32 and ONNX Runtime; for a RUN
    directory also test accuracy and top-1 agreement with eager fp32 [default target: resnet18]."""
    from cnnlab.inference.bench import bench_infer as run_bench

    live = format == "table"

    def on_row(row: dict[str, Any]) -> None:
        if live:
            console().print(f"  {row['model']} batch {row['batch_size']}: {row['mode']:13s} "
                            f"{row['ms_per_batch']:9.2f} ms  {_x(row['x_eager'])}x eager")

    result = run_bench(list(targets), modes=modes, batch_sizes=batch_sizes, peers=peers, repeats=repeats,
                       warmup=warmup, threads=threads, input_size=input_size, device=device, data_dir=data_dir,
                       calibration_images=calibration_images, seed=seed, on_row=on_row)
    if format == "json":
        print_json(result)
        return
    console().print(result["machine"])
    print_table(f"cnnlab bench infer: median of {result['repeats']} interleaved rounds, {result['threads']} threads",
                ("model", "batch", "mode", "precision", "ms/batch", "images/s", "x eager", "x ORT", "setup s",
                 "test %", "agree %"),
                [(r["model"], r["batch_size"], r["mode"] + (f" ({r['chosen']})" if r["chosen"] else ""),
                  r["precision"], f"{r['ms_per_batch']:.2f}", f"{r['images_per_s']:.1f}", _x(r["x_eager"]),
                  _x(r["x_ort"]), f"{r['setup_s']:.1f}", _x(r["test_acc"]), _x(r["agreement"]))
                 for r in result["rows"]], left=("model", "mode", "precision"))
