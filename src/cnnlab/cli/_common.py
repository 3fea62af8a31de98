"""What every command shares: context settings, output helpers (the shared options: :mod:`cnnlab.cli.options`).

Nothing here imports torch or rich at import time: ``cnnlab --help`` and ``cnnlab arith``
start in a fraction of a second.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Sequence

from cnnlab.errors import CnnlabError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

_console: Any = None
_console_stream: Any = None


def console():
    """The rich console of the command's output (see :mod:`cnnlab.terminal`): rich on a terminal;
    piped or redirected, plain text with one message per line, never hard-wrapped. Made again
    when ``sys.stdout`` is replaced (a test capturing output, a redirect in-process)."""
    global _console, _console_stream
    from cnnlab.terminal import make_console  # rich: not for cnnlab --help

    if _console is None or _console_stream is not sys.stdout:
        _console, _console_stream = make_console(), sys.stdout
    return _console


def parse_options(items: Iterable[str]) -> dict[str, Any]:
    """``["dropout2d=0.2", "stem=cifar"]`` -> {"dropout2d": 0.2, "stem": "cifar"} (values as JSON where they parse)."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CnnlabError(f"--option takes KEY=VALUE (e.g. --option dropout2d=0.2), got {item!r}")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options[key.strip().replace("-", "_")] = value
    return options


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
                left: Iterable[str] = ()) -> None:
    """A rich table; columns named in ``left`` are left-aligned, the others right-aligned."""
    from rich.table import Table

    left = set(left)
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col in left else "right")
    for row in rows:
        table.add_row(*(str(v) for v in row))
    console().print(table)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
