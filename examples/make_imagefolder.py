"""Write a practitioner-sized image folder: 10 classes of coloured shapes and textures, JPEG.

    python examples/make_imagefolder.py data/folder10 [--per-class 400] [--classes 10] [--test-fraction 0.2] [--seed 0]

Every image has its own width and height (40-160 px each, any aspect between 3:4 and 4:3), a
random dark background with noise, and one bright, randomly coloured figure of random size and
position near the centre; the class is the figure's shape or texture (checkerboard, circle,
cross, diamond, dots, horizontal stripes, ring, square, triangle, vertical stripes; ``--classes N``:
the first N), so it survives a square resize or a centre crop. Written as JPEG (quality 90) to DIR/train/<class>/ and
DIR/test/<class>/ (``--test-fraction`` of each class). Seeded: the same arguments write the same
files, byte for byte, with the same Pillow.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("checkerboard", "circle", "cross", "diamond", "dots", "hstripes", "ring", "square", "triangle",
           "vstripes")


def _figure_box(w: int, h: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """Centre (x, y) and half-size r of the figure: 25-40% of the shorter side, near the centre."""
    side = min(w, h)
    r = side * rng.uniform(0.25, 0.4)
    cx = w / 2 + rng.uniform(-side / 10, side / 10)
    cy = h / 2 + rng.uniform(-side / 10, side / 10)
    return cx, cy, r


def _texture(kind: str, w: int, h: int, colour: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A texture patch (h, w, 3) on a transparent (all -1) field; bright where the texture is."""
    period = max(4, int(min(w, h) * rng.uniform(0.12, 0.2)))
    yy, xx = np.mgrid[0:h, 0:w]
    phase = int(rng.integers(0, period))
    if kind == "hstripes":
        on = ((yy + phase) // (period // 2)) % 2 == 0
    elif kind == "vstripes":
        on = ((xx + phase) // (period // 2)) % 2 == 0
    elif kind == "checkerboard":
        on = (((xx + phase) // (period // 2)) + ((yy + phase) // (period // 2))) % 2 == 0
    else:  # dots: a grid of discs
        cy, cx = (yy + phase) % period - period / 2, (xx + phase) % period - period / 2
        on = cx * cx + cy * cy <= (period * 0.3) ** 2
    out = np.full((h, w, 3), -1, dtype=np.int16)
    out[on] = colour
    return out


def shape_image(kind: str, rng: np.random.Generator) -> Image.Image:
    """One RGB image of class ``kind`` (see the module docstring)."""
    w = int(rng.integers(40, 161))
    h = int(np.clip(round(w * rng.uniform(0.75, 4 / 3)), 40, 160))
    background = rng.integers(0, 80, 3)
    noise = rng.integers(-12, 13, (h, w, 3))
    base = np.clip(background[None, None, :] + noise, 0, 255).astype(np.uint8)
    im = Image.fromarray(base, "RGB")
    colour = tuple(int(v) for v in rng.integers(140, 256, 3))
    cx, cy, r = _figure_box(w, h, rng)
    draw = ImageDraw.Draw(im)
    box = (cx - r, cy - r, cx + r, cy + r)
    if kind == "circle":
        draw.ellipse(box, fill=colour)
    elif kind == "square":
        draw.rectangle(box, fill=colour)
    elif kind == "ring":
        draw.ellipse(box, outline=colour, width=max(2, int(r * 0.3)))
    elif kind == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    elif kind == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    elif kind == "cross":
        t = r * 0.3
        draw.rectangle((cx - r, cy - t, cx + r, cy + t), fill=colour)
        draw.rectangle((cx - t, cy - r, cx + t, cy + r), fill=colour)
    else:  # a textured square patch
        x0, y0 = max(0, int(math.floor(cx - r))), max(0, int(math.floor(cy - r)))
        x1, y1 = min(w, int(math.ceil(cx + r))), min(h, int(math.ceil(cy + r)))
        patch = _texture(kind, x1 - x0, y1 - y0, colour, rng)
        pixels = np.asarray(im).copy()
        region = pixels[y0:y1, x0:x1]
        pixels[y0:y1, x0:x1] = np.where(patch >= 0, patch, region).astype(np.uint8)
        im = Image.fromarray(pixels, "RGB")
    return im


def write_folder(out: Path, per_class: int = 400, test_fraction: float = 0.2, seed: int = 0,
                 classes: int = len(CLASSES)) -> int:
    """Write ``per_class`` JPEGs of each of the first ``classes`` classes to ``out/train`` and ``out/test``;
    returns the number written."""
    if per_class < 2:
        raise SystemExit("--per-class must be at least 2 (one train and one test image per class)")
    if not 2 <= classes <= len(CLASSES):
        raise SystemExit(f"--classes must be in [2, {len(CLASSES)}]")
    n_test = min(per_class - 1, max(1, round(per_class * test_fraction)))
    rng = np.random.default_rng(seed)
    written = 0
    for kind in CLASSES[:classes]:
        for split in ("train", "test"):
            (out / split / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            split = "test" if i < n_test else "train"
            shape_image(kind, rng).save(out / split / kind / f"{i:04d}.jpg", quality=90)
            written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=400, help="images per class, train and test together")
    parser.add_argument("--classes", type=int, default=len(CLASSES), help="how many classes (the first N)")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of each class written to test/")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n = write_folder(args.out, args.per_class, args.test_fraction, args.seed, args.classes)
    print(f"wrote {n} JPEGs to {args.out}/train and {args.out}/test (classes: {', '.join(CLASSES[:args.classes])})")


if __name__ == "__main__":
    main()
