"""User image folders: ``DIR/train/<class>/*``, optionally ``DIR/val/<class>/*`` and ``DIR/test/<class>/*``.

Images of any size and mode (L, RGB, RGBA, P, ...) are decoded once, converted to the run's
channels (transparency composited on white), resized to a square side, and kept in memory as
uint8 tensors, like the built-in datasets, and cached on disk (``DIR/train/.cnnlab-cache/``, or
``~/.cache/cnnlab/tensors`` when the folder is read-only) so later runs skip the decoding.
Without a ``test/`` folder, a seeded 20% of each class is held out as the test split.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from cnnlab.data import TensorData
from cnnlab.errors import CnnlabError, DataNotFoundError

__all__ = ["IMAGE_EXTENSIONS", "decode_image", "load_image_folder", "load_split_folder", "StreamingImages",
           "DEFAULT_SIDE"]

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
DEFAULT_SIDE = 32  # square side when --input-size is not given


class BadImageError(CnnlabError):
    """A file that cannot be decoded as an image."""


def decode_image(path: str | os.PathLike, channels: int, side: int) -> torch.Tensor:
    """One image file -> uint8 tensor (channels, side, side)."""
    path = Path(path)
    if not path.is_file():
        raise BadImageError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(background, rgba)
            im = im.convert("L" if channels == 1 else "RGB")
            im = im.resize((side, side), Image.BILINEAR, reducing_gap=None)
            array = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise BadImageError(f"{path} is not a readable image ({type(exc).__name__}); remove it, or pass "
                            f"--skip-bad-images to skip and count such files") from None
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()  # (C, H, W)


def _scan(split_dir: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    if not split_dir.is_dir():
        raise DataNotFoundError(f"{split_dir} does not exist; an image folder needs DIR/train/<class>/<images>")
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataNotFoundError(f"no class folders in {split_dir}; expected {split_dir}/<class>/<images>")
    items = []
    for label, name in enumerate(classes):
        files = sorted(f for f in (split_dir / name).iterdir() if f.is_file() and not f.name.startswith("."))
        if not files:
            raise DataNotFoundError(f"class folder {split_dir / name} is empty; add images or remove the folder")
        items += [(f, label) for f in files]
    return classes, items


def _guess_channels(items: list[tuple[Path, int]]) -> int:
    """3 if any image has colour, else 1 (headers only: no pixels are decoded)."""
    for path, _ in items:
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        try:
            with Image.open(path) as im:
                if im.mode not in ("1", "L", "LA", "I", "I;16", "F"):
                    return 3
        except (UnidentifiedImageError, OSError):
            continue
    return 1


def _test_mask(labels: torch.Tensor, n_classes: int, seed: int, fraction: float, root: Path) -> torch.Tensor:
    """A seeded per-class hold-out: True for the images that form the test split."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(len(labels), dtype=torch.bool)
    for c in range(n_classes):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        mask[idx[: int(round(fraction * len(idx)))]] = True
    if mask.all() or not mask.any():
        raise CnnlabError(f"{root / 'train'} has too few images to hold out a test split; add a test/ folder")
    return mask


def _decode_all(items, channels, side, skip_bad) -> tuple[torch.Tensor, torch.Tensor, list[Path]]:
    images, labels, bad = [], [], []
    for path, label in items:
        try:
            images.append(decode_image(path, channels, side))
            labels.append(label)
        except BadImageError:
            if not skip_bad:
                raise
            bad.append(path)
    if not images:
        raise DataNotFoundError("no readable image in the folder")
    return torch.stack(images), torch.tensor(labels, dtype=torch.long), bad


def _cache_path(root: Path, items: list[tuple[Path, int]], side: int, channels: int, skip_bad: bool) -> Path:
    """A file name that changes whenever a file, its size or mtime, or the decode settings change."""
    import hashlib

    h = hashlib.sha1(f"{side}:{channels}:{skip_bad}".encode())
    for path, label in items:
        st = path.stat()
        h.update(f"{path.relative_to(root)}:{label}:{st.st_size}:{st.st_mtime_ns}".encode())
    name = f"{root.name}-{h.hexdigest()[:16]}.pt"
    beside = root / ".cnnlab-cache"
    try:
        beside.mkdir(exist_ok=True)
        if os.access(beside, os.W_OK):
            return beside / name
    except OSError:
        pass
    fallback = Path.home() / ".cache" / "cnnlab" / "tensors"  # the data folder is read-only
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback / name


