"""``cnnlab models`` and ``cnnlab summary``: the zoo, and one model layer by layer (its shapes,
and with ``--train`` what a training step costs)."""

from __future__ import annotations

from typing import Any

import click

from cnnlab.cli._common import CONTEXT, console, print_json, print_table
from cnnlab.cli.options import BYTES, POSITIVE, SHAPE, device_option, format_option, model_option, num_classes_option

__all__ = ["models", "summary"]

OPTIMIZER_CHOICES = click.Choice(["sgd", "momentum", "nesterov", "adam", "adamw"])


@click.command(context_settings=CONTEXT)
@format_option
def models(format: str) -> None:
    """List the registered models with parameters and MACs at their default input."""
    from cnnlab.cli.modelspec import zoo_rows

    rows = zoo_rows()
    if format == "json":
        print_json(rows)
        return
    print_table("cnnlab models (MACs for one image at the default input)",
                ("name", "family", "input", "params", "GMACs", "paper"),
                [(r["name"], r["family"], r["input"], f"{r['params']:,}", f"{r['macs'] / 1e9:.4f}", r["paper"])
                 for r in rows], left=("name", "family", "input", "paper"))


@click.command(context_settings=CONTEXT)
@click.argument("model")
@click.option("--input", "input", type=SHAPE, default=None,
              help="Input shape CxHxW, e.g. 1x28x28 [default: the model's].")
@num_classes_option
@format_option
@model_option
@click.option("--train", is_flag=True, help="Also the cost of one training step: forward and backward FLOPs per "
              "layer, bytes saved for backward, parameters, gradients, optimizer state and the peak memory.")
@click.option("--batch-size", type=POSITIVE, default=1, show_default=True, help="Batch of the step.")
@click.option("--optimizer", type=OPTIMIZER_CHOICES, default="sgd", show_default=True,
              help="sgd keeps no state (one buffer with --momentum), momentum/nesterov one buffer, adam/adamw two.")
@click.option("--momentum", type=float, default=0.0, show_default=True, help="SGD momentum.")
@click.option("--amp", is_flag=True, help="Autocast: bfloat16 on the CPU, float16 on CUDA.")
@click.option("--freeze", multiple=True, metavar="MODULE", help="Keep this module's parameters fixed (repeatable).")
@device_option
@click.option("--channels-last/--no-channels-last", default=None,
              help="NHWC memory format [default: on for the CPU, off for CUDA, as cnnlab train].")
@click.option("--measure", is_flag=True, help="Run two real training steps and print the measured peak beside "
              "the estimate (implies --train).")
@click.option("--fit-memory", metavar="SIZE", type=BYTES, default=None,
              help="The largest batch whose estimated peak fits SIZE (e.g. 8GiB, 512MiB), for training: on the CPU "
              "the process's resident memory (see --fit-for).")
@click.option("--fit-for", type=click.Choice(["process", "tensors"]), default="process", show_default=True,
              help="With --fit-memory: process = the process's resident memory (RSS: Python, torch and cnnlab "
              "plus the step's tensors as the C allocator holds them; CPU only, CUDA is always tensors), "
              "tensors = the peak of the tensors alone (PyTorch's allocator).")
