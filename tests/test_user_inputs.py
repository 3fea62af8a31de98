"""Inputs that used to end in a traceback or an unclear message (docs/RELIABILITY.md): each is one
stderr line ``cnnlab: error: ...``, exit code 2, and nothing on disk changed -- or a clean success
where that is right."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from test_cli import assert_user_error, cnnlab_in_process as cnnlab
from test_reliability import RECIPE, assert_unchanged_error, snapshot

ONE_EPOCH = [*RECIPE[:3], "1", *RECIPE[4:]]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_bomb(path: Path, side: int = 30000) -> None:
    """A tiny PNG whose header claims side x side pixels (Pillow refuses it on open)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit gray
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00"))
                     + _png_chunk(b"IEND", b""))


def image_folder(root: Path, per_class: int = 6, classes=("a", "b")) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        d = root / "train" / c
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (10, 10), dtype=np.uint8), "L").save(d / f"{i}.png")
    return root



@pytest.mark.parametrize("args,fragment", [
    (["--lr", "1e39"], "--lr must be a positive number below 3.4e+38"),
    (["--warmup-epochs", "nan"], "--warmup-epochs must be a finite number"),
    (["--warmup-epochs", "inf"], "--warmup-epochs must be a finite number"),
    (["--weight-decay", "nan"], "--weight-decay must be a finite number"),
    (["--momentum", "nan"], "--momentum must be a finite number"),
    (["-o", "dropout2d=abc"], "option dropout2d takes a float"),
    (["-o", "dropout2d=5"], "dropout2d must be in [0, 1)"),
    (["--model", "resnet18", "-o", "shortcut=Z"], "shortcut must be one of A, B, C"),
    (["--input-size", "200000"], "at most --input-size"),
])
def test_bad_settings_are_one_line(tmp_path, args, fragment):
    out = tmp_path / "run"
    assert_user_error(cnnlab("train", *ONE_EPOCH, "--out", str(out), *args), fragment)
    assert not out.exists()


def test_bad_summary_option_is_one_line():
    assert_user_error(cnnlab("summary", "resnet18", "-o", "stem=foo"), "stem must be one of imagenet, cifar")


def test_out_that_cannot_be_a_directory(tmp_path):
    (tmp_path / "afile").write_text("x")
    before = snapshot(tmp_path)
    assert_unchanged_error(cnnlab("train", *ONE_EPOCH, "--out", str(tmp_path / "afile" / "sub")), before, tmp_path,
                           "is under", "which is a file")
    assert_unchanged_error(cnnlab("train", *ONE_EPOCH, "--out", str(tmp_path / "afile")), before, tmp_path,
                           "is a file")
    assert_user_error(cnnlab("train", *ONE_EPOCH, "--out", "/proc/cnnlab-run/sub"))  # a read-only file system


def test_decompression_bombs_are_refused_everywhere(tmp_path, finished_run):
    root = image_folder(tmp_path / "imgs")
    write_bomb(root / "train" / "a" / "bomb.png")
    before = snapshot(tmp_path)
    for extra in ([], ["--skip-bad-images"]):
        proc = cnnlab("train", "--dataset", "imagefolder", "--data-dir", str(root), "--epochs", "1", *extra,
                      "--out", str(tmp_path / "out"))
        assert_user_error(proc, "bomb.png", "decompression bomb")
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()
    assert_user_error(cnnlab("predict", str(finished_run), str(root / "train" / "a" / "bomb.png")),
                      "decompression bomb")


def test_non_utf8_file_and_class_names(tmp_path):
    root = image_folder(tmp_path / "imgs", classes=("plain",))
    odd = os.fsdecode(b"caf\xe9-\xff")
    (root / "train" / odd).mkdir()
    for i in range(6):
        Image.fromarray(np.full((10, 10), 40 * i, np.uint8), "L").save(root / "train" / odd / os.fsdecode(b"x\xfe%d.png" % i))
    proc = cnnlab("train", "--dataset", "imagefolder", "--data-dir", str(root), "--epochs", "1", "-q",
                  "--out", str(tmp_path / "run"))
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    (root / "train" / odd / os.fsdecode(b"bad\xff.png")).write_bytes(b"not a png")
    proc = cnnlab("train", "--dataset", "imagefolder", "--data-dir", str(root), "--epochs", "1",
                  "--out", str(tmp_path / "run2"))
    assert_user_error(proc, "is not a readable image", "--skip-bad-images")


