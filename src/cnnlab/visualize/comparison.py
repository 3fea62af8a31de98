"""``cnnlab compare``'s pictures and page: the runs' curves overlaid (:func:`cnnlab.figures.compare_curves_figure`)
as a PNG, and the whole comparison as one self-contained HTML page (``templates/compare.html``).
The numbers are :mod:`cnnlab.runs.compare`'s."""

from __future__ import annotations

import os
from pathlib import Path

from cnnlab.figures import compare_curves_figure, figure_to_png, png_data_url
from cnnlab.pages import write_page
from cnnlab.runs import RunOutput
from cnnlab.runs.compare import Comparison
from cnnlab.storage import atomic_write

__all__ = ["run_labels", "curves_png", "write_comparison"]


def run_labels(comparison: Comparison) -> list[str]:
    """A short name per run: its folder's name (A, B, ... when two runs share a name)."""
    names = [Path(s.run).name or s.run for s in comparison.runs]
    return names if len(set(names)) == len(names) else [chr(ord("A") + i) if i < 26 else str(i)
                                                        for i in range(len(names))]


def curves_png(comparison: Comparison) -> bytes:
    labels = run_labels(comparison)
    return figure_to_png(compare_curves_figure([(label, s.curves) for label, s in zip(labels, comparison.runs)]),
                         dpi=110)


def write_comparison(comparison: Comparison, *, png: str | os.PathLike | None = None,
                     html: str | os.PathLike | None = None) -> dict[str, str]:
    """Write the curves PNG and/or the HTML page (each atomically; into a run directory only under
    its lock); records the paths in ``comparison.files`` and returns them."""
    picture = curves_png(comparison) if png is not None or html is not None else b""
    if png is not None:
        with RunOutput(None, png, "compare"):
            atomic_write(Path(png), picture, parents=True)
        comparison.files["curves"] = str(png)
    if html is not None:
        with RunOutput(None, html, "compare"):
            write_page(html, "compare.html", title="cnnlab compare: " + " vs ".join(run_labels(comparison)),
                       c=comparison.to_dict(), labels=run_labels(comparison), curves=png_data_url(picture))
        comparison.files["html"] = str(html)
    return dict(comparison.files)
