"""The training loop: real MNIST, run-directory files, evaluate, bitwise determinism."""

from __future__ import annotations

import csv
import json

import pytest
import torch

import cnnlab
from cnnlab.errors import CnnlabError, RunDirError
from cnnlab.runs import load_run
from cnnlab.training import Callback, TrainConfig, evaluate_run, train


def test_digits_trains_offline(tmp_path):
    result = train(TrainConfig(dataset="digits", epochs=8, lr=0.1, momentum=0.9, batch_size=32, out=str(tmp_path / "r")))
    assert result.test_acc > 85.0  # 8x8 digits, 4k-parameter ConvNet, a few seconds
    assert len(result.history) == 8
    assert result.model.linear_1.in_features == 2 * 2 * 8  # sized for 8x8 by cnnlab.arithmetic


def test_callbacks_are_called_in_order(tmp_path):
    events = []

    class Recorder(Callback):
        def on_train_start(self, trainer):
            events.append("start")

        def on_epoch_start(self, trainer, epoch):
            events.append(f"epoch{epoch}")

        def on_batch_end(self, trainer, epoch, step, loss):
            if step == 0:
                events.append("batch")

        def on_epoch_end(self, trainer, record):
            events.append(f"end{record.epoch}")

        def on_train_end(self, trainer, result):
            events.append("done")

    train(TrainConfig(dataset="digits", epochs=2), [Recorder()], write_run_dir=False)
    assert events == ["start", "epoch1", "batch", "end1", "epoch2", "batch", "end2", "done"]


@pytest.mark.mnist
def test_one_mnist_epoch_and_the_run_directory(mnist_root, tmp_path):
    out = tmp_path / "run"
    result = train(TrainConfig(epochs=1, momentum=0.9, data_dir=str(mnist_root), out=str(out)))
    assert result.test_acc >= 95.0, result.test_acc
    assert result.test_total == 10000
    # config.json: every setting, versions, device
    doc = json.loads((out / "config.json").read_text())
    assert doc["config"]["lr"] == 0.05 and doc["config"]["momentum"] == 0.9 and doc["config"]["seed"] == 1
    assert doc["environment"]["torch_version"] == torch.__version__
    assert doc["environment"]["cnnlab_version"] == cnnlab.__version__ and doc["environment"]["device"] == "cpu"
    # metrics.csv: one row per epoch
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 1 and set(rows[0]) >= {"epoch", "train_loss", "train_acc", "test_acc", "seconds"}
    assert float(rows[0]["test_acc"]) == pytest.approx(result.test_acc, abs=1e-3)
    # model.pt: loads with weights_only=True
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert set(ckpt["state_dict"]) == set(result.model.state_dict())
    assert (out / "curves.png").stat().st_size > 10_000
    # evaluate reproduces the figure exactly
    correct, total, run = evaluate_run(out)
    assert (correct, total) == (result.test_correct, result.test_total)


@pytest.mark.mnist
def test_two_runs_same_seed_bitwise_identical(mnist_root):
    config = TrainConfig(epochs=0.2, data_dir=str(mnist_root))  # 47 steps: enough to diverge if anything is unseeded
    a = train(config, write_run_dir=False).model.state_dict()
    b = train(config, write_run_dir=False).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = train(config, write_run_dir=False, seed=2).model.state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_determinism_flag_is_restored():
    before = torch.are_deterministic_algorithms_enabled()
    train(TrainConfig(dataset="digits", epochs=1), write_run_dir=False)
    assert torch.are_deterministic_algorithms_enabled() == before


def test_existing_run_dir_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(RunDirError, match="--overwrite"):
        train(TrainConfig(dataset="digits", epochs=1, out=str(out)))
    assert (out / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "field,value", [("epochs", 0), ("batch_size", -1), ("lr", 0.0), ("lr", float("nan")), ("momentum", 1.5)]
)
def test_bad_settings_rejected_before_training(field, value):
    with pytest.raises(CnnlabError):
        train(TrainConfig(dataset="digits", **{field: value}), write_run_dir=False)


def test_non_finite_loss_stops_with_epoch_and_step():
    with pytest.raises(CnnlabError, match=r"epoch 1, step \d+"):
        train(TrainConfig(dataset="digits", epochs=1, lr=1e30, momentum=0.9), write_run_dir=False)


def test_load_run_rejects_foreign_checkpoint(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RunDirError, match="cannot be read"):
        load_run(tmp_path)
    torch.save({"something": 1}, tmp_path / "model.pt")
    with pytest.raises(RunDirError, match="not a cnnlab checkpoint"):
        load_run(tmp_path)
