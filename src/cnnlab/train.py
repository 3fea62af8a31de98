"""One readable training loop, with hooks around it.

The defaults are the lecture's recipe (cnn-with-diff-init/default.ipynb): the ConvNet
on MNIST, SGD lr 0.05 without momentum, batch 128, 10 epochs, seed 1, PyTorch's
default init and ``ToTensor()`` scaling only. The loop itself does nothing but train;
progress bars, logging, checkpoints and plots are callbacks (``on_epoch_end`` ...).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

import cnnlab
from cnnlab.data import DATASETS, TensorData, augment_batch, get_dataset_spec, iterate_batches, load_prepared
from cnnlab.errors import CnnlabError, RunDirError, UnknownNameError
from cnnlab.layers import INITS, init_weights
from cnnlab.machine import cpu_name
from cnnlab.weights import freeze, load_weights, weights_in_channels
from cnnlab.models import create_model, get_model_info

__all__ = [
    "TrainConfig",
    "EpochRecord",
    "TrainResult",
    "Callback",
    "Trainer",
    "train",
    "resume",
    "predict",
    "list_runs",
    "evaluate_accuracy",
    "evaluate_run",
    "evaluate_run_detailed",
    "per_class_metrics",
    "load_run",
    "resolve_device",
    "determinism",
]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
TRAIN_EVALS = ("running", "full")


@dataclass
class TrainConfig:
    """Every setting of a run; saved as ``config.json`` in the run directory."""

    model: str = "convnet"
    dataset: str = "mnist"
    epochs: int = 10  # the lecture's notebook
    batch_size: int = 128
    lr: float = 0.05  # per batch of 128, SGD without momentum, as in the lecture's notebook
    optimizer: str = "sgd"
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "constant"  # learning-rate schedule, stepped every batch
    warmup_epochs: float = 0.0  # linear warm-up from 0 (fractions of an epoch allowed)
    step_size: int = 30  # schedule "step": multiply by gamma every step_size epochs
    gamma: float = 0.1
    label_smoothing: float = 0.0
    clip_grad: float | None = None  # max global gradient norm
    seed: int = 1  # torch.manual_seed before the model is built, as in the notebook
    device: str = "auto"
    deterministic: bool = True
    data_dir: str | None = None
    download: bool = True
    out: str | None = None
    eval_batch_size: int = 512  # forward-only passes (fastest on 2 CPU cores for the ConvNet)
    # "running": accuracy of the epoch's own minibatch predictions (free; as Keras and Lightning
    # report it). "full": rescan the whole train set in eval mode after the epoch, as the
    # lecture notebook's compute_accuracy() does (one extra forward pass over the train set).
    stream: bool = False  # imagefolder: decode per batch in DataLoader workers (folders larger than RAM)
    workers: int = 2  # DataLoader worker processes when streaming
    skip_bad_images: bool = False  # imagefolder: skip (and count) unreadable files instead of stopping
    normalize: bool | None = None  # per-channel mean/std; None: the dataset's recipe (cifar10 yes, MNIST no)
    amp: bool = False  # autocast: bfloat16 on the CPU, float16 (with a GradScaler) on CUDA
    augment: bool = False  # batch-wise random crop (+ flip where the dataset allows), see cnnlab.data.augment
    val_fraction: float = 0.0  # seeded split of train used for the per-epoch figure and model selection
    train_eval: str = "running"
    channels_last: bool | None = None  # NHWC memory format; None: on for CPU (oneDNN ~1.3-2x faster here), off on CUDA
    input_size: int | None = None  # None: the dataset's; else images are resized once, in memory
    in_channels: int | None = None  # None: the dataset's; 3 repeats gray images (for RGB weights)
    weights: str | None = None  # state_dict to start from (torchvision .pth or a cnnlab model.pt)
    freeze: list[str] = field(default_factory=list)  # module names whose parameters stay fixed
    model_options: dict[str, Any] = field(default_factory=dict)
    limit_batches: int | None = None  # stop each epoch after this many batches (smoke tests, like Lightning's)
    init: str = "default"  # weight init of every Conv2d/Linear, biases zeroed (cnn-with-diff-init notebooks)

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size", "input_size", "in_channels", "limit_batches"):
            value = getattr(self, name)
            if value is None and name in ("input_size", "in_channels", "limit_batches"):
                continue
            if not isinstance(value, int) or value < 1:
                raise CnnlabError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise CnnlabError(f"--lr must be a positive number, got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise CnnlabError(f"--momentum must be in [0, 1), got {self.momentum!r}")
        if self.weight_decay < 0:
            raise CnnlabError(f"--weight-decay must be >= 0, got {self.weight_decay!r}")
        if self.init not in INITS:
            raise UnknownNameError("init", self.init, INITS)
        if self.schedule not in SCHEDULES:
            raise UnknownNameError("schedule", self.schedule, SCHEDULES)
        if self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0):
            raise CnnlabError("--nesterov needs --optimizer sgd and a --momentum above 0")
        if not 0 <= self.label_smoothing < 1:
            raise CnnlabError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.clip_grad is not None and not self.clip_grad > 0:
            raise CnnlabError(f"--clip-grad must be positive, got {self.clip_grad!r}")
        if self.warmup_epochs < 0 or self.step_size < 1 or not 0 < self.gamma <= 1:
            raise CnnlabError("--warmup-epochs must be >= 0, --step-size >= 1 and --gamma in (0, 1]")
        if self.normalize and get_dataset_spec(self.dataset).mean is None:
            raise CnnlabError(f"--normalize: {self.dataset} has no standard mean/std; leave it out")
        if self.augment and get_dataset_spec(self.dataset).augment is None:
            raise CnnlabError(f"--augment has no augmentation for {self.dataset} (its images are too small to crop)")
        if self.stream and self.dataset != "imagefolder":
            raise CnnlabError("--stream is for --dataset imagefolder (the other datasets fit in memory)")
        if self.workers < 0:
            raise CnnlabError(f"--workers must be >= 0, got {self.workers}")
        if not 0 <= self.val_fraction < 1:
            raise CnnlabError(f"--val-fraction must be in [0, 1), got {self.val_fraction!r}")
        if self.train_eval not in TRAIN_EVALS:
            raise CnnlabError(f"--train-eval must be one of {', '.join(TRAIN_EVALS)}, got {self.train_eval!r}")
        if self.optimizer not in OPTIMIZERS:
            raise UnknownNameError("optimizer", self.optimizer, OPTIMIZERS)
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise CnnlabError(f"--device must be auto, cpu or cuda, got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float  # mean minibatch cost over the epoch
    train_acc: float  # percent; see TrainConfig.train_eval for which of the two definitions
    test_acc: float | None  # percent; None when a validation split is used (test is scored once, at the end)
    seconds: float  # training time of the epoch, evaluation excluded
    elapsed: float  # wall time since the start, evaluation included
    val_acc: float | None = None  # percent, when --val-fraction carves a validation split

    @property
    def monitored(self) -> float:
        """The per-epoch figure used for model selection: validation if there is one, else test."""
        return self.val_acc if self.val_acc is not None else self.test_acc  # type: ignore[return-value]


@dataclass
class TrainResult:
    config: TrainConfig
    history: list[EpochRecord]
    batch_losses: list[float]
    test_correct: int
    test_total: int
    seconds: float
    run_dir: Path | None
    model: nn.Module

    @property
    def test_acc(self) -> float:
        return 100.0 * self.test_correct / self.test_total


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU. Asking for CUDA without one is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CnnlabError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto")
    return device


def normalization_for(config: TrainConfig) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(mean, std) applied after ToTensor scaling, or None."""
    if config.dataset not in DATASETS:
        return None
    spec = get_dataset_spec(config.dataset)
    use = config.normalize if config.normalize is not None else spec.mean is not None
    if not use:
        return None
    if spec.mean is None or spec.std is None:
        raise CnnlabError(f"--normalize: {config.dataset} has no standard mean/std; leave it out")
    return spec.mean, spec.std


