"""Numeric options end at what the machine and the data can do, not at "> 0": a value outside its
range is one line naming that one option, its value and the valid range, exit code 2, before any
work and with nothing written. The TrainConfig cases are generated from each field's ``Range``."""

from __future__ import annotations

import dataclasses
import math
import os
import re

import pytest
import torch

from cnnlab.data.splits import split_validation
from cnnlab.data.tensors import TensorData
from cnnlab.errors import CnnlabError
from cnnlab.training import TrainConfig
from cnnlab.training.config import Range, option_flag
from cnnlab.training.distributed import cpu_cores
from test_cli import assert_user_error, cnnlab_in_process as cnnlab

TINY = ["--dataset", "digits", "--epochs", "1", "--batch-size", "256", "-q", "--device", "cpu"]
FLAGS = {option_flag(f.name).split("/")[0] for f in dataclasses.fields(TrainConfig)}


def _outside(bounds: Range) -> list[object]:
    """Values just outside ``bounds`` (and nan/inf for a float setting)."""
    step = 1 if bounds.integer else 0.5
    values: list[object] = []
    if bounds.lo is not None:
        values.append(bounds.lo if bounds.open in ("lo", "both") else bounds.lo - step)
    if bounds.hi is not None:
        hi = bounds.hi if bounds.open in ("hi", "both") else bounds.hi + step
        values.append(int(hi) if bounds.integer else (hi * 2 if hi > 1e30 else hi))
    if not bounds.integer:
        values += [math.nan, math.inf]
    return [int(v) if bounds.integer else float(v) for v in values]


def _inside(bounds: Range) -> list[object]:
    """The closed ends of ``bounds``: the largest and smallest values that must pass."""
    return [v for v, side in ((bounds.lo, "lo"), (bounds.hi, "hi"))
            if v is not None and bounds.open not in (side, "both")]


CASES = [(f.name, value) for f in dataclasses.fields(TrainConfig) if f.metadata.get("range")
         for value in _outside(f.metadata["range"])]


def test_every_numeric_field_has_a_range():
    for f in dataclasses.fields(TrainConfig):
        if str(f.type).replace(" | None", "") in ("int", "float"):
            assert f.metadata.get("range") is not None, f.name


@pytest.mark.parametrize("name,value", CASES, ids=[f"{n}={v}" for n, v in CASES])
def test_out_of_range_setting_names_that_option(tmp_path, name, value):
    flag = option_flag(name)
    out = tmp_path / "run"
    proc = cnnlab("train", *TINY, "--out", str(out), f"{flag}={value}")
    shown = int(value) if isinstance(value, float) and value.is_integer() and name == "epochs" else value
    assert_user_error(proc, f"{flag} must be", f"got {shown!r}")
    named = set(re.findall(r"--[a-z][a-z0-9-]*", proc.stderr)) & FLAGS
    assert named == {flag}, proc.stderr  # one option per message, the one that failed
    assert not out.exists()


@pytest.mark.parametrize("name", sorted({n for n, _ in CASES}))
def test_the_ends_of_each_range_pass(name):
    bounds = {f.name: f.metadata["range"] for f in dataclasses.fields(TrainConfig) if f.metadata.get("range")}[name]
    for value in _inside(bounds):
        TrainConfig(dataset="digits", **{name: value}).check_ranges()


@pytest.mark.parametrize("seed", [2**70, 2**64, -2**63 - 1, 1180591620717411303424])
def test_seed_beyond_torch(tmp_path, seed):
    proc = cnnlab("train", *TINY, "--out", str(tmp_path / "run"), f"--seed={seed}")
    assert_user_error(proc, "--seed must be an integer in [-9223372036854775808, 18446744073709551615]",
                      "torch.manual_seed")
    assert not (tmp_path / "run").exists()


def test_seed_range_is_what_torch_takes():
    for seed in (-2**63, 2**64 - 1):
        TrainConfig(dataset="digits", seed=seed).validate()
        torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
    torch.manual_seed(1)


def test_nproc_above_the_cores(tmp_path):
    cores = cpu_cores()
    proc = cnnlab("train", *TINY, "--out", str(tmp_path / "run"), "--nproc", str(cores + 1))
    assert_user_error(proc, f"--nproc must be in [1, {cores}]", f"got {cores + 1}", "--force-nproc")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args,fragment", [
    (["--nproc", "0"], "--nproc must be a positive integer, got 0"),
    (["--nproc", "-3"], "--nproc must be a positive integer, got -3"),
    (["--nproc", "2", "--force-nproc", "--batch-size", "7"], "--batch-size 7 is the global batch and must divide"),
])
def test_nproc_refused_before_torchrun(tmp_path, args, fragment):
    proc = cnnlab("train", *TINY, "--out", str(tmp_path / "run"), *args)
    assert_user_error(proc, fragment)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("fraction,side", [("0.9995", "training"), ("0.0001", "validation"), ("0.995", "training")])
