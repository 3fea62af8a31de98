"""What happens to a run's images on their way into its model, derived once from its settings and
used by training and by everything that reads a run back (evaluate, predict, export, inference,
the pictures and the report): resize to a square side, repeat gray to the model's channels,
``ToTensor`` scaling (uint8 / 255), the dataset's normalisation, the memory format."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import torch

from cnnlab.data import BatchSource, LoadOptions, Splits, get_dataset_spec, iterate_batches, load_splits, normalization, \
    shuffle_labels
from cnnlab.runtime import memory_format_for
from cnnlab.training.config import TrainConfig

__all__ = ["Preprocessing", "preprocessing_of", "load_run_splits", "normalized_input", "SCALING"]

SCALING = "uint8 / 255 (ToTensor)"


@dataclass(frozen=True)
class Preprocessing:
    """How a batch is made for the model (see :func:`preprocessing_of`)."""

    side: int | None  # resize to side x side once, on loading (None: the dataset's own size)
    channels: int | None  # repeat gray images to this many channels (None: the dataset's own)
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None  # (mean, std) after the scaling
    memory_format: torch.memory_format  # NHWC by default on the CPU
    augment: str | None = None  # the dataset's batch-wise augmentation (training only, --augment)
    scaling: str = SCALING

    def batches(self, data: BatchSource, batch_size: int, **kwargs) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` batches of ``data`` scaled, normalised and laid out as the model takes them
        (``kwargs``: :func:`cnnlab.data.iterate_batches`' others: shuffle, generator, shard ...)."""
        return iterate_batches(data, batch_size, memory_format=self.memory_format, normalize=self.normalize, **kwargs)

    def to_input(self, pixels: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
        """(N, C, H, W) or (C, H, W) floats in [0, 1] (already scaled) -> the model's input, normalised."""
        return normalized_input(pixels, self.normalize, device)


def normalized_input(pixels: torch.Tensor, normalize: tuple[tuple[float, ...], tuple[float, ...]] | None,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """(N, C, H, W) or (C, H, W) floats in [0, 1] -> (N, C, H, W) float32 on ``device``, ``(x - mean) / std``
    per channel with ``normalize=(mean, std)`` (as ``Normalize``)."""
    x = pixels if pixels.dim() == 4 else pixels.unsqueeze(0)
    x = x.to(device if device is not None else x.device, torch.float32)
    if normalize is not None:
        mean, std = (torch.tensor(v, dtype=torch.float32, device=x.device).view(1, -1, 1, 1) for v in normalize)
        x = (x - mean) / std  # Normalize(mean, std)
    return x


def preprocessing_of(config: TrainConfig, device: torch.device | str = "cpu",
                     input_shape: tuple[int, int, int] | None = None) -> Preprocessing:
    """The preprocessing of a run of ``config`` on ``device``. Before the data is read (training)
    the side and channels are the settings' (``--input-size``, ``--in-channels``, None: the
    dataset's); for a finished run, ``input_shape`` (C, H, W) pins them to what the model takes."""
    channels, side = (input_shape[0], input_shape[1]) if input_shape is not None else (config.in_channels,
                                                                                          config.input_size)
    augment = get_dataset_spec(config.dataset).augment if config.augment else None
    return Preprocessing(side=side, channels=channels, normalize=normalization(config.dataset, config.normalize),
                         memory_format=memory_format_for(config.channels_last, torch.device(device)), augment=augment)


def load_run_splits(config: TrainConfig, prep: Preprocessing, data_dir: str | os.PathLike | None = None) -> Splits:
    """The splits of a run of ``config``, read and prepared as its training read them (resized and
    repeated as ``prep`` says, the same seeded validation split, the training labels permuted with the
    seed for ``--shuffle-labels``); ``data_dir``: where the data is now."""
    options = LoadOptions(config.download, prep.side, prep.channels, config.skip_bad_images, config.stream,
                          config.workers)
    splits = load_splits(config.dataset, data_dir or config.data_dir, options, val_fraction=config.val_fraction,
                         seed=config.seed)
    if config.shuffle_labels:  # --shuffle-labels: the training labels only, after the val split
        splits = Splits(shuffle_labels(splits.train, config.seed), splits.test, splits.val)
    return splits
