"""TrainConfig grouped by concern: every field names its group, `cnnlab train --help` lists the options under
those headings, and ``launch`` returns a result (the torchrun relaunch is the command line's, apart)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.training.config import GROUPS, TrainConfig, option_flag


def test_every_field_belongs_to_exactly_one_known_group():
    groups = TrainConfig.groups()
    assert list(groups) == list(GROUPS)
    names = [name for fields in groups.values() for name in fields]
    assert sorted(names) == sorted(f.name for f in dataclasses.fields(TrainConfig))
    assert len(names) == len(set(names))
    assert all(groups.values()), "an empty group"
    assert {"lr", "momentum", "batch_size", "optimizer"} <= set(groups["optimization"])
    assert {"dataset", "data_dir", "input_size"} <= set(groups["data"])
    assert {"model", "model_options", "weights", "freeze"} <= set(groups["model"])
    assert {"epochs", "schedule", "warmup_epochs"} <= set(groups["schedule"])
    assert {"device", "deterministic"} <= set(groups["system"])


def test_section_reads_one_concern():
    config = TrainConfig(lr=0.1, momentum=0.9)
    section = config.section("optimization")
    assert section["lr"] == 0.1 and section["momentum"] == 0.9 and "dataset" not in section
    with pytest.raises(CnnlabError, match="did you mean optimization"):
        config.section("optimisation")


def test_a_setting_without_a_known_group_is_refused():
    from cnnlab.training.config import setting

    with pytest.raises(ValueError, match="group must be one of"):
        setting(1, "x", group="misc")


def test_train_help_lists_options_under_their_group():
    proc = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--help"], capture_output=True, text=True,
                          env={"COLUMNS": "200", **__import__("os").environ})
    assert proc.returncode == 0
    text = proc.stdout
    headings = [f"{name.capitalize()}: {about}" for name, about in GROUPS.items()] + ["Launch"]
    positions = [text.index(h + ":") for h in headings]
    assert positions == sorted(positions)
    for group, names in TrainConfig.groups().items():
        start = text.index(f"{group.capitalize()}: {GROUPS[group]}:")
        end = min((p for p in positions if p > start), default=len(text))
        for name in names:
            flag = option_flag(name).split("/")[0]
            assert flag in text[start:end], (name, group)
    launch_part = text[text.index("Launch:"):]
    for flag in ("--resume", "--overwrite", "--nproc"):
        assert flag in launch_part


def test_launch_does_not_relaunch_itself(monkeypatch):
    from cnnlab.training import launcher

    monkeypatch.setattr(launcher, "check_nproc", lambda *a, **k: None)
    with pytest.raises(CnnlabError, match="starts processes from the command line"):
        launcher.launch(TrainConfig(dataset="digits"), nproc=2)
    assert launcher.needs_relaunch(2) and not launcher.needs_relaunch(1)
