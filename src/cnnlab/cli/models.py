"""``cnnlab models`` and ``cnnlab summary``: the zoo, and one model layer by layer."""

from __future__ import annotations

from typing import Any

import click

from cnnlab.cli._common import CONTEXT, FORMATS, console, model_options, print_json, print_table

__all__ = ["models", "summary"]


@click.command(context_settings=CONTEXT)
@click.option("--format", "format", type=FORMATS, default="table", show_default=True)
def models(format: str) -> None:
    """List the registered models with parameters and MACs at their default input."""
    from cnnlab.summary import zoo_rows

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
@click.option("--input", "input", default=None, help="Input shape CxHxW, e.g. 1x28x28 [default: the model's].")
@click.option("--num-classes", type=int, default=None, help="Output classes [default: the model's].")
@click.option("--format", "format", type=FORMATS, default="table", show_default=True)
@model_options
def summary(model: str, input: str | None, num_classes: int | None, format: str, option: dict[str, Any]) -> None:
    """Layer-by-layer shapes (28x28x1 => 28x28x4), formulas, parameters, MACs and receptive fields."""
    from cnnlab.summary import parse_shape, summarize_model

    result = summarize_model(model, parse_shape(input) if input else None, num_classes=num_classes, **option)
    if format == "json":
        print_json(result.to_dict())
        return
    rows = []
    for row in result.layers:
        ksp = ""
        if row.kernel is not None:
            pad = row.padding if isinstance(row.padding, str) else "x".join(map(str, row.padding or []))
            ksp = f"{'x'.join(map(str, row.kernel))} / {'x'.join(map(str, row.stride or []))} / {pad}"
        rf = "all" if row.receptive_field is None else f"{row.receptive_field} (jump {row.jump})"
        rows.append((row.name, row.type, row.transition, ksp, row.formula or "", f"{row.params:,}", f"{row.macs:,}",
                     rf))
    print_table(f"{model}, input {'x'.join(map(str, result.input_shape))} (CxHxW)",
                ("layer", "type", "HxWxC => HxWxC", "k / s / p", "output size", "params", "MACs", "RF"), rows,
                left=("layer", "type", "HxWxC => HxWxC", "k / s / p", "output size"))
    console().print(f"Parameters: {result.total_params:,} ({result.trainable_params:,} trainable)")
    console().print(f"MACs per image: {result.total_macs:,} ({result.total_macs / 1e9:.3f} G); "
                    f"FLOPs = 2 x MACs = {result.total_flops:,} (conv and linear layers only)")
