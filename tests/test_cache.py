"""The decoded-image cache lives in the user's cache directory: a data folder is never written to,
a changed folder never reads a stale entry, an unwritable cache is one note, and `cnnlab cache`
lists and clears it."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from cnnlab.cli import run as cli
from cnnlab.data import cache
from cnnlab.data.imagefolder import load_image_folder
from test_cli import assert_user_error, cnnlab as run_cli
from test_imagefolder import make_folder


def tree(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with its content hash: the folder byte for byte."""
    return {os.fsdecode(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def xdg(tmp_path, monkeypatch) -> Path:
    """HOME and XDG_CACHE_HOME inside tmp_path, no CNNLAB_CACHE: the cache goes where a user's would."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("CNNLAB_CACHE", raising=False)
    monkeypatch.setattr(cache, "_notes_shown", set())
    for key in cache.STATS:
        monkeypatch.setitem(cache.STATS, key, 0)
    return tmp_path / "xdg" / "cnnlab" / "images"


def test_cache_dir_follows_cnnlab_cache_then_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    monkeypatch.delenv("CNNLAB_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache.cache_dir() == tmp_path / "h" / ".cache" / "cnnlab" / "images"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # not absolute: ignored, as the XDG spec says
    assert cache.cache_dir() == tmp_path / "h" / ".cache" / "cnnlab" / "images"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache.cache_dir() == tmp_path / "x" / "cnnlab" / "images"
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "mine"))
    assert cache.cache_dir() == tmp_path / "mine"


def test_training_leaves_the_data_folder_untouched(tmp_path):
    import torchvision

    root = make_folder(tmp_path / "imgs", n_per_class=6, splits=("train", "test"))
    before = tree(root)
    env = {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "xdg"), "CNNLAB_CACHE": ""}
    proc = run_cli("train", "--dataset", "imagefolder", "--data-dir", str(root), "--epochs", "1", "--input-size", "12",
                   "--out", str(tmp_path / "run"), env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert tree(root) == before
    for split in ("train", "test"):
        folder = torchvision.datasets.ImageFolder(str(root / split))
        assert folder.classes == ["left", "top"] and len(folder) == 12
    cached = sorted(p.suffix for p in (tmp_path / "xdg" / "cnnlab" / "images").iterdir())
    assert cached.count(".pt") == 2 and cached.count(".json") == 2  # train and test
    assert not (tmp_path / "home" / ".cache").exists()


def test_second_load_hits_the_cache(tmp_path, xdg):
    root = make_folder(tmp_path / "imgs", n_per_class=5)
    before = tree(root)
    first = load_image_folder(root, side=12)
    assert cache.STATS == {"hits": 0, "misses": 1, "writes": 1}
    (pt,) = xdg.glob("*.pt")
    stamp = (pt.stat().st_mtime_ns, pt.stat().st_ino)
    second = load_image_folder(root, side=12)
    assert cache.STATS == {"hits": 1, "misses": 1, "writes": 1}
    assert (pt.stat().st_mtime_ns, pt.stat().st_ino) == stamp  # read, not written again
    assert torch.equal(first[0].images, second[0].images) and torch.equal(first[1].labels, second[1].labels)
    load_image_folder(root, side=10)  # other settings: another entry beside the first
    assert len(list(xdg.glob("*.pt"))) == 2 and tree(root) == before


def _change(root: Path, how: str) -> int:
    """Change the folder one way; returns the change in the number of images."""
    left = root / "train" / "left"
    if how == "mtime only":
        st = (left / "1.png").stat()
        os.utime(left / "1.png", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    elif how == "pixels":
        Image.new("RGB", (20, 20), (0, 0, 0)).save(left / "1.png")
    elif how == "new file":
        Image.new("L", (20, 20), 255).save(left / "new.png")
        return 1
    elif how == "removed file":
        (left / "1.png").unlink()
        return -1
    elif how == "renamed class":
        (root / "train" / "left").rename(root / "train" / "aleft")
    return 0


@pytest.mark.parametrize("how", ["mtime only", "pixels", "new file", "removed file", "renamed class"])
def test_a_changed_folder_never_reads_a_stale_entry(tmp_path, xdg, how):
    root = make_folder(tmp_path / "imgs", n_per_class=5)
    first = load_image_folder(root, side=12, test_fraction=0.4)
    added = _change(root, how)
    again = load_image_folder(root, side=12, test_fraction=0.4)
    assert cache.STATS["hits"] == 0 and cache.STATS["misses"] == 2
    assert len(again[0]) + len(again[1]) == len(first[0]) + len(first[1]) + added
    fresh = load_image_folder(root, side=12, test_fraction=0.4)  # now cached: the same tensors as decoded
    assert cache.STATS["hits"] == 1 and torch.equal(fresh[0].images, again[0].images)
    if how == "renamed class":
        assert again[0].classes == ["aleft", "top"]
    if how == "pixels":
        assert not torch.equal(again[0].images, first[0].images) or not torch.equal(again[1].images, first[1].images)
    assert len(list(xdg.glob("*.pt"))) == 1  # the entry of the old contents is replaced, not kept forever


def test_concurrent_loads_decode_once(tmp_path, xdg):
    """Processes of one `--nproc` run load the same folder at once: one decodes and writes, the others read."""
    import threading

    root = make_folder(tmp_path / "imgs", n_per_class=5)
    results = []
    threads = [threading.Thread(target=lambda: results.append(load_image_folder(root, side=12))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.STATS == {"hits": 2, "misses": 1, "writes": 1}
    assert all(torch.equal(r[0].images, results[0][0].images) for r in results)


def test_a_moved_folder_is_a_new_entry(tmp_path, xdg):
    root = make_folder(tmp_path / "imgs", n_per_class=5)
    load_image_folder(root, side=12)
    root.rename(tmp_path / "moved")
    load_image_folder(tmp_path / "moved", side=12)
    assert cache.STATS["hits"] == 0
    sources = {json.loads(p.read_text())["source"] for p in xdg.glob("*.json")}
    assert sources == {str((tmp_path / "imgs" / "train").resolve()), str((tmp_path / "moved" / "train").resolve())}


class _Payload:
    def __reduce__(self):  # what an unpickler with weights_only=False would run
        return (Path.touch, (Path(os.environ["CNNLAB_TEST_MARKER"]),))


@pytest.mark.parametrize("content", ["garbage", "truncated", "pickled code", "wrong shape"])
def test_a_bad_cache_file_is_decoded_again_never_trusted(tmp_path, xdg, monkeypatch, content):
    root = make_folder(tmp_path / "imgs", n_per_class=5)
    first = load_image_folder(root, side=12)
    (pt,) = xdg.glob("*.pt")
    marker = tmp_path / "pwned"
    monkeypatch.setenv("CNNLAB_TEST_MARKER", str(marker))
    if content == "garbage":
        pt.write_bytes(b"not a torch file")
    elif content == "truncated":
        pt.write_bytes(pt.read_bytes()[: pt.stat().st_size // 2])
    elif content == "pickled code":
        torch.save({"images": _Payload(), "labels": first[0].labels, "bad": []}, pt)
    else:
        torch.save({"images": torch.zeros(3, 1, 2, 2, dtype=torch.uint8), "labels": torch.zeros(3), "bad": []}, pt)
    again = load_image_folder(root, side=12)
    assert not marker.exists()
    assert cache.STATS["hits"] == 0 and torch.equal(again[0].images, first[0].images)
    assert torch.load(pt, weights_only=True)["images"].shape == (10, 3, 12, 12)  # replaced by a good one


def test_old_caches_in_the_data_folder_are_not_classes(tmp_path, xdg, capsys):
    root = make_folder(tmp_path / "imgs", n_per_class=5)
    old = root / "train" / ".cnnlab-cache"
    old.mkdir()
    (old / ("ab" * 12 + ".pt")).write_bytes(b"x" * 100)
    (root / "train" / ".git").mkdir()
    train_data, _, _ = load_image_folder(root, side=12)
    assert train_data.classes == ["left", "top"]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("cnnlab: note: ") and str(old) in err[0]
    assert cli(["cache", "list"]) == 0
    assert str(old) in capsys.readouterr().out
    kept = root / "test-like" / ".cnnlab-cache"  # a folder of that name with the user's own file is left alone
    kept.mkdir(parents=True)
    (kept / "notes.txt").write_text("mine")
    assert cli(["cache", "clear", str(root)]) == 0
    assert "1 old .cnnlab-cache folder" in capsys.readouterr().out
    assert not old.exists() and (kept / "notes.txt").read_text() == "mine"


def _fail_write(code: int):
    def write(tmp, content):
        raise OSError(code, os.strerror(code), str(tmp))

    return write


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES])
def test_a_cache_that_cannot_be_written_is_one_note(tmp_path, xdg, monkeypatch, capsys, code):
    import cnnlab.storage

    root = make_folder(tmp_path / "imgs", n_per_class=5, splits=("train", "test"))
    monkeypatch.setattr(cnnlab.storage, "_write_file", _fail_write(code))
    train_data, test_data, _ = load_image_folder(root, side=12)
    assert len(train_data) == len(test_data) == 10
    err = capsys.readouterr().err.splitlines()
    assert err == [f"cnnlab: note: cannot write the image cache in {xdg} ({os.strerror(code)}); "
                   f"decoding without a cache"]
    assert not [p for p in xdg.iterdir() if p.suffix in (".pt", ".json") or p.name.endswith(".tmp")]
    assert cli(["cache", "clear", "--all"]) == 0 and not list(xdg.iterdir())  # the locks left go too


def test_a_cache_dir_under_a_file_trains_with_one_note(tmp_path):
    """A real failure, even as root: the cache directory would be inside a regular file (ENOTDIR)."""
    root = make_folder(tmp_path / "imgs", n_per_class=6)
    (tmp_path / "a-file").write_text("")
    before = tree(root)
    proc = run_cli("train", "--dataset", "imagefolder", "--data-dir", str(root), "--epochs", "1", "--input-size", "12",
                   "--out", str(tmp_path / "run"), env={"CNNLAB_CACHE": str(tmp_path / "a-file" / "cache")})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cnnlab: note: cannot write the image cache in {tmp_path}")
    assert "decoding without a cache" in lines[0] and "Traceback" not in proc.stderr
    assert (tmp_path / "run" / "model.pt").is_file() and tree(root) == before


def test_cache_list_and_clear(tmp_path, xdg, capsys):
    a = make_folder(tmp_path / "a", n_per_class=5, splits=("train", "test"))
    b = make_folder(tmp_path / "b", n_per_class=5)
    load_image_folder(a, side=12)
    load_image_folder(b, side=12)
    load_image_folder(b, side=10)
    capsys.readouterr()
    assert cli(["cache", "list", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    folders = {f["folder"]: f for f in doc["folders"]}
    assert set(folders) == {str((a / "train").resolve()), str((a / "test").resolve()), str((b / "train").resolve())}
    assert folders[str((b / "train").resolve())]["entries"] == 2 and doc["entries"] == 4
    assert doc["bytes"] == sum(p.stat().st_size for p in xdg.iterdir()) and doc["cache_dir"] == str(xdg)
    assert cli(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert str((b / "train").resolve()) in out and "Total: 4 cache entries" in out
    assert cli(["cache", "clear", str(b)]) == 0
    assert "Removed 2 cache entries" in capsys.readouterr().out
    assert cli(["cache", "clear", str(b)]) == 0
    assert "Nothing to clear" in capsys.readouterr().out
    for meta in xdg.glob("*.json"):  # a's test split was last used 3 days ago
        if json.loads(meta.read_text())["source"].endswith("test"):
            old = meta.stat().st_mtime - 3 * 86400
            os.utime(meta, (old, old))
            os.utime(meta.with_suffix(".pt"), (old, old))
    assert cli(["cache", "clear", "--older-than", "2"]) == 0
    assert "Removed 1 cache entry" in capsys.readouterr().out
    assert cli(["cache", "clear", "--all"]) == 0
    assert "Removed 1 cache entry" in capsys.readouterr().out
    assert cli(["cache", "clear", "--all"]) == 0
    assert "Nothing to clear" in capsys.readouterr().out
    assert cli(["cache", "list"]) == 0 and "empty" in capsys.readouterr().out
    assert load_image_folder(a, side=12) and cache.STATS["hits"] == 0  # cleared entries are decoded again


def test_cache_clear_mistakes_are_one_line(tmp_path):
    assert_user_error(run_cli("cache", "clear"), "--all, FOLDER..., or --older-than DAYS")
    assert_user_error(run_cli("cache", "clear", "--all", str(tmp_path)), "not both")
    assert_user_error(run_cli("cache", "clear", "--older-than", "-1"), "--older-than")


def test_cache_help_does_not_import_torch():
    code = ("import sys; from cnnlab.cli import run; assert run(['cache', '--help']) == 0; "
            "assert run(['cache', 'clear', '--help']) == 0; assert 'torch' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