@click.option("--eval", "eval_", is_flag=True, help="With --fit-memory: for inference (eval mode, no gradients).")
def summary(model: str, input: str | None, num_classes: int | None, format: str, option: dict[str, Any],
            train: bool, batch_size: int, optimizer: str, momentum: float, amp: bool, freeze: tuple[str, ...],
            device: str, channels_last: bool | None, measure: bool, fit_memory: int | None, fit_for: str,
            eval_: bool) -> None:
    """Layer-by-layer shapes (28x28x1 => 28x28x4), formulas, parameters, MACs and receptive fields.

    MODEL is a registered name (cnnlab models) or your own file, path/to/file.py:ClassName: the
    file is executed (imported as Python) and the class built with no arguments. A model that
    cannot take the input gets its table up to the failing layer and one line saying why.
    The estimate (and --measure) is for --device: auto is CUDA when this machine has it.
    """
    from cnnlab.analysis.estimate import StepSettings
    from cnnlab.cli.modelspec import run_summary
    from cnnlab.errors import ShapeError

    if device == "auto":  # the estimate is for this machine's device; cuda may be asked for without one
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    settings = StepSettings(optimizer=optimizer, momentum=momentum, amp=amp, device=device,
                            channels_last=channels_last, freeze=tuple(freeze))
    try:
        result = run_summary(model, input=input, num_classes=num_classes, options=option, train=train,
                             measure=measure, fit_memory=fit_memory, eval=eval_, batch_size=batch_size,
                             settings=settings, fit_for=fit_for)
    except ShapeError as exc:
        partial = getattr(exc, "summary", None)
        if partial is not None and format == "json":
            print_json({**partial.to_dict(), "error": str(exc)})
        elif partial is not None and partial.layers:
            _print_layers(partial, title=f"{partial.model}, input {_dims(partial.input_shape)} (CxHxW): "
                          f"the layers up to the one that fails")
        raise
    if format == "json":
        print_json(result.to_dict())
    elif result.fit is not None:
        _print_fit(result)
    elif result.training is not None:
        _print_training(result)
    else:
        _print_layers(result)
        _print_totals(result)


def _dims(shape) -> str:
    return "x".join(map(str, shape))


def _title(result) -> str:
    note = f"; {result.note}" if getattr(result, "note", None) else ""
    return f"{result.model}, input {_dims(result.input_shape)} (CxHxW{note})"


def _print_layers(result, title: str | None = None) -> None:
    rows = []
    for row in result.layers:
        ksp = ""
        if row.kernel is not None:
            pad = row.padding if isinstance(row.padding, str) else "x".join(map(str, row.padding or []))
            ksp = f"{'x'.join(map(str, row.kernel))} / {'x'.join(map(str, row.stride or []))} / {pad}"
        rf = "all" if row.receptive_field is None else f"{row.receptive_field} (jump {row.jump})"
        rows.append((row.name, row.type, row.transition, ksp, row.formula or "", f"{row.params:,}", f"{row.macs:,}",
                     rf))
    print_table(title or _title(result),
                ("layer", "type", "HxWxC => HxWxC", "k / s / p", "output size", "params", "MACs", "RF"), rows,
                left=("layer", "type", "HxWxC => HxWxC", "k / s / p", "output size"))


def _print_totals(result) -> None:
    console().print(f"Parameters: {result.total_params:,} ({result.trainable_params:,} trainable)")
    console().print(f"MACs per image: {result.total_macs:,} ({result.total_macs / 1e9:.3f} G); "
                    f"FLOPs = 2 x MACs = {result.total_flops:,} (conv and linear layers only)")


def _count(n: int) -> str:
    """``60.8 M``: FLOPs in decimal units."""
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}" if n < 10 * size else f"{n / size:.1f} {unit}"
    return str(n)


