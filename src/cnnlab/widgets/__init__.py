"""Interactive widgets for notebooks, with anywidget (one approach that runs in JupyterLab, Notebook 7, VS Code
and Colab without an extension install; the ``notebook`` extra: ``pip install 'cnnlab[notebook]'``).

- :func:`arithmetic`: input / kernel / stride / padding / dilation / transposed controls -> the output size, its
  worked formula and the animation (:func:`cnnlab.visualize.views.playground`, the app's playground)
- :func:`explore`: the views of ``cnnlab explore`` (drawing, prediction, the overview of every layer, one
  cell's multiply-adds, Grad-CAM, filters, the playground) for a run, a folder of runs or a zoo model -- the
  app's own page code (``templates/explore*.js``), its requests answered in the kernel by
  :func:`cnnlab.visualize.service.handle`, the function the app's routes call

Both degrade to static HTML where widgets cannot run (a notebook rendered on GitHub or by nbconvert): the
current state, as ``text/html`` beside the widget view. anywidget is imported when a widget is made, never
with this module; the widget classes are built then (:mod:`cnnlab.widgets.classes`).
"""

from __future__ import annotations

import os
from typing import Any

from cnnlab.errors import CnnlabTypeError
from cnnlab.visualize.catalog import Catalog
from cnnlab.widgets.classes import arithmetic_class, arithmetic_esm, explore_class, explore_esm

__all__ = ["arithmetic", "explore", "arithmetic_esm", "explore_esm"]


def arithmetic(input: int = 5, kernel: int = 3, stride: int = 1, padding: int | str = 0, dilation: int = 1, *,
               transposed: bool = False, output_padding: int = 0) -> Any:
    """The convolution-arithmetic widget, starting at these settings; its traits are the settings, ``result``
    (``{"output", "formula", "animation"}``) and ``error`` (one line where the layer is impossible)."""
    return arithmetic_class()(input=input, kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                              transposed=transposed, output_padding=output_padding)


def explore(model_or_run: str | os.PathLike, *, weights: str | None = None, dataset: str | None = None,
            data_dir: str | None = None, device: str = "cpu") -> Any:
    """``cnnlab explore`` in the notebook: ``model_or_run`` is a run directory, a folder of runs or a model name
    of the zoo (``weights``, ``dataset``, ``data_dir``, ``device`` as ``cnnlab explore`` takes them)."""
    if not isinstance(model_or_run, (str, os.PathLike)):
        raise CnnlabTypeError(f"explore takes a run directory, a folder of runs or a model name, not a "
                              f"{type(model_or_run).__name__}; train it with cnnlab train, or pass a model name")
    catalog = Catalog.open(model_or_run, weights=weights, dataset=dataset, data_dir=data_dir, device=device)
    return explore_class()(catalog)
