"""A run set up apart from its loop (issue 18): ``prepare`` builds the parts from a config it
never changes, ``Trainer`` trains them with its loop state in one place, and callbacks only read."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console

from cnnlab.errors import CnnlabError
from cnnlab.models import create_model, get_model_info, list_models
from cnnlab.training import (Callback, ConsoleLogger, EpochStats, LoopState, RunDirWriter, RunParts,
                             TensorBoardLogger, TrainConfig, Trainer, prepare, train)
from cnnlab.training.setup import resolve_config

RESNETS = [m for m in list_models() if get_model_info(m).family == "resnet"]


def fingerprint(value: Any) -> Any:
    """What a callback could change by assignment: the identity of every attribute, list item and
    dict value, recursively through dataclasses, lists and dicts, and the plain values themselves."""
    if isinstance(value, (bool, int, float, str, Path, type(None))):
        return value
    if isinstance(value, tuple):
        return tuple(fingerprint(v) for v in value)
    if isinstance(value, list):
        return id(value), [fingerprint(v) for v in value]
    if isinstance(value, dict):
        return id(value), {k: fingerprint(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return id(value), fingerprint(vars(value))
    return id(value)


def snapshot(trainer: Trainer, args: tuple) -> Any:
    return fingerprint(vars(trainer)), fingerprint(args)


class Guard(Callback):
    """Runs ``inner``'s hooks, snapshotting the trainer's attributes (and the hook's record or
    result) before and after each call; a difference means the callback wrote to the trainer."""

    def __init__(self, inner: Callback):
        self.inner = inner
        self.calls: list[str] = []
        self.changed: list[str] = []

    @property
    def run_dir(self) -> Path | None:  # the wrapped writer still declares its directory
        return self.inner.run_dir

    def _guard(self, hook: str, trainer: Trainer, *args: Any) -> None:
        before = snapshot(trainer, args)
        getattr(self.inner, hook)(trainer, *args)
        self.calls.append(hook)
        if snapshot(trainer, args) != before:
            self.changed.append(f"{type(self.inner).__name__}.{hook}")


    def on_train_start(self, trainer):
        self._guard("on_train_start", trainer)

    def on_epoch_start(self, trainer, epoch):
        self._guard("on_epoch_start", trainer, epoch)

    def on_batch_end(self, trainer, epoch, step, loss):
        self._guard("on_batch_end", trainer, epoch, step, loss)

    def on_epoch_end(self, trainer, record):
        self._guard("on_epoch_end", trainer, record)

    def on_train_end(self, trainer, result):
        self._guard("on_train_end", trainer, result)

    def on_exception(self, trainer, exc):
        self._guard("on_exception", trainer, exc)


class Meddler(Callback):
    """Writes to the trainer, as the run directory's writer once did: the guard must see it."""

    def on_epoch_end(self, trainer, record):
        trainer.meddled = record.epoch


def test_callbacks_only_read_the_trainer(tmp_path):
    config = TrainConfig(dataset="digits", epochs=2, batch_size=64, limit_batches=4, val_fraction=0.2)
    shipped: list[Callback] = [RunDirWriter(tmp_path / "run"), ConsoleLogger(Console(file=io.StringIO())), Callback()]
    try:
        shipped.append(TensorBoardLogger(every=1))
    except CnnlabError:  # the optional tensorboard package is missing
        pass
    guards = [Guard(cb) for cb in shipped]
    meddler = Guard(Meddler())
    trainer = Trainer(config, [*guards, meddler])
    assert trainer.run_dir == tmp_path / "run"  # declared by the writer, not set by it
    result = trainer.fit()
    for guard in guards:
        assert guard.calls.count("on_epoch_end") == 2 and guard.calls[-1] == "on_train_end"
        assert guard.changed == [], guard.changed
    assert meddler.changed == ["Meddler.on_epoch_end"] * 2  # the check can fail
    assert result.run_dir == tmp_path / "run" and (tmp_path / "run" / "model.pt").is_file()
    assert "Run directory:" in shipped[1].console.file.getvalue()


def test_an_explicit_run_dir_wins_and_none_is_none(tmp_path):
    config = TrainConfig(dataset="digits", epochs=1, limit_batches=1)
    parts = prepare(config)
    assert Trainer(parts, [RunDirWriter(tmp_path / "a")], run_dir=tmp_path / "b").run_dir == tmp_path / "b"
    assert Trainer(parts).run_dir is None and Trainer(parts, [Callback()]).run_dir is None


@pytest.mark.parametrize("model", RESNETS)
@pytest.mark.parametrize("side, options, stem", [(32, {}, "cifar"), (64, {"zero_init_residual": True}, "cifar"),
                                                 (65, {}, None), (32, {"stem": "imagenet"}, "imagenet")])
def test_resolved_model_options_are_a_new_config(model, side, options, stem):
    config = TrainConfig(dataset="digits", model=model, model_options=dict(options), freeze=["layer1"])
    resolved = resolve_config(config, (3, side, side))
    assert config.model_options == options and config.freeze == ["layer1"]  # the caller's config is untouched
    assert resolved is not config and resolved.model_options is not config.model_options
    assert resolved.model_options.get("stem") == stem
    assert {k: v for k, v in resolved.model_options.items() if k != "stem"} == {k: v for k, v in options.items()
                                                                               if k != "stem"}
    others = dataclasses.replace(resolved, model_options=config.model_options)
    assert others == config  # nothing else is decided


