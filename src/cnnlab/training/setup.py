"""Setting up a run, apart from the loop: :func:`prepare` turns a :class:`TrainConfig` into the
run's parts (:class:`RunParts`) -- its data, model, optimizer, schedule and tricks -- which
:class:`cnnlab.training.loop.Trainer` then trains.

The order is the lecture's and is kept bit for bit: the data is loaded first, then
``torch.manual_seed(seed)`` right before the model is built and initialised. Settings that
depend on the data are decided here and returned in a new config (:func:`resolve_config`);
the caller's config is never changed.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import torch
import torch.nn as nn

from cnnlab.data import BatchSource, get_dataset_spec
from cnnlab.errors import CnnlabError
from cnnlab.models import (create_model, first_conv_key, freeze, get_model_info, init_weights, load_weights,
                           weights_in_channels)
from cnnlab.runs import Preprocessing, load_run_splits, preprocessing_of
from cnnlab.runtime import determinism, explain_out_of_memory, memory_format_for, resolve_device
from cnnlab.training.compile import CompileClock, compile_module
from cnnlab.training.config import TrainConfig
from cnnlab.training.distributed import distributed_env, join_process_group, local_device, wrap_ddp
from cnnlab.training.ema import WeightEma
from cnnlab.training.lookahead import Lookahead
from cnnlab.training.optim import build_optimizer, build_scheduler
from cnnlab.training.rewrite import pool_before_relu
from cnnlab.training.tta import tta_kind

__all__ = ["RunData", "Preprocessing", "RunParts", "prepare", "load_data", "resolve_config", "build_model",
           "check_data_settings"]


@dataclass(frozen=True)
class RunData:
    """The run's splits on its device, and what they hold."""

    train: BatchSource
    val: BatchSource | None  # --val-fraction, or an image folder's val/
    test: BatchSource
    classes: list[str]
    input_shape: tuple[int, int, int]  # (C, H, W)
    skipped: tuple[str, ...]  # unreadable files left out (--skip-bad-images)
    seconds: float  # loading and decoding (this process)


