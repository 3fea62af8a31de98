"""The views of ``cnnlab explore`` as requests and answers, free of any web framework: an endpoint's name and
a JSON body in, a JSON-ready dict out. Both front ends of the one explore page call it -- the app's routes
(:mod:`cnnlab.app.api`, after pydantic has checked the body) and the notebook widget
(:func:`cnnlab.widgets.explore`, whose page sends ``{"name", "subject", "body"}`` messages) -- so a view is
computed in one place, by the library functions the CLI uses (:mod:`cnnlab.visualize.views`,
:func:`cnnlab.visualize.cell.explain_cell`).

Endpoints (the page's ``api(name, body)``): ``subjects``, ``subject``, ``predict``, ``layers``, ``cell``,
``erf``, ``gradcam``, ``filters`` (about one subject of the :class:`Catalog`) and ``playground`` (about none).
An image is ``{"index": N}`` or ``{"image": "data:image/png;base64,..."}``. A mistake in a body is a
:class:`cnnlab.errors.CnnlabValueError` in one line.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Callable

import torch

from cnnlab.errors import CnnlabError, CnnlabValueError
from cnnlab.trace import sample_input, trace
from cnnlab.visualize.animate import parse_padding
from cnnlab.visualize.catalog import Catalog, Entry, SubjectNotFound
from cnnlab.visualize.cell import explain_cell
from cnnlab.visualize.filters import conv_layers
from cnnlab.visualize.layers import check_image, choice_from_trace
from cnnlab.visualize.source import InputImage, to_model_input
from cnnlab.visualize.views import (attribution_view, erf_view, feature_map_layers, filters_view, layer_overview,
                                    picture, playground, prediction)

__all__ = ["ENDPOINTS", "handle", "image_bytes", "check_body", "error_reply"]

DATA_URL = re.compile(r"data:image/[\w.+-]+(?:;[\w=.+-]+)*;base64,", re.IGNORECASE)
IMAGE = {"index": int, "image": str}
# each endpoint's body: field -> type (a tuple: any of them); a field not named here is a mistake
BODIES: dict[str, dict[str, Any]] = {
    "subjects": {}, "subject": {}, "predict": IMAGE,
    "layers": IMAGE | {"channels": int, "expand": str},
    "cell": IMAGE | {"layer": str, "channel": int, "y": int, "x": int},
    "erf": IMAGE | {"layer": str, "y": int, "x": int},
    "gradcam": IMAGE | {"layer": str, "target": int, "methods": list},
    "filters": {"layer": str},
    "playground": {"input": int, "kernel": int, "stride": int, "padding": (str, int), "dilation": int,
                   "transposed": bool, "output_padding": int},
}
REQUIRED = {"cell": ("layer", "y", "x"), "erf": ("layer", "y", "x"), "playground": ("input", "kernel")}


def check_body(name: str, body: dict[str, Any] | None) -> dict[str, Any]:
    """``body`` without its None values, each field of the type the endpoint takes (one line if not)."""
    fields = BODIES[name]
    if body is not None and not isinstance(body, dict):
        raise CnnlabValueError(f"the body of {name} must be a JSON object, not {type(body).__name__}")
    body = {k: v for k, v in (body or {}).items() if v is not None}
    for key, value in body.items():
        if key not in fields:
            raise CnnlabValueError(f"{name} takes no field {key!r}; it takes {', '.join(fields) or 'none'}")
        kind = fields[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, (str, int))):
            want = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
            raise CnnlabValueError(f"{name}: {key} must be {want}, not {value!r}")
    missing = [key for key in REQUIRED.get(name, ()) if key not in body]
    if missing:
        raise CnnlabValueError(f"{name} needs {', '.join(missing)}")
    return body


def image_bytes(text: str) -> bytes:
    """The bytes of a ``data:image/...;base64,`` URL (nothing written anywhere, nothing unpickled)."""
    match = DATA_URL.match(text)
    if match is None:
        raise CnnlabValueError("image must be a data URL: data:image/png;base64,... (e.g. canvas.toDataURL())")
    try:
        return base64.b64decode(text[match.end():], validate=True)
    except (binascii.Error, ValueError):
        raise CnnlabValueError("the image's base64 data is damaged; send the data URL as the browser made it") \
            from None


def _image(catalog: Catalog, entry: Entry, body: dict[str, Any]) -> InputImage:
    if "index" in body and "image" in body:
        raise CnnlabValueError("give index or image, not both")
    data = body.get("image")
    return catalog.image(entry, body.get("index"), None if data is None else image_bytes(data))


def subject(catalog: Catalog, entry: Entry, body: dict[str, Any]) -> dict[str, Any]:
    """One subject with what the page needs to ask about it: layers, conv layers, Grad-CAM's layer."""
    loaded = catalog.subject(entry)
    model, shape = loaded.model, tuple(loaded.input_shape)
    traced = trace(model, check_image(model, sample_input(model, shape)))  # one pass: the layers, Grad-CAM's
    choice = choice_from_trace(model, traced.outputs(), shape)
    return entry.record() | {
        "test_size": catalog.test_size(entry), "gray": shape[0] == 1,
        "conv_layers": conv_layers(model), "layers": feature_map_layers(traced),
        "gradcam_layer": {"name": choice.name, "reason": choice.reason}, "description": loaded.description}