def distributed_env() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) for a plain process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def memory_format_for(config: TrainConfig, device: torch.device) -> torch.memory_format:
    """channels_last when asked for, or by default on the CPU (where oneDNN prefers NHWC)."""
    use = config.channels_last if config.channels_last is not None else device.type == "cpu"
    return torch.channels_last if use else torch.contiguous_format


@contextlib.contextmanager
def determinism(enabled: bool, device: torch.device) -> Iterator[None]:
    """The lecture's ``cudnn.deterministic = True`` and more, restored on exit.

    On: ``torch.use_deterministic_algorithms(True)``, cuDNN deterministic, benchmark off.
    Off: cuDNN benchmark on (picks the fastest algorithm per shape at run time).
    """
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    if enabled:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
        # On CUDA a few backward kernels (e.g. adaptive average pooling) have no deterministic
        # version; warn there instead of failing. On the CPU every op we use is deterministic.
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic = saved[2]
        torch.backends.cudnn.benchmark = saved[3]


def _image_folder_val(config: "TrainConfig", train_data: TensorData) -> TensorData:
    from cnnlab.imagefolder import load_split_folder

    c, h, _ = train_data.sample_shape
    return load_split_folder(config.data_dir, "val", train_data.classes, h, c, skip_bad=config.skip_bad_images)


