"""The JSON API of ``cnnlab explore``: one route per view, each a thin call into the library (the app holds
no CNN arithmetic): :mod:`cnnlab.visualize.views` for predictions, the overview, Grad-CAM, filters, the
effective receptive field and the playground; :func:`cnnlab.visualize.cell.explain_cell` for the
multiply-adds of one cell. Request bodies are pydantic models; images come as ``{"index": N}`` or a data
URL (``{"image": "data:image/png;base64,..."}``), prepared exactly as training prepared its images.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any, Literal

import torch
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from cnnlab.app.catalog import Catalog, Entry
from cnnlab.errors import CnnlabValueError
from cnnlab.visualize.animate import parse_padding
from cnnlab.visualize.cell import explain_cell
from cnnlab.visualize.filters import conv_layers
from cnnlab.visualize.layers import choose_gradcam_layer
from cnnlab.visualize.source import InputImage, to_model_input
from cnnlab.visualize.views import (attribution_view, erf_view, feature_map_layers, filters_view, layer_overview,
                                    picture, playground, prediction)

__all__ = ["router", "ImageSpec", "CellRequest", "PlaygroundRequest"]

router = APIRouter(prefix="/api")
Int = Annotated[int, Field(strict=True)]
DATA_URL = re.compile(r"data:image/[\w.+-]+(?:;[\w=.+-]+)*;base64,", re.IGNORECASE)


class ImageSpec(BaseModel):
    """A test image by index, or an image file as a data URL; neither: test image 0."""

    model_config = ConfigDict(extra="forbid")
    index: Int | None = Field(None, description="test image N of the subject's dataset")
    image: str | None = Field(None, description="data:image/...;base64,... (a PNG, JPEG, ...; a canvas's toDataURL())")


class LayersRequest(ImageSpec):
    channels: Int = Field(8, description="maps per layer (1..64)")
    expand: str | None = Field(None, description="a stage of a deep net whose every layer gets pictures")


class CellRequest(ImageSpec):
    layer: str
    channel: Int = 0
    y: Int
    x: Int


class ErfRequest(ImageSpec):
    layer: str
    y: Int
    x: Int


class GradcamRequest(ImageSpec):
    layer: str | None = Field(None, description="default: the last layer with spatial extent > 1")
    target: Int | None = Field(None, description="class index; default: the predicted class")
    methods: list[Literal["gradcam", "saliency", "ig"]] = ["gradcam", "saliency"]


class PlaygroundRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: Int
    kernel: Int
    stride: Int = 1
    padding: str | Int = Field("0", description="an integer, 'same' or 'valid'")
    dilation: Int = 1
    transposed: bool = False
    output_padding: Int = 0


def catalog(request: Request) -> Catalog:
    return request.app.state.catalog


Served = Annotated[Catalog, Depends(catalog)]


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


def _image(served: Catalog, entry: Entry, spec: ImageSpec) -> InputImage:
    if spec.index is not None and spec.image is not None:
        raise CnnlabValueError("give index or image, not both")
    return served.image(entry, spec.index, None if spec.image is None else image_bytes(spec.image))


@router.get("/subjects")
def list_subjects(served: Served) -> list[dict[str, Any]]:
    """Every run (or the model) served: name, model, dataset, test accuracy, input shape, classes, curves."""
    return served.list()


@router.get("/subjects/{key}")
def get_subject(key: str, served: Served) -> dict[str, Any]:
    """One subject with what the page needs to ask about it: layers, conv layers, Grad-CAM's layer."""
    entry = served.get(key)
    with entry.lock:
        subject = served.subject(entry)
        model = subject.model
        choice = choose_gradcam_layer(model, subject.input_shape)
        return entry.record() | {
            "test_size": served.test_size(entry), "gray": subject.input_shape[0] == 1,
            "conv_layers": conv_layers(model), "layers": feature_map_layers(model, subject.input_shape),
            "gradcam_layer": {"name": choice.name, "reason": choice.reason}, "description": subject.description}


@router.post("/subjects/{key}/predict")
def predict(key: str, spec: ImageSpec, served: Served) -> dict[str, Any]:
    """The class probabilities for the image, and the image as the model sees it."""
    entry = served.get(key)
    with entry.lock:
        image = _image(served, entry, spec)
        subject = served.subject(entry)
        return prediction(subject.model, image.x, subject.classes) | {"label": image.label,
                                                                      "input": picture(image.pixels)}


@router.post("/subjects/{key}/layers")
def layers(key: str, spec: LayersRequest, served: Served) -> dict[str, Any]:
    """CNN Explainer's overview: every layer's maps, shapes, k/s/p/d, formula, receptive field and MACs."""
    entry = served.get(key)
    with entry.lock:
        image = _image(served, entry, spec)
        overview = layer_overview(served.subject(entry).model, image.x, channels=spec.channels, expand=spec.expand)
        return overview | {"input": picture(image.pixels), "label": image.label}


@router.post("/subjects/{key}/cell")
def cell(key: str, spec: CellRequest, served: Served) -> dict[str, Any]:
    """The multiply-adds behind one cell of a feature map (a pooling layer: its window and winner)."""
    entry = served.get(key)
    with entry.lock:
        image = _image(served, entry, spec)
        return explain_cell(served.subject(entry).model, image.x, spec.layer, spec.channel, spec.y, spec.x).to_dict()


@router.post("/subjects/{key}/erf")
def erf(key: str, spec: ErfRequest, served: Served) -> dict[str, Any]:
    """One cell's receptive-field box and its effective receptive field on the image."""
    entry = served.get(key)
    with entry.lock:
        image = _image(served, entry, spec)
        return erf_view(served.subject(entry).model, image.x, image.pixels, spec.layer, (spec.y, spec.x))


@router.post("/subjects/{key}/gradcam")
def gradcam(key: str, spec: GradcamRequest, served: Served) -> dict[str, Any]:
    """Where the model looks: Grad-CAM at a layer (default: the automatic one, with the reason), saliency, IG."""
    entry = served.get(key)
    with entry.lock:
        image = _image(served, entry, spec)
        subject = served.subject(entry)
        black = to_model_input(torch.zeros_like(image.pixels), subject)
        return attribution_view(subject.model, image.x, image.pixels, subject.classes, layer=spec.layer,
                                target=spec.target, methods=spec.methods, baseline=black)


@router.get("/subjects/{key}/filters")
def filters(key: str, served: Served, layer: str | None = None) -> dict[str, Any]:
    """A convolution's kernels as one picture (default: the first convolution)."""
    entry = served.get(key)
    with entry.lock:
        return filters_view(served.subject(entry).model, layer)


@router.post("/playground")
def play(spec: PlaygroundRequest) -> dict[str, Any]:
    """The output size of a conv layer with its worked formula, and its animation (400: an impossible layer)."""
    return playground(spec.input, spec.kernel, spec.stride, parse_padding(spec.padding), spec.dilation,
                      transposed=spec.transposed, output_padding=spec.output_padding)
