"""The dataset registry: every dataset, the user's image folders included, is one entry.

A dataset's loader returns its splits as :class:`~cnnlab.data.tensors.TensorData` (uint8,
decoded once, in memory) or, for image folders too large for memory, as
:class:`~cnnlab.data.imagefolder.StreamingImages`. :func:`load_splits` then applies what the
run asks for (resize, repeat gray channels, a seeded validation split) the same way for all.

Where the data lives: ``--data-dir``, else ``$CNNLAB_DATA``, else ``~/.cache/cnnlab/data``.
MNIST uses torchvision's layout under that root: ``MNIST/raw/*-ubyte``.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from cnnlab.data.imagefolder import image_folder_splits
from cnnlab.data.splits import Splits, split_validation, stratified_holdout
from cnnlab.data.tensors import TensorData
from cnnlab.data.transforms import repeat_channels, resize_images
from cnnlab.errors import CnnlabError, DataNotFoundError, UnknownNameError
from cnnlab.paths import check_folder

__all__ = [
    "LoadOptions",
    "DatasetSpec",
    "DATASETS",
    "data_root",
    "get_dataset_spec",
    "list_datasets",
    "load_dataset",
    "load_splits",
    "normalization",
]

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclass(frozen=True)
class LoadOptions:
    """How to read a dataset; loaders use what applies to them."""

    download: bool = True  # torchvision datasets: fetch when missing and a network exists
    input_size: int | None = None  # image folders decode straight to this side (default 32)
    in_channels: int | None = None  # image folders: None = 3 if any image has colour, else 1
    skip_bad_images: bool = False  # image folders: skip and count unreadable files
    stream: bool = False  # image folders: decode per batch in DataLoader workers
    workers: int = 2


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    in_channels: int
    input_size: int
    num_classes: int
    description: str
    loader: Callable[[Path, LoadOptions], Splits]
    augment: str | None = None  # "crop" or "crop+flip" for --augment; None: none makes sense
    mean: tuple[float, ...] | None = None  # per-channel normalisation after ToTensor scaling, if the
    std: tuple[float, ...] | None = None  # dataset's usual recipe has one (the lecture's MNIST has none)
    needs_data_dir: bool = False  # the user's own files: no default location


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir``, else ``$CNNLAB_DATA``, else ``~/.cache/cnnlab/data``. A ``data_dir`` that
    exists must be a readable folder (a missing one is where a download goes)."""
    if data_dir:
        path = Path(data_dir).expanduser()
        return check_folder(path, "--data-dir") if os.path.lexists(path) else path
    env = os.environ.get("CNNLAB_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "cnnlab" / "data"


def _missing(dataset: str, root: Path, folder: Path, files: Sequence[str], reason: str) -> DataNotFoundError:
    return DataNotFoundError(
        f"{dataset} not found in {folder} (expected {', '.join(files)}) and {reason}; point --data-dir "
        f"(or CNNLAB_DATA) at the folder that holds {folder.relative_to(root)}, or use --dataset digits"
    )


def _torchvision_split(cls, root: Path, train: bool, download: bool, label: str, folder: Path, files: Sequence[str]):
    def build(allow_download: bool):
        # torchvision prints each failed mirror to stdout; keep our one line clean
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return cls(str(root), train=train, download=allow_download)

    try:
        return build(False)
    except RuntimeError:
        if not download:
            raise _missing(label, root, folder, files, "downloading is off (--no-download)") from None
        try:
            return build(True)
        except Exception as exc:  # network, permission, checksum: all mean "not here"
            text = str(exc).splitlines()[0][:120] if str(exc) else "no network?"
            raise _missing(label, root, folder, files, f"download failed ({type(exc).__name__}: {text})") from None


def _idx_loader(class_name: str, label: str, subdir: str, classes: list[str]) -> Callable[[Path, LoadOptions], Splits]:
    """MNIST-layout datasets (idx files) through torchvision's loader, decoded once."""

    def load(root: Path, options: LoadOptions) -> Splits:
        import torchvision.datasets  # a dataset's own loader: ~2 s to import, paid by the runs that read it

        cls = getattr(torchvision.datasets, class_name)
        splits = []
        for train in (True, False):
            ds = _torchvision_split(cls, root, train, options.download, label, root / subdir / "raw", MNIST_FILES)
            images = ds.data.unsqueeze(1).contiguous()  # (N, 28, 28) -> (N, 1, 28, 28), uint8
            splits.append(TensorData(images, ds.targets.long(), classes))
        return Splits(splits[0], splits[1])

    return load


def _load_cifar10(root: Path, options: LoadOptions) -> Splits:
    import torchvision.datasets  # a dataset's own loader: ~2 s to import, paid by the runs that read it

    files = ["data_batch_1..5", "test_batch", "batches.meta"]
    splits = []
    for train in (True, False):
        ds = _torchvision_split(torchvision.datasets.CIFAR10, root, train, options.download, "CIFAR-10",
                                root / "cifar-10-batches-py", files)
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) -> (N, 3, 32, 32)
        splits.append(TensorData(images, torch.as_tensor(ds.targets, dtype=torch.long), list(ds.classes)))
    return Splits(splits[0], splits[1])


