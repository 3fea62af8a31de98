"""What every picture is made of: a model (a run directory's trained weights, or a registry model
with random or ``--weights`` weights) and an input image (a file, or ``--index N`` of a test split),
prepared exactly as the model saw its data in training (``ToTensor`` scaling, the dataset's
normalisation, its channels and square side)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
from PIL import Image, UnidentifiedImageError

from cnnlab.data import LoadOptions, get_dataset_spec, load_splits, normalization, repeat_channels, resize_images
from cnnlab.data.decode import decode_image_bytes
from cnnlab.data.imagefolder import decode_image
from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.models import create_model, get_model_info, list_models, load_weights
from cnnlab.runs import Run, RunOutput, load_run, normalized_input
from cnnlab.runtime import resolve_device

__all__ = ["Subject", "InputImage", "Source", "resolve", "load_subject", "load_image", "load_test_split", "take",
           "test_image", "image_from_bytes", "to_model_input", "parse_target", "default_dir", "default_out", "writing"]


@dataclass
class Subject:
    """A model ready to look inside, with what is needed to feed it."""

    model: nn.Module  # in eval mode
    name: str  # the registry name of the architecture
    description: str  # "run runs/x (convnet on digits)" or "convnet (random weights)"
    input_shape: tuple[int, int, int]  # (C, H, W) the model takes
    classes: list[str]
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # (mean, std) after ToTensor
    dataset: str | None = None  # for --index
    data_dir: str | None = None
    run: Run | None = None  # the run (a cnnlab.runs.LoadedRun), or None for a registry model
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def run_dir(self) -> Path | None:
        return None if self.run is None else Path(self.run.path)


@dataclass
class InputImage:
    """One image: ``pixels`` (C, H, W) in [0, 1] to show, ``x`` (1, C, H, W) as the model takes it."""

    pixels: torch.Tensor
    x: torch.Tensor
    label: int | None
    caption: str


def _registry_subject(source: str, *, weights: str | os.PathLike | None, options: dict[str, Any],
                      num_classes: int | None, in_channels: int | None, input_size: int | None,
                      dataset: str | None, data_dir: str | None, device: torch.device) -> Subject:
    info = get_model_info(source)
    spec = get_dataset_spec(dataset) if dataset else None
    if num_classes is None and spec is not None and spec.num_classes:
        num_classes = spec.num_classes
    model = create_model(source, num_classes=num_classes, in_channels=in_channels, input_size=input_size, **options)
    if weights is not None:
        load_weights(model, weights)
    c = in_channels or info.in_channels
    side = input_size or info.input_size
    k = num_classes or info.num_classes
    norm = normalization(dataset, None) if dataset and spec is not None and spec.mean and len(spec.mean) == c else None
    what = f"weights from {weights}" if weights is not None else "random weights"
    return Subject(model.to(device).eval(), source, f"{source} ({what})", (c, side, side), [str(i) for i in range(k)],
                   norm, dataset, data_dir, None, device)


def load_subject(source: str | os.PathLike, *, weights: str | os.PathLike | None = None,
                 options: dict[str, Any] | None = None, num_classes: int | None = None,
                 in_channels: int | None = None, input_size: int | None = None, dataset: str | None = None,
                 data_dir: str | None = None, device: str = "cpu") -> Subject:
    """A run directory (its ``model.pt``) or a registry model name (random weights, or ``weights``)."""
    dev = resolve_device(device)
    path = Path(source)
    if path.is_dir():
        given = [flag for flag, value in (("--weights", weights), ("-o", options), ("--num-classes", num_classes),
                                          ("--in-channels", in_channels), ("--input-size", input_size)) if value]
        if given:
            raise CnnlabError(f"{path} is a run directory: it has its own weights and settings; {given[0]} is for a "
                              f"model name")
        run = load_run(path, dev)
        cfg = run.config
        return Subject(run.model.eval(), cfg.model, f"run {path} ({cfg.model} on {cfg.dataset})", run.input_shape,
                       list(run.classes), run.preprocessing.normalize, dataset or cfg.dataset,
                       data_dir or cfg.data_dir, run, dev)
    if str(source) in list_models():
        return _registry_subject(str(source), weights=weights, options=options or {}, num_classes=num_classes,
                                 in_channels=in_channels, input_size=input_size, dataset=dataset, data_dir=data_dir,
                                 device=dev)
    if os.sep in str(source) or path.exists():
        raise CnnlabError(f"run directory {path} does not exist; pass the folder `cnnlab train` wrote, or a model name")
    raise UnknownNameError("model (or run directory)", str(source), list_models())


@dataclass
class Source:
    """What the command line says about the model and the image, not yet loaded (see :func:`resolve`)."""

    source: str
    image: str | os.PathLike | None = None
    index: int | None = None
    dataset: str | None = None
    data_dir: str | None = None
    weights: str | os.PathLike | None = None
    options: dict[str, Any] = field(default_factory=dict)
    num_classes: int | None = None
    in_channels: int | None = None
    input_size: int | None = None
    convert: bool = False
    device: str = "cpu"

    def subject(self) -> Subject:
        return load_subject(self.source, weights=self.weights, options=self.options, num_classes=self.num_classes,
                            in_channels=self.in_channels, input_size=self.input_size, dataset=self.dataset,
                            data_dir=self.data_dir, device=self.device)


def resolve(target: "Subject | Source", image: "InputImage | None" = None, *, need_image: bool = True
            ) -> tuple[Subject, "InputImage | None"]:
    """``(subject, image)`` from a loaded subject (and image) or from a :class:`Source` to load."""
    if isinstance(target, Source):
        subject = target.subject()
        if image is None and need_image:
            image = load_image(subject, target.image, target.index, convert=target.convert)
        return subject, image
    return target, image


def to_model_input(pixels: torch.Tensor, subject: Subject) -> torch.Tensor:
    """(N, C, H, W) or (C, H, W) in [0, 1] -> the model's input: normalised as in training, on its device."""
    return normalized_input(pixels, subject.normalize, subject.device)


