"""The widget classes of :mod:`cnnlab.widgets`, built on first use (anywidget and traitlets are imported then,
with a one-line error naming the ``notebook`` extra where they are missing), and their front-end modules
(``_esm``), made from the package's own scripts under ``cnnlab/templates/``.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

import torch

from cnnlab.display import display_html, table
from cnnlab.errors import CnnlabError
from cnnlab.pages import asset, fragment
from cnnlab.visualize.catalog import Catalog
from cnnlab.visualize.service import error_reply, handle
from cnnlab.visualize.views import picture

__all__ = ["arithmetic_esm", "explore_esm", "arithmetic_class", "explore_class", "SETTINGS"]

SETTINGS = ("input", "kernel", "stride", "padding", "dilation", "transposed", "output_padding")


def arithmetic_esm() -> str:
    """The arithmetic widget's module: the animation player + ``widget_arithmetic.js``."""
    return f"{asset('animation.js')}\n{asset('widget_arithmetic.js')}"


def explore_esm() -> str:
    """The explore widget's module: the app page's own scripts, the page's code in one function
    ``cnnlabExplore(ROOT, TRANSPORT, CNNLAB)`` (its elements looked up in ROOT, its data through TRANSPORT),
    then ``widget_explore.js`` (anywidget's ``render``)."""
    page = f"{asset('explore_views.js')}\n{asset('explore.js')}"
    return (f"{asset('animation.js')}\n{asset('explore_transport.js')}\n"
            f"function cnnlabExplore(ROOT, TRANSPORT, CNNLAB) {{\n{page}\n}}\n{asset('widget_explore.js')}")


def _anywidget() -> tuple[Any, Any]:
    try:
        import anywidget
        import traitlets
    except ImportError:
        raise CnnlabError("cnnlab's notebook widgets need anywidget: pip install 'cnnlab[notebook]'") from None
    return anywidget, traitlets


def with_html(bundle: Any, html: str) -> Any:
    """A widget's mime bundle with ``text/html`` added: what a notebook without widgets shows."""
    data, meta = bundle if isinstance(bundle, tuple) else (bundle, None)
    data = dict(data or {}) | {"text/html": html}
    return (data, meta) if meta is not None else data


def arithmetic_html(settings: dict[str, Any], result: dict[str, Any], error: str) -> str:
    """The widget's state as static HTML: the formula and the animation player inline (or the one-line error)."""
    shown = ", ".join(f"{k} {v}" for k, v in settings.items())
    if error or not result.get("animation"):
        return display_html(f"Convolution arithmetic: {shown}", lines=[error or "no answer yet"])
    return fragment("animation.html", title=f"output size {result['output']}", animation=result["animation"],
                    uid=f"cnnlab-animation-{uuid.uuid4().hex[:12]}")


@functools.cache
def arithmetic_class() -> type:
    """``ArithmeticWidget``: the settings as traits in, ``result`` / ``error`` out."""
    anywidget, traitlets = _anywidget()

    class ArithmeticWidget(anywidget.AnyWidget):
        """Input/kernel/stride/padding/dilation/transposed -> the output size, the formula and the animation."""

        _esm = arithmetic_esm()
        _markup = traitlets.Unicode(fragment("arithmetic.html", title="convolution arithmetic")).tag(sync=True)
        input = traitlets.Int(5).tag(sync=True)
        kernel = traitlets.Int(3).tag(sync=True)
        stride = traitlets.Int(1).tag(sync=True)
        padding = traitlets.Union([traitlets.Int(), traitlets.Unicode()], default_value=0).tag(sync=True)
        dilation = traitlets.Int(1).tag(sync=True)
        transposed = traitlets.Bool(False).tag(sync=True)
        output_padding = traitlets.Int(0).tag(sync=True)
        result = traitlets.Dict().tag(sync=True)
        error = traitlets.Unicode("").tag(sync=True)

        def __init__(self, **kwargs: Any):
            super().__init__(**kwargs)
            self.update()

        @traitlets.observe(*SETTINGS)
        def _settings_changed(self, change: dict) -> None:
            self.update()

        def settings(self) -> dict[str, Any]:
            return {name: getattr(self, name) for name in SETTINGS}

        def update(self) -> None:
            """Answer the current settings (the playground of ``cnnlab explore``)."""
            try:
                result, error = handle(None, "playground", None, self.settings()), ""
            except CnnlabError as exc:
                result, error = {}, error_reply(exc)[1]
            with self.hold_sync():
                self.result, self.error = result, error

        def _repr_mimebundle_(self, **kwargs: Any) -> Any:
            return with_html(super()._repr_mimebundle_(**kwargs), arithmetic_html(self.settings(), self.result,
                                                                                   self.error))

    return ArithmeticWidget