def split_validation(data: TensorData, fraction: float, seed: int) -> tuple[TensorData, TensorData]:
    """A seeded random (train, val) split of ``data``; the same seed gives the same split."""
    n_val = round(fraction * len(data))
    if not 1 <= n_val < len(data):
        raise CnnlabError(f"--val-fraction {fraction} leaves {n_val} of {len(data)} images for validation; "
                          f"choose a fraction that keeps at least one image on each side")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
    return data.subset(train_idx), data.subset(val_idx)


@torch.inference_mode()
def evaluate_accuracy(
    model: nn.Module,
    data: TensorData,
    batch_size: int = 512,
    memory_format: torch.memory_format = torch.contiguous_format,
    normalize: tuple[Sequence[float], Sequence[float]] | None = None,
) -> tuple[int, int, float]:
    """(correct, total, mean loss) of ``model`` on ``data`` (already on the model's device)."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=data.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=data.device)
    for x, y in iterate_batches(data, batch_size, memory_format=memory_format, normalize=normalize):
        logits = model(x)
        correct += (logits.argmax(dim=1) == y).sum()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
    model.train(was_training)
    return int(correct), len(data), float(loss_sum) / max(len(data), 1)


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    t = t.clone()
    dist.all_reduce(t)
    return t


class Callback:
    """Hook points around the loop (names after Lightning/fastai). Override what you need."""

    def on_train_start(self, trainer: "Trainer") -> None: ...

    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None: ...

    def on_batch_end(self, trainer: "Trainer", epoch: int, step: int, loss: torch.Tensor) -> None: ...

    def on_epoch_end(self, trainer: "Trainer", record: EpochRecord) -> None: ...

    def on_train_end(self, trainer: "Trainer", result: TrainResult) -> None: ...


class Trainer:
    """Holds the state of one run; :meth:`fit` is the loop."""

    def __init__(self, config: TrainConfig, callbacks: Sequence[Callback] = ()):
        config.validate()
        self.config = config
        self.callbacks = list(callbacks)
        self.rank, self.world = distributed_env()
        if self.world > 1 and config.batch_size % self.world:
            raise CnnlabError(f"--batch-size {config.batch_size} is the global batch and must divide by the "
                              f"{self.world} processes")
        self.device = resolve_device(config.device)
        if self.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        spec = get_dataset_spec(config.dataset)
        get_model_info(config.model)  # unknown model: fail before loading any data
        train_data, test_data = load_prepared(config.dataset, config.data_dir, download=config.download,
                                              input_size=config.input_size, in_channels=config.in_channels,
                                              skip_bad_images=config.skip_bad_images, stream=config.stream,
                                              workers=config.workers)
        self.skipped = train_data.skipped
        self.val_data: TensorData | None = None
        if config.val_fraction > 0:
            train_data, val_data = split_validation(train_data, config.val_fraction, config.seed)
            self.val_data = val_data.to(self.device)
        elif config.dataset == "imagefolder" and config.data_dir and (Path(config.data_dir) / "val").is_dir():
            self.val_data = _image_folder_val(config, train_data).to(self.device)
        self.classes = train_data.classes
        self.input_shape = train_data.sample_shape  # (C, H, W)
        self.train_data = train_data.to(self.device)
        self.test_data = test_data.to(self.device)
        self.spec = spec
        self.model: nn.Module | None = None
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.shuffle: torch.Generator | None = None
        self.resume_from: dict[str, Any] | None = None  # a checkpoint to continue (see resume())
        self.test_counts: tuple[int, int] | None = None
        self.best: dict[str, Any] | None = None  # best validation epoch, its accuracy and weights
        self.replaced_head: list[str] = []
        self.optimizer: torch.optim.Optimizer | None = None
        self.batch_losses: list[float] = []
        self.history: list[EpochRecord] = []
        self.run_dir: Path | None = None
        self.steps_per_epoch = math.ceil(len(self.train_data) / config.batch_size)
        if config.limit_batches is not None:
            self.steps_per_epoch = min(self.steps_per_epoch, config.limit_batches)

    def build_model(self) -> nn.Module:
        c, h, _ = self.input_shape
        config = self.config
        if get_model_info(config.model).family == "resnet" and h <= 64 and "stem" not in config.model_options:
            # the ImageNet stem shrinks 32 px to 8 before the first block; small images get the CIFAR
            # stem unless asked otherwise (recorded in the config, so evaluate/resume rebuild the same)
            config.model_options["stem"] = "cifar"
        model = create_model(
            config.model, num_classes=len(self.classes), in_channels=c, input_size=h, **config.model_options
        )
        init_weights(model, config.init)
        if config.weights:
            expected = weights_in_channels(config.weights)
            if expected is not None and expected != c:
                raise CnnlabError(
                    f"the weights in {config.weights} expect {expected} input channel(s) but {config.dataset} has {c}; "
                    f"pass --in-channels {expected}" + (" to repeat the gray channel" if c == 1 else "")
                )
            self.replaced_head = load_weights(model, config.weights, replace_head=True)
        if config.freeze:
            freeze(model, config.freeze)
        return model.to(self.device, memory_format=self.memory_format)

    def _frozen_to_eval(self, model: nn.Module) -> None:
        """Frozen parts are fixed feature extractors: BN statistics and dropout stay off."""
        modules = dict(model.named_modules())
        for name in self.config.freeze:
            modules[name].eval()

    @property
    def memory_format(self) -> torch.memory_format:
        return memory_format_for(self.config, self.device)

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        c = self.config
        params = [p for p in model.parameters() if p.requires_grad]  # frozen tensors stay exactly as loaded
        if not params:
            raise CnnlabError("every parameter is frozen; --freeze fewer modules")
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov,
                                   weight_decay=c.weight_decay)
        if c.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)

    def build_scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        """Every schedule as a factor of ``lr`` per optimizer step (so warm-up and resume are uniform)."""
        c = self.config
        steps = self.steps_per_epoch
        total = max(1, c.epochs * steps)
        warmup = int(round(c.warmup_epochs * steps))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if c.schedule == "step":
                return c.gamma ** (step // (c.step_size * steps))
            if c.schedule == "cosine":
                t = (step - warmup) / max(1, total - warmup)
                return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
            if c.schedule == "onecycle":  # up for 30% of the steps, then cosine down to lr/1e4 (as OneCycleLR)
                peak = max(warmup, int(0.3 * total))
                if step < peak:
                    return 0.04 + 0.96 * (step + 1) / max(1, peak)
                t = (step - peak) / max(1, total - peak)
                return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
            return 1.0

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def state(self, epoch: int) -> dict[str, Any]:
        """Everything needed to continue after ``epoch`` bit for bit (model, optimizer, schedule, RNGs)."""
        assert self.model is not None and self.optimizer is not None and self.scheduler is not None
        state = {
            "epoch": epoch,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "shuffle_rng": self.shuffle.get_state() if self.shuffle is not None else None,
            "history": [dataclasses.asdict(r) for r in self.history],
            "batch_losses": list(self.batch_losses),
            "config": self.config.to_dict(),
            "best": self.best,
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def _restore(self, state: dict[str, Any]) -> int:
        assert self.model is not None and self.optimizer is not None and self.scheduler is not None
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise RunDirError(f"the checkpoint does not fit model {self.config.model!r}: {str(exc).splitlines()[0]}") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("shuffle_rng") is not None and self.shuffle is not None:
            self.shuffle.set_state(state["shuffle_rng"])
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.history = [EpochRecord(**r) for r in state["history"]]
        self.batch_losses = list(state["batch_losses"])
        self.best = state.get("best")
        return int(state["epoch"])

    @staticmethod
    def _stop_non_finite(epoch: int, losses: list[torch.Tensor]) -> None:
        values = torch.stack(losses).tolist()
        bad = next(i for i, v in enumerate(values) if not math.isfinite(v))
        raise CnnlabError(f"the loss became {values[bad]} at epoch {epoch}, step {bad}; lower --lr and try again")

    def fit(self) -> TrainResult:
        c = self.config
        with determinism(c.deterministic, self.device):
            torch.manual_seed(c.seed)  # before the model is built, as in the lecture's notebook
            self.model = model = self.build_model()
            own_group = False
            if self.world > 1:
                import torch.distributed as dist
                from torch.nn.parallel import DistributedDataParallel

                if not dist.is_initialized():
                    dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
                    own_group = True
                net: nn.Module = DistributedDataParallel(
                    model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            else:
                net = model
            self.optimizer = optimizer = self.build_optimizer(model)
            self.scheduler = scheduler = self.build_scheduler(optimizer)
            self.shuffle = shuffle = torch.Generator().manual_seed(c.seed)
            first_epoch = self._restore(self.resume_from) + 1 if self.resume_from is not None else 1
            # a finiteness check reads the loss back: free on the CPU, a sync on a GPU
            check_every = 1 if self.device.type == "cpu" else 50
            amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
            scaler = torch.amp.GradScaler(self.device.type, enabled=c.amp and self.device.type == "cuda")
            fmt = self.memory_format
            norm = normalization_for(c)
            self._call("on_train_start")
            start = time.perf_counter() - (self.history[-1].elapsed if self.history else 0.0)
            for epoch in range(first_epoch, c.epochs + 1):
                self._call("on_epoch_start", epoch)
                model.train()
                self._frozen_to_eval(model)
                epoch_start = time.perf_counter()
                losses = []
                running_correct = torch.zeros((), dtype=torch.long, device=self.device)
                seen = 0
                batches = iterate_batches(
                    self.train_data, c.batch_size, shuffle=True, generator=shuffle, memory_format=self.memory_format,
                    normalize=norm, shard=(self.rank, self.world),
                )
                for step, (x, y) in enumerate(batches):
                    if c.limit_batches is not None and step >= c.limit_batches:
                        break
                    seen += len(y)
                    if c.augment:
                        x = augment_batch(x, self.spec.augment, shuffle)
                    with torch.autocast(self.device.type, dtype=amp_dtype, enabled=c.amp):
                        logits = net(x)
                        loss = F.cross_entropy(logits.float(), y, label_smoothing=c.label_smoothing)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    if c.clip_grad is not None:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(model.parameters(), c.clip_grad)
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    loss = loss.detach()
                    if self.world > 1:  # the global batch's mean loss, as one process would see it
                        loss = _all_reduce(loss * len(y)) / _all_reduce(torch.tensor(float(len(y)), device=self.device))
                    losses.append(loss)
                    running_correct += (logits.detach().argmax(dim=1) == y).sum()
                    if step % check_every == 0 and not torch.isfinite(loss):
                        self._stop_non_finite(epoch, losses)
                    self._call("on_batch_end", epoch, step, loss)
                epoch_losses = torch.stack(losses).tolist()
                if not all(math.isfinite(v) for v in epoch_losses):
                    self._stop_non_finite(epoch, losses)
                self.batch_losses.extend(epoch_losses)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                seconds = time.perf_counter() - epoch_start
                if c.train_eval == "full":
                    train_correct, train_total, _ = evaluate_accuracy(model, self.train_data, c.eval_batch_size, fmt, norm)
                else:
                    if self.world > 1:
                        running_correct = _all_reduce(running_correct)
                        seen = int(_all_reduce(torch.tensor(seen, device=self.device)))
                    train_correct, train_total = int(running_correct), seen
                val_acc = test_acc = None
                if self.val_data is not None:
                    val_correct, val_total, _ = evaluate_accuracy(model, self.val_data, c.eval_batch_size, fmt, norm)
                    val_acc = 100.0 * val_correct / val_total
                else:
                    test_correct, test_total, _ = evaluate_accuracy(model, self.test_data, c.eval_batch_size, fmt, norm)
                    self.test_counts = (test_correct, test_total)
                    test_acc = 100.0 * test_correct / test_total
                record = EpochRecord(
                    epoch=epoch,
                    train_loss=sum(epoch_losses) / len(epoch_losses),
                    train_acc=100.0 * train_correct / train_total,
                    test_acc=test_acc,
                    seconds=seconds,
                    elapsed=time.perf_counter() - start,
                    val_acc=val_acc,
                )
                self.history.append(record)
                if self.val_data is not None and (self.best is None or val_acc > self.best["val_acc"]):
                    self.best = {"epoch": epoch, "val_acc": val_acc,
                                 "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
                self._call("on_epoch_end", record)
            if self.val_data is not None:
                # model selection on validation; the test set is scored once, for the selected weights
                assert self.best is not None
                model.load_state_dict(self.best["model"])
                correct, total, _ = evaluate_accuracy(model, self.test_data, c.eval_batch_size, fmt, norm)
                self.test_counts = (correct, total)
            assert self.test_counts is not None  # at least one epoch ran (resume() checks)
            result = TrainResult(
                config=c,
                history=self.history,
                batch_losses=self.batch_losses,
                test_correct=self.test_counts[0],
                test_total=self.test_counts[1],
                seconds=time.perf_counter() - start,
                run_dir=self.run_dir,
                model=model,
            )
            self._call("on_train_end", result)
            if own_group:
                import torch.distributed as dist

                dist.barrier()
                dist.destroy_process_group()
        return result


# ---------------------------------------------------------------------------------------
# Run directory: config.json, metrics.csv, model.pt, curves.png


def default_run_dir(config: TrainConfig, root: str | os.PathLike = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{config.model}-{config.dataset}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def environment_info(device: torch.device) -> dict[str, Any]:
    info = {
        "cnnlab_version": cnnlab.__version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "processor": cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cudnn_version"] = torch.backends.cudnn.version()
    return info


def check_run_dir(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse a path that is a file, or a non-empty directory unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"--out {path} is a file, not a directory; choose another --out")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise RunDirError(f"run directory {path} already exists and is not empty; choose another --out or pass --overwrite")
    return path


def prepare_run_dir(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Create a fresh run directory (see :func:`check_run_dir`)."""
    path = check_run_dir(path, overwrite)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _atomic_write_bytes(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class RunDirWriter(Callback):
    """Writes config.json at the start; a metrics.csv row and an atomic checkpoint.pt (everything
    needed to resume) after every epoch; model.pt and curves.png at the end."""

    METRICS_HEADER = "epoch,train_loss,train_acc,val_acc,test_acc,seconds,elapsed\n"

    def __init__(self, path: str | os.PathLike, overwrite: bool = False, plot: bool = True, resume: bool = False):
        self.path = Path(path)
        self.overwrite = overwrite
        self.plot = plot
        self.resume = resume

    @staticmethod
    def _row(record: EpochRecord) -> str:
        pct = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
        return (f"{record.epoch},{record.train_loss:.6f},{record.train_acc:.4f},{pct(record.val_acc)},"
                f"{pct(record.test_acc)},{record.seconds:.3f},{record.elapsed:.3f}\n")

    def on_train_start(self, trainer: Trainer) -> None:
        trainer.run_dir = self.path if self.resume else prepare_run_dir(self.path, self.overwrite)
        config = trainer.config.to_dict()
        config["out"] = str(trainer.run_dir)
        doc = {
            "config": config,
            "classes": trainer.classes,
            "input_shape": list(trainer.input_shape),
            "skipped_files": list(trainer.skipped),
            "environment": environment_info(trainer.device),
        }
        (trainer.run_dir / "config.json").write_text(json.dumps(doc, indent=2) + "\n")
        # on resume: the rows of the epochs the checkpoint holds, nothing after them
        rows = "".join(self._row(r) for r in trainer.history)
        (trainer.run_dir / "metrics.csv").write_text(self.METRICS_HEADER + rows)

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        assert trainer.run_dir is not None
        with open(trainer.run_dir / "metrics.csv", "a") as fh:
            fh.write(self._row(record))
        state = trainer.state(record.epoch)
        _atomic_write_bytes(trainer.run_dir / "checkpoint.pt", lambda fh: torch.save(state, fh))

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        assert trainer.run_dir is not None and trainer.model is not None
        result.run_dir = trainer.run_dir
        checkpoint = {
            "state_dict": {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()},
            "config": trainer.config.to_dict(),
            "classes": list(trainer.classes),
            "input_shape": list(trainer.input_shape),
            "test_correct": result.test_correct,
            "test_total": result.test_total,
            "best_epoch": trainer.best["epoch"] if trainer.best else None,
            "cnnlab_version": cnnlab.__version__,
        }
        (trainer.run_dir / "result.json").write_text(json.dumps({
            "test_acc": result.test_acc, "test_correct": result.test_correct, "test_total": result.test_total,
            "best_epoch": trainer.best["epoch"] if trainer.best else None,
            "best_val_acc": trainer.best["val_acc"] if trainer.best else None, "seconds": result.seconds,
        }, indent=2) + "\n")
        _atomic_write_bytes(trainer.run_dir / "model.pt", lambda fh: torch.save(checkpoint, fh))
        if self.plot:
            from cnnlab.plots import plot_curves

            plot_curves(result.batch_losses, result.history, trainer.run_dir / "curves.png", trainer.steps_per_epoch)


def train(config: TrainConfig | None = None, callbacks: Sequence[Callback] = (), *, overwrite: bool = False,
          write_run_dir: bool = True, **overrides: Any) -> TrainResult:
    """Train a model; returns the history, the final test accuracy and the model.

    ``train(epochs=1, dataset="digits")`` is short for ``train(TrainConfig(epochs=1, dataset="digits"))``.
    """
    config = dataclasses.replace(config or TrainConfig(), **overrides)
    trainer = Trainer(config, callbacks if distributed_env()[0] == 0 else ())
    if write_run_dir and trainer.rank == 0:  # with torchrun, rank 0 alone writes the run directory
        out = config.out or default_run_dir(config)
        check_run_dir(out, overwrite)  # fail before training, not after
        trainer.callbacks.insert(0, RunDirWriter(out, overwrite=overwrite))
    return trainer.fit()


def _read_checkpoint(path: Path, needed: set[str], kind: str) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with one-line errors for truncated or foreign files."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RunDirError(f"{path} cannot be read as a checkpoint ({type(exc).__name__}); it is truncated or not "
                          f"cnnlab's") from None
    if not isinstance(obj, dict) or not needed <= set(obj):
        raise RunDirError(f"{path} is not a cnnlab {kind} (needs {', '.join(sorted(needed))})")
    return obj