def _file_channels(path: Path) -> tuple[int, set[int]] | None:
    """(channels the file has, channel counts it can feed losslessly): a gray image stored as RGB or
    with a gray palette (as ``torchvision.utils.save_image`` writes one) feeds a gray model too."""
    try:
        with Image.open(path) as im:
            if im.mode in ("1", "L", "LA", "I", "I;16", "F"):
                return 1, {1}
            rgb = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError):
        return None  # decode_image explains
    gray = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
    return 3, ({1, 3} if gray else {3})


def _image_file(subject: Subject, path: Path, convert: bool) -> InputImage:
    c, side, _ = subject.input_shape
    channels = _file_channels(path) if path.is_file() else None
    found = None if channels is None or c in channels[1] else channels[0]
    if found is not None and not convert:
        kind = {1: "gray", 3: "RGB"}
        raise CnnlabError(f"{path} has {found} channel{'s' * (found > 1)} ({kind[found]}) but the model takes {c} "
                          f"({kind.get(c, c)}); pass a {kind.get(c, c)} image, or --convert to convert it")
    pixels = decode_image(path, c, side).float() / 255.0  # ToTensor(): uint8 / 255, resized to side x side
    return InputImage(pixels, to_model_input(pixels, subject), None, str(path))


def image_from_bytes(subject: Subject, data: bytes, caption: str = "the uploaded image") -> InputImage:
    """An image file's bytes (an upload, a drawing) as the model takes it: decoded in memory, converted to
    the model's channels and side, scaled and normalised as in training."""
    c, side, _ = subject.input_shape
    pixels = decode_image_bytes(data, c, side, caption).float() / 255.0  # ToTensor(): uint8 / 255
    return InputImage(pixels, to_model_input(pixels, subject), None, caption)


