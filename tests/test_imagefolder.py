"""User image folders (PNG and JPEG of mixed sizes and modes), their error paths, and predict."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data.decode import decode_image
from cnnlab.data.imagefolder import load_image_folder
from cnnlab.training import TrainConfig, evaluate_run, predict, train
from cnnlab.training.setup import check_data_settings

from test_cli import assert_user_error, cnnlab_in_process as run_cli

MODES = ["L", "RGB", "RGBA", "P"]


def _image(kind: int, size: tuple[int, int], mode: str, rng) -> Image.Image:
    """Class 0: bright left half; class 1: bright top half (learnable at any size and mode)."""
    w, h = size
    arr = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    if kind == 0:
        arr[:, : w // 2] += 180
    else:
        arr[: h // 2] += 180
    im = Image.fromarray(arr, "RGB")
    if mode == "L":
        return im.convert("L")
    if mode == "RGBA":
        return im.convert("RGBA")
    if mode == "P":
        return im.convert("P")
    return im


def make_folder(root, n_per_class=24, splits=("train",), seed=0):
    rng = np.random.default_rng(seed)
    for split in splits:
        for kind, name in enumerate(["left", "top"]):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n_per_class):
                size = (int(rng.integers(12, 40)), int(rng.integers(12, 40)))
                mode = MODES[i % 4]
                ext = ".jpg" if mode in ("L", "RGB") and i % 3 == 0 else ".png"
                _image(kind, size, mode, rng).save(d / f"{i}{ext}")
    return root


def test_load_mixed_folder(tmp_path):
    root = make_folder(tmp_path / "imgs")
    train_data, test_data, bad = load_image_folder(root, side=16)
    assert train_data.classes == ["left", "top"] and bad == []
    assert train_data.images.shape[1:] == (3, 16, 16) and train_data.images.dtype == torch.uint8  # colour found
    assert len(train_data) + len(test_data) == 48 and len(test_data) == 2 * round(0.2 * 24)
    gray, _, _ = load_image_folder(root, side=8, channels=1)
    assert gray.images.shape[1:] == (1, 8, 8)


def test_transparency_is_composited_on_white(tmp_path):
    im = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    im.save(tmp_path / "clear.png")
    assert int(decode_image(tmp_path / "clear.png", 3, 4).min()) == 255


def test_train_predict_evaluate_on_a_folder(tmp_path):
    root = make_folder(tmp_path / "imgs", splits=("train", "test"))
    out = tmp_path / "run"
    result = train(TrainConfig(model="convnet", dataset="imagefolder", data_dir=str(root), input_size=16, epochs=8,
                               batch_size=8, lr=0.05, momentum=0.9, out=str(out)))
    assert result.test_total == 48 and result.test_acc >= 90.0
    assert evaluate_run(out)[:2] == (result.test_correct, result.test_total)
    files = [root / "test" / "left" / "0.jpg", root / "test" / "top" / "1.png"]
    ranked = predict(out, files, top_k=2)
    assert [r[1][0][0] for r in ranked] == ["left", "top"]
    assert all(abs(sum(p for _, p in r[1]) - 1.0) < 1e-5 for r in ranked)
    proc = run_cli("predict", str(out), str(files[0]), "--top-k", "1")
    assert proc.returncode == 0 and "left" in proc.stdout
    assert_user_error(run_cli("predict", str(out), str(tmp_path / "nope.png")), "no such file")


def test_folder_errors_are_one_line(tmp_path):
    root = make_folder(tmp_path / "imgs", n_per_class=6)
    (root / "train" / "left" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "run"
    args = ["train", "--dataset", "imagefolder", "--data-dir", str(root), "--epochs", "1", "--out", str(out)]
    assert_user_error(run_cli(*args), "broken.png is not a readable image", "--skip-bad-images")
    proc = run_cli(*args, "--skip-bad-images")
    assert proc.returncode == 0, proc.stderr
    assert "Skipped 1 unreadable file(s)" in proc.stdout
    (root / "train" / "empty").mkdir()
    assert_user_error(run_cli(*args, "--overwrite"), "class folder", "is empty")
    assert_user_error(run_cli("train", "--dataset", "imagefolder", "--data-dir", str(tmp_path / "none")), "does not exist")
    (tmp_path / "flat" / "train").mkdir(parents=True)
    assert_user_error(run_cli("train", "--dataset", "imagefolder", "--data-dir", str(tmp_path / "flat")),
                      "no class folders")
    (root / "train" / "empty").rmdir()
    (root / "train" / "left" / "broken.png").unlink()
    (root / "train" / "top" / "notes.txt").write_text("not an image")
    assert_user_error(run_cli(*args, "--overwrite"), "notes.txt is not a readable image")


def test_decoded_tensors_are_cached_and_invalidated(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    root = make_folder(tmp_path / "imgs", n_per_class=6)
    first = load_image_folder(root, side=12)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    assert not list(root.rglob(".*"))  # nothing written into the data folder
    second = load_image_folder(root, side=12)
    assert torch.equal(first[0].images, second[0].images)
    load_image_folder(root, side=10)  # other settings: another cache file
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2
    Image.new("L", (20, 20), 255).save(root / "train" / "left" / "new.png")  # a new file invalidates
    third = load_image_folder(root, side=12)
    assert len(third[0]) + len(third[1]) == len(first[0]) + len(first[1]) + 1


def test_val_folder_and_small_image_resnet_defaults(tmp_path):
    root = make_folder(tmp_path / "imgs", n_per_class=8, splits=("train", "val", "test"))
    out = tmp_path / "run"
    result = train(TrainConfig(model="resnet18", dataset="imagefolder", data_dir=str(root), input_size=16, epochs=1,
                               batch_size=8, out=str(out)))
    assert all(r.val_acc is not None for r in result.history) and result.test_total == 16
    assert result.model.conv1.kernel_size == (3, 3)  # CIFAR stem chosen for 16 px images
    import json

    assert json.loads((out / "config.json").read_text())["config"]["model_options"] == {"stem": "cifar"}
    correct, total, _ = evaluate_run(out, split="val")
    assert total == 16


@pytest.mark.parametrize("split_kind", ["test folder", "seeded split"])
def test_streaming_trains_exactly_like_in_memory(tmp_path, split_kind):
    splits = ("train", "test") if split_kind == "test folder" else ("train",)
    root = make_folder(tmp_path / "imgs", n_per_class=10, splits=splits)
    config = TrainConfig(dataset="imagefolder", data_dir=str(root), input_size=12, epochs=2, batch_size=8, lr=0.05,
                         momentum=0.9, val_fraction=0.2)
    memory = train(config, write_run_dir=False)
    streamed = train(config, write_run_dir=False, stream=True, workers=2)
    a, b = memory.model.state_dict(), streamed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (memory.test_correct, memory.test_total) == (streamed.test_correct, streamed.test_total)
    from cnnlab.data.imagefolder import StreamingImages

    train_s, test_s, _ = load_image_folder(root, side=12, stream=True)
    assert isinstance(train_s, StreamingImages) and len(train_s) + len(test_s) == 20 * len(splits)


def test_stream_is_for_image_folders():
    from cnnlab.errors import CnnlabError

    with pytest.raises(CnnlabError, match="--stream is for --dataset imagefolder"):
        check_data_settings(TrainConfig(dataset="digits", stream=True))  # dataset-dependent: not in validate()


def test_a_first_decode_in_workers_equals_one_in_this_process(tmp_path, monkeypatch):
    import cnnlab.data.imagefolder as imagefolder
    from cnnlab.data.decode import BadImageError, ImageRefusedError

    root = make_folder(tmp_path / "imgs", n_per_class=6, splits=("train", "test"))
    (root / "train" / "top" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    monkeypatch.setattr(imagefolder, "PARALLEL_DECODE_MIN", 1)  # so few files go to the workers too

    def load(workers: int, cache: str, **kw):
        monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / cache))  # a fresh cache: decoded, not read back
        return load_image_folder(root, side=12, channels=3, workers=workers, **kw)

    here, there = load(0, "c0", skip_bad=True), load(2, "c2", skip_bad=True)
    for a, b in zip(here[:2], there[:2]):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert here[2] == there[2] == [root / "train" / "top" / "broken.png"]
    with pytest.raises(BadImageError, match="broken.png is not a readable image.*--skip-bad-images"):
        load(2, "c3")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # every image > 2 x limit: refused, never skipped
    with pytest.raises(ImageRefusedError) as refused:
        load(2, "c4", skip_bad=True)
    assert "decompression bomb" in str(refused.value) and "\n" not in str(refused.value)


def test_streaming_workers_decode_below_the_training_priority(tmp_path, monkeypatch):
    import os

    import cnnlab.data.imagefolder as imagefolder
    from cnnlab.data.tensors import index_batches

    root = make_folder(tmp_path / "imgs", n_per_class=3, splits=("train", "test"))
    # each "decoded" image carries the niceness of the process that decoded it (workers fork from here)
    monkeypatch.setattr(imagefolder, "decode_image",
                        lambda path, channels, side: torch.full((channels, side, side), os.nice(0), dtype=torch.uint8))
    here = os.nice(0)
    train_s, _, _ = load_image_folder(root, side=4, stream=True, workers=1)
    (images, _), = list(train_s.batches(index_batches(len(train_s), 64)))
    assert images.unique().tolist() == [min(19, here + imagefolder.WORKER_NICENESS)]
    assert os.nice(0) == here  # this process keeps its priority