def resume(run_dir: str | os.PathLike, callbacks: Sequence[Callback] = (), *, epochs: int | None = None,
           data_dir: str | None = None) -> TrainResult:
    """Continue an interrupted run from its last ``checkpoint.pt``, up to its (or a new) ``epochs``.

    On the CPU with ``deterministic`` the final weights equal those of a run never stopped.
    """
    path = Path(run_dir)
    ckpt = path / "checkpoint.pt"
    if not path.is_dir():
        raise RunDirError(f"--resume {path}: no such run directory")
    if not ckpt.is_file():
        raise RunDirError(f"--resume {path}: no checkpoint.pt there (runs write one after every epoch)")
    state = _read_checkpoint(ckpt, {"epoch", "model", "optimizer", "scheduler", "torch_rng", "history", "config"},
                             "training checkpoint")
    config = TrainConfig.from_dict(state["config"])
    config.out = str(path)
    if epochs is not None:
        config.epochs = epochs
    if data_dir is not None:
        config.data_dir = data_dir
    if int(state["epoch"]) >= config.epochs:
        raise RunDirError(f"{path} already has {state['epoch']} of {config.epochs} epochs; pass a larger --epochs to go on")
    trainer = Trainer(config, callbacks)
    trainer.resume_from = state
    trainer.callbacks.insert(0, RunDirWriter(path, resume=True))
    return trainer.fit()


