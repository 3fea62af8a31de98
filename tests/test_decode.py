"""Image decoding: every Pillow mode against the pixel values it should give, EXIF orientation,
decompression bombs (cnnlab.data.decode)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data.decode import BadImageError, ImageRefusedError, decode_image, image_to_tensor

GRAY = np.array([[0, 60], [130, 255]], dtype=np.uint8)  # a 2x2 gray test pattern
RGB = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]], dtype=np.uint8)


def _decode(tmp_path, im: Image.Image, channels: int, name: str | None = "x.png") -> np.ndarray:
    """Through a file where the format can hold the mode, else straight from the PIL image."""
    side = im.size[0]
    if name is None:
        t = image_to_tensor(im, channels, side)
    else:
        im.save(tmp_path / name)
        t = decode_image(tmp_path / name, channels, side)
    return t.permute(1, 2, 0).numpy().squeeze(-1 if channels == 1 else None)


def _luma(rgb: np.ndarray) -> np.ndarray:  # Pillow's L = R*299/1000 + G*587/1000 + B*114/1000
    return Image.fromarray(rgb, "RGB").convert("L")


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "I;16", "I", "F", "YCbCr"])
def test_every_mode_decodes_to_the_expected_pixels(tmp_path, mode):
    if mode == "1":
        im, expected = Image.fromarray(GRAY > 127), np.where(GRAY > 127, 255, 0)
    elif mode == "L":
        im, expected = Image.fromarray(GRAY, "L"), GRAY
    elif mode == "LA":  # half-transparent black over white -> mid gray; opaque pixels keep their value
        alpha = np.array([[255, 128], [255, 0]], dtype=np.uint8)
        im = Image.merge("LA", (Image.fromarray(GRAY), Image.fromarray(alpha)))
        a = alpha / 255.0
        expected = np.round(GRAY * a + 255 * (1 - a))
    elif mode == "P":
        im = Image.fromarray(RGB, "RGB").quantize(colors=4)
        expected = np.asarray(_luma(np.asarray(im.convert("RGB"))))
    elif mode == "PA":
        im = Image.fromarray(GRAY, "L").convert("PA")
        expected = GRAY
    elif mode == "RGB":
        im, expected = Image.fromarray(RGB, "RGB"), np.asarray(_luma(RGB))
    elif mode == "RGBA":
        rgba = np.concatenate([RGB, np.full((2, 2, 1), 255, np.uint8)], axis=-1)
        rgba[1, 1, 3] = 0  # fully transparent -> white
        im = Image.fromarray(rgba, "RGBA")
        shown = RGB.copy()
        shown[1, 1] = 255
        expected = np.asarray(_luma(shown))
    elif mode == "CMYK":
        im = Image.fromarray(RGB, "RGB").convert("CMYK")
        expected = np.asarray(_luma(np.asarray(im.convert("RGB"))))
    elif mode == "I;16":
        values = np.array([[0, 257], [32768, 65535]], dtype=np.uint16)
        im, expected = Image.fromarray(values), values >> 8  # torchvision's to_dtype(uint8, scale=True)
    elif mode == "I":
        values = np.array([[0, 1000], [40000, 65535]], dtype=np.int32)  # 16-bit data in a 32-bit image
        im, expected = Image.fromarray(values, "I"), values >> 8
    elif mode == "F":
        values = np.array([[0.0, 0.25], [0.5, 1.0]], dtype=np.float32)  # a ToTensor-range float image
        im, expected = Image.fromarray(values, "F"), np.round(values * 255)
    else:  # YCbCr
        im = Image.fromarray(RGB, "RGB").convert("YCbCr")
        expected = np.asarray(_luma(np.asarray(im.convert("RGB"))))
    assert im.mode == mode
    name = {"CMYK": "x.tiff", "I": "x.tiff", "F": "x.tiff", "YCbCr": "x.jpg", "PA": None}.get(mode, "x.png")
    if mode == "YCbCr":  # JPEG stores YCbCr but Pillow opens it as RGB: convert in memory
        name = None
    got = _decode(tmp_path, im, 1, name)
    np.testing.assert_allclose(got, expected, atol=1)
    assert got.max() < 255 or mode not in ("I;16", "I") or expected.max() == 255  # never all white


def test_sixteen_bit_png_is_not_all_white(tmp_path):
    ramp = (np.arange(64, dtype=np.uint32) * 1024).astype(np.uint16).reshape(8, 8)
    got = _decode(tmp_path, Image.fromarray(ramp), 1)
    assert len(np.unique(got)) == 64 and got.min() == 0 and got.max() == 252


def test_rgb_output_keeps_colour(tmp_path):
    got = _decode(tmp_path, Image.fromarray(RGB, "RGB"), 3)
    assert np.array_equal(got, RGB)


def test_exif_orientation_is_applied(tmp_path):
    pattern = np.zeros((4, 4), np.uint8)
    pattern[0, 3] = 255  # top-right pixel lit
    im = Image.fromarray(pattern, "L")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    im.convert("RGB").save(path, exif=exif.tobytes(), quality=100)
    got = decode_image(path, 1, 4)[0].numpy()
    assert got[3, 3] > 128 and got[0, 3] < 128  # top-right moved to bottom-right by the rotation


def test_decompression_bombs_are_refused(tmp_path, monkeypatch):
    Image.new("L", (64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels > 2 x limit: DecompressionBombError
    with pytest.raises(ImageRefusedError, match="decompression bomb"):
        decode_image(tmp_path / "big.png", 1, 8)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # between 1x and 2x: only a warning in Pillow
    with pytest.raises(ImageRefusedError, match="decompression bomb"):
        decode_image(tmp_path / "big.png", 1, 8)


def test_folders_and_missing_files_are_named(tmp_path):
    with pytest.raises(BadImageError, match="is a folder"):
        decode_image(tmp_path, 1, 8)
    with pytest.raises(BadImageError, match="no such file"):
        decode_image(tmp_path / "nope.png", 1, 8)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(BadImageError, match="not a readable image"):
        decode_image(tmp_path / "bad.png", 1, 8)
    assert torch.is_tensor(decode_image(_save(tmp_path), 3, 5))


def _save(tmp_path):
    path = tmp_path / "ok.png"
    Image.fromarray(GRAY, "L").save(path)
    return path