def test_streaming_names_the_bad_file_and_can_skip_it(tmp_path):
    root = image_folder(tmp_path / "imgs", per_class=8)
    (root / "train" / "a" / "broken\nname.png").write_bytes(b"garbage")
    args = ["train", "--dataset", "imagefolder", "--data-dir", str(root), "--epochs", "1", "--stream", "--workers", "0",
            "--batch-size", "4"]
    proc = cnnlab(*args, "--out", str(tmp_path / "r1"))
    assert_user_error(proc, "broken\\nname.png", "is not a readable image")
    proc = cnnlab(*args, "--skip-bad-images", "-q", "--out", str(tmp_path / "r2"))
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_one_class_folder_is_refused(tmp_path):
    root = image_folder(tmp_path / "imgs", classes=("only",))
    before = snapshot(tmp_path)
    assert_unchanged_error(cnnlab("train", "--dataset", "imagefolder", "--data-dir", str(root), "--epochs", "1",
                                  "--out", str(tmp_path / "run")), before, tmp_path, "one class folder (only)")


def test_predict_messages(tmp_path, finished_run):
    assert_user_error(cnnlab("predict", str(finished_run), str(tmp_path)), "is a folder")
    (tmp_path / "bad.png").write_bytes(b"nope")
    proc = cnnlab("predict", str(finished_run), str(tmp_path / "bad.png"))
    assert_user_error(proc, "bad.png is not a readable image")
    assert "--skip-bad-images" not in proc.stderr


def test_runs_over_damaged_json_files(tmp_path, finished_run):
    import shutil

    for name, text in (("a", "[1, 2]"), ("b", '"config"')):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(text)
    shutil.copytree(finished_run, tmp_path / "c")
    (tmp_path / "c" / "result.json").write_text("[]")
    proc = cnnlab("runs", str(tmp_path), "--format", "json")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    rows = json.loads(proc.stdout)
    assert [Path(r["run"]).name for r in rows] == ["c"] and rows[0]["test_acc"] is not None


def test_hand_edited_model_pt(tmp_path, finished_run):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    ckpt = torch.load(run / "model.pt", weights_only=True)
    ckpt["input_shape"] = [1, -3, 8]
    torch.save(ckpt, run / "model.pt")
    before = snapshot(run)
    assert_unchanged_error(cnnlab("evaluate", str(run)), before, run, "impossible input shape")
    ckpt["input_shape"] = [1, 8, 8]
    ckpt["state_dict"].pop("conv_2.weight")
    torch.save(ckpt, run / "model.pt")
    assert_user_error(cnnlab("evaluate", str(run)), "conv_2.weight", "missing from the file")


def test_weights_messages(tmp_path, finished_run):
    state = torch.load(finished_run / "model.pt", weights_only=True)["state_dict"]
    reordered = {"conv_2.weight": state["conv_2.weight"], **{k: v for k, v in state.items() if k != "conv_2.weight"}}
    torch.save(reordered, tmp_path / "reordered.pt")  # the first 4-D tensor is conv_2's (4 input channels)
    proc = cnnlab("train", *ONE_EPOCH, "--weights", str(tmp_path / "reordered.pt"), "--out", str(tmp_path / "ok"))
    assert proc.returncode == 0, proc.stderr  # no wrong "--in-channels 4" advice: conv_1 takes 1 channel
    other = {k: v for k, v in state.items() if not k.startswith("conv_1")}
    other["conv_1.weight"] = torch.zeros(4, 3, 3, 3)
    torch.save(other, tmp_path / "rgb.pt")
    proc = cnnlab("train", *ONE_EPOCH, "--weights", str(tmp_path / "rgb.pt"), "--out", str(tmp_path / "rgb"))
    assert_user_error(proc, "expect 3 input channel(s)", "--in-channels 3")
    proc = cnnlab("train", *ONE_EPOCH, "--model", "convnet_allconv", "--weights", str(finished_run / "model.pt"),
                  "--out", str(tmp_path / "x"))
    assert_user_error(proc, "does not fit the model", "conv_3.weight")
