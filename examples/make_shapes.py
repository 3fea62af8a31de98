"""Write a small image folder to try `--dataset imagefolder` with: circles vs squares.

    python examples/make_shapes.py data/shapes [--per-class 60]

Images of random sizes (24-64 px) and modes (L, RGB, RGBA, P), PNG and JPEG, in
DIR/train/<class>/ and DIR/test/<class>/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def shape_image(kind: str, rng: np.random.Generator) -> Image.Image:
    side = int(rng.integers(24, 65))
    background = tuple(int(v) for v in rng.integers(0, 90, 3))
    colour = tuple(int(v) for v in rng.integers(150, 256, 3))
    im = Image.new("RGB", (side, side), background)
    draw = ImageDraw.Draw(im)
    r = side * rng.uniform(0.25, 0.4)
    cx, cy = side / 2 + rng.uniform(-side / 8, side / 8), side / 2 + rng.uniform(-side / 8, side / 8)
    box = (cx - r, cy - r, cx + r, cy + r)
    (draw.ellipse if kind == "circle" else draw.rectangle)(box, fill=colour)
    mode = ["L", "RGB", "RGBA", "P"][int(rng.integers(0, 4))]
    return im.convert(mode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=60)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for split, n in (("train", args.per_class), ("test", max(1, args.per_class // 4))):
        for kind in ("circle", "square"):
            folder = args.out / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                im = shape_image(kind, rng)
                suffix = ".jpg" if im.mode in ("L", "RGB") and i % 2 else ".png"
                im.save(folder / f"{i}{suffix}")
    print(f"wrote {args.out}/train and {args.out}/test (classes: circle, square)")


if __name__ == "__main__":
    main()
