"""Messages that do not mislead (issue 17): a search's cap is not a result; a user's model file
that exits is one line; a path the user gave is named for what is wrong with it (missing, a
folder, a file, a symbolic-link loop, no permission, not a regular file); an ``--out`` of the
wrong kind is refused before anything is written; every "Wrote X" names a file that exists;
``cnnlab animate`` names the flags. Each CLI case runs in a subprocess: exit 2, one line, no
traceback, nothing created."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from cnnlab.analysis.fit import fit_batch_size
from cnnlab.errors import PathError
from cnnlab.models import create_model
from cnnlab.paths import check_file, check_folder, check_output
from test_cli import assert_user_error, cnnlab_in_process as cnnlab

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def places(tmp_path) -> Path:
    """A file, a folder, a symbolic link to itself, a dangling link and a named pipe."""
    (tmp_path / "afile.txt").write_text("x")
    (tmp_path / "folder.toml").mkdir()
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "loop.png").symlink_to("loop.png")
    (tmp_path / "dangling.pt").symlink_to("nowhere.pt")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.toml")
    return tmp_path



# --- a cap is not a result ------------------------------------------------------------------

def test_fit_memory_says_when_the_search_stopped_at_its_limit():
    model = create_model("convnet")
    capped = fit_batch_size(model, (1, 28, 28), "1TiB", limit=64)
    assert capped.at_limit and capped.batch_size == 64 and capped.to_dict()["at_limit"]
    bounded = fit_batch_size(model, (1, 28, 28), "64MiB", limit=1 << 24)
    assert not bounded.at_limit and bounded.next_peak_bytes > bounded.budget_bytes


def test_cli_fit_memory_cap_is_not_a_result():
    proc = cnnlab("summary", "convnet", "--fit-memory", "10TiB")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "at least 16,777,216 (the search's limit)" in text and "memory is not what bounds" in text
    proc = cnnlab("summary", "convnet", "--fit-memory", "64MiB", "--eval", "--fit-for", "tensors")
    assert "search's limit" not in proc.stdout and "would need" in proc.stdout


def test_smallest_input_search_says_when_it_stopped_at_its_limit(tmp_path):
    big = tmp_path / "big.py"
    big.write_text("import torch.nn as nn\nclass Big(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                   "        self.conv = nn.Conv2d(1, 1, 3)\n        self.fc = nn.Linear(5000 * 5000, 10)\n"
                   "    def forward(self, x):\n        return self.fc(self.conv(x).flatten(1))\n")
    proc = cnnlab("summary", str(big), "--input", "1x28x28")
    assert_user_error(proc, "no square input up to 4096 (the search's limit) fits it")


# --- the user's code -------------------------------------------------------------------------

@pytest.mark.parametrize("body,fragment", [
    ("import sys\nsys.exit(0)\n", "sys.exit(0) at import"),
    ("import sys\nsys.exit()\n", "sys.exit() at import"),
    ("raise SystemExit('bye')\n", "sys.exit('bye') at import"),
    ("exit(3)\n", "sys.exit(3) at import"),
    ("import torch.nn as nn\nclass Net(nn.Module):\n    def __init__(self):\n        raise SystemExit(1)\n",
     "Net() in"),
    ("import torch.nn as nn\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
     "        {}['missing']\n", "KeyError"),
    ("import no_such_module_anywhere\n", "ModuleNotFoundError"),
])
def test_model_file_that_exits_or_fails_is_one_line(tmp_path, body, fragment):
    model = tmp_path / "mine.py"
    model.write_text(body)
    assert_user_error(cnnlab("summary", str(model)), fragment, "mine.py")


# --- paths the user gave ---------------------------------------------------------------------

@pytest.mark.parametrize("args,fragments", [
    (["train", "--recipe", "{p}/folder.toml"], ["--recipe", "folder.toml is a folder, not a file"]),
    (["train", "--recipe", "{p}/missing.toml"], ["missing.toml: no such file"]),
    (["train", "--recipe", "{p}/loop.png"], ["symbolic link that loops"]),
    (["train", "--recipe", "{p}/afile.txt/x.toml"], ["which is a file"]),
    (["train", "--recipe", "{p}/pipe.toml"], ["is not a regular file (it is a named pipe)"]),
    (["summary", "{p}/folder.png/m.py"], ["model file", "no such file"]),
    (["summary", "{p}/loop.py"], ["model file", "no such file"]),
    (["show", "gradcam", "convnet", "{p}/loop.png"], ["image", "symbolic link that loops"]),
    (["show", "gradcam", "convnet", "{p}/folder.png"], ["image", "is a folder, not a file"]),
    (["show", "gradcam", "convnet", "{p}/dangling.pt"], ["symbolic link to nowhere.pt, which does not exist"]),
    (["show", "filters", "convnet", "--weights", "{p}/folder.png"], ["weights file", "is a folder, not a file"]),
    (["show", "filters", "convnet", "--weights", "{p}/loop.png"], ["weights file", "loops"]),
    (["show", "filters", "convnet", "--weights", "{p}/dangling.pt"], ["weights file", "which does not exist"]),
    (["show", "gradcam", "convnet", "--index", "0", "--dataset", "mnist", "--data-dir", "{p}/afile.txt"],
     ["--data-dir", "is a file, not a folder"]),
    (["analyze", "convnet", "--no-timing", "--runs", "{p}/afile.txt"], ["--runs", "is a file, not a folder"]),
    (["analyze", "convnet", "--no-timing", "--runs", "{p}/loop.png"], ["--runs", "loops"]),
])
def test_input_paths_are_named_for_what_is_wrong(places, args, fragments):
    before = listing(places)
    proc = cnnlab(*(a.format(p=places) for a in args))
    assert_user_error(proc, *fragments)
    assert listing(places) == before


@pytest.mark.skipif(ROOT, reason="root reads and writes anything")
def test_permission_denied_is_named(places):
    secret = places / "secret.toml"
    secret.write_text("epochs = 1\n")
    secret.chmod(0)
    assert_user_error(cnnlab("train", "--recipe", str(secret)), "permission denied")
    locked = places / "locked"
    locked.mkdir(mode=0o500)
    assert_user_error(cnnlab("show", "filters", "convnet", "--out", str(locked / "f.png")), "permission denied")


def test_path_helpers_directly(places):
    assert check_file(places / "afile.txt") == places / "afile.txt"
    assert check_folder(places / "folder.png", "--runs") == places / "folder.png"
    for call, message in [
        (lambda: check_file(places / "folder.toml", "--recipe"), "is a folder, not a file"),
        (lambda: check_folder(places / "afile.txt", "--runs"), "is a file, not a folder"),
        (lambda: check_file(places / "loop.png"), "loops"),
        (lambda: check_output(places / "maps.jpg", "folder"), "names a .jpg file"),
        (lambda: check_output(places / "folder.png", "file", suffixes=(".png",)), "is a folder"),
        (lambda: check_output(places / "x.bmp", "file", suffixes=(".png",)), "not .bmp"),
        (lambda: check_output(places / "afile.txt" / "x.png", "file", suffixes=(".png",)), "which is a file"),
        (lambda: check_output(places / "loop.png", "file", suffixes=(".png",)), "loops"),
    ]:
        with pytest.raises(PathError, match=message):
            call()
    assert check_output(places / "pic", "file", suffixes=(".png",), default_suffix=".png") == places / "pic.png"
    assert check_output(places / "folder.png", "folder") == places / "folder.png"  # an existing folder is a folder


# --- --out of the wrong kind -----------------------------------------------------------------

SHOW = ["convnet", "--index", "0", "--dataset", "digits"]


@pytest.mark.parametrize("args,fragments", [
    (["show", "featuremaps", *SHOW, "--out", "{p}/maps.jpg"], ["maps.jpg names a .jpg file", "give a folder"]),
    (["show", "featuremaps", *SHOW, "--out", "{p}/maps.html"], ["names a .html file"]),
    (["show", "featuremaps", *SHOW, "--out", "{p}/afile.txt"], ["is a file; give a folder"]),
    (["show", "gradcam", *SHOW, "--out", "{p}/folder.png"], ["is a folder; give a file name"]),
    (["show", "gradcam", *SHOW, "--out", "{p}/pic.gif"], ["not .gif"]),
    (["show", "rf", *SHOW, "--out", "{p}/afile.txt/rf.png"], ["which is a file"]),
    (["show", "filters", "convnet", "--out", "{p}/f.html"], ["not .html"]),
    (["demo", "dropout", *SHOW, "--out", "{p}/d.csv"], ["not .csv"]),
    (["animate", "conv", "--input", "5", "--kernel", "3", "--out", "{p}/a.png"], ["not .png"]),
    (["animate", "pool", "--input", "4", "--kernel", "2", "--out", "{p}/folder.png"], ["is a folder"]),
    (["animate", "xcorr", "--out", "{p}/loop.png"], ["loops"]),
    (["report", "convnet", "--dataset", "digits", "--out", "{p}/r.png"], ["not .png"]),
    (["analyze", "convnet", "--no-timing", "--charts", "{p}/c.png"], ["--charts", "names a .png file"]),
    (["analyze", "convnet", "--no-timing", "--html", "{p}/folder.png"], ["--html", "is a folder"]),
    (["export", "{p}/no-run", "--out", "{p}/m.txt"], ["not .txt"]),
    (["evaluate", "{p}/no-run", "--confusion", "{p}/c.txt"], ["--confusion", "not .txt"]),
    (["train", "--out", "{p}/run.json"], ["names a .json file", "give a folder"]),
    (["experiment", "inits", "--out", "{p}/inits.csv"], ["names a .csv file"]),
])
def test_out_of_the_wrong_kind_is_refused_before_any_work(places, args, fragments):
    before = listing(places)
    assert_user_error(cnnlab(*(a.format(p=places) for a in args)), *fragments)
    assert listing(places) == before  # the folder maps.jpg does not appear


# --- animate names the flags -----------------------------------------------------------------

@pytest.mark.parametrize("args,fragment", [
    (["conv", "--input", "5", "--kernel", "3", "--stride", "0"], "--stride must be >= 1, got 0"),
    (["conv", "--input", "0", "--kernel", "3"], "--input must be >= 1"),
    (["conv", "--input", "5", "--kernel", "0"], "--kernel must be >= 1"),
    (["conv", "--input", "5", "--kernel", "3", "--dilation", "0"], "--dilation must be >= 1"),
    (["conv", "--input", "5", "--kernel", "3", "--padding", "-1"], "--padding must be >= 0"),
    (["conv", "--input", "5", "--kernel", "3", "--stride", "2", "--transposed", "--output-padding", "2"],
     "--output-padding 2 must be smaller than --stride (2) or --dilation (1)"),
    (["pool", "--input", "5", "--kernel", "2", "--stride", "0"], "--stride must be >= 1"),
    (["pool", "--input", "5", "--kernel", "2", "--padding", "2"], "--padding must be an integer from 0 to --kernel/2"),
    (["pool", "--input", "5", "--kernel", "3", "--mode", "avg", "--dilation", "2"], "--mode max or --dilation 1"),
    (["xcorr", "--kernel", "0"], "--kernel must be >= 1"),
    (["conv", "--input", "200", "--kernel", "3"], "a smaller --input or a larger --stride"),
])
def test_animate_errors_name_the_flags(tmp_path, args, fragment):
    proc = cnnlab("animate", *args, cwd=tmp_path)
    assert_user_error(proc, fragment)
    assert not re.search(r"\b[iksdp] must be", proc.stderr)
    assert listing(tmp_path) == set()


# --- every "Wrote X" names a file that exists ------------------------------------------------

def wrote(proc) -> list[Path]:
    assert proc.returncode == 0, proc.stderr
    return [Path(m) for m in re.findall(r"Wrote (\S+?)(?::|\s|$)", proc.stdout)]


@pytest.mark.parametrize("args,expected", [
    (["show", "gradcam", *SHOW, "--methods", "gradcam", "--out", "pic"], "pic.png"),
    (["show", "filters", "convnet", "--out", "f"], "f.png"),
    (["show", "rf", *SHOW, "--images", "2", "--out", "sub/rf"], "sub/rf.png"),
    (["demo", "dropout", *SHOW, "--out", "d.svg"], "d.svg"),
    (["animate", "conv", "--input", "4", "--kernel", "3", "--out", "a"], "a.gif"),
    (["animate", "pool", "--input", "4", "--kernel", "2", "--out", "p.html"], "p.html"),
    (["animate", "xcorr", "--out", "x"], "x.gif"),
])
def test_wrote_names_the_file_that_exists(tmp_path, args, expected):
    proc = cnnlab(*args, cwd=tmp_path)
    paths = wrote(proc)
    assert paths and all((tmp_path / p).is_file() for p in paths), (paths, proc.stdout)
    assert (tmp_path / expected).is_file() and Path(expected) in paths
    assert not (tmp_path / expected.split(".")[0]).exists() or "/" in expected


def test_featuremaps_and_analyze_outputs_exist(tmp_path):
    proc = cnnlab("show", "featuremaps", *SHOW, "--out", "maps", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shown = re.findall(r"-> (\S+\.png)", proc.stdout)
    assert shown and all((tmp_path / p).is_file() for p in shown)
    proc = cnnlab("analyze", "convnet", "--no-timing", "--batch-sizes", "1", "--html", "page", "--charts", "charts",
                  cwd=tmp_path)
    paths = wrote(proc)
    assert Path("page.html") in paths and (tmp_path / "page.html").is_file() and (tmp_path / "charts").is_dir()


def test_export_and_evaluate_write_what_they_name(finished_run, tmp_path):
    proc = cnnlab("export", str(finished_run), "--out", str(tmp_path / "model"))
    paths = wrote(proc)
    assert paths == [tmp_path / "model.onnx"] and paths[0].is_file()
    proc = cnnlab("evaluate", str(finished_run), "--device", "cpu", "--confusion", str(tmp_path / "conf"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "conf.png").is_file() and str(tmp_path / "conf.png") in proc.stdout


def test_predict_image_paths_are_named(finished_run, places):
    assert_user_error(cnnlab("predict", str(finished_run), str(places / "loop.png")), "symbolic link that loops")
    assert_user_error(cnnlab("predict", str(finished_run), str(places / "missing.png")), "no such file")
    assert_user_error(cnnlab("predict", str(finished_run), str(places / "folder.png")), "is a folder")