# ---------------------------------------------------------------------------------------
# Reloading a run


@dataclass
class LoadedRun:
    path: Path
    config: TrainConfig
    model: nn.Module
    classes: list[str]
    input_shape: tuple[int, int, int]
    checkpoint: dict[str, Any]


def load_run(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild the model of a run directory from its ``model.pt`` (``weights_only=True``)."""
    path = Path(run_dir)
    if not path.is_dir():
        raise RunDirError(f"run directory {path} does not exist; pass the folder `cnnlab train` wrote (see --out)")
    ckpt_path = path / "model.pt"
    if not ckpt_path.is_file():
        raise RunDirError(f"{ckpt_path} is missing; the run did not finish, or {path} is not a cnnlab run directory")
    checkpoint = _read_checkpoint(ckpt_path, {"state_dict", "config", "input_shape", "classes"}, "checkpoint")
    config = TrainConfig.from_dict(checkpoint["config"])
    c, h, _ = checkpoint["input_shape"]
    model = create_model(config.model, num_classes=len(checkpoint["classes"]), in_channels=c, input_size=h,
                         **config.model_options)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:
        raise RunDirError(f"{ckpt_path} does not fit model {config.model!r}: {str(exc).splitlines()[0]}") from None
    model.to(device).eval()
    return LoadedRun(path, config, model, list(checkpoint["classes"]), (c, h, checkpoint["input_shape"][2]), checkpoint)


def _run_split(run: LoadedRun, split: str, data_dir: str | None, device: torch.device) -> TensorData:
    c, h, _ = run.input_shape
    cfg = run.config
    train_data, test = load_prepared(cfg.dataset, data_dir or cfg.data_dir, download=cfg.download, input_size=h,
                                     in_channels=c, skip_bad_images=cfg.skip_bad_images, stream=cfg.stream,
                                     workers=cfg.workers)
    if split == "test":
        return test.to(device)
    if split == "val":
        if cfg.dataset == "imagefolder" and not cfg.val_fraction and (Path(data_dir or cfg.data_dir) / "val").is_dir():
            return _image_folder_val(cfg, train_data).to(device)
        if not cfg.val_fraction:
            raise CnnlabError(f"{run.path} was trained without --val-fraction, so it has no validation split; use --split test")
        return split_validation(train_data, cfg.val_fraction, cfg.seed)[1].to(device)
    raise CnnlabError(f"--split must be val or test, got {split!r}")


def evaluate_run(run_dir: str | os.PathLike, *, data_dir: str | None = None, device: str = "auto",
                 split: str = "test") -> tuple[int, int, LoadedRun]:
    """Reload a run and score one split (test by default): (correct, total, run)."""
    correct, total, run, _ = evaluate_run_detailed(run_dir, data_dir=data_dir, device=device, split=split)
    return correct, total, run


def evaluate_run_detailed(run_dir: str | os.PathLike, *, data_dir: str | None = None, device: str = "auto",
                          split: str = "test") -> tuple[int, int, LoadedRun, torch.Tensor]:
    """As :func:`evaluate_run`, plus the confusion matrix (rows: true class, columns: predicted)."""
    dev = resolve_device(device)
    run = load_run(run_dir, dev)
    data = _run_split(run, split, data_dir, dev)
    k = len(run.classes)
    confusion = torch.zeros(k, k, dtype=torch.long)
    with determinism(run.config.deterministic, dev), torch.inference_mode():
        fmt = memory_format_for(run.config, dev)
        run.model.to(memory_format=fmt).eval()
        for x, y in iterate_batches(data, run.config.eval_batch_size, memory_format=fmt,
                                    normalize=normalization_for(run.config)):
            pred = run.model(x).argmax(dim=1)
            confusion += torch.bincount((y * k + pred).cpu(), minlength=k * k).view(k, k)
    correct = int(confusion.diagonal().sum())
    return correct, int(confusion.sum()), run, confusion


def per_class_metrics(confusion: torch.Tensor, classes: Sequence[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class from a confusion matrix (rows: true)."""
    rows = []
    for i, name in enumerate(classes):
        tp = int(confusion[i, i])
        predicted, support = int(confusion[:, i].sum()), int(confusion[i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"class": name, "precision": precision, "recall": recall, "f1": f1, "support": support})
    return rows

@torch.inference_mode()
def predict(run_dir: str | os.PathLike, images: Sequence[str | os.PathLike], *, top_k: int = 3,
            device: str = "auto") -> list[tuple[str, list[tuple[str, float]]]]:
    """Top-k classes with probabilities for image files of any size and mode, converted the way
    the run's data was (channels, square side, ``ToTensor`` scaling)."""
    from cnnlab.imagefolder import decode_image

    if top_k < 1:
        raise CnnlabError(f"--top-k must be a positive integer, got {top_k}")
    dev = resolve_device(device)
    run = load_run(run_dir, dev)
    c, h, _ = run.input_shape
    data = TensorData(torch.stack([decode_image(p, c, h) for p in images]), torch.zeros(len(images), dtype=torch.long),
                      run.classes).to(dev)
    fmt = memory_format_for(run.config, dev)
    run.model.to(memory_format=fmt)
    # the same scaling and normalisation as training, through the same batching code
    x, _ = next(iterate_batches(data, len(data), memory_format=fmt, normalize=normalization_for(run.config)))
    probs = torch.softmax(run.model(x), dim=1)
    k = min(top_k, probs.shape[1])
    values, indices = probs.topk(k, dim=1)
    return [(str(p), [(run.classes[int(i)], float(v)) for v, i in zip(vs, ix)])
            for p, vs, ix in zip(images, values.cpu(), indices.cpu())]


def list_runs(root: str | os.PathLike = "runs") -> list[dict[str, Any]]:
    """One row per run directory under ``root`` (or ``root`` itself): model, dataset, epochs done,
    best validation and final test accuracy, time, and whether it finished."""
    root = Path(root)
    if not root.is_dir():
        raise RunDirError(f"{root} is not a folder; pass the folder holding your run directories (default: runs)")
    dirs = [root] if (root / "config.json").is_file() else sorted(p.parent for p in root.glob("*/config.json"))
    rows = []
    for d in dirs:
        try:
            config = json.loads((d / "config.json").read_text())["config"]
        except (OSError, ValueError, KeyError):
            continue  # not a cnnlab run
        metrics = []
        if (d / "metrics.csv").is_file():
            with open(d / "metrics.csv") as fh:
                metrics = list(csv.DictReader(fh))
        result = json.loads((d / "result.json").read_text()) if (d / "result.json").is_file() else {}
        tests = [float(r["test_acc"]) for r in metrics if r.get("test_acc")]
        vals = [float(r["val_acc"]) for r in metrics if r.get("val_acc")]
        finished = (d / "model.pt").is_file()
        rows.append({
            "run": str(d), "model": config.get("model"), "dataset": config.get("dataset"),
            "epochs": f"{len(metrics)}/{config.get('epochs')}",
            "best_val_acc": result.get("best_val_acc", max(vals) if vals else None),
            "test_acc": result.get("test_acc", tests[-1] if tests else None),
            "seconds": result.get("seconds", float(metrics[-1]["elapsed"]) if metrics else None),
            "status": "finished" if finished else ("interrupted: --resume it" if metrics else "no epoch finished"),
        })
    return rows
