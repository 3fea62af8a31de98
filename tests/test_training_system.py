"""Runs that survive (checkpoint every epoch, bitwise resume) and the optimisation options."""

from __future__ import annotations

import math

import pytest
import torch

from cnnlab.errors import CnnlabError, RunDirError
from cnnlab.training import Callback, TrainConfig, Trainer, resume, train
from cnnlab.training.optim import build_optimizer, build_scheduler
from cnnlab.training.setup import check_data_settings

from test_cli import assert_user_error, cnnlab as run_cli


class StopAfter(Callback):
    """Simulates Ctrl-C after an epoch (the run directory's writer has already checkpointed it)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, trainer, record):
        if record.epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("extra", [
    dict(),
    dict(model_options={"dropout2d": 0.2}, optimizer="adamw", schedule="cosine", warmup_epochs=0.5),
    dict(momentum=0.9, nesterov=True, schedule="onecycle", label_smoothing=0.1, clip_grad=1.0),
])
def test_resume_is_bitwise_identical(tmp_path, extra):
    config = TrainConfig(dataset="digits", epochs=3, batch_size=32, lr=0.05, **extra)
    straight = train(config, out=str(tmp_path / "straight"))
    with pytest.raises(KeyboardInterrupt):
        train(config, [StopAfter(1)], out=str(tmp_path / "stopped"))
    assert (tmp_path / "stopped" / "checkpoint.pt").is_file() and not (tmp_path / "stopped" / "model.pt").exists()
    resumed = resume(tmp_path / "stopped")
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r.test_acc for r in resumed.history] == [r.test_acc for r in straight.history]
    rows = (tmp_path / "stopped" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]


def test_resume_errors(tmp_path):
    with pytest.raises(RunDirError, match="no such run directory"):
        resume(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="no checkpoint.pt"):
        resume(tmp_path / "empty")
    (tmp_path / "empty" / "checkpoint.pt").write_bytes(b"\x00" * 10)
    with pytest.raises(RunDirError, match="cannot be read"):
        resume(tmp_path / "empty")
    train(TrainConfig(dataset="digits", epochs=1), out=str(tmp_path / "done"))
    with pytest.raises(RunDirError, match="already has 1 of 1 epochs"):
        resume(tmp_path / "done")
    extended = resume(tmp_path / "done", epochs=2)
    assert [r.epoch for r in extended.history] == [1, 2]


def test_resume_cli(tmp_path):
    out = tmp_path / "run"
    assert run_cli("train", "--dataset", "digits", "--epochs", "1", "--out", str(out), "-q").returncode == 0
    proc = run_cli("train", "--resume", str(out), "--epochs", "2")
    assert proc.returncode == 0, proc.stderr
    assert "Epoch: 002/002" in proc.stdout and "Epoch: 001/002" not in proc.stdout
    assert_user_error(run_cli("train", "--resume", str(out)), "already has 2 of 2 epochs")


def _lrs(**kwargs) -> list[float]:
    trainer = Trainer(TrainConfig(dataset="digits", epochs=4, batch_size=360, lr=1.0, **kwargs))  # 4 steps per epoch
    torch.manual_seed(0)
    opt = build_optimizer(trainer.build_model(), trainer.config)
    sched = build_scheduler(opt, trainer.config, trainer.steps_per_epoch)
    lrs = []
    for _ in range(16):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_schedules():
    assert _lrs() == [1.0] * 16
    step = _lrs(schedule="step", step_size=2, gamma=0.5)
    assert step[:8] == [1.0] * 8 and step[8:] == [0.5] * 8
    cosine = _lrs(schedule="cosine")
    assert cosine[0] == 1.0 and all(a > b for a, b in zip(cosine, cosine[1:])) and cosine[-1] < 0.02
    warm = _lrs(schedule="cosine", warmup_epochs=1)
    assert warm[:4] == [0.25, 0.5, 0.75, 1.0] and warm[4] == 1.0
    one = _lrs(schedule="onecycle")
    peak = max(range(16), key=lambda i: one[i])
    assert 0 < peak < 15 and one[0] < 0.3 and one[-1] < 0.05


def test_optimizer_choices():
    def opt(**kw):
        trainer = Trainer(TrainConfig(dataset="digits", **kw))
        return build_optimizer(trainer.build_model(), trainer.config)

    assert isinstance(opt(optimizer="adamw", weight_decay=0.01), torch.optim.AdamW)
    sgd = opt(momentum=0.9, nesterov=True, weight_decay=5e-4)
    assert sgd.param_groups[0]["nesterov"] and sgd.param_groups[0]["weight_decay"] == 5e-4
    for bad in (dict(nesterov=True), dict(label_smoothing=1.0), dict(clip_grad=0.0), dict(schedule="linear")):
        with pytest.raises(CnnlabError):
            TrainConfig(dataset="digits", **bad).validate()


def test_label_smoothing_and_clipping_change_training():
    base = train(TrainConfig(dataset="digits", epochs=1), write_run_dir=False)
    smooth = train(TrainConfig(dataset="digits", epochs=1, label_smoothing=0.2), write_run_dir=False)
    clipped = train(TrainConfig(dataset="digits", epochs=1, clip_grad=1e-3), write_run_dir=False)
    w = base.model.conv_1.weight
    assert not torch.equal(w, smooth.model.conv_1.weight)
    assert not torch.equal(w, clipped.model.conv_1.weight)
    assert math.isfinite(smooth.history[0].train_loss)


def test_validation_split_selects_and_scores_test_once(tmp_path):
    config = TrainConfig(dataset="digits", epochs=4, batch_size=32, lr=0.1, momentum=0.9, val_fraction=0.25,
                         out=str(tmp_path / "v"))
    result = train(config)
    assert all(r.val_acc is not None and r.test_acc is None for r in result.history)
    best = max(result.history, key=lambda r: r.val_acc)
    import json

    doc = json.loads((tmp_path / "v" / "result.json").read_text())
    assert doc["best_epoch"] == next(r.epoch for r in result.history if r.val_acc == best.val_acc)
    assert doc["test_acc"] == pytest.approx(result.test_acc)
    trainer = Trainer(config)
    assert len(trainer.train_data) + len(trainer.val_data) == 1438 and len(trainer.val_data) == round(0.25 * 1438)
    again = Trainer(config)
    assert torch.equal(trainer.val_data.labels, again.val_data.labels)  # seeded: the same split every time
    from cnnlab.training import evaluate_run

    correct, total, _ = evaluate_run(tmp_path / "v")  # model.pt holds the selected weights
    assert (correct, total) == (result.test_correct, result.test_total)


def test_validation_split_cli_errors(tmp_path):
    assert_user_error(run_cli("train", "--dataset", "digits", "--val-fraction", "1.5"), "--val-fraction")
    proc = run_cli("train", "--dataset", "digits", "--epochs", "1", "--val-fraction", "0.2", "--out", str(tmp_path / "r"))
    assert proc.returncode == 0 and "Val:" in proc.stdout and "Best validation accuracy" in proc.stdout


def test_export_onnx_matches_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "run"
    train(TrainConfig(dataset="digits", epochs=1, out=str(out)))
    from cnnlab.export import export_onnx

    path, diff = export_onnx(out)
    assert path == out / "model.onnx" and diff <= 1e-4
    import numpy as np
    import onnxruntime as ort

    from cnnlab.runs import load_run

    run = load_run(out)
    x = torch.rand(7, 1, 8, 8)  # another batch size than the export's example: the batch axis is dynamic
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})[0]
    np.testing.assert_allclose(got, run.model(x).detach().numpy(), atol=1e-4)
    assert_user_error(run_cli("export", str(out)), "already exists", "--overwrite")
    proc = run_cli("export", str(out), "--overwrite", "--out", str(tmp_path / "m.onnx"))
    assert proc.returncode == 0, proc.stderr
    # one message, one line, however long the temporary path (piped output is never hard-wrapped)
    assert any(line.startswith(f"Wrote {tmp_path / 'm.onnx'} ") and "max |diff|" in line
               for line in proc.stdout.splitlines()), proc.stdout


def test_runs_table(tmp_path):
    train(TrainConfig(dataset="digits", epochs=2, val_fraction=0.2), out=str(tmp_path / "runs" / "a"))
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(dataset="digits", epochs=3), [StopAfter(1)], out=str(tmp_path / "runs" / "b"))
    from cnnlab.runs import list_runs

    rows = {r["run"].rsplit("/", 1)[-1]: r for r in list_runs(tmp_path / "runs")}
    assert rows["a"]["status"] == "finished" and rows["a"]["epochs"] == "2/2" and rows["a"]["best_val_acc"] is not None
    assert rows["b"]["status"].startswith("interrupted") and rows["b"]["epochs"] == "1/3"
    proc = run_cli("runs", str(tmp_path / "runs"))
    assert proc.returncode == 0 and "interrupted" in proc.stdout
    assert_user_error(run_cli("runs", str(tmp_path / "none")), "is not a folder")


def test_evaluate_splits_per_class_and_confusion(tmp_path):
    from sklearn.metrics import precision_recall_fscore_support

    from cnnlab.training import evaluate_run_detailed, per_class_metrics

    out = tmp_path / "run"
    result = train(TrainConfig(dataset="digits", epochs=3, batch_size=32, lr=0.1, momentum=0.9, val_fraction=0.2,
                               out=str(out)))
    correct, total, run, cm = evaluate_run_detailed(out, split="test")
    assert (correct, total) == (result.test_correct, result.test_total) and int(cm.sum()) == total
    import json

    best_val = json.loads((out / "result.json").read_text())["best_val_acc"]
    v_correct, v_total, _, _ = evaluate_run_detailed(out, split="val")
    assert 100.0 * v_correct / v_total == pytest.approx(best_val)  # model.pt holds the best-validation weights
    # per-class figures agree with scikit-learn's on the same predictions
    y_true = [i for i in range(10) for _ in range(int(cm[i].sum()))]
    y_pred = [j for i in range(10) for j in range(10) for _ in range(int(cm[i, j]))]
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(range(10)), zero_division=0)
    ours = per_class_metrics(cm, run.classes)
    assert [round(o["precision"], 6) for o in ours] == [round(float(v), 6) for v in p]
    assert [round(o["recall"], 6) for o in ours] == [round(float(v), 6) for v in r]
    assert [o["support"] for o in ours] == [int(v) for v in s]
    proc = run_cli("evaluate", str(out), "--split", "val")
    assert proc.returncode == 0 and "Validation accuracy" in proc.stdout and (out / "confusion_val.png").is_file()
    train(TrainConfig(dataset="digits", epochs=1), out=str(tmp_path / "noval"))
    assert_user_error(run_cli("evaluate", str(tmp_path / "noval"), "--split", "val"), "without --val-fraction")


def test_augment_batch_crops_and_flips_deterministically():
    from cnnlab.data import augment_batch

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    a = augment_batch(x, "crop+flip", torch.Generator().manual_seed(0))
    b = augment_batch(x, "crop+flip", torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    crop = augment_batch(torch.ones(16, 1, 8, 8), "crop", torch.Generator().manual_seed(1))
    assert crop.min() == 0 and crop.max() == 1  # zero padding shows at shifted borders, content kept
    assert augment_batch(x, None) is x


def test_amp_and_augment_train(tmp_path):
    result = train(TrainConfig(dataset="digits", epochs=2, batch_size=32, lr=0.1, momentum=0.9, amp=True),
                   write_run_dir=False)
    assert math.isfinite(result.history[-1].train_loss) and result.test_acc > 30
    with pytest.raises(CnnlabError, match="no augmentation for digits"):
        check_data_settings(TrainConfig(dataset="digits", augment=True))  # dataset-dependent: not in validate()


def test_normalization_follows_the_dataset_recipe():
    from cnnlab.data import TensorData, iterate_batches
    from cnnlab.data import normalization

    def normalization_for(config):
        return normalization(config.dataset, config.normalize)

    assert normalization_for(TrainConfig(dataset="mnist")) is None  # the lecture: ToTensor only
    mean, std = normalization_for(TrainConfig(dataset="cifar10"))
    assert len(mean) == 3 and normalization_for(TrainConfig(dataset="cifar10", normalize=False)) is None
    with pytest.raises(CnnlabError, match="no standard mean/std"):
        check_data_settings(TrainConfig(dataset="digits", normalize=True))  # dataset-dependent: not in validate()
    data = TensorData(torch.full((2, 3, 2, 2), 255, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), ["a"])
    x, _ = next(iterate_batches(data, 2, normalize=(mean, std)))
    torch.testing.assert_close(x[0, :, 0, 0], (1 - torch.tensor(mean)) / torch.tensor(std))


def test_fashion_mnist_reads_torchvision_layout(tmp_path):
    """Fashion-MNIST through torchvision's loader, on idx files written here (no download)."""
    import struct

    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for prefix, n in (("train", 20), ("t10k", 10)):
        images = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
        labels = torch.arange(n, dtype=torch.uint8) % 10
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.numpy().tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.numpy().tobytes())
    from cnnlab.data import load_dataset

    train_data, test_data = load_dataset("fashion-mnist", tmp_path, download=False)
    assert train_data.images.shape == (20, 1, 28, 28) and len(test_data) == 10
    assert train_data.classes[0] == "T-shirt/top" and int(test_data.labels[3]) == 3
    result = train(TrainConfig(dataset="fashion-mnist", data_dir=str(tmp_path), epochs=1, batch_size=8, augment=True),
                   write_run_dir=False)
    assert result.test_total == 10


