"""Datasets as tensors in memory.

Small datasets (MNIST, the bundled 8x8 digits) are decoded once into a uint8
``N x C x H x W`` tensor and batched by index: no per-sample PIL transform, no worker
processes. Scaling matches torchvision's ``ToTensor()`` exactly (``uint8 / 255``).

Where the data lives: ``--data-dir``, else ``$CNNLAB_DATA``, else ``~/.cache/cnnlab/data``.
MNIST uses torchvision's layout under that root: ``MNIST/raw/*-ubyte``.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from cnnlab.errors import CnnlabError, DataNotFoundError, UnknownNameError

__all__ = [
    "TensorData",
    "DatasetSpec",
    "DATASETS",
    "data_root",
    "get_dataset_spec",
    "list_datasets",
    "load_dataset",
    "iterate_batches",
    "augment_batch",
    "resize_images",
    "repeat_channels",
    "load_prepared",
]

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclass
class TensorData:
    """One split held in memory: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    skipped: tuple[str, ...] = ()  # unreadable files left out (--skip-bad-images)

    def __post_init__(self) -> None:
        if self.images.dim() != 4:
            raise ValueError(f"images must be N x C x H x W, got shape {tuple(self.images.shape)}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def to(self, device: torch.device | str) -> "TensorData":
        return TensorData(self.images.to(device), self.labels.to(device), self.classes, self.skipped)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def subset(self, idx: torch.Tensor) -> "TensorData":
        idx = idx.to(self.images.device)
        return TensorData(self.images[idx], self.labels[idx], self.classes)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    in_channels: int
    input_size: int
    num_classes: int
    description: str
    loader: Callable[[Path, bool], tuple[TensorData, TensorData]]
    augment: str | None = None  # "crop" or "crop+flip" for --augment; None: none makes sense
    mean: tuple[float, ...] | None = None  # per-channel normalisation after ToTensor scaling, if the
    std: tuple[float, ...] | None = None  # dataset's usual recipe has one (the lecture's MNIST has none)


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir``, else ``$CNNLAB_DATA``, else ``~/.cache/cnnlab/data``."""
    if data_dir:
        return Path(data_dir).expanduser()
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


def _load_idx(cls, label: str, subdir: str, classes: list[str]):
    def load(root: Path, download: bool) -> tuple[TensorData, TensorData]:
        splits = []
        for train in (True, False):
            ds = _torchvision_split(cls, root, train, download, label, root / subdir / "raw", MNIST_FILES)
            images = ds.data.unsqueeze(1).contiguous()  # (N, 28, 28) -> (N, 1, 28, 28), uint8
            splits.append(TensorData(images, ds.targets.long(), classes))
        return splits[0], splits[1]

    return load


def _load_cifar10(root: Path, download: bool) -> tuple[TensorData, TensorData]:
    from torchvision.datasets import CIFAR10

    files = ["data_batch_1..5", "test_batch", "batches.meta"]
    splits = []
    for train in (True, False):
        ds = _torchvision_split(CIFAR10, root, train, download, "CIFAR-10", root / "cifar-10-batches-py", files)
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) -> (N, 3, 32, 32)
        splits.append(TensorData(images, torch.as_tensor(ds.targets, dtype=torch.long), list(ds.classes)))
    return splits[0], splits[1]


def _load_mnist(root: Path, download: bool) -> tuple[TensorData, TensorData]:
    from torchvision.datasets import MNIST

    return _load_idx(MNIST, "MNIST", "MNIST", [str(c) for c in range(10)])(root, download)


def _load_fashion_mnist(root: Path, download: bool) -> tuple[TensorData, TensorData]:
    from torchvision.datasets import FashionMNIST

    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    return _load_idx(FashionMNIST, "Fashion-MNIST", "FashionMNIST", classes)(root, download)


def _load_digits(root: Path, download: bool) -> tuple[TensorData, TensorData]:
    """scikit-learn's bundled 1,797 8x8 digits (UCI), a fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = torch.as_tensor(bunch.images, dtype=torch.float64)  # (1797, 8, 8), values 0..16
    images = torch.round(pixels * (255.0 / 16.0)).to(torch.uint8).unsqueeze(1)  # (N, 1, 8, 8)
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    # The split is fixed (its own generator), so test accuracy means the same across seeds.
    g = torch.Generator().manual_seed(0)
    test_idx = []
    for c in range(10):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        test_idx.append(idx[: round(0.2 * len(idx))])
    test_mask = torch.zeros(len(labels), dtype=torch.bool)
    test_mask[torch.cat(test_idx)] = True
    classes = [str(c) for c in range(10)]
    return (
        TensorData(images[~test_mask].contiguous(), labels[~test_mask], classes),
        TensorData(images[test_mask].contiguous(), labels[test_mask], classes),
    )


def _load_imagefolder(root: Path) -> tuple[TensorData, TensorData]:
    from cnnlab.imagefolder import load_image_folder

    train, test, _ = load_image_folder(root)
    return train, test


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("mnist", 1, 28, 10, "MNIST handwritten digits, 60,000 train / 10,000 test, 28x28",
                         _load_mnist, augment="crop"),
    "fashion-mnist": DatasetSpec("fashion-mnist", 1, 28, 10, "Zalando's Fashion-MNIST, 60,000 / 10,000, 28x28",
                                 _load_fashion_mnist, augment="crop"),
    "cifar10": DatasetSpec("cifar10", 3, 32, 10, "CIFAR-10, 50,000 train / 10,000 test, 32x32 RGB", _load_cifar10,
                           augment="crop+flip", mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    "digits": DatasetSpec(
        "digits", 1, 8, 10, "scikit-learn's bundled 8x8 digits, 1,438 train / 359 test (offline)", _load_digits
    ),
    # loaded by cnnlab.imagefolder (sizes and channels come from the run's settings)
    "imagefolder": DatasetSpec("imagefolder", 3, 32, 0, "your images: --data-dir DIR with DIR/train/<class>/*",
                               lambda root, download: _load_imagefolder(root), augment="crop+flip"),
}


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def get_dataset_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownNameError("dataset", name, DATASETS) from None


def load_dataset(
    name: str, data_dir: str | os.PathLike | None = None, *, download: bool = True
) -> tuple[TensorData, TensorData]:
    """(train, test) splits of a dataset as uint8 tensors in memory."""
    spec = get_dataset_spec(name)
    return spec.loader(data_root(data_dir), download)


def augment_batch(x: torch.Tensor, kind: str | None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Batch-wise augmentation on tensors: a random crop of each image from a zero-padded copy
    (padding = side/8, 4 px at 32) and, for "crop+flip", a random horizontal flip.

    Randomness comes from ``generator`` (on the CPU), so a resumed run repeats it exactly.
    """
    if kind is None:
        return x
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    shifts = torch.randint(0, 2 * pad + 1, (2, n), generator=generator).to(x.device)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = torch.arange(h, device=x.device)[None, :] + shifts[0][:, None]  # (N, H)
    cols = torch.arange(w, device=x.device)[None, :] + shifts[1][:, None]  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    out = out.permute(0, 3, 1, 2)
    if kind == "crop+flip":
        flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    channels_last = x.is_contiguous(memory_format=torch.channels_last)
    return out.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def resize_images(data: TensorData, size: int, chunk: int = 4096) -> TensorData:
    """Resize every image to ``size x size`` once (bilinear, antialiased), kept as uint8."""
    import torch.nn.functional as F

    if data.images.shape[-1] == size and data.images.shape[-2] == size:
        return data
    out = torch.empty((len(data), data.images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, len(data), chunk):
        x = data.images[start : start + chunk].float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return TensorData(out, data.labels, data.classes)


def repeat_channels(data: TensorData, channels: int) -> TensorData:
    """Gray -> ``channels`` identical planes (as ``Grayscale(num_output_channels=3)``), without copying."""
    have = data.images.shape[1]
    if have == channels:
        return data
    if have != 1:
        raise CnnlabError(f"the images have {have} channels; only 1-channel images can be repeated to {channels}")
    return TensorData(data.images.expand(-1, channels, -1, -1), data.labels, data.classes)


def iterate_batches(
    data: TensorData,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
    normalize: tuple[Sequence[float], Sequence[float]] | None = None,
    shard: tuple[int, int] = (0, 1),
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` batches: x float32 in [0, 1] (as ``ToTensor``), y int64; with
    ``normalize=(mean, std)`` also ``(x - mean) / std`` per channel (as ``Normalize``).
    ``shard=(rank, world)``: every global batch of ``batch_size`` is split across ``world``
    processes (rank r takes items r, r + world, ...); a last batch smaller than ``world`` is dropped.

    ``data`` should already live on ``device`` (see :meth:`TensorData.to`); only the
    index permutation is drawn on the CPU, from ``generator``.
    """
    n = len(data)
    device = data.device if device is None else torch.device(device)
    order = torch.randperm(n, generator=generator) if shuffle else None
    stats = None
    if normalize is not None:
        stats = tuple(torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1) for v in normalize)
    rank, world = shard
    if world > 1 and order is None:
        order = torch.arange(n)
    if order is None:
        index_batches = None
    else:
        index_batches = []
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            if world > 1:
                if len(idx) < world:
                    break
                idx = idx[rank::world]  # this process's share of the global batch
            index_batches.append(idx)
    if not isinstance(data, TensorData):  # files decoded by DataLoader workers (cnnlab.imagefolder)
        raw = data.batches(index_batches if index_batches is not None else
                           [torch.arange(s, min(n, s + batch_size)) for s in range(0, n, batch_size)])
    elif index_batches is None:
        raw = ((data.images[s : s + batch_size], data.labels[s : s + batch_size]) for s in range(0, n, batch_size))
    else:
        raw = ((data.images.index_select(0, idx.to(data.device, non_blocking=True)),
                data.labels.index_select(0, idx.to(data.device, non_blocking=True))) for idx in index_batches)
    for xb, yb in raw:
        x = xb.to(device, non_blocking=True).float().div_(255.0)  # ToTensor(): uint8 / 255
        if stats is not None:
            x = x.sub_(stats[0]).div_(stats[1])  # Normalize(mean, std)
        if memory_format is not torch.contiguous_format:
            x = x.contiguous(memory_format=memory_format)
        yield x, yb.to(device, non_blocking=True)


def load_prepared(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    input_size: int | None = None,
    in_channels: int | None = None,
    skip_bad_images: bool = False,
    stream: bool = False,
    workers: int = 2,
) -> tuple[TensorData, TensorData]:
    """:func:`load_dataset`, then resized to ``input_size`` and repeated to ``in_channels`` if asked.

    ``imagefolder`` decodes the user's files straight to ``input_size`` (default 32) and
    ``in_channels`` (default: 3 if any image has colour, else 1).
    """
    if name == "imagefolder":
        from cnnlab.imagefolder import load_image_folder

        if data_dir is None:
            raise CnnlabError("--dataset imagefolder needs --data-dir DIR, with DIR/train/<class>/<images>")
        train, test, skipped = load_image_folder(data_dir, input_size, in_channels, skip_bad=skip_bad_images,
                                                 stream=stream, workers=workers)
        train.skipped = tuple(str(p) for p in skipped)
        return train, test
    get_dataset_spec(name)
    train, test = load_dataset(name, data_dir, download=download)
    if input_size is not None:
        train, test = resize_images(train, input_size), resize_images(test, input_size)
    if in_channels is not None:
        train, test = repeat_channels(train, in_channels), repeat_channels(test, in_channels)
    return train, test
