"""What cnnlab's results show in a notebook: the ``_repr_html_`` of the layer summary, the runs table and the
pictures of :mod:`cnnlab.visualize`, as one fragment of ``templates/display.html`` (:func:`cnnlab.pages.fragment`:
no page frame, the stylesheet scoped, pictures as PNG data URLs, nothing fetched from the network).

A notebook shows an object's ``_repr_html_`` or its plain ``repr``, never both; nothing here prints.

- :func:`summary_html`: :class:`cnnlab.summary.ModelSummary` -- the layer table (shapes, k/s/p/d, the
  output-size formula, parameters, MACs, receptive field) and, with ``train=True``, the training step's table
  and its memory
- :func:`RunsTable`: what :func:`cnnlab.runs.list_runs` returns, a list of dicts that shows itself as a table
- :func:`figures_html`: PNG files (a figure cnnlab saved) with their captions
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Iterable, Sequence

from cnnlab.pages import fragment
from cnnlab.parsing import format_bytes

__all__ = ["display_html", "summary_html", "figures_html", "png_file_url", "RunsTable"]


def _dims(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def _pair(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else _dims(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Iterable[int] = (),
          caption: str = "") -> dict[str, Any]:
    """A table for ``display.html``: ``numeric`` the indices of the right-aligned columns."""
    return {"headers": list(headers), "rows": [list(r) for r in rows], "numeric": set(numeric), "caption": caption}


def display_html(title: str, *, lines: Sequence[str] = (), tables: Sequence[dict] = (),
                 figures: Sequence[dict] = ()) -> str:
    """The fragment: a heading, lines of text, tables (:func:`table`), pictures (``{"url", "caption"}``)."""
    return fragment("display.html", title=title, lines=list(lines), tables=list(tables), figures=list(figures))


def _layer_rows(summary) -> list[list[Any]]:
    rows = []
    for r in summary.layers:
        ksp = "" if r.kernel is None else f"{_pair(r.kernel)} / {_pair(r.stride)} / {_pair(r.padding)} / " \
                                          f"{_pair(r.dilation)}"
        rf = "all" if r.receptive_field is None else f"{r.receptive_field} (jump {r.jump})"
        rows.append([r.name, r.type, r.transition, ksp, r.formula or "", f"{r.params:,}", f"{r.macs:,}", rf])
    return rows


def _training_tables(summary) -> list[dict[str, Any]]:
    cost = summary.training
    rows = [[r.name, r.transition, f"{r.forward_flops or 0:,}", f"{r.grad_input_flops or 0:,}",
             f"{r.grad_weight_flops or 0:,}", format_bytes(r.saved_bytes or 0)] for r in summary.layers]
    step = table(("layer", "HxWxC => HxWxC", "fwd FLOPs", "grad-input FLOPs", "grad-weight FLOPs", "saved for bwd"),
                 rows, range(2, 6), f"One training step, batch {cost.batch_size}, {cost.settings.describe()}: "
                                    f"{cost.training_flops:,} FLOPs")
    memory = table(("part", "bytes", ""), [[label, "-" if n is None else f"{n:,}", format_bytes(n)]
                                          for label, n in cost.memory.parts()], (1, 2), "Memory of the step")
    return [step, memory]


def summary_html(summary) -> str:
    """A :class:`cnnlab.summary.ModelSummary` as ``cnnlab summary`` prints it (``--train``: its tables too)."""
    title = f"{summary.model}, input {_dims(summary.input_shape)} (CxHxW) => output {_dims(summary.output_shape)}"
    lines = [f"Parameters: {summary.total_params:,} ({summary.trainable_params:,} trainable)",
             f"MACs per image: {summary.total_macs:,}; FLOPs = 2 x MACs = {summary.total_flops:,} "
             f"(conv and linear layers only)"]
    if summary.note:
        lines.insert(0, summary.note)
    layers = table(("layer", "type", "HxWxC => HxWxC", "k / s / p / d", "output size", "params", "MACs", "RF"),
                   _layer_rows(summary), (5, 6))
    tables = [layers, *(_training_tables(summary) if summary.training is not None else [])]
    if summary.fit is not None:
        fit = summary.fit
        lines.append(f"Largest batch that fits {format_bytes(fit.budget_bytes)}: {fit.batch_size}"
                     f"{' or more' if fit.at_limit else ''} (estimated peak {format_bytes(fit.peak_bytes)})")
    return display_html(title, lines=lines, tables=tables)


def png_file_url(path: str | Path) -> str:
    """``data:image/png;base64,...`` of a PNG file."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def figures_html(title: str, pictures: Sequence[tuple[str | Path, str]], lines: Sequence[str] = ()) -> str:
    """PNG files (``(path, caption)``) inline, under ``title``; a file gone since: its caption says so."""
    figures = [{"url": png_file_url(p), "caption": caption} for p, caption in pictures if Path(p).is_file()]
    missing = [f"{p} is gone (the picture was removed since)" for p, _ in pictures if not Path(p).is_file()]
    return display_html(title, lines=[*lines, *missing], figures=figures)


RUN_COLUMNS = ("run", "model", "dataset", "epochs", "best_val_acc", "test_acc", "seconds", "status")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


class RunsTable(list):
    """What :func:`cnnlab.runs.list_runs` returns: its rows (dicts), shown in a notebook as the table of
    ``cnnlab runs``; everything else is a plain list's (``repr``, ``==``, JSON)."""

    def _repr_html_(self) -> str:
        rows = [[_cell(row.get(key)) for key in RUN_COLUMNS] for row in self]
        lines = [] if rows else ["No runs here."]
        return display_html(f"{len(rows)} run{'s' * (len(rows) != 1)}", lines=lines,
                            tables=[table(RUN_COLUMNS, rows, (4, 5, 6))])