def test_val_fraction_that_starves_a_split(tmp_path, fraction, side):
    proc = cnnlab("train", *TINY, "--out", str(tmp_path / "run"), "--val-fraction", fraction)
    assert_user_error(proc, f"--val-fraction {fraction}", f"for {side}", "fewer than the 10 classes",
                      "--val-fraction must be in [")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("n,classes", [(1437, 10), (23, 11), (40000, 10), (100, 2), (7, 3)])
def test_val_fraction_range_stated_is_right(n, classes):
    data = TensorData(torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.zeros(n, dtype=torch.long),
                      [str(c) for c in range(classes)])
    with pytest.raises(CnnlabError) as err:
        split_validation(data, 0.99999, 0)
    found = re.search(r"must be in \[([0-9.]+), ([0-9.]+)\]", str(err.value))
    if n < 2 * classes:
        assert found is None and "too few" in str(err.value)
        return
    for edge in map(float, found.groups()):
        train, val = split_validation(data, edge, 0)
        assert len(train) >= classes and len(val) >= classes


def test_validation_messages_name_one_option():
    for bad, fragment in ((dict(step_size=0), "--step-size must be a positive integer, got 0"),
                          (dict(gamma=0.0), "--gamma must be in (0, 1], got 0.0"),
                          (dict(warmup_epochs=-1.0), "--warmup-epochs must be >= 0, got -1.0"),
                          (dict(nesterov=True), "--nesterov needs a --momentum above 0"),
                          (dict(nesterov=True, momentum=0.9, optimizer="adam"), "--nesterov needs --optimizer sgd")):
        with pytest.raises(CnnlabError) as err:
            TrainConfig(dataset="digits", **bad).validate()
        assert fragment in str(err.value)


@pytest.mark.parametrize("args,fragment", [
    (["bench", "infer", "convnet", "--threads", "0"], "--threads must be an integer in [1, "),
    (["bench", "infer", "convnet", "--threads", str(cpu_cores() + 1)], "--threads must be an integer in [1, "),
    (["bench", "infer", "convnet", "--input-size", "0"], "--input-size must be a positive integer, got 0"),
    (["bench", "infer", "convnet", "--seed", str(2**70)], "--seed must be an integer in ["),
    (["analyze", "convnet", "--repeats", "0"], "--repeats must be a positive integer, got 0"),
    (["bench", "conv", "--quick", "--runs", "0"], "--runs must be a positive integer, got 0"),
])
def test_zero_is_not_the_default(args, fragment):
    assert_user_error(cnnlab(*args), fragment)


def test_cpu_cores_is_what_this_process_may_use():
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert cpu_cores() == expected >= 1


HUGE = str(10**30)  # beyond torch's int64: refused with the option's name, not torch's overflow traceback


@pytest.mark.parametrize("args,flag", [
    (["analyze", "--repeats", HUGE], "--repeats"),
    (["analyze", "--no-timing", "--batch-sizes", f"1,{HUGE}"], "--batch-sizes"),
    (["bench", "conv", "--quick", "--batch-sizes", HUGE], "--batch-sizes"),
    (["bench", "conv", "--quick", "--runs", HUGE], "--runs"),
    (["bench", "infer", "convnet", "--warmup", HUGE], "--warmup"),
    (["bench", "infer", "convnet", "--batch-sizes", HUGE], "--batch-sizes"),
    (["bench", "infer", "convnet", "--input-size", HUGE], "--input-size"),
    (["summary", "convnet", "--num-classes", HUGE], "--num-classes"),
    (["summary", "convnet", "--train", "--batch-size", HUGE], "--batch-size"),
    (["summary", "convnet", "--input", f"1x{HUGE}x{HUGE}"], "--input"),
    (["predict", "convnet", "x.png", "--top-k", HUGE], "--top-k"),
    (["predict", "convnet", "x.png", "--top-k", "0"], "--top-k"),
    (["cache", "clear", "--older-than", "nan"], "--older-than"),
])
def test_huge_or_nan_count_of_any_command_names_its_option(args, flag):
    assert_user_error(cnnlab(*args), flag)
