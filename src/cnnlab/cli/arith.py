"""``cnnlab arith``: the output-size arithmetic of one layer, worked as on the slides (no torch)."""

from __future__ import annotations

import click

from cnnlab.cli._common import CONTEXT
from cnnlab.errors import CnnlabError

__all__ = ["arith"]


@click.command(context_settings=CONTEXT)
@click.option("--input", "-i", "input", type=int, required=True, help="Input size i (height or width).")
@click.option("--kernel", "-k", type=int, required=True, help="Kernel size k.")
@click.option("--stride", "-s", type=int, default=1, show_default=True, help="Stride s.")
@click.option("--padding", "-p", default="0", show_default=True, help="Padding per side: an integer, same or valid.")
@click.option("--dilation", "-d", type=int, default=1, show_default=True, help="Dilation d.")
@click.option("--ceil-mode", is_flag=True, help="Round up, as MaxPool2d(ceil_mode=True).")
def arith(input: int, kernel: int, stride: int, padding: str, dilation: int, ceil_mode: bool) -> None:
    """Output size of a convolution or pooling layer, with the lecture's worked formula."""
    from cnnlab.arithmetic import explain_output_size

    pad: int | str
    try:
        pad = int(padding)
    except ValueError:
        pad = padding
    try:
        _, lines = explain_output_size(i=input, k=kernel, s=stride, padding=pad, d=dilation, ceil_mode=ceil_mode)
    except (ValueError, TypeError) as exc:
        raise CnnlabError(str(exc)) from None
    for line in lines:
        print(line)