def _print_training(result) -> None:
    from cnnlab.parsing import format_bytes

    cost = result.training
    rows = [(r.name, r.type, r.transition, f"{r.params:,}", f"{r.forward_macs or 0:,}", f"{r.forward_flops or 0:,}",
             f"{r.grad_input_flops or 0:,}", f"{r.grad_weight_flops or 0:,}", format_bytes(r.saved_bytes or 0))
            for r in result.layers]
    print_table(f"{_title(result)}: one training step, batch {cost.batch_size}, {cost.settings.describe()}",
                ("layer", "type", "HxWxC => HxWxC", "params", "fwd MACs", "fwd FLOPs", "grad-input FLOPs",
                 "grad-weight FLOPs", "saved for bwd"), rows, left=("layer", "type", "HxWxC => HxWxC"))
    fwd = cost.forward_flops
    ratio = f" = {cost.training_flops / fwd:.2f}x the forward" if fwd else ""
    other = f" + {_count(cost.other_flops)} outside conv/linear layers" if cost.other_flops else ""
    console().print(f"FLOPs per step (batch {cost.batch_size}; FLOPs = 2 x MACs): forward {_count(fwd)} + input "
                    f"gradients {_count(cost.grad_input_flops)} + weight gradients {_count(cost.grad_weight_flops)}"
                    f"{other} = {_count(cost.training_flops)}{ratio}")
    if cost.other_saved_bytes:
        console().print(f"Saved for backward by code between the layers (functional ops, the loss): "
                        f"{format_bytes(cost.other_saved_bytes)}.")
    mem = cost.memory
    print_table("memory of the step", ("part", "bytes", ""),
                [(label, "-" if n is None else f"{n:,}", format_bytes(n)) for label, n in mem.parts()], left=("part",))
    top = ", ".join(f"{k} {format_bytes(v)}" for k, v in list(mem.at_peak.items())[:5])
    phase, _, op = mem.peak_at.partition(": ")
    when = {"forward": "forward pass", "backward": "backward pass", "step": "optimizer step"}.get(phase, phase)
    console().print(f"The peak comes in the {when} ({op}); alive then: {top}.")
    if mem.measured_peak_bytes is not None:
        err = 100 * (mem.peak_bytes - mem.measured_peak_bytes) / mem.measured_peak_bytes
        console().print(f"Measured peak {format_bytes(mem.measured_peak_bytes)} ({mem.measured_method}, 2 real steps): "
                        f"the estimate is {err:+.1f}% off.")
    if mem.measured_rss_peak_bytes is not None:
        from cnnlab import allocator

        console().print(f"The process's resident memory (RSS, what the operating system sees) peaked at "
                        f"{format_bytes(mem.measured_rss_peak_bytes)} during those steps, "
                        f"{format_bytes(mem.measured_rss_before_bytes)} before them (Python, torch, cnnlab, the "
                        f"model and the batch); {allocator.state().describe()}.")
    if cost.batch_size == 1:
        console().print("Batch 1: --batch-size B for another, --fit-memory 8GiB for the largest that fits.")


def _print_fit(result) -> None:
    from cnnlab.parsing import format_bytes

    fit = result.fit
    what = "a training step" if fit.train else "inference"
    process = fit.memory == "process"
    need, nxt_need = (fit.rss_bytes, fit.next_rss_bytes) if process else (fit.peak_bytes, fit.next_peak_bytes)
    nxt = "" if nxt_need is None else f"; {fit.batch_size + 1:,} would need {format_bytes(nxt_need)} ({nxt_need:,} B)"
    size = f"at least {fit.batch_size:,} (the search's limit); memory is not what bounds this batch" \
        if fit.at_limit else f"{fit.batch_size:,}"
    within = "of the process's resident memory (RSS)" if process else \
        ("of GPU memory (the tensors)" if fit.settings.device == "cuda" else "for the tensors alone")
    peak = f"predicted RSS {format_bytes(need)} ({need:,} B)" if process else \
        f"estimated peak {format_bytes(need)} ({need:,} B)"
    console().print(f"{_title(result)}: the largest batch for {what} ({fit.settings.describe(fit.train)}) within "
                    f"{format_bytes(fit.budget_bytes)} ({fit.budget_bytes:,} B) {within} is {size}: {peak}{nxt}.")
    if process:
        r = fit.resident
        console().print(f"The RSS is this process's now, {format_bytes(r.runtime_bytes)} (Python, torch, cnnlab, the "
                        f"model's code), + {format_bytes(r.first_steps_bytes)} the first steps add (kernel code) + "
                        f"{r.per_byte:.2f} x the tensors' peak ({format_bytes(fit.peak_bytes)}), as measured for "
                        f"malloc policy {r.figures}; here: {r.allocator}. A dataset held in memory comes on top; "
                        f"--fit-for tensors for the tensors alone.")
