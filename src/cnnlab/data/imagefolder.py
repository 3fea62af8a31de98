"""User image folders: ``DIR/train/<class>/*``, optionally ``DIR/val/<class>/*`` and ``DIR/test/<class>/*``.

Images of any size and mode (L, RGB, RGBA, P, ...) are decoded once, converted to the run's
channels (transparency composited on white), resized to a square side, and kept in memory as
uint8 tensors, like the built-in datasets, and cached in the user's cache directory
(:mod:`cnnlab.data.cache`: ``~/.cache/cnnlab/images``) so later runs skip the decoding. Nothing is
ever written into ``DIR``; hidden files and folders in it (``.git``, ``.DS_Store``) are not data.
Without a ``test/`` folder, a seeded 20% of each class is held out as the test split.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch

from cnnlab.data.cache import cached, legacy_caches, note
from cnnlab.data.decode import GRAY_MODES, BadImageError, ImageRefusedError, decode_image, image_mode
from cnnlab.data.splits import Splits, stratified_holdout
from cnnlab.data.tensors import Batch, TensorData
from cnnlab.errors import CnnlabError, DataNotFoundError

__all__ = ["IMAGE_EXTENSIONS", "decode_image", "image_folder_splits", "load_image_folder", "StreamingImages",
           "DEFAULT_SIDE"]

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
DEFAULT_SIDE = 32  # square side when --input-size is not given


def _visible(folder: Path, keep: Callable[[os.DirEntry], bool]) -> list[str]:
    """The sorted names of the entries of ``folder`` that are not hidden and ``keep`` accepts (one
    ``scandir``: the entry types come with the listing, no ``stat`` per file)."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if not e.name.startswith(".") and keep(e))


def _scan(split_dir: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    if not split_dir.is_dir():
        raise DataNotFoundError(f"{split_dir} does not exist; an image folder needs DIR/train/<class>/<images>")
    classes = _visible(split_dir, os.DirEntry.is_dir)
    if not classes:
        raise DataNotFoundError(f"no class folders in {split_dir}; expected {split_dir}/<class>/<images>")
    items = []
    for label, name in enumerate(classes):
        folder = split_dir / name
        files = [folder / f for f in _visible(folder, os.DirEntry.is_file)]
        if not files:
            raise DataNotFoundError(f"class folder {split_dir / name} is empty; add images or remove the folder")
        items += [(f, label) for f in files]
    return classes, items


def _guess_channels(items: list[tuple[Path, int]]) -> int:
    """3 if any image has colour, else 1 (headers only: no pixels are decoded)."""
    for path, _ in items:
        if path.suffix.lower() in IMAGE_EXTENSIONS and image_mode(path) not in (None, *GRAY_MODES):
            return 3
    return 1


def _test_mask(labels: torch.Tensor, n_classes: int, seed: int, fraction: float, root: Path) -> torch.Tensor:
    """A seeded per-class hold-out: True for the images that form the test split."""
    mask = stratified_holdout(labels, n_classes, fraction, seed)
    if mask.all() or not mask.any():
        raise CnnlabError(f"{root / 'train'} has too few images to hold out a test split; add a test/ folder")
    return mask


SKIP_HINT = "; remove it, or pass --skip-bad-images to skip and count such files"


PARALLEL_DECODE_MIN = 512  # fewer files decode sooner in this process than worker processes start


def _decoded(items, channels: int, side: int, workers: int) -> Iterator[tuple[torch.Tensor, str, bool]]:
    """(image, error message or "", refused) per item, in order: decoded in ``workers`` DataLoader
    processes for a folder of :data:`PARALLEL_DECODE_MIN` files or more, else here."""
    dataset = _FileDataset(items, channels, side)
    if workers < 1 or len(items) < PARALLEL_DECODE_MIN:
        for i in range(len(dataset)):
            image, _, error, refused = dataset[i]
            yield image, error, refused
        return
    for images, _, errors, refused in torch.utils.data.DataLoader(dataset, batch_size=64, num_workers=workers):
        yield from zip(images, errors, refused.tolist())


def _decode_all(items, channels, side, skip_bad, workers: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[Path]]:
    images, labels, bad = [], [], []
    for (path, label), (image, error, refused) in zip(items, _decoded(items, channels, side, workers)):
        if refused:
            raise ImageRefusedError(error)
        if not error:
            images.append(image)
            labels.append(label)
        elif not skip_bad:
            raise BadImageError(error + SKIP_HINT)
        else:
            bad.append(path)
    if not images:
        raise DataNotFoundError("no readable image in the folder")
    return torch.stack(images), torch.tensor(labels, dtype=torch.long), bad


def _valid(items, skip_bad: bool) -> Callable[[dict], bool]:
    """A cached payload fits these files: uint8 N x C x H x W images, one label each, all files accounted for."""
    def check(saved: dict) -> bool:
        images, labels, bad = saved.get("images"), saved.get("labels"), saved.get("bad")
        return (isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor) and isinstance(bad, list)
                and images.dtype == torch.uint8 and images.dim() == 4 and labels.dim() == 1
                and len(images) == len(labels) and len(labels) + len(bad) == len(items) and (skip_bad or not bad))

    return check