@pytest.mark.parametrize("model", ["convnet", "vgg11"])
def test_other_families_keep_their_options(model):
    config = TrainConfig(dataset="digits", model=model)
    assert resolve_config(config, (1, 32, 32)).model_options == {}


def test_resnet_run_records_the_cifar_stem_and_leaves_the_config_alone(tmp_path):
    config = TrainConfig(dataset="digits", model="resnet18", input_size=32, epochs=1, batch_size=64, limit_batches=1,
                         pool_before_relu=False)
    result = train(config, out=str(tmp_path / "run"))
    assert config.model_options == {}
    assert result.config.model_options == {"stem": "cifar"}
    doc = json.loads((tmp_path / "run" / "config.json").read_text())
    assert doc["config"]["model_options"] == {"stem": "cifar"}
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert saved["config"]["model_options"] == {"stem": "cifar"}
    assert saved["state_dict"]["conv1.weight"].shape[-1] == 3  # the CIFAR stem's 3x3 conv, not the 7x7


def test_parts_are_explicit_and_the_loop_state_is_one_place():
    config = TrainConfig(dataset="digits", batch_size=100, limit_batches=3, val_fraction=0.1)
    parts = prepare(config, device="cpu")
    assert isinstance(parts, RunParts) and parts.config == config and parts.config is not config
    with pytest.raises(dataclasses.FrozenInstanceError):
        parts.model = None  # type: ignore[misc]
    assert parts.steps_per_epoch == 3 and parts.device == torch.device("cpu")
    assert parts.data.input_shape == (1, 8, 8) and len(parts.data.classes) == 10 and parts.data.val is not None
    trainer = Trainer(parts)
    assert set(vars(trainer)) == {"parts", "callbacks", "given_run_dir", "state"}
    assert trainer.state == LoopState()
    stats = trainer.train_one_epoch(1)
    assert isinstance(stats, EpochStats) and stats.seen == 300 and len(stats.losses) == 3
    assert 0 <= stats.correct <= stats.seen and stats.seconds >= 0
    record = trainer.score_epoch(1, stats, start=0.0)
    assert trainer.state.batch_losses == stats.losses and trainer.state.best["epoch"] == 1
    assert record.train_loss == sum(stats.losses) / 3 and record.val_acc == trainer.state.best["val_acc"]
    with pytest.raises(AttributeError):
        trainer.history = []  # type: ignore[misc]  # the views are read-only


def test_trainer_from_parts_trains_as_from_config():
    config = TrainConfig(dataset="digits", epochs=2, batch_size=64, limit_batches=5, ema_decay=0.9)
    a = Trainer(config).fit().model.state_dict()
    b = Trainer(prepare(config)).fit().model.state_dict()
    c = Trainer.from_config(config, device="cpu").fit().model.state_dict()
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a)


def test_cpu_sgd_updates_all_tensors_at_once_with_the_loops_numbers():
    """build_optimizer's SGD on the CPU is the fused update of every tensor, which changes no number:
    five Nesterov steps with weight decay give the weights PyTorch's per-parameter loop gives, bit for bit."""
    from cnnlab.training.optim import build_optimizer

    config = TrainConfig(model="convnet_bn", lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4)
    torch.manual_seed(0)
    model = create_model("convnet_bn").to(memory_format=torch.channels_last)  # as prepare() builds it on the CPU
    twin = copy.deepcopy(model)
    ours = build_optimizer(model, config)
    assert ours.param_groups[0]["fused"] is True
    loop = torch.optim.SGD(twin.parameters(), lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4, foreach=False)
    x, y = torch.randn(8, 1, 28, 28).contiguous(memory_format=torch.channels_last), torch.randint(0, 10, (8,))
    for _ in range(5):
        for net, opt in ((model, ours), (twin, loop)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), twin.state_dict().values()))


def test_forward_batches_on_the_cpu_shrink_for_large_feature_maps():
    """forward_batch_size halves the batch while one layer's output for it passes FORWARD_BYTES, without
    changing the model (BatchNorm statistics, hooks), and leaves GPU batches alone; scores do not change."""
    import torch.nn as nn

    from cnnlab.runtime import FORWARD_BYTES, forward_batch_size
    from cnnlab.training.evaluate import evaluate_accuracy
    from cnnlab.data import TensorData

    wide = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(64, 3)).eval()
    per_image = 64 * 32 * 32 * 4  # the conv's float32 output for one 3x32x32 image: 256 KiB
    before = {k: v.clone() for k, v in wide.state_dict().items()}
    cpu = torch.device("cpu")
    assert forward_batch_size(wide, (3, 32, 32), 512, cpu) == FORWARD_BYTES // per_image == 128
    assert forward_batch_size(wide, (3, 32, 32), 100, cpu) == 100  # 100 x 256 KiB fits
    assert forward_batch_size(wide, (3, 8, 8), 512, cpu) == 512  # 16 KiB per image
    assert forward_batch_size(wide, (3, 32, 32), 512, torch.device("cuda")) == 512  # never shrunk on a GPU
    assert all(torch.equal(before[k], v) for k, v in wide.state_dict().items())
    assert not any(m._forward_hooks for m in wide.modules())
    data = TensorData(torch.randint(0, 256, (300, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 3, (300,)),
                      ["a", "b", "c"])
    assert evaluate_accuracy(wide, data, 512)[:2] == evaluate_accuracy(wide, data, 7)[:2]
