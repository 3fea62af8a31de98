"""Transforms on whole uint8 batches or splits, done once in memory or per batch on tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnlab.data.tensors import TensorData
from cnnlab.errors import CnnlabError
from cnnlab.runtime import available_memory_bytes

__all__ = ["augment_batch", "resize_images", "repeat_channels"]


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
    padded = F.pad(x, (pad, pad, pad, pad))
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


def resize_images(data, size: int, chunk: int = 4096):
    """Resize every image to ``size x size`` once (bilinear, antialiased), kept as uint8.

    A split that already has that size (e.g. an image folder decoded to it) is returned as is.
    """
    if data.sample_shape[1:] == (size, size):
        return data
    _check_fits(len(data), data.images.shape[1], size, chunk)
    out = torch.empty((len(data), data.images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, len(data), chunk):
        x = data.images[start : start + chunk].float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return TensorData(out, data.labels, data.classes, data.skipped)


def _check_fits(n: int, channels: int, size: int, chunk: int) -> None:
    """Refuse (one line) a resize whose result would not fit in the memory left, naming the size that would."""
    free = available_memory_bytes()
    per_pixel = n * channels + 2 * 4 * min(n, chunk) * channels  # uint8 result + float32 chunk in and out
    if free is None or per_pixel * size * size <= 0.8 * free:
        return
    fits = int((0.8 * free / per_pixel) ** 0.5)
    raise CnnlabError(f"--input-size {size}: {n:,} images of {channels}x{size}x{size} need "
                      f"{per_pixel * size * size / 2**30:.1f} GiB, more than the {free / 2**30:.1f} GiB available; "
                      f"at most --input-size {fits} fits")


def repeat_channels(data, channels: int):
    """Gray -> ``channels`` identical planes (as ``Grayscale(num_output_channels=3)``), without copying."""
    have = data.sample_shape[0]
    if have == channels:
        return data
    if have != 1:
        raise CnnlabError(f"the images have {have} channels; only 1-channel images can be repeated to {channels}")
    return TensorData(data.images.expand(-1, channels, -1, -1), data.labels, data.classes, data.skipped)