def load_test_split(subject: Subject, *, count: int | None = None):
    """The test split the subject's images come from: the run's (prepared as in training) or
    ``--dataset``'s (resized and repeated to the model's input); the first ``count`` images if given."""
    if subject.dataset is None:
        raise CnnlabError("--index needs a dataset: pass a run directory, or --dataset NAME with a model name")
    c, side, _ = subject.input_shape
    if subject.run is not None:  # prepared exactly as training prepared it
        data = subject.run.split("test", subject.data_dir, "cpu")
        return data if count is None else data.subset(torch.arange(min(count, len(data))))
    test = load_splits(subject.dataset, subject.data_dir, LoadOptions()).test
    if count is not None:
        test = test.subset(torch.arange(min(count, len(test))))
    if test.sample_shape[0] not in (1, c):
        raise CnnlabError(f"{subject.dataset} images have {test.sample_shape[0]} channels but the model takes {c}")
    if test.sample_shape[1:] != (side, side):
        test = resize_images(test, side)
    return repeat_channels(test, c) if test.sample_shape[0] != c else test


def take(data, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images (N, C, H, W), labels) of some items of any split, in memory or streamed."""
    images, labels = next(iter(data.batches([torch.tensor(list(indices), dtype=torch.long)])))
    return images.cpu(), labels.cpu()


def test_image(subject: Subject, index: int, data=None) -> InputImage:
    """Test image ``index`` of the subject's test split (``data``: that split, loaded once by the caller
    with :func:`load_test_split`, for many images), prepared as in training."""
    data = load_test_split(subject) if data is None else data
    if not 0 <= index < len(data):
        raise CnnlabError(f"--index {index} is outside the test split of {subject.dataset} (0..{len(data) - 1})")
    images, labels = take(data, [index])
    pixels = images[0].float() / 255.0
    label = int(labels[0])
    name = data.classes[label] if label < len(data.classes) else str(label)
    return InputImage(pixels, to_model_input(pixels, subject), label,
                      f"test image {index} of {subject.dataset} (class {name})")


def load_image(subject: Subject, image: str | os.PathLike | None = None, index: int | None = None, *,
               convert: bool = False) -> InputImage:
    """An image file (converted to the model's side; its channel count must match unless ``convert``,
    or the run was trained on an image folder, whose files are all converted) or test image ``index``
    (default 0 where a test split is known)."""
    if image is not None and index is not None:
        raise CnnlabError("give an IMAGE file or --index N, not both")
    if image is not None:
        # a run on an image folder converted every file to its channels in training: so are its images here
        own_folder = subject.run is not None and subject.dataset == "imagefolder"
        return _image_file(subject, Path(image), convert or own_folder)
    if index is None and subject.dataset is None:
        raise CnnlabError(f"{subject.name} is a model name: give an IMAGE file, or --index N with --dataset NAME")
    return test_image(subject, 0 if index is None else index)


def parse_target(target: str | int | None, classes: Sequence[str]) -> int | None:
    """``--target``: a class name or an index; None: the predicted class."""
    if target is None:
        return None
    text = str(target)
    if text in classes:
        return list(classes).index(text)
    try:
        value = int(text)
    except ValueError:
        raise UnknownNameError("class", text, classes) from None
    if not 0 <= value < len(classes):
        raise CnnlabError(f"--target {value} is not a class index of this model (0..{len(classes) - 1})")
    return value


def default_dir(subject: Subject) -> Path:
    """Where pictures go by default: ``RUN_DIR/visualize`` for a run, ``visualize/<model>`` for a model name."""
    if subject.run_dir is not None:
        return subject.run_dir / "visualize"
    return Path("visualize") / subject.name


def default_out(subject: Subject, stem: str, suffix: str = ".png") -> Path:
    return default_dir(subject) / f"{stem}{suffix}"


def writing(subject: Subject, target: str | os.PathLike, command: str):
    """The context every picture is written in (:class:`cnnlab.runs.RunOutput`): into a run
    directory (the default ``RUN/visualize``, or an ``--out`` inside any run) only holding that
    run's lock; into the subject's own run also only while model.pt is still the one the subject
    was loaded from, each file then recorded in ``RUN/derived.json`` (``.record(path)``)."""
    run = subject.run
    return RunOutput(run.path if run is not None else None, target, command, run=run)
