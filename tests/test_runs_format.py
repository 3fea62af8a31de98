"""The run directory's format has one definition (cnnlab.runs.format): each file written through its
writer reads back through its reader; and one view of a finished run (cnnlab.runs.Run): its settings,
preprocessing, splits and model are what training had."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from cnnlab.errors import CnnlabError, RunDirError
from cnnlab.runs import (METRICS_HEADER, LoadedRun, Run, check_model_identity, checkpoint_payload, config_document,
                         confusion_counts, identity_differences, load_run, model_payload, open_run, per_class_metrics,
                         preprocessing_of, read_checkpoint, read_config_doc, read_metrics, read_result, read_run_config,
                         read_training_checkpoint, write_checkpoint, write_config_doc, write_metrics, write_model,
                         write_result, MODEL_KEYS)
from cnnlab.training import TrainConfig, Trainer, train
from cnnlab.training.launcher import _check_checkpoint_identity


def _doc(**changes):
    config = TrainConfig(dataset="digits", epochs=1).to_dict()
    doc = config_document(config, run_id="a" * 32, classes=[str(i) for i in range(10)], input_shape=(1, 8, 8),
                          skipped=["bad.png"], environment={"torch": torch.__version__})
    doc.update(changes)
    return doc


def test_config_json_written_then_read(tmp_path):
    doc = _doc()
    write_config_doc(tmp_path, doc)
    assert read_config_doc(tmp_path) == doc
    assert read_run_config(tmp_path) == doc["config"] and TrainConfig.from_dict(doc["config"]).dataset == "digits"
    assert json.loads((tmp_path / "config.json").read_text())["input_shape"] == [1, 8, 8]
    (tmp_path / "config.json").write_text("[1, 2]")  # not a run's
    assert read_config_doc(tmp_path) is None and read_run_config(tmp_path) == {}


def test_metrics_csv_written_then_read(tmp_path):
    rows = [SimpleNamespace(epoch=1, train_loss=1.234567891, train_acc=50.0, val_acc=None, test_acc=61.25,
                            seconds=1.5, elapsed=2.25),
            SimpleNamespace(epoch=2, train_loss=0.5, train_acc=75.123456, val_acc=70.0, test_acc=None,
                            seconds=1.0, elapsed=4.0)]
    write_metrics(tmp_path, rows)
    assert (tmp_path / "metrics.csv").read_text().startswith(METRICS_HEADER)
    got = read_metrics(tmp_path)
    assert [r["epoch"] for r in got] == ["1", "2"]
    assert float(got[0]["train_loss"]) == pytest.approx(1.234568) and got[0]["val_acc"] == ""
    assert float(got[1]["train_acc"]) == pytest.approx(75.1235) and got[1]["test_acc"] == ""
    write_metrics(tmp_path, [])  # a run before its first epoch: the header alone
    assert read_metrics(tmp_path) == [] and read_metrics(tmp_path / "nowhere") == []


def test_checkpoint_pt_written_then_read(tmp_path):
    state = {"epoch": 3, "model": {"w": torch.arange(4.0)}, "optimizer": {}, "scheduler": {},
             "torch_rng": torch.get_rng_state(), "history": [], "config": _doc()["config"]}
    write_checkpoint(tmp_path, checkpoint_payload(state, run_id="b" * 32, classes=["x", "y"], input_shape=(3, 4, 4)))
    got = read_training_checkpoint(tmp_path)
    assert got["epoch"] == 3 and torch.equal(got["model"]["w"], torch.arange(4.0))
    assert got["run_id"] == "b" * 32 and got["classes"] == ["x", "y"] and got["input_shape"] == [3, 4, 4]
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RunDirError, match="cannot be read as a checkpoint"):
        read_training_checkpoint(tmp_path)


def test_model_pt_written_then_read_as_a_run(tmp_path):
    """model.pt and config.json through their writers: Run.open reads them back and rebuilds the model."""
    from cnnlab.models import create_model

    torch.manual_seed(0)
    model = create_model("convnet", num_classes=10, in_channels=1, input_size=8)
    doc = _doc()
    write_config_doc(tmp_path, doc)
    payload = model_payload({k: v.detach().clone() for k, v in model.state_dict().items()}, doc["config"],
                            classes=doc["classes"], input_shape=doc["input_shape"], run_id=doc["run_id"],
                            test_correct=5, test_total=10, best_epoch=None)
    write_model(tmp_path, payload)
    assert MODEL_KEYS <= set(read_checkpoint(tmp_path / "model.pt", MODEL_KEYS, "checkpoint"))
    run = Run.open(tmp_path)
    assert run.input_shape == (1, 8, 8) and run.classes == doc["classes"] and run.config.dataset == "digits"
    assert run.model_file["run_id"] == doc["run_id"] and run.checkpoint["test_correct"] == 5
    rebuilt = run.load_model()
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), model.state_dict().values()))
    assert not rebuilt.training


def test_result_json_written_then_read(tmp_path):
    doc = {"test_acc": 91.5, "best_epoch": None, "epochs": [{"epoch": 1, "test_acc": 91.5}]}
    write_result(tmp_path, doc)
    assert read_result(tmp_path) == doc
    (tmp_path / "result.json").write_text("{truncated")
    assert read_result(tmp_path) == {}


def test_one_identity_comparison_for_model_pt_and_checkpoint_pt(tmp_path):
    """The launcher's checkpoint.pt check and model.pt's check are the same comparison."""
    doc = _doc()
    own = {"config": doc["config"], "run_id": doc["run_id"], "classes": doc["classes"], "input_shape": [1, 8, 8]}
    assert identity_differences(doc, own) == []
    _check_checkpoint_identity(tmp_path, doc, own)
    for other, word in (({"run_id": "c" * 32}, "run id"), ({"config": {**doc["config"], "model": "lenet5"}}, "model"),
                        ({"input_shape": [3, 8, 8]}, "input_shape"), ({"classes": list("abcdefghij")}, "classes")):
        foreign = {**own, **other}
        assert any(d.startswith(word) for d in identity_differences(doc, foreign)), other
        with pytest.raises(RunDirError, match="checkpoint.pt belongs to another run"):
            _check_checkpoint_identity(tmp_path, doc, foreign)
        write_config_doc(tmp_path, doc)
        with pytest.raises(RunDirError, match="model.pt belongs to another run"):
            check_model_identity(tmp_path, foreign)


def test_confusion_counts_once():
    labels, predicted = torch.tensor([0, 1, 2, 2, 1]), torch.tensor([0, 2, 2, 2, 1])
    confusion = confusion_counts(labels, predicted, 3)
    assert confusion.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 2]]
    assert int(confusion.sum()) == 5 and confusion.dtype == torch.long
    rows = per_class_metrics(confusion, ["a", "b", "c"])
    assert rows[1]["recall"] == 0.5 and rows[2]["precision"] == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runview") / "digits"
    config = TrainConfig(dataset="digits", epochs=1, batch_size=64, val_fraction=0.2, out=str(out))
    train(config)
    return out, config


def test_run_view_is_what_training_had(digits_run):
    """Run.preprocessing and Run.split: the same derivation and the same data as the training run."""
    out, config = digits_run
    run = open_run(out)
    parts = Trainer(config).parts
    assert run.preprocessing.normalize == parts.prep.normalize
    assert run.preprocessing.memory_format == parts.prep.memory_format
    assert (run.preprocessing.channels, run.preprocessing.side) == run.input_shape[:2] == parts.data.input_shape[:2]
    for name in ("train", "val", "test"):
        mine, theirs = run.split(name), getattr(parts.data, name)
        assert torch.equal(mine.images, theirs.images) and torch.equal(mine.labels, theirs.labels), name
    with pytest.raises(CnnlabError, match="one of train, val, test"):
        run.split("holdout")
    assert preprocessing_of(run.config, "cpu", run.input_shape) == run.preprocessing


def test_load_run_is_a_run_with_its_model(digits_run):
    out, _ = digits_run
    loaded = load_run(out)
    assert isinstance(loaded, LoadedRun) and isinstance(loaded, Run)
    x, _ = next(loaded.preprocessing.batches(loaded.split("test"), 16))
    torch.testing.assert_close(loaded.model(x), Run.open(out).load_model()(x), rtol=0, atol=0)
