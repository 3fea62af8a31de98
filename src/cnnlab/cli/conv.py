"""The convolution lab: ``cnnlab demo xcorr`` and ``cnnlab bench conv``."""

from __future__ import annotations

import click

from cnnlab.cli._common import CONTEXT, console, print_json, print_table
from cnnlab.cli.options import POSITIVE, device_option, format_option

__all__ = ["demo", "bench"]


@click.group(context_settings=CONTEXT)
def demo() -> None:
    """The lecture's slides, computed."""


@demo.command("xcorr", context_settings=CONTEXT)
@click.option("--associativity", is_flag=True, help="Also show that convolution is associative, cross-correlation not.")
def demo_xcorr(associativity: bool) -> None:
    """Cross-correlation vs convolution on the lecture's 3x3 example."""
    from cnnlab.conv.demo import associativity_lines, xcorr_lines

    for line in xcorr_lines() + ([""] + associativity_lines() if associativity else []):
        console().print(line)


@click.group(context_settings=CONTEXT)
def bench() -> None:
    """Benchmarks, timed against the library peer in the same process."""


@bench.command("conv", context_settings=CONTEXT)
@click.option("--quick", is_flag=True, help="Three layers (256@56, 512@28, 512@14), 3 runs, FFT at batch 1 only.")
@click.option("--batch-sizes", default="1,8", show_default=True, help="Comma-separated batch sizes.")
@click.option("--algorithms", default="im2col,fft,winograd,winograd4", show_default=True,
              help="Comma-separated: direct, im2col, fft, winograd, winograd4.")
@click.option("--runs", type=POSITIVE, default=None, help="Timed runs per case [default: 5, --quick 3].")
@device_option
@click.option("--errors/--no-errors", default=True, show_default=True, help="Also print the float64 error report.")
@format_option
def bench_conv(quick: bool, batch_sizes: str, algorithms: str, runs: int | None, device: str, errors: bool,
               format: str) -> None:
    """VGG-16's 3x3 layers: each algorithm's ms, GFLOP/s, ratio to F.conv2d, max error and memory."""
    from cnnlab.conv.bench import run_bench
    from cnnlab.runtime import machine_line, resolve_device

    live = format == "table"
    if live:
        console().print(machine_line(resolve_device(device)))

    def on_row(row) -> None:
        if live:
            console().print(f"  {row.layer:>7s} batch {row.batch}: {row.algorithm:9s} {row.ms:9.2f} ms "
                            f"{row.gflops:7.1f} GFLOP/s {row.ratio:6.2f}x  err {row.max_error:.1e}")

    result = run_bench(quick=quick, batch_sizes=batch_sizes, algorithms=algorithms, runs=runs, device=device,
                       errors=errors, on_row=on_row)
    if format == "json":
        print_json(result)
    else:
        _print_bench(result)


def _print_bench(result: dict) -> None:
    mib = lambda v: "-" if v is None else f"{v / 2**20:.1f}"  # noqa: E731
    print_table(f"cnnlab bench conv: 3x3 convolutions, padding 1 (float32) -- {result['machine']}",
                ("layer", "batch", "algorithm", "ms", "GFLOP/s", "x F.conv2d", "max error", "buffer MiB (computed)",
                 "extra MiB (measured)"),
                [(r["layer"], r["batch"], r["algorithm"], f"{r['ms']:.2f}", f"{r['gflops']:.1f}", f"{r['ratio']:.2f}",
                  f"{r['max_error']:.1e}", mib(r.get("buffer_bytes")), mib(r.get("measured_bytes")))
                 for r in result["rows"]], left=("layer", "algorithm"))
    if result.get("cudnn_modes"):
        keys = [k for k in result["cudnn_modes"][0] if k not in ("layer", "batch")]
        print_table("F.conv2d on CUDA: cuDNN benchmark x deterministic (ms, median)", ("layer", "batch", *keys),
                    [(r["layer"], r["batch"], *(f"{r[k]:.3f}" for k in keys)) for r in result["cudnn_modes"]],
                    left=("layer",))
    if result.get("errors"):
        keys = [k for k in result["errors"][0] if k != "layer"]
        print_table("max |y - y64| / max |y64| against F.conv2d in float64 (batch 1)", ("layer", *keys),
                    [(r["layer"], *("-" if r[k] is None else f"{r[k]:.1e}" for k in keys)) for r in result["errors"]])