def predict(catalog: Catalog, entry: Entry, body: dict[str, Any]) -> dict[str, Any]:
    """The class probabilities for the image, and the image as the model sees it."""
    image = _image(catalog, entry, body)
    loaded = catalog.subject(entry)
    return prediction(loaded.model, image.x, loaded.classes) | {"label": image.label, "input": picture(image.pixels)}


def layers(catalog: Catalog, entry: Entry, body: dict[str, Any]) -> dict[str, Any]:
    """CNN Explainer's overview: every layer's maps, shapes, k/s/p/d, formula, receptive field and MACs."""
    image = _image(catalog, entry, body)
    overview = layer_overview(catalog.subject(entry).model, image.x, channels=body.get("channels", 8),
                              expand=body.get("expand"))
    return overview | {"input": picture(image.pixels), "label": image.label}


def cell(catalog: Catalog, entry: Entry, body: dict[str, Any]) -> dict[str, Any]:
    """The multiply-adds behind one cell of a feature map (a pooling layer: its window and winner)."""
    image = _image(catalog, entry, body)
    return explain_cell(catalog.subject(entry).model, image.x, body["layer"], body.get("channel", 0), body["y"],
                        body["x"]).to_dict()


def erf(catalog: Catalog, entry: Entry, body: dict[str, Any]) -> dict[str, Any]:
    """One cell's receptive-field box and its effective receptive field on the image."""
    image = _image(catalog, entry, body)
    return erf_view(catalog.subject(entry).model, image.x, image.pixels, body["layer"], (body["y"], body["x"]))


def gradcam(catalog: Catalog, entry: Entry, body: dict[str, Any]) -> dict[str, Any]:
    """Where the model looks: Grad-CAM at a layer (default: the automatic one, with the reason), saliency, IG."""
    methods = body.get("methods", ["gradcam", "saliency"])  # checked by attribution_view
    image = _image(catalog, entry, body)
    loaded = catalog.subject(entry)
    black = to_model_input(torch.zeros_like(image.pixels), loaded)
    return attribution_view(loaded.model, image.x, image.pixels, loaded.classes, layer=body.get("layer"),
                            target=body.get("target"), methods=methods, baseline=black)


def filters(catalog: Catalog, entry: Entry, body: dict[str, Any]) -> dict[str, Any]:
    """A convolution's kernels as one picture (default: the first convolution)."""
    return filters_view(catalog.subject(entry).model, body.get("layer"))


def play(body: dict[str, Any]) -> dict[str, Any]:
    """The output size of a conv layer with its worked formula, and its animation (an impossible layer: one line)."""
    return playground(body["input"], body["kernel"], body.get("stride", 1), parse_padding(body.get("padding", 0)),
                      body.get("dilation", 1), transposed=body.get("transposed", False),
                      output_padding=body.get("output_padding", 0))


ENDPOINTS: dict[str, Callable[[Catalog, Entry, dict[str, Any]], dict[str, Any]]] = {
    "subject": subject, "predict": predict, "layers": layers, "cell": cell, "erf": erf, "gradcam": gradcam,
    "filters": filters}


def handle(catalog: Catalog | None, name: str, key: str | None = None, body: dict[str, Any] | None = None) -> Any:
    """The answer of endpoint ``name`` about subject ``key`` (``subjects`` and ``playground``: none) to ``body``.
    A subject's model answers one request at a time (its lock)."""
    if name not in BODIES:
        raise CnnlabValueError(f"no endpoint {name!r}; there are {', '.join(BODIES)}")
    body = check_body(name, body)
    if name == "playground":
        return play(body)
    if catalog is None:
        raise CnnlabValueError(f"{name} needs a model or a run to look at; only playground works without one")
    if name == "subjects":
        return catalog.list()
    entry = catalog.get(str(key))
    with entry.lock:
        return ENDPOINTS[name](catalog, entry, body)


def error_reply(exc: BaseException) -> tuple[int, str]:
    """(HTTP status, one line) for an exception an answer ended in -- the app's JSON error and the widget's
    reply alike: an unknown subject 404, a user's mistake 400, no memory 507, anything else 500 (the server
    and the widget go on answering)."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else type(exc).__name__
    if isinstance(exc, SubjectNotFound):
        return 404, first
    if isinstance(exc, CnnlabError):
        return 400, first
    if isinstance(exc, MemoryError):
        return 507, "out of memory for this request; try a smaller image or model"
    return 500, f"internal error ({type(exc).__name__}): {first}"