def _decode_cached(root: Path, items, channels: int, side: int, skip_bad: bool, workers: int = 0):
    """:func:`_decode_all`, cached as uint8 tensors in the user's cache directory (see
    :mod:`cnnlab.data.cache`; decoded once, later runs load in ms). Nothing is written into ``root``."""
    def decode() -> dict:
        images, labels, bad = _decode_all(items, channels, side, skip_bad, workers)
        return {"images": images, "labels": labels, "bad": [os.fsdecode(p) for p in bad]}

    settings = {"side": side, "channels": channels, "skip_bad": skip_bad}
    saved = cached(root, items, settings, decode, _valid(items, skip_bad))
    return saved["images"], saved["labels"], [Path(p) for p in saved["bad"]]


def _legacy_note(root: Path) -> None:
    """Point at the ``.cnnlab-cache`` folders earlier versions wrote into the data folder."""
    old = legacy_caches([root])
    if old:
        where = ", ".join(os.fsdecode(p) for p in old)
        note(f"{where}: image cache left in the data folder by an earlier cnnlab (no longer used); "
             f"`cnnlab cache clear {os.fsdecode(root)}` removes it")


class _FileDataset(torch.utils.data.Dataset):
    """Decodes one file in a DataLoader worker. An unreadable or refused file comes back as an error
    message (not an exception, which the DataLoader would re-raise wrapped in a traceback's text)
    and whether it was refused (a decompression bomb: never skipped)."""

    def __init__(self, items: list[tuple[Path, int]], channels: int, side: int):
        self.items, self.channels, self.side = items, channels, side

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str, bool]:
        path, label = self.items[i]
        try:
            return decode_image(path, self.channels, self.side), label, "", False
        except (BadImageError, ImageRefusedError) as exc:
            blank = torch.zeros(self.channels, self.side, self.side, dtype=torch.uint8)
            return blank, label, str(exc), isinstance(exc, ImageRefusedError)


WORKER_NICENESS = 19  # DataLoader workers run below the training process (see _lower_priority)


def _lower_priority(worker_id: int) -> None:
    """A DataLoader worker's start: lower its CPU priority by :data:`WORKER_NICENESS`. Decoding then fills the
    cycles the training process leaves idle instead of taking a core from one of its compute threads, which
    stalls them all (ResNet-18, 64 px, 2 cores: 119 images/s with two workers at the same priority, 158
    with them niced, as fast as from memory). Where cores are spare it changes nothing."""
    try:
        os.nice(WORKER_NICENESS)
    except (AttributeError, OSError):  # no os.nice (Windows), or not permitted: run as is
        pass