def explore_html(catalog: Catalog) -> str:
    """The explore widget as static HTML: the overview of every layer for test image 0 (no dataset: a blank
    image) -- shapes, k/s/p/d, formula, receptive field, MACs -- and each layer's first map."""
    entry = next(iter(catalog.entries.values()))
    info = handle(catalog, "subject", entry.id)
    body = {"index": 0} if info["test_size"] else {"image": _blank(catalog, entry)}
    overview = handle(catalog, "layers", entry.id, body | {"channels": 1})
    rows = [[layer["name"], layer["transition"], layer.get("formula") or "", f"{layer['macs']:,}",
             "" if layer.get("rf") is None else str(layer["rf"])] for layer in overview["layers"]]
    figures = [{"url": overview["input"], "caption": "input"}] + [
        {"url": layer["maps"][0], "caption": layer["name"]} for layer in overview["layers"] if layer.get("maps")]
    return display_html(f"cnnlab explore: {info['description']}",
                        lines=["test image 0" if info["test_size"] else "a blank image"],
                        tables=[table(("layer", "HxWxC => HxWxC", "output size", "MACs", "RF"), rows, (3,))],
                        figures=figures)


def _blank(catalog: Catalog, entry: Any) -> str:
    """A black image of the subject's input shape, as a PNG data URL (what the page's canvas starts with)."""
    return picture(torch.zeros(catalog.subject(entry).input_shape))


def answer(catalog: Catalog, content: dict[str, Any]) -> dict[str, Any]:
    """The reply to one message of the page, ``{"id", "name", "subject", "body"}``: ``{"id", "answer"}``, or
    ``{"id", "error"}`` (a user's mistake: its one line; anything else: its type and message, as the app's 500)."""
    reply: dict[str, Any] = {"id": content.get("id")}
    try:
        reply["answer"] = handle(catalog, str(content.get("name")), content.get("subject"), content.get("body"))
    except Exception as exc:  # the widget keeps answering, as the app's server does, with the same line
        reply["error"] = error_reply(exc)[1]
    return reply


@functools.cache
def explore_class() -> type:
    """``ExploreWidget(catalog)``: the page of ``cnnlab explore``, its requests answered over messages."""
    anywidget, traitlets = _anywidget()

    class ExploreWidget(anywidget.AnyWidget):
        """The views of ``cnnlab explore`` for the catalog's subject(s)."""

        _esm = explore_esm()
        _markup = traitlets.Unicode(fragment("explore.html", title="cnnlab explore", config={})).tag(sync=True)
        _config = traitlets.Dict().tag(sync=True)

        def __init__(self, catalog: Catalog, **kwargs: Any):
            first = catalog.only
            super().__init__(_config={"token": None, "subject": first, "widget": True}, **kwargs)
            self.catalog = catalog
            self._static: str | None = None
            self.on_msg(self._on_message)

        def _on_message(self, widget: Any, content: Any, buffers: Any) -> None:
            if isinstance(content, dict) and "name" in content:
                self.send(answer(self.catalog, content))

        def request(self, name: str, body: dict[str, Any] | None = None, subject: str | None = None) -> Any:
            """What the page gets for ``name`` (``subject``: default the only one) -- from Python."""
            key = subject if subject is not None else self._config.get("subject")
            return handle(self.catalog, name, key, body)

        def _repr_mimebundle_(self, **kwargs: Any) -> Any:
            if self._static is None:
                self._static = explore_html(self.catalog)
            return with_html(super()._repr_mimebundle_(**kwargs), self._static)

    return ExploreWidget
