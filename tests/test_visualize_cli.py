"""The See-inside commands as a learner runs them (real subprocesses) on a freshly trained run and on a
registry model name: every picture command writes a non-blank PNG/GIF/HTML, every mistake is one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_cli import cnnlab_in_process

pytest.importorskip("captum")

FETCHES = re.compile(r"(src|href)\s*=\s*[\"']?(https?:)?//|<link|@import|url\(\s*[\"']?https?:", re.I)


def cnnlab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnlab", *args], capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ), timeout=600)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc.stdout


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnlab: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_picture(path: Path, frames: int | None = None) -> None:
    """A readable image (every frame of a GIF) that is not one flat colour."""
    assert path.is_file() and path.stat().st_size > 500, path
    with Image.open(path) as im:
        if frames is not None:
            assert im.n_frames == frames, (im.n_frames, frames)
        for i in range(getattr(im, "n_frames", 1)):
            im.seek(i)
            assert np.asarray(im.convert("RGB")).std() > 5, (path, i)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A freshly trained run: the lecture's ConvNet on the bundled 8x8 digits, one epoch."""
    from cnnlab.training import train

    out = tmp_path_factory.mktemp("vis") / "digits"
    train(dataset="digits", epochs=1, lr=0.1, momentum=0.9, batch_size=32, out=str(out))
    return out


def test_featuremaps_filters_and_dropout_on_a_run(run_dir, tmp_path):
    out = ok(cnnlab("show", "featuremaps", str(run_dir), "--index", "2", "--out", str(tmp_path / "fm")))
    assert "conv_2 (Conv2d): 4x4x4 => 4x4x8, k3 s1 p1" in out
    for layer in ("conv_1", "pool_1", "conv_2", "pool_2"):
        assert_picture(tmp_path / "fm" / f"featuremaps-{layer}.png")
    out = ok(cnnlab("show", "filters", str(run_dir)))
    assert "conv_1, 4 filters of 1x3x3" in out
    assert_picture(run_dir / "visualize" / "filters-conv_1.png")
    out = ok(cnnlab("demo", "dropout", str(run_dir), "--index", "0", "--layer", "conv_2", "--out", str(tmp_path / "d.png")))
    assert "nn.Dropout2d(0.5) zeroed whole channels" in out
    assert_picture(tmp_path / "d.png")


def test_gradcam_and_receptive_field_on_a_run(run_dir, tmp_path):
    out = ok(cnnlab("show", "gradcam", str(run_dir), "--index", "1", "--layer", "all", "--out", str(tmp_path / "g.png")))
    predicted = next(line for line in out.splitlines() if line.startswith("predicted "))
    assert "Grad-CAM layer pool_2: the last layer whose output still has spatial extent > 1 (2x2x8)" in out
    assert "per-layer strip: conv_1, pool_1, conv_2, pool_2" in out
    assert_picture(tmp_path / "g.png")
    out = ok(cnnlab("show", "rf", str(run_dir), "--layer", "conv_2", "--cell", "1,2", "--images", "2",
                    "--out", str(tmp_path / "rf.png")))
    # conv3 -> pool2 -> conv3: rf 8, jump 2, start 1.0; cell 1 is centred at 3.0 -> [-1, 7) clipped
    assert "conv_2 (4x4 map) cell (1, 2): rows 0..6, columns 1..7" in out and "every non-zero gradient inside" in out
    assert_picture(tmp_path / "rf.png")
    # the same weights through a model name and --weights: the same prediction and Grad-CAM layer
    out = ok(cnnlab("show", "gradcam", "convnet", "--weights", str(run_dir / "model.pt"), "--input-size", "8",
                    "--dataset", "digits", "--index", "1", "--methods", "gradcam", "--out", str(tmp_path / "w.png")))
    assert f"convnet (weights from {run_dir / 'model.pt'})" in out and "Grad-CAM layer pool_2" in out
    assert predicted in out.splitlines()  # same class, same probability
    assert_picture(tmp_path / "w.png")


def test_report_of_a_run(run_dir):
    out = ok(cnnlab("report", str(run_dir), "--images", "2"))
    assert "test accuracy" in out
    page = (run_dir / "report.html").read_text()
    for anchor in ("id='curves'", "id='confusion'", "id='per-class'", "id='mistakes'", "id='filters'", "id='samples'",
                   "id='layer-table'", "data-layer='conv_2'", "Grad-CAM at pool_2"):
        assert anchor in page, anchor
    assert not FETCHES.search(page)  # self-contained: nothing to fetch