def _decode_cached(root: Path, items, channels: int, side: int, skip_bad: bool):
    """:func:`_decode_all`, cached on disk as uint8 tensors (decoded once; later runs load in ms)."""
    cache = _cache_path(root, items, side, channels, skip_bad)
    if cache.is_file():
        try:
            saved = torch.load(cache, weights_only=True)
            return saved["images"], saved["labels"], [Path(p) for p in saved["bad"]]
        except Exception:
            pass  # unreadable cache: decode again and replace it
    images, labels, bad = _decode_all(items, channels, side, skip_bad)
    tmp = cache.with_name(cache.name + ".tmp")
    try:
        torch.save({"images": images, "labels": labels, "bad": [str(p) for p in bad]}, tmp)
        os.replace(tmp, cache)
    except OSError:
        pass  # caching is an optimisation only
    return images, labels, bad


class _FileDataset(torch.utils.data.Dataset):
    def __init__(self, items: list[tuple[Path, int]], channels: int, side: int):
        self.items, self.channels, self.side = items, channels, side

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[i]
        return decode_image(path, self.channels, self.side), label


class StreamingImages:
    """An image folder too large for memory: files are decoded per batch by DataLoader workers.

    Quacks like :class:`cnnlab.data.TensorData` where the training loop needs it (``len``,
    ``labels``, ``classes``, ``sample_shape``, ``to``, ``subset``); batches come in the same
    seeded order, so a streamed run trains exactly like an in-memory one.
    """

    def __init__(self, items: list[tuple[Path, int]], classes: list[str], channels: int, side: int, workers: int = 2,
                 device: torch.device | str = "cpu"):
        self.items, self.classes, self.channels, self.side, self.workers = items, classes, channels, side, workers
        self.labels = torch.tensor([label for _, label in items], dtype=torch.long)
        self.skipped: tuple[str, ...] = ()
        self._device = torch.device(device)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.side, self.side)

    @property
    def device(self) -> torch.device:
        return self._device

    def to(self, device: torch.device | str) -> "StreamingImages":
        return StreamingImages(self.items, self.classes, self.channels, self.side, self.workers, device)

    def subset(self, idx: torch.Tensor) -> "StreamingImages":
        return StreamingImages([self.items[int(i)] for i in idx], self.classes, self.channels, self.side,
                               self.workers, self._device)

    def batches(self, index_batches: list[torch.Tensor]):
        """(uint8 images, labels) per list of indices, decoded in ``workers`` processes."""
        loader = torch.utils.data.DataLoader(
            _FileDataset(self.items, self.channels, self.side),
            batch_sampler=[idx.tolist() for idx in index_batches],
            num_workers=self.workers,
            persistent_workers=False,
        )
        for images, labels in loader:
            yield images, labels


def load_image_folder(
    root: str | os.PathLike,
    side: int | None = None,
    channels: int | None = None,
    *,
    skip_bad: bool = False,
    seed: int = 0,
    test_fraction: float = 0.2,
    stream: bool = False,
    workers: int = 2,
) -> tuple[TensorData, TensorData, list[Path]]:
    """(train, test, skipped files) from ``root/train`` (+ ``root/test`` if present).

    ``stream=True`` decodes nothing up front: it returns :class:`StreamingImages` whose batches
    DataLoader workers decode on the fly (unreadable files then stop the run when met).
    """
    root = Path(root)
    side = side or DEFAULT_SIDE
    classes, items = _scan(root / "train")
    test_items = None
    if (root / "test").is_dir():
        test_classes, test_items = _scan(root / "test")
        if test_classes != classes:
            raise CnnlabError(f"{root / 'test'} has classes {test_classes} but {root / 'train'} has {classes}")
    channels = channels or _guess_channels(items)
    if stream:
        train_s = StreamingImages(items, classes, channels, side, workers)
        if test_items is not None:
            return train_s, StreamingImages(test_items, classes, channels, side, workers), []
        test_mask = _test_mask(train_s.labels, len(classes), seed, test_fraction, root)
        return (train_s.subset(torch.nonzero(~test_mask).flatten()),
                train_s.subset(torch.nonzero(test_mask).flatten()), [])
    images, labels, bad = _decode_cached(root / "train", items, channels, side, skip_bad)
    if test_items is not None:
        test_images, test_labels, bad_test = _decode_cached(root / "test", test_items, channels, side, skip_bad)
        bad += bad_test
    else:  # a seeded, per-class split
        test_mask = _test_mask(labels, len(classes), seed, test_fraction, root)
        test_images, test_labels = images[test_mask], labels[test_mask]
        images, labels = images[~test_mask], labels[~test_mask]
    return TensorData(images, labels, classes), TensorData(test_images, test_labels, classes), bad


def load_split_folder(root: str | os.PathLike, split: str, classes: list[str], side: int, channels: int, *,
                      skip_bad: bool = False) -> TensorData:
    """``root/<split>/<class>/*`` decoded like the training images (for an optional ``val/``)."""
    folder = Path(root) / split
    found, items = _scan(folder)
    if found != classes:
        raise CnnlabError(f"{folder} has classes {found} but the training folder has {classes}")
    images, labels, _ = _decode_cached(folder, items, channels, side, skip_bad)
    return TensorData(images, labels, classes)