class StreamingImages:
    """An image folder too large for memory: files are decoded per batch by DataLoader workers.

    A :class:`~cnnlab.data.tensors.BatchSource` like ``TensorData``: batches come in the same
    seeded order, so a streamed run trains exactly like an in-memory one.
    """

    def __init__(self, items: list[tuple[Path, int]], classes: list[str], channels: int, side: int, workers: int = 2,
                 device: torch.device | str = "cpu", skip_bad: bool = False):
        self.items, self.classes, self.channels, self.side, self.workers = items, classes, channels, side, workers
        self.labels = torch.tensor([label for _, label in items], dtype=torch.long)
        self.skip_bad = skip_bad  # unreadable files met while streaming are left out of their batch
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
        return StreamingImages(self.items, self.classes, self.channels, self.side, self.workers, device, self.skip_bad)

    def subset(self, idx: torch.Tensor) -> "StreamingImages":
        return StreamingImages([self.items[int(i)] for i in idx], self.classes, self.channels, self.side,
                               self.workers, self._device, self.skip_bad)

    def with_labels(self, labels: torch.Tensor) -> "StreamingImages":
        """The same files with other labels."""
        relabeled = StreamingImages([(path, int(y)) for (path, _), y in zip(self.items, labels.tolist())],
                                    self.classes, self.channels, self.side, self.workers, self._device, self.skip_bad)
        relabeled.skipped = self.skipped
        return relabeled

    def batches(self, index_batches: Iterable[Batch]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 images, labels) per batch, decoded in ``workers`` processes."""
        sampler = [list(range(len(self))[idx]) if isinstance(idx, slice) else idx.tolist() for idx in index_batches]
        loader = torch.utils.data.DataLoader(
            _FileDataset(self.items, self.channels, self.side),
            batch_sampler=sampler,
            num_workers=self.workers,
            worker_init_fn=_lower_priority if self.workers else None,
        )
        for images, labels, errors, refused in loader:
            if refused.any():
                raise ImageRefusedError(errors[int(refused.nonzero()[0])])
            bad = [i for i, e in enumerate(errors) if e]
            if bad and not self.skip_bad:
                raise BadImageError(errors[bad[0]] + SKIP_HINT)
            if bad:  # --skip-bad-images: the batch goes on without them
                keep = torch.tensor([i for i in range(len(errors)) if not errors[i]], dtype=torch.long)
                self.skipped = tuple(dict.fromkeys(self.skipped + tuple(errors[i] for i in bad)))
                images, labels = images[keep], labels[keep]
            if len(labels):
                yield images, labels


def _folder_split(root: Path, split: str, classes: list[str] | None):
    """``(classes, items)`` of ``root/split``, or None when the folder does not exist (test, val)."""
    if classes is not None and not (root / split).is_dir():
        return None
    found, items = _scan(root / split)
    if classes is not None and found != classes:
        raise CnnlabError(f"{root / split} has classes {found} but {root / 'train'} has {classes}")
    return found, items


def load_image_folder(root: str | os.PathLike, side: int | None = None, channels: int | None = None, *,
                      skip_bad: bool = False, seed: int = 0, test_fraction: float = 0.2, stream: bool = False,
                      workers: int = 2) -> tuple[TensorData, TensorData, list[Path]]:
    """(train, test, skipped files) of ``root`` (see :func:`image_folder_splits`)."""
    splits = image_folder_splits(root, side, channels, skip_bad=skip_bad, seed=seed, test_fraction=test_fraction,
                                 stream=stream, workers=workers)
    return splits.train, splits.test, [Path(p) for p in splits.train.skipped]


def image_folder_splits(
    root: str | os.PathLike,
    side: int | None = None,
    channels: int | None = None,
    *,
    skip_bad: bool = False,
    seed: int = 0,
    test_fraction: float = 0.2,
    stream: bool = False,
    workers: int = 2,
) -> Splits:
    """Splits of ``root/train`` (+ ``root/test`` and ``root/val`` if present); ``splits.train.skipped``
    lists the unreadable files left out with ``skip_bad``. Images are decoded to ``side``
    (default 32) and ``channels`` (default: 3 if any image has colour, else 1).

    ``stream=True`` decodes nothing up front: the splits are :class:`StreamingImages` whose
    batches DataLoader workers decode on the fly (unreadable files then stop the run when met),
    at a lower CPU priority than the training process. Without it, a folder of
    :data:`PARALLEL_DECODE_MIN` images or more that is not cached yet is decoded by ``workers``
    DataLoader processes (0: in this process).
    """
    root = Path(root)
    side = side or DEFAULT_SIDE
    classes, items = _folder_split(root, "train", None)
    if len(classes) < 2:
        raise CnnlabError(f"{root / 'train'} has one class folder ({classes[0]}); a classifier needs at least two "
                          f"(DIR/train/<class>/<images>, one folder per class)")
    test_split, val_split = _folder_split(root, "test", classes), _folder_split(root, "val", classes)
    channels = channels or _guess_channels(items)
    _legacy_note(root)

    def load(folder: str, folder_items) -> tuple[object, list[Path]]:
        if stream:
            return StreamingImages(folder_items, classes, channels, side, workers, skip_bad=skip_bad), []
        images, labels, bad = _decode_cached(root / folder, folder_items, channels, side, skip_bad, workers)
        return TensorData(images, labels, classes), bad

    train, bad = load("train", items)
    if test_split is not None:
        test, bad_test = load("test", test_split[1])
        bad += bad_test
    else:  # a seeded, per-class split
        held_out = _test_mask(train.labels, len(classes), seed, test_fraction, root)
        train, test = train.subset(torch.nonzero(~held_out).flatten()), train.subset(torch.nonzero(held_out).flatten())
    val = load("val", val_split[1])[0] if val_split is not None else None
    train.skipped = tuple(str(p) for p in bad)
    return Splits(train, test, val)
