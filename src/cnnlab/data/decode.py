"""One image file -> a uint8 ``C x side x side`` tensor, whatever its mode.

Every Pillow mode is brought to 8-bit gray ("L") or RGB the way torchvision would read it:

- 1, L, P, RGB, CMYK, YCbCr: Pillow's own conversion (P through its palette).
- LA, PA, RGBA and P with a transparent colour: composited on white first.
- I;16 (16-bit): scaled by the 16-bit range, ``v >> 8`` (torchvision's ``to_dtype(uint8, scale=True)``).
  Pillow's plain ``convert("L")`` clips instead, turning a 16-bit image all white.
- I (32-bit integers): 8-bit data (0..255) as is, 16-bit data (0..65535, how Pillow used to open
  16-bit PNGs) as I;16, anything else min-max scaled to 0..255.
- F (32-bit floats): 0..1 (a ``ToTensor`` range) times 255, 0..255 as is, anything else min-max scaled.

The EXIF orientation is applied first (``ImageOps.exif_transpose``), as a photo viewer shows the
image. A decompression bomb (more pixels than Pillow's ``MAX_IMAGE_PIXELS``) is refused: it is an
attack or a mistake, not a bad image to skip.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.errors import CnnlabError, PathError
from cnnlab.paths import check_file

__all__ = ["BadImageError", "ImageRefusedError", "decode_image", "decode_image_bytes", "image_mode", "image_to_tensor", "to_8bit"]

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
GRAY_MODES = ("1", "L", "LA", "La", "I", "F", *_SIXTEEN_BIT)  # modes without colour
_TRANSPARENT = ("RGBA", "LA", "PA", "La", "RGBa")


class BadImageError(CnnlabError):
    """A file that cannot be decoded as an image."""


class ImageRefusedError(CnnlabError):
    """An image cnnlab will not decode (a decompression bomb)."""


def _stretch(array: np.ndarray) -> np.ndarray:
    lo, hi = float(array.min()), float(array.max())
    if hi <= lo:
        return np.zeros(array.shape, dtype=np.uint8)
    return np.round((array.astype(np.float64) - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def to_8bit(im: Image.Image) -> Image.Image:
    """An image of mode I;16, I or F as mode L, scaled by its range (see the module docstring);
    other modes are returned as they are."""
    if im.mode in _SIXTEEN_BIT:
        return Image.fromarray((np.asarray(im).astype(np.uint32) >> 8).astype(np.uint8), "L")
    if im.mode == "I":
        a = np.asarray(im)
        lo, hi = int(a.min()), int(a.max())
        if lo >= 0 and hi <= 255:
            return Image.fromarray(a.astype(np.uint8), "L")
        if lo >= 0 and hi <= 65535:
            return Image.fromarray((a >> 8).astype(np.uint8), "L")
        return Image.fromarray(_stretch(a), "L")
    if im.mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float64))
        lo, hi = float(a.min()), float(a.max())
        if lo >= 0 and hi <= 1:
            return Image.fromarray(np.round(a * 255).astype(np.uint8), "L")
        if lo >= 0 and hi <= 255:
            return Image.fromarray(np.round(a).astype(np.uint8), "L")
        return Image.fromarray(_stretch(a), "L")
    return im


def _to_channels(im: Image.Image, channels: int) -> Image.Image:
    im = ImageOps.exif_transpose(im)
    if im.mode in _TRANSPARENT or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    im = to_8bit(im)
    return im.convert("L" if channels == 1 else "RGB")


def bomb_refused(path: Path | str, exc: BaseException) -> ImageRefusedError:
    return ImageRefusedError(f"{path} is refused as a possible decompression bomb ({exc}); check the file, "
                             f"or resize it below Pillow's MAX_IMAGE_PIXELS")


def image_mode(path: Path) -> str | None:
    """The Pillow mode of an image file from its header (no pixels decoded); None when unreadable.
    A decompression bomb is refused here already."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return im.mode
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise bomb_refused(path, exc) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        return None


def decode_image(path: str | os.PathLike, channels: int, side: int) -> torch.Tensor:
    """One image file -> uint8 tensor (channels, side, side): converted as the module docstring
    says, then resized (bilinear) to ``side x side``."""
    try:
        path = check_file(path, "image")
    except PathError as exc:
        message = str(exc) + ("; pass image files" if str(exc).endswith("is a folder, not a file") else "")
        raise BadImageError(message) from None
    return _decode(path, path, channels, side)


def decode_image_bytes(data: bytes, channels: int, side: int, name: str = "the image") -> torch.Tensor:
    """An image file's bytes (an upload, a canvas drawing) -> uint8 tensor (channels, side, side), decoded
    exactly as :func:`decode_image` decodes a file (``name`` says which image in messages). Nothing is
    written to disk; a decompression bomb is refused."""
    return _decode(io.BytesIO(data), name, channels, side)


def _decode(source, name, channels: int, side: int) -> torch.Tensor:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                im.load()
                return image_to_tensor(im, channels, side)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise bomb_refused(name, exc) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise BadImageError(f"{name} is not a readable image ({type(exc).__name__})") from None


def image_to_tensor(im: Image.Image, channels: int, side: int) -> torch.Tensor:
    """A decoded PIL image of any mode -> uint8 tensor (channels, side, side) (see the module docstring)."""
    im = _to_channels(im, channels).resize((side, side), Image.BILINEAR, reducing_gap=None)
    array = np.asarray(im, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()  # (C, H, W)
