"""The JSON API of ``cnnlab explore``: one route per view, each a thin call into
:func:`cnnlab.visualize.service.handle` (the framework-free answers the notebook widget gets too; the app
holds no CNN arithmetic) once pydantic has checked the body. Request bodies are pydantic models; images
come as ``{"index": N}`` or a data URL (``{"image": "data:image/png;base64,..."}``), prepared exactly as
training prepared its images.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from cnnlab.visualize.catalog import Catalog
from cnnlab.visualize.service import handle

__all__ = ["router", "ImageSpec", "CellRequest", "PlaygroundRequest"]

router = APIRouter(prefix="/api")
Int = Annotated[int, Field(strict=True)]


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


def _body(spec: BaseModel) -> dict[str, Any]:
    return spec.model_dump(exclude_none=True)


@router.get("/subjects")
def list_subjects(served: Served) -> list[dict[str, Any]]:
    """Every run (or the model) served: name, model, dataset, test accuracy, input shape, classes, curves."""
    return handle(served, "subjects")


@router.get("/subjects/{key}")
def get_subject(key: str, served: Served) -> dict[str, Any]:
    """One subject with what the page needs to ask about it: layers, conv layers, Grad-CAM's layer."""
    return handle(served, "subject", key)


@router.post("/subjects/{key}/predict")
def predict(key: str, spec: ImageSpec, served: Served) -> dict[str, Any]:
    """The class probabilities for the image, and the image as the model sees it."""
    return handle(served, "predict", key, _body(spec))


@router.post("/subjects/{key}/layers")
def layers(key: str, spec: LayersRequest, served: Served) -> dict[str, Any]:
    """CNN Explainer's overview: every layer's maps, shapes, k/s/p/d, formula, receptive field and MACs."""
    return handle(served, "layers", key, _body(spec))


@router.post("/subjects/{key}/cell")
def cell(key: str, spec: CellRequest, served: Served) -> dict[str, Any]:
    """The multiply-adds behind one cell of a feature map (a pooling layer: its window and winner)."""
    return handle(served, "cell", key, _body(spec))


@router.post("/subjects/{key}/erf")
def erf(key: str, spec: ErfRequest, served: Served) -> dict[str, Any]:
    """One cell's receptive-field box and its effective receptive field on the image."""
    return handle(served, "erf", key, _body(spec))


@router.post("/subjects/{key}/gradcam")
def gradcam(key: str, spec: GradcamRequest, served: Served) -> dict[str, Any]:
    """Where the model looks: Grad-CAM at a layer (default: the automatic one, with the reason), saliency, IG."""
    return handle(served, "gradcam", key, _body(spec))


@router.get("/subjects/{key}/filters")
def filters(key: str, served: Served, layer: str | None = None) -> dict[str, Any]:
    """A convolution's kernels as one picture (default: the first convolution)."""
    return handle(served, "filters", key, {"layer": layer})


@router.post("/playground")
def play(spec: PlaygroundRequest) -> dict[str, Any]:
    """The output size of a conv layer with its worked formula, and its animation (400: an impossible layer)."""
    return handle(None, "playground", None, _body(spec))
