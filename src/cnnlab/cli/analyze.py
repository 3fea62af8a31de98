"""``cnnlab analyze``: Canziani et al. (2016) for the zoo or chosen models."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from cnnlab.cli._common import CONTEXT, console, print_table
from cnnlab.cli.options import PATH, POSITIVE, SHAPE, device_option
from cnnlab.paths import check_folder, check_output

__all__ = ["analyze"]


@click.command(context_settings=CONTEXT,
               short_help="The zoo as in Canziani et al. (2016): accuracy, operations, time, memory.")
@click.argument("models", nargs=-1)
@click.option("--input", "input", type=SHAPE, default=None,
              help="Input shape CxHxW for every model [default: each model's own].")
@click.option("--batch-sizes", default="1,2,4,8,16,32,64", show_default=True, help="Comma-separated batch sizes.")
@click.option("--repeats", type=POSITIVE, default=None, help="Timed runs per batch size [default: 10, --quick 3].")
@click.option("--quick", is_flag=True, help="Batch sizes 1 and 8, 3 timed runs.")
@click.option("--no-timing", is_flag=True, help="Counts only: parameters, operations, memory.")
@click.option("--per-layer", is_flag=True, help="Include the per-layer breakdown (json output).")
@device_option
@click.option("--runs", "runs", multiple=True, type=PATH,
              help="cnnlab run directory (or a folder of them) to take test accuracies from (repeatable).")
@click.option("--format", "format", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--charts", type=PATH, default=None, help="Folder for the four PNG charts.")
@click.option("--html", "html_path", type=PATH, default=None, help="Write one self-contained HTML report.")
@click.option("--canziani", is_flag=True, help="The paper's 14 networks, its figures redrawn with the paper's "
              "values beside ours, and a table of paper vs cnnlab.")
@click.option("--modern", is_flag=True, help="Later torchvision classifiers (MobileNetV2/V3, EfficientNet-B0/B3, "
              "RegNetY, ConvNeXt-T, ResNeXt-50, ViT-B/16) in the same figures, and the findings, computed.")
def analyze(models: tuple[str, ...], input: str | None, batch_sizes: str, repeats: int | None, quick: bool,
            no_timing: bool, per_layer: bool, device: str, runs: tuple[Path, ...], format: str, charts: Path | None,
            html_path: Path | None, canziani: bool, modern: bool) -> None:
    """Canziani et al. (2016) for the zoo: parameters, operations, memory, time vs batch size, accuracy.

    MODELS are registry names (cnnlab models), any torchvision classifier as torchvision:NAME (built with
    random weights, nothing downloaded; its documented ImageNet top-1 and input size), or your own
    path/to/file.py:ClassName (executed, as cnnlab summary reads it). --canziani and --modern add their
    sets (both: the paper's figure a decade later)."""
    from cnnlab.analysis import run_analyze

    for folder in runs:  # a missing one: run_accuracies says so
        if os.path.lexists(folder):
            check_folder(folder, "--runs")
    if charts is not None:
        charts = check_output(charts, "folder", what="--charts", writes="a folder of four PNG charts")
    if html_path is not None:
        html_path = check_output(html_path, "file", what="--html", suffixes=(".html", ".htm"), default_suffix=".html",
                                 writes="an HTML page")

    def progress(rep) -> None:
        if format == "table" and not no_timing:
            console().print(f"  {rep.name}: {rep.gmacs:.3f} GMACs, "
                            + ", ".join(f"b{t['batch']} {t['ms_per_image']:.2f} ms/img" for t in rep.timing))

    report = run_analyze(models, input=input, batch_sizes=batch_sizes, repeats=repeats, quick=quick,
                         no_timing=no_timing, per_layer=per_layer, device=device, runs=runs, charts=charts,
                         html=html_path, on_model=progress, canziani=canziani, modern=modern)
    if format == "json":
        print(report.to_json() if report.canziani is None else json.dumps(report.to_dict(), indent=2))
    elif format == "csv":
        print(report.to_csv(), end="")
    else:
        _print_report(report, timing=not no_timing, per_layer=per_layer)
        if report.canziani is not None:
            _print_canziani(report.canziani)
        for path in (charts, html_path):
            if path is not None:
                console().print(f"Wrote {path}")


def _print_report(report, *, timing: bool, per_layer: bool) -> None:
    sizes = [m["batch"] for m in report.models[0].memory]
    big = max(sizes)
    mib = 2**20
    cols = ["model", "input", "params M", "GFLOPs/img fwd", "GFLOPs/img train",
            f"act. MiB @{big} all outputs / saved", f"train peak MiB @{big}",
            f"infer peak MiB @{big}" + (" est / meas" if timing else ""), "top-1 %"]
    if timing:
        cols += [f"ms/img @{sizes[0]}", f"ms/img @{big}", f"img/s @{big}", "% of roof"]
    rows = []
    for m in report.models:
        mem = next(x for x in m.memory if x["batch"] == big)
        infer = "-" if mem.get("inference_peak_bytes") is None else f"{mem['inference_peak_bytes'] / mib:.1f}"
        if mem.get("measured_inference_peak_bytes"):
            infer += f" / {mem['measured_inference_peak_bytes'] / mib:.1f}"
        row = [m.name, "x".join(map(str, m.input_shape)), f"{m.params / 1e6:.2f}", f"{m.flops / 1e9:.3f}",
               f"{m.training_flops / 1e9:.3f}" if m.training_flops else "-",
               f"{mem['forward_bytes'] / mib:.1f} / {mem['training_bytes'] / mib:.1f}",
               "-" if mem.get("training_peak_bytes") is None else f"{mem['training_peak_bytes'] / mib:.1f}", infer,
               "-" if m.accuracy is None else f"{m.accuracy:.2f}"]
        if timing:
            first, last = m.timing[0], m.timing[-1]
            roof = "-" if last["roof_fraction"] is None else f"{100 * last['roof_fraction']:.0f}"
            row += [f"{first['ms_per_image']:.3f}", f"{last['ms_per_image']:.3f}", f"{last['images_per_s']:.1f}", roof]
        rows.append(row)
    print_table(f"cnnlab analyze -- {report.machine['description']}", cols, rows, left=("model", "input"))
    if per_layer:
        for m in report.models:
            print_table(f"{m.name}: per layer (one image)", ("layer", "type", "output", "params", "MACs"),
                        [(r["layer"], r["type"], "x".join(map(str, r["output"])), f"{r['params']:,}", f"{r['macs']:,}")
                         for r in m.per_layer or []], left=("layer", "type", "output"))
    _print_notes(report)


def _print_notes(report) -> None:
    console().print(report.convention + ". Training FLOPs: forward + input and weight gradients (~3x forward).")
    console().print("Memory: 'all outputs' counts every tensor the forward pass produces as if none were freed, "
                    "'saved for bwd' only those autograd keeps; peaks are whole estimated peaks (weights, batch, "
                    "and for training gradients too; SGD), 'meas' the measured inference peak.")
    mc = report.machine
    if mc.get("roof_gflops"):
        peak = f"; theoretical peak {mc['theoretical_peak_formula']}" if mc.get("theoretical_peak_formula") else ""
        console().print(f"Roof: {mc['roof_gflops']:.0f} GFLOP/s, the best float32 measurement "
                        f"({mc.get('roof_source')}; fastest of several GEMM and convolution runs){peak}.")
    unsupported = sorted({u for m in report.models for u in m.unsupported})
    if unsupported:
        console().print(f"Not counted (unknown ops): {', '.join(unsupported)}")
    for source in sorted({m.accuracy_source for m in report.models if m.accuracy_source}):
        console().print(f"Accuracy: {source}")


def _num(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _print_canziani(section) -> None:
    rows = [(r["network"], r["cnnlab"] or "-", _num(r["paper_params"] and r["paper_params"] / 1e6, ".2f"),
             _num(r.get("cnnlab_params") and r["cnnlab_params"] / 1e6, ".2f"), _num(r["paper_gops"], ".2f"),
             _num(r.get("cnnlab_gmacs"), ".3f"), _num(r.get("cnnlab_gflops"), ".3f"),
             _num(r["gops_per_gflops"], ".2f"), _num(r["paper_top1"], ".2f"), _num(r.get("cnnlab_top1"), ".2f"), _num(r["top1_difference"], "+.2f"), r["why"])
            for r in section["comparison"]]
    if rows:
        print_table(f"Paper vs cnnlab: {section['paper']}",
                    ("network", "cnnlab", "params M paper", "params M cnnlab", "G-Ops paper", "GMACs cnnlab",
                     "GFLOPs cnnlab", "G-Ops/GFLOPs", "top-1 paper", "top-1 cnnlab", "diff", "why they differ"), rows,
                    left=("network", "cnnlab", "why they differ"))
        for note in section["notes"]:
            console().print(note[0].upper() + note[1:] + ".")
        for r in section["comparison"]:
            for note in r["notes"]:
                console().print(f"{r['network']}: {note}.")
        console().print(f"The paper measured: {section['setup']['text']} ({section['setup']['source']}).")
    for sentence in section["findings"]["sentences"]:
        console().print(sentence)
