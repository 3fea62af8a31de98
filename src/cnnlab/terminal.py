"""Where cnnlab's messages and tables go: one rich Console factory, used by the command line and
by the training log (:class:`cnnlab.training.callbacks.ConsoleLogger`).

- On a terminal: rich as usual (the terminal's width, colours, progress bars).
- Piped or redirected (a log file, ``| grep``, a CI job, Slurm's output file): plain text. No
  colour or cursor codes, no progress bar; a message is one line however long it is -- never
  hard-wrapped at ``COLUMNS`` or rich's default of 80 columns -- and a table is laid out at its
  natural width (one row per line, no cell cut or wrapped).

Messages are text, not rich markup or emoji codes: a file named ``runs/[old]/a:b:.pt`` prints
as it is. The command line imports this module when a command first prints, so ``cnnlab --help``
starts without rich.
"""

from __future__ import annotations

import sys
from typing import IO

from rich.console import Console

__all__ = ["is_terminal", "make_console", "PLAIN_WIDTH"]

# the width rich lays tables out in when the output is not a terminal: wider than any table
PLAIN_WIDTH = 1 << 15


def is_terminal(stream: object) -> bool:
    """Whether ``stream`` is an interactive terminal (a closed or odd stream is not)."""
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return False


def make_console(file: IO[str] | None = None) -> Console:
    """A rich Console writing to ``file`` (default: ``sys.stdout`` at the moment of each print),
    rich on a terminal, plain and unwrapped otherwise (see the module's docstring)."""
    common = dict(file=file, highlight=False, markup=False, emoji=False)
    if is_terminal(sys.stdout if file is None else file):
        return Console(**common)
    return Console(**common, soft_wrap=True, width=PLAIN_WIDTH, color_system=None, force_terminal=False,
                   force_interactive=False)