def _load_digits(root: Path, options: LoadOptions) -> Splits:
    """scikit-learn's bundled 1,797 8x8 digits (UCI), a fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits  # ~1.5 s to import, paid by the runs that read the digits

    bunch = load_digits()
    pixels = torch.as_tensor(bunch.images, dtype=torch.float64)  # (1797, 8, 8), values 0..16
    images = torch.round(pixels * (255.0 / 16.0)).to(torch.uint8).unsqueeze(1)  # (N, 1, 8, 8)
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    # The split is fixed (its own generator), so test accuracy means the same across seeds.
    test = stratified_holdout(labels, 10, 0.2, seed=0)
    classes = [str(c) for c in range(10)]
    return Splits(TensorData(images[~test].contiguous(), labels[~test], classes),
                  TensorData(images[test].contiguous(), labels[test], classes))


def _load_imagefolder(root: Path, options: LoadOptions) -> Splits:
    return image_folder_splits(root, options.input_size, options.in_channels, skip_bad=options.skip_bad_images,
                             stream=options.stream, workers=options.workers)


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]

DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("mnist", 1, 28, 10, "MNIST handwritten digits, 60,000 train / 10,000 test, 28x28",
                         _idx_loader("MNIST", "MNIST", "MNIST", [str(c) for c in range(10)]), augment="crop"),
    "fashion-mnist": DatasetSpec("fashion-mnist", 1, 28, 10, "Zalando's Fashion-MNIST, 60,000 / 10,000, 28x28",
                                 _idx_loader("FashionMNIST", "Fashion-MNIST", "FashionMNIST", FASHION_CLASSES),
                                 augment="crop"),
    "cifar10": DatasetSpec("cifar10", 3, 32, 10, "CIFAR-10, 50,000 train / 10,000 test, 32x32 RGB", _load_cifar10,
                           augment="crop+flip", mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    "digits": DatasetSpec("digits", 1, 8, 10, "scikit-learn's bundled 8x8 digits, 1,438 train / 359 test (offline)",
                          _load_digits),
    # the user's images: sizes and channels come from the run's settings (default 32 px)
    "imagefolder": DatasetSpec("imagefolder", 3, 32, 0, "your images: --data-dir DIR with DIR/train/<class>/*",
                               _load_imagefolder, augment="crop+flip", needs_data_dir=True),
}


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def get_dataset_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownNameError("dataset", name, DATASETS) from None


def _root(spec: DatasetSpec, data_dir: str | os.PathLike | None) -> Path:
    if spec.needs_data_dir and not data_dir:
        raise CnnlabError(f"--dataset {spec.name} needs --data-dir DIR, with DIR/train/<class>/<images>")
    return data_root(data_dir)


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *, download: bool = True
                 ) -> tuple[TensorData, TensorData]:
    """(train, test) splits of a dataset as uint8 tensors in memory, as stored."""
    spec = get_dataset_spec(name)
    splits = spec.loader(_root(spec, data_dir), LoadOptions(download=download))
    return splits.train, splits.test


def load_splits(name: str, data_dir: str | os.PathLike | None = None, options: LoadOptions = LoadOptions(), *,
                val_fraction: float = 0.0, seed: int = 0) -> Splits:
    """All splits of a dataset, prepared for a run: resized to ``options.input_size`` and
    repeated to ``options.in_channels`` where asked; with ``val_fraction > 0`` a seeded
    validation split is carved out of train (else the dataset's own ``val`` is kept, if any)."""
    spec = get_dataset_spec(name)
    splits = spec.loader(_root(spec, data_dir), options)
    parts = {"train": splits.train, "test": splits.test, "val": splits.val}
    for key, split in parts.items():
        if split is None:
            continue
        if options.input_size is not None:
            split = resize_images(split, options.input_size)
        if options.in_channels is not None:
            split = repeat_channels(split, options.in_channels)
        parts[key] = split
    if val_fraction > 0:
        parts["train"], parts["val"] = split_validation(parts["train"], val_fraction, seed)
    return Splits(parts["train"], parts["test"], parts["val"])


def normalization(dataset: str, normalize: bool | None) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(mean, std) applied after ToTensor scaling, or None. ``normalize=None`` follows the
    dataset's usual recipe (CIFAR-10 yes, MNIST no)."""
    spec = get_dataset_spec(dataset)
    use = normalize if normalize is not None else spec.mean is not None
    if not use:
        return None
    if spec.mean is None or spec.std is None:
        raise CnnlabError(f"--normalize: {dataset} has no standard mean/std; leave it out")
    return spec.mean, spec.std
