"""The lecture's experiments on top of the zoo: init schemes, transfer learning, Dropout2d."""

from __future__ import annotations

import csv

import pytest
import torch

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.experiments import run_init_experiment
from cnnlab.training import TrainConfig, Trainer, train

from test_cli import assert_user_error, cnnlab_in_process as run_cli


@pytest.mark.parametrize("scheme", ["normal", "xavier_uniform", "kaiming_normal"])
def test_train_applies_init_after_seeding(scheme):
    trainer = Trainer(TrainConfig(dataset="digits", init=scheme))
    torch.manual_seed(1)
    model = trainer.build_model()
    assert all((m.bias == 0).all() for m in (model.conv_1, model.conv_2, model.linear_1))
    torch.manual_seed(1)
    again = trainer.build_model()
    assert torch.equal(model.conv_1.weight, again.conv_1.weight)


def test_init_experiment_writes_table_and_plot(tmp_path):
    rows = run_init_experiment(tmp_path / "inits", ["default", "xavier_normal"],
                               TrainConfig(dataset="digits", epochs=2, lr=0.1, momentum=0.9, batch_size=32))
    assert [r.init for r in rows] == ["default", "xavier_normal"]
    table = list(csv.DictReader(open(tmp_path / "inits" / "inits.csv")))
    assert [r["init"] for r in table] == ["default", "xavier_normal"]
    assert table[0]["lecture_test_acc"] == "97.77"
    assert (tmp_path / "inits" / "inits.png").stat().st_size > 10_000
    assert (tmp_path / "inits" / "default" / "model.pt").is_file()
    assert all(r.test_acc > 50 for r in rows)


def _pretrained(tmp_path, name="vgg11_bn", **kwargs):
    torch.manual_seed(3)
    model = cnnlab.create_model(name, input_size=32, **kwargs)
    path = tmp_path / f"{name}.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_transfer_learning_frozen_tensors_do_not_change(tmp_path):
    pretrained, path = _pretrained(tmp_path)  # 1000 classes, 3 channels, BN buffers in the features
    result = train(TrainConfig(model="vgg11_bn", dataset="digits", input_size=32, in_channels=3, weights=str(path),
                               freeze=["features"], epochs=1, lr=0.01, momentum=0.9, batch_size=64),
                   write_run_dir=False)
    after = result.model.state_dict()
    before = pretrained.state_dict()
    for key, value in before.items():
        if key.startswith("features."):
            assert torch.equal(after[key].cpu(), value), key  # weights *and* BN running statistics
    assert after["classifier.6.weight"].shape == (10, 4096)  # head replaced for 10 classes
    assert not torch.equal(after["classifier.0.weight"], before["classifier.0.weight"])  # unfrozen part trained


def test_transfer_from_torchvision_layout(tmp_path):
    """torchvision's VGG weights (25,088-wide head) load at 32 px with avgpool_size=7."""
    import torchvision

    path = tmp_path / "tv.pth"
    torch.save(torchvision.models.vgg11(weights=None).state_dict(), path)
    model = cnnlab.create_model("vgg11", input_size=32, num_classes=10, avgpool_size=7)
    assert cnnlab.load_weights(model, path, replace_head=True) == ["classifier.6.weight", "classifier.6.bias"]
    with pytest.raises(CnnlabError, match="avgpool_size=7"):
        cnnlab.load_weights(cnnlab.create_model("vgg11", input_size=32), path)


def test_cli_transfer_errors(tmp_path):
    _, path = _pretrained(tmp_path, "vgg11")
    proc = run_cli("train", "--model", "vgg11", "--dataset", "digits", "--input-size", "32", "--weights", str(path),
                   "--epochs", "1", "--out", str(tmp_path / "run"))
    assert_user_error(proc, "expect 3 input channel(s) but digits has 1", "--in-channels 3")
    proc = run_cli("train", "--model", "vgg11", "--dataset", "digits", "--input-size", "32", "--in-channels", "3",
                   "--weights", str(path), "--freeze", "backbone", "--epochs", "1", "--out", str(tmp_path / "run"))
    assert_user_error(proc, "--freeze 'backbone' names no module", "features, avgpool, classifier")
    assert not (tmp_path / "run" / "model.pt").exists()


def test_cli_model_too_big_for_the_images(tmp_path):
    proc = run_cli("train", "--model", "vgg16", "--dataset", "digits", "--out", str(tmp_path / "r"))
    assert_user_error(proc, "vgg16: input size 8 is too small, the feature map vanishes at features.")


def test_cli_models_table_lists_the_zoo():
    proc = run_cli("models")
    assert proc.returncode == 0, proc.stderr
    for text in ["vgg16_c", "vgg11_lrn", "resnet152", "resblocks_projection", "138,357,544", "15.4703", "arXiv:1409.1556"]:
        assert text in proc.stdout


def test_cli_experiment_inits(tmp_path):
    proc = run_cli("experiment", "inits", "--dataset", "digits", "--epochs", "1", "--inits", "default,uniform",
                   "--out", str(tmp_path / "x"))
    assert proc.returncode == 0, proc.stderr
    assert "uniform" in proc.stdout and (tmp_path / "x" / "inits.csv").is_file()
    assert_user_error(run_cli("experiment", "inits", "--inits", "gaussian", "--out", str(tmp_path / "y")),
                      "unknown init 'gaussian'")


@pytest.mark.parametrize("name", cnnlab.list_models())
def test_every_model_trains_and_evaluates(name, tmp_path):
    """Each registry model goes through train -> model.pt -> evaluate (2 small batches)."""
    from cnnlab.models import min_input_size
    from cnnlab.training import evaluate_run

    info = cnnlab.get_model_info(name)
    side = max(8, min_input_size(name))
    config = TrainConfig(model=name, dataset="digits", epochs=1, batch_size=8, limit_batches=2, lr=0.01,
                         input_size=side if side != 8 else None, in_channels=info.in_channels if info.in_channels != 1 else None,
                         out=str(tmp_path / "run"))
    result = train(config)
    correct, total, run = evaluate_run(tmp_path / "run")
    assert (correct, total) == (result.test_correct, result.test_total)
    assert run.input_shape == (info.in_channels, side, side)
