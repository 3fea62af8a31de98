"""examples/make_imagefolder.py: the generated JPEG folder of benchmarks/bench_imagefolder.py."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from cnnlab.data.imagefolder import load_image_folder

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "make_imagefolder.py"


def _module():
    spec = importlib.util.spec_from_file_location("make_imagefolder", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_tiny_folder_is_laid_out_seeded_and_readable(tmp_path):
    make = _module()
    assert make.write_folder(tmp_path / "a", per_class=3, classes=2) == 6
    files = _files(tmp_path / "a")
    names = make.CLASSES[:2]
    assert sorted(files) == sorted(f"{split}/{c}/{i:04d}.jpg" for c in names for split, i in
                                   [("test", 0), ("train", 1), ("train", 2)])
    for path in (tmp_path / "a").rglob("*.jpg"):
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            assert 40 <= im.width <= 160 and 40 <= im.height <= 160
    make.write_folder(tmp_path / "b", per_class=3, classes=2)
    assert _files(tmp_path / "b") == files  # same seed: byte for byte
    make.write_folder(tmp_path / "c", per_class=3, classes=2, seed=1)
    assert _files(tmp_path / "c") != files
    train, test, bad = load_image_folder(tmp_path / "a", side=16)
    assert train.classes == list(names) and len(train) == 4 and len(test) == 2 and bad == []


def test_every_class_is_drawn_apart():
    """With the same random draws (size, colours, place), each class's figure covers other pixels than
    every other class's: the class is in the shape, nothing else."""
    import numpy as np

    make = _module()
    images = {kind: make.shape_image(kind, np.random.default_rng(5)) for kind in make.CLASSES}
    assert len({im.size for im in images.values()}) == 1
    assert all(im.mode == "RGB" for im in images.values())
    bright = {kind: (np.asarray(im.resize((48, 48))).max(axis=2) > 130) for kind, im in images.items()}
    kinds = list(bright)
    for i, a in enumerate(kinds):
        for b in kinds[i + 1:]:
            assert (bright[a] != bright[b]).mean() > 0.02, (a, b)


def test_the_script_runs_and_refuses_bad_counts(tmp_path):
    ok = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "f"), "--per-class", "2", "--classes", "2"],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "wrote 4 JPEGs" in ok.stdout
    bad = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "g"), "--classes", "11"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines() == ["--classes must be in [2, 10]"]
    assert not (tmp_path / "g").exists()


def test_too_few_images_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="at least 2"):
        _module().write_folder(tmp_path / "f", per_class=1)
