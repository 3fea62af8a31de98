"""One split of a dataset, and the one way batches come out of it.

A split is a :class:`BatchSource`: in memory (:class:`TensorData`, uint8 ``N x C x H x W``
decoded once) or streamed from files (:class:`cnnlab.data.imagefolder.StreamingImages`).
:func:`iterate_batches` draws the (seeded) index order and asks the source for the uint8
images of each batch, then scales them exactly as torchvision's ``ToTensor()`` does
(``uint8 / 255``) and, optionally, normalises them as ``Normalize(mean, std)`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Protocol, Sequence, Union, runtime_checkable

import torch

__all__ = ["Batch", "BatchSource", "TensorData", "index_batches", "iterate_batches"]

Batch = Union[slice, torch.Tensor]  # the items of one batch: consecutive, or by index


@runtime_checkable
class BatchSource(Protocol):
    """What the training loop needs of a split, wherever its images come from."""

    labels: torch.Tensor  # int64 (N,)
    classes: list[str]
    skipped: tuple[str, ...]  # unreadable files left out (--skip-bad-images)

    def __len__(self) -> int: ...

    @property
    def sample_shape(self) -> tuple[int, int, int]: ...

    @property
    def device(self) -> torch.device: ...

    def to(self, device: torch.device | str) -> "BatchSource": ...

    def subset(self, idx: torch.Tensor) -> "BatchSource": ...

    def with_labels(self, labels: torch.Tensor) -> "BatchSource":
        """The same images with other labels (``--shuffle-labels``)."""
        ...

    def batches(self, index_batches: Iterable[Batch]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 images, labels) for each batch (a slice or a tensor of indices), in order."""
        ...


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

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> "TensorData":
        return TensorData(self.images.to(device), self.labels.to(device), self.classes, self.skipped)

    def subset(self, idx: torch.Tensor) -> "TensorData":
        idx = idx.to(self.images.device)
        return TensorData(self.images[idx], self.labels[idx], self.classes)

    def with_labels(self, labels: torch.Tensor) -> "TensorData":
        """The same images (not copied) with other labels."""
        return TensorData(self.images, labels, self.classes, self.skipped)

    def batches(self, index_batches: Iterable[Batch]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for idx in index_batches:
            if isinstance(idx, slice):  # an unshuffled batch: a view, no copy
                yield self.images[idx], self.labels[idx]
            else:
                idx = idx.to(self.device, non_blocking=True)
                yield self.images.index_select(0, idx), self.labels.index_select(0, idx)


def index_batches(n: int, batch_size: int, *, order: torch.Tensor | None = None,
                  shard: tuple[int, int] = (0, 1)) -> list[Batch]:
    """The items of each batch: consecutive slices, or index tensors cut from ``order`` (a permutation).

    ``shard=(rank, world)``: every global batch of ``batch_size`` is split across ``world``
    processes (rank r takes items r, r + world, ...); a last batch smaller than ``world`` is dropped.
    """
    rank, world = shard
    if order is None and world == 1:
        return [slice(s, min(n, s + batch_size)) for s in range(0, n, batch_size)]
    order = torch.arange(n) if order is None else order
    batches = []
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if world > 1:
            if len(idx) < world:
                break
            idx = idx[rank::world]  # this process's share of the global batch
        batches.append(idx)
    return batches


def iterate_batches(
    data: BatchSource,
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

    ``data`` should already live on ``device`` (see ``to``); only the index permutation is
    drawn on the CPU, from ``generator``. ``shard``: see :func:`index_batches`.
    """
    n = len(data)
    device = data.device if device is None else torch.device(device)
    order = torch.randperm(n, generator=generator) if shuffle else None
    stats = None
    if normalize is not None:
        stats = tuple(torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1) for v in normalize)
    for xb, yb in data.batches(index_batches(n, batch_size, order=order, shard=shard)):
        x = xb.to(device, non_blocking=True).float().div_(255.0)  # ToTensor(): uint8 / 255
        if stats is not None:
            x = x.sub_(stats[0]).div_(stats[1])  # Normalize(mean, std)
        if memory_format is not torch.contiguous_format:
            x = x.contiguous(memory_format=memory_format)
        yield x, yb.to(device, non_blocking=True)