@dataclass(frozen=True)
class RunParts:
    """Everything one run trains with, built by :func:`prepare`. The fields are fixed; the objects
    they hold (model, optimizer, RNG) change as the run trains."""

    config: TrainConfig  # resolved: what config.json records and evaluate/resume rebuild from
    device: torch.device
    rank: int
    world: int  # processes under torchrun (1 alone)
    data: RunData
    prep: Preprocessing  # cnnlab.runs.Preprocessing: what evaluate, predict, export ... apply to the run too
    model: nn.Module  # built, initialised, loaded, frozen, on the device
    net: nn.Module  # what the training forward calls: pool-before-ReLU graph, DDP, compiled, as configured
    replaced_head: list[str]  # head tensors left as initialised (--weights with other classes)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    lookahead: Lookahead | None
    ema: WeightEma | None
    tta: str | None  # the test-time augmentation, or None
    compile_clock: CompileClock
    shuffle: torch.Generator  # batch order and augmentation
    steps_per_epoch: int
    total_steps: int  # --epochs 1.5: one and a half epochs of steps
    joined_group: bool  # this run joined the torchrun process group (and leaves it at the end)

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated and saved: the moving average with --ema-decay, else the model."""
        return self.ema.module if self.ema is not None else self.model


def prepare(config: TrainConfig, *, device: str | torch.device | None = None) -> RunParts:
    """The parts of a run of ``config`` (validated first); ``device`` overrides ``config.device``."""
    config.validate()
    check_data_settings(config)
    rank, world = distributed_env()
    if world > 1 and config.batch_size % world:
        raise CnnlabError(f"--batch-size {config.batch_size} is the global batch and must divide by the "
                          f"{world} processes")
    device = local_device(resolve_device(device if device is not None else config.device))
    get_model_info(config.model)  # unknown model: fail before loading any data
    prep = preprocessing_of(config, device)  # the same derivation as cnnlab.runs.Run.preprocessing
    data = load_data(config, device, prep)
    config = resolve_config(config, data.input_shape)
    steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
    if config.limit_batches is not None:
        steps_per_epoch = min(steps_per_epoch, config.limit_batches)
    with determinism(config.deterministic, device), explain_out_of_memory(f"building {config.model}"):
        torch.manual_seed(config.seed)  # before the model is built, as in the lecture's notebook
        model, replaced_head = build_model(config, data.input_shape, len(data.classes), device)
    joined_group = join_process_group(device)
    net = wrap_ddp(pool_before_relu(model)[0] if config.pool_before_relu else model, device)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp and device.type == "cuda")
    lookahead = Lookahead(model, config.lookahead_steps, config.lookahead_alpha) if config.lookahead_steps else None
    ema = WeightEma(model, config.ema_decay) if config.ema_decay else None
    return RunParts(
        config=config, device=device, rank=rank, world=world, data=data, prep=prep, model=model,
        net=compile_module(net) if config.compile else net, replaced_head=replaced_head,
        optimizer=optimizer, scheduler=scheduler, scaler=scaler, lookahead=lookahead, ema=ema,
        tta=tta_kind(config.dataset, config.tta), compile_clock=CompileClock(config.compile),
        shuffle=torch.Generator().manual_seed(config.seed),
        steps_per_epoch=steps_per_epoch, total_steps=config.total_steps(steps_per_epoch), joined_group=joined_group)


def check_data_settings(config: TrainConfig) -> None:
    """One line for a setting the dataset cannot take (before any data is read): --normalize without
    a standard mean/std, --augment without an augmentation, --stream outside an image folder."""
    spec = get_dataset_spec(config.dataset)
    if config.normalize and spec.mean is None:
        raise CnnlabError(f"--normalize: {config.dataset} has no standard mean/std; leave it out")
    if config.augment and spec.augment is None:
        raise CnnlabError(f"--augment has no augmentation for {config.dataset} (its images are too small to crop)")
    if config.stream and not spec.needs_data_dir:
        raise CnnlabError("--stream is for --dataset imagefolder (the other datasets fit in memory)")


def load_data(config: TrainConfig, device: torch.device, prep: Preprocessing | None = None) -> RunData:
    """The dataset's splits (with a seeded validation split if asked) moved to ``device``, read as
    ``prep`` says (default: :func:`cnnlab.runs.preprocessing_of` ``config``)."""
    started = time.perf_counter()
    prep = prep if prep is not None else preprocessing_of(config, device)
    with explain_out_of_memory(f"loading {config.dataset}"):
        splits = load_run_splits(config, prep)
        train, test = splits.train.to(device), splits.test.to(device)
        val = splits.val.to(device) if splits.val is not None else None
    return RunData(train=train, val=val, test=test, classes=splits.train.classes,
                   input_shape=splits.train.sample_shape, skipped=splits.skipped,
                   seconds=time.perf_counter() - started)


def resolve_config(config: TrainConfig, input_shape: tuple[int, int, int]) -> TrainConfig:
    """A copy of ``config`` with the settings that depend on the data decided: a ResNet on images of
    64 px or less gets the CIFAR stem (``model_options["stem"] = "cifar"``) unless one was asked for;
    the ImageNet stem would shrink 32 px to 8 before the first block."""
    options = dict(config.model_options)
    if get_model_info(config.model).family == "resnet" and input_shape[1] <= 64 and "stem" not in options:
        options["stem"] = "cifar"
    return dataclasses.replace(config, model_options=options, freeze=list(config.freeze))


def build_model(config: TrainConfig, input_shape: tuple[int, int, int], num_classes: int,
                device: torch.device) -> tuple[nn.Module, list[str]]:
    """The registry model for the data's shape and classes, initialised, loaded and frozen as
    ``config`` (resolved) says, on ``device`` in its memory format; and the head tensors left as
    initialised (``--weights`` trained for other classes). Seed the RNG before calling it."""
    channels, side, _ = input_shape
    model = create_model(config.model, num_classes=num_classes, in_channels=channels, input_size=side,
                         **config.model_options)
    init_weights(model, config.init)
    replaced_head: list[str] = []
    if config.weights:
        expected = weights_in_channels(config.weights, first_conv_key(model))
        if expected is not None and expected != channels:
            raise CnnlabError(
                f"the weights in {config.weights} expect {expected} input channel(s) but {config.dataset} has "
                f"{channels}; pass --in-channels {expected}" + (" to repeat the gray channel" if channels == 1 else ""))
        replaced_head = load_weights(model, config.weights, replace_head=True)
    if config.freeze:
        freeze(model, config.freeze)
    return model.to(device, memory_format=memory_format_for(config.channels_last, device)), replaced_head