def test_commands_take_a_registry_model_name(tmp_path):
    """In this process (the commands' own processes are tested on runs below): a zoo name instead of a run."""
    rgb = (np.indices((40, 56)).sum(0)[..., None] * np.array([3, 1, 2]) % 256).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    out = ok(cnnlab_in_process("show", "gradcam", "resnet18", str(tmp_path / "rgb.png"), "--input-size", "64",
                               "--methods", "gradcam,saliency", "--out", str(tmp_path / "g.png")))
    assert "resnet18 (random weights)" in out and "Grad-CAM layer layer4:" in out
    assert_picture(tmp_path / "g.png")
    ok(cnnlab_in_process("show", "featuremaps", "convnet", "--dataset", "digits", "--index", "3",
                         "--layers", "conv_1,pool_2", cwd=tmp_path))
    assert_picture(tmp_path / "visualize" / "convnet" / "featuremaps-pool_2.png")
    ok(cnnlab_in_process("show", "filters", "vgg11", "--layer", "features.3", "--out", str(tmp_path / "f.png")))
    assert_picture(tmp_path / "f.png")
    ok(cnnlab_in_process("report", "convnet", "--dataset", "digits", "--images", "1",
                         "--out", str(tmp_path / "r.html")))
    assert "data-layer='pool_1'" in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize("args,positions", [
    (["conv", "--input", "5", "--kernel", "3", "--stride", "2", "--padding", "1"], 9),
    (["conv", "--input", "6", "--kernel", "3", "--stride", "1", "--padding", "same", "--dilation", "2"], 36),
    (["conv", "--input", "3", "--kernel", "3", "--stride", "2", "--padding", "1", "--transposed", "--output-padding", "1"], 36),
    (["pool", "--input", "5", "--kernel", "2", "--ceil-mode"], 9),
    (["xcorr"], 9),
])
def test_animations_have_one_gif_frame_per_output_position(args, positions, tmp_path):
    out = ok(cnnlab("animate", *args, "--out", str(tmp_path / "a.gif")))
    assert f"{positions + 2} frames = {positions} output positions" in out
    assert_picture(tmp_path / "a.gif", frames=positions + 2)


def test_animation_as_html(tmp_path):
    ok(cnnlab("animate", "pool", "--input", "4", "--kernel", "2", "--mode", "avg", "--out", str(tmp_path / "p.html")))
    page = (tmp_path / "p.html").read_text()
    assert 'data-frames="6"' in page and "<svg" in page and not FETCHES.search(page)


@pytest.mark.parametrize("args,fragments", [
    (["show", "gradcam", "{run}", "--layer", "conv2"], ["unknown layer 'conv2'", "did you mean conv_2"]),
    (["show", "rf", "{run}", "--layer", "conv_2", "--cell", "4,0"], ["cell (4, 0) is outside conv_2's 4x4 map"]),
    (["show", "featuremaps", "{run}", "{rgb}"], ["has 3 channels (RGB) but the model takes 1 (gray)", "--convert"]),
    (["show", "featuremaps", "{run}", "--index", "359"], ["--index 359 is outside the test split of digits (0..358)"]),
    (["show", "gradcam", "convnt", "--dataset", "digits"], ["unknown model (or run directory) 'convnt'", "convnet"]),
    (["show", "gradcam", "{run}", "--target", "eleven"], ["unknown class 'eleven'"]),
    (["animate", "conv", "--input", "3", "--kernel", "5"], ["input 3, kernel 5, padding 0, stride 1"]),
    (["animate", "conv", "--input", "5", "--kernel", "3", "--out", "a.mp4"], [".gif or .html"]),
    (["report", "convnet"], ["pass --dataset NAME"]),
])
def test_user_errors_are_one_line_exit_2(run_dir, tmp_path, args, fragments):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    args = [a.format(run=run_dir, rgb=tmp_path / "rgb.png") for a in args]
    assert_user_error(cnnlab(*args, cwd=tmp_path), *fragments)


def test_a_model_without_conv_layers_is_one_line(tmp_path):
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "g.png")
    code = ("import sys, torch.nn as nn\nfrom cnnlab.models import register_model\n"
            "@register_model('mlp', family='test', num_classes=10, in_channels=1, input_size=8)\n"
            "def mlp(*, num_classes, in_channels, input_size):\n"
            "    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * input_size ** 2, num_classes))\n"
            "from cnnlab.cli import run\nsys.exit(run(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, "-c", code, "show", "gradcam", "mlp", str(tmp_path / "g.png")],
                          capture_output=True, text=True, timeout=600)
    assert_user_error(proc, "Sequential has no convolutional layer")
