"""``cnnlab train --resume RUN`` takes the run's own settings: any other setting or option given with
it (all but ``resume_safe()``) is one line naming it, exit code 2, before anything is read or written.
The cases are generated from the command's options, which are generated from TrainConfig, so a new
field is covered the day it is added."""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path

import click
import pytest
import torch

from cnnlab.cli.train import train as train_command
from cnnlab.training import TrainConfig, resume, train
from cnnlab.training.config import LAUNCH_OPTIONS, ResumeOptionError, option_flag, resume_safe
from test_cli import assert_user_error, cnnlab_in_process as cnnlab

SMALL = dict(dataset="digits", epochs=1, batch_size=256)
HINTS = typing.get_type_hints(TrainConfig)


def state(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root`` with its bytes and mtime (the lock file too: nothing may be written)."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resume") / "run"
    train(TrainConfig(**SMALL), out=str(out))
    return out


def _value(param: click.Option, default) -> list[str]:
    """Command-line words giving ``param`` a valid value other than its default."""
    if param.is_flag:
        return [param.secondary_opts[0] if default is True and param.secondary_opts else param.opts[0]]
    if isinstance(param.type, click.Choice):
        return [param.opts[0], next(c for c in param.type.choices if c != default)]
    base = typing.get_origin(HINTS.get(param.name))
    if param.multiple and base is dict or param.name == "model_options":
        return [param.opts[0], "dropout2d=0.5"]
    if param.multiple:
        return [param.opts[0], "features"]
    if param.type is click.INT:
        return [param.opts[0], "2" if default != 2 else "4"]
    if isinstance(param.type, click.types.FloatParamType):  # --lr also takes find[:RULE]
        return [param.opts[0], "0.5" if default != 0.5 else "0.25"]
    return [param.opts[0], "something"]


def refused_options() -> list[tuple[str, list[str]]]:
    """(name, words) for every option of ``cnnlab train`` that --resume must refuse."""
    safe = set(resume_safe())
    return [(p.name, _value(p, p.default)) for p in train_command.params
            if isinstance(p, click.Option) and p.name != "resume_dir" and p.name not in safe]


def test_the_cases_cover_every_field_and_option():
    names = {name for name, _ in refused_options()} | set(resume_safe())
    fields = {f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("cli", True)}
    assert fields | set(LAUNCH_OPTIONS) <= names
    assert {"overwrite", "nproc", "recipe", "model", "model_options", "lr", "seed", "out"} <= names - set(resume_safe())


@pytest.mark.parametrize("name,words", refused_options(), ids=[n for n, _ in refused_options()])
def test_resume_refuses_every_other_setting(run, name, words):
    before = state(run)
    proc = cnnlab("train", "--resume", str(run), *words)
    assert_user_error(proc, "leave out", "--epochs")
    assert any(spelling in proc.stderr.split("leave out")[1].split(";")[0] for spelling in option_flag(name).split("/")
               + [words[0]]), proc.stderr
    assert state(run) == before


def test_resume_names_every_refused_option_at_once(run):
    before = state(run)
    proc = cnnlab("train", "--resume", str(run), "-o", "dropout2d=0.5", "--lr", "0.5", "--batch-size", "7",
                  "--optimizer", "adam", "--overwrite", "--epochs", "2")
    assert_user_error(proc, "--option", "--lr 0.05, not 0.5", "--batch-size 256, not 7", "--optimizer sgd, not adam",
                      "--overwrite")
    assert "--epochs" not in proc.stderr.split("leave out")[1].split(";")[0]
    assert state(run) == before


def test_resume_refuses_a_setting_even_at_the_runs_own_value(run):
    before = state(run)
    assert_user_error(cnnlab("train", "--resume", str(run), "--dataset", "digits", "--model", "convnet"),
                      "leave out --dataset and --model")
    assert state(run) == before


def test_resume_help_lists_the_safe_options():
    proc = cnnlab("train", "--help", env={"COLUMNS": "200"})
    text = " ".join(proc.stdout.split("--resume", 1)[1].split("--overwrite", 1)[0].split())
    for name in resume_safe():
        assert option_flag(name) in text, text
    assert "--lr" not in text


def test_resume_api_refuses_unsafe_changes(run):
    before = state(run)
    with pytest.raises(ResumeOptionError, match="leave out --lr"):
        resume(run, lr=0.5)
    with pytest.raises(ValueError, match="leave out --seed"):
        resume(run, seed=3)
    assert state(run) == before


def test_safe_options_keep_the_resume_bitwise(tmp_path):
    straight = train(TrainConfig(**{**SMALL, "epochs": 2}), out=str(tmp_path / "straight"))
    out = tmp_path / "stopped"
    train(TrainConfig(**SMALL), out=str(out))
    proc = cnnlab("train", "--resume", str(out), "--epochs", "2", "--quiet", "--workers", "1", "--no-download",
                  "--data-dir", os.environ.get("CNNLAB_DATA", str(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    a = straight.model.state_dict()
    b = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