def test_cifar10_missing_is_one_line(tmp_path):
    proc = run_cli("train", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--no-download")
    assert_user_error(proc, "CIFAR-10 not found", "cifar-10-batches-py", "--data-dir")


@pytest.mark.mnist
def test_two_process_ddp_matches_single_process(mnist_root, tmp_path):
    """torchrun with 2 CPU processes (gloo): completes, rank 0 alone writes, the first step's loss
    equals the single-process loss of the same global batch, accuracy within 0.5 points."""
    args = ["--data-dir", str(mnist_root), "--epochs", "1", "--batch-size", "128"]
    proc = run_cli("train", *args, "--nproc", "2", "--out", str(tmp_path / "ddp"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path).iterdir()) == ["ddp"]  # nothing but rank 0's run directory
    assert proc.stdout.count("Saved config.json") == 1
    single = train(TrainConfig(data_dir=str(mnist_root), epochs=1), out=str(tmp_path / "single"))
    ddp_state = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)
    assert ddp_state["batch_losses"][0] == pytest.approx(single.batch_losses[0], rel=1e-6)
    import json

    ddp_acc = json.loads((tmp_path / "ddp" / "result.json").read_text())["test_acc"]
    assert abs(ddp_acc - single.test_acc) <= 0.5
    rows = (tmp_path / "ddp" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2  # header + one epoch, written once


def test_global_batch_must_divide(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(CnnlabError, match="must divide by the 3 processes"):
        Trainer(TrainConfig(dataset="digits", batch_size=128))


def test_sharded_batches_cover_the_global_batch():
    from cnnlab.data import TensorData, iterate_batches

    data = TensorData(torch.zeros(10, 1, 1, 1, dtype=torch.uint8), torch.arange(10), ["a"])
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    whole = [y for _, y in iterate_batches(data, 4, shuffle=True, generator=g())]
    parts = [[y for _, y in iterate_batches(data, 4, shuffle=True, generator=g(), shard=(r, 2))] for r in range(2)]
    for i, batch in enumerate(whole):
        assert sorted(torch.cat([parts[0][i], parts[1][i]]).tolist()) == sorted(batch.tolist())


def test_tensorboard_events_and_resume_mismatch(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    proc = run_cli("train", "--dataset", "digits", "--epochs", "2", "--tensorboard", "--out", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("accuracy/test")] == [1, 2]
    assert_user_error(run_cli("train", "--resume", str(out), "--model", "resnet18", "--epochs", "3"),
                      "was trained with --model convnet, not resnet18")
