"""``TrainConfig``: the single source of every training setting.

Each field carries its name, default, choices and help text; ``cnnlab train``'s options are
generated from these fields (see :mod:`cnnlab.cli.train`), and a run saves them as
``config.json``. The defaults are the lecture's recipe (cnn-with-diff-init/default.ipynb):
the ConvNet on MNIST, SGD lr 0.05 without momentum, batch 128, 10 epochs, seed 1, PyTorch's
default init and ``ToTensor()`` scaling only.

This module imports no torch, so the command line can describe itself without loading it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from cnnlab.errors import CnnlabError, UnknownNameError

__all__ = ["TrainConfig", "setting", "OPTIMIZERS", "SCHEDULES", "TRAIN_EVALS", "INIT_SCHEMES", "DEVICES"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
TRAIN_EVALS = ("running", "full")
DEVICES = ("auto", "cpu", "cuda")
FLOAT32_MAX = 3.4028234663852886e38  # a larger learning rate cannot even be written in the weights' precision
# the weight-init schemes of cnnlab.models.init (the cnn-with-diff-init notebooks); a test keeps both equal
INIT_SCHEMES = ("default", "normal", "uniform", "xavier_normal", "xavier_uniform", "kaiming_normal", "kaiming_uniform")


def setting(default: Any = dataclasses.MISSING, help: str = "", *, choices: tuple[str, ...] | None = None,
            flags: tuple[str, ...] | None = None, metavar: str | None = None, factory: Any = None,
            cli: bool = True) -> Any:
    """A :class:`TrainConfig` field with what the command line needs to offer it.

    ``flags``: the option's spellings if not ``--field-name``; ``cli=False`` keeps a field off
    the command line.
    """
    metadata = {"help": help, "choices": choices, "flags": flags, "metavar": metavar, "cli": cli}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Every setting of a run; saved as ``config.json`` in the run directory."""

    recipe: str | None = setting(None, "Start from a named recipe (see `cnnlab recipes`) or a .toml/.json settings "
                                       "file; options given on the command line override its settings.")
    model: str = setting("convnet", "Model name (see `cnnlab models`).")
    dataset: str = setting("mnist", "mnist, fashion-mnist, cifar10, digits (bundled, offline), or imagefolder "
                                    "(--data-dir DIR with DIR/train/<class>/*).")
    # the lecture's notebook: 10; a fraction (1.5) stops inside the last epoch, the schedule fitted to it
    epochs: float = setting(10, "Passes over the training set; a fraction such as 1.5 stops inside the last epoch.")
    batch_size: int = setting(128, "Minibatch size.")
    lr: float = setting(0.05, "Learning rate.")  # per batch of 128, SGD without momentum, as in the lecture's notebook
    optimizer: str = setting("sgd", "Optimizer.", choices=OPTIMIZERS)
    momentum: float = setting(0.0, "SGD momentum (the lecture uses none).")
    nesterov: bool = setting(False, "Nesterov momentum (SGD).")
    weight_decay: float = setting(0.0, "L2 weight decay (decoupled for adamw).")
    schedule: str = setting("constant", "Learning-rate schedule, stepped every batch.", choices=SCHEDULES)
    warmup_epochs: float = setting(0.0, "Linear warm-up from 0 (fractions of an epoch allowed).")
    step_size: int = setting(30, "schedule step: epochs between decays.")
    gamma: float = setting(0.1, "schedule step: decay factor.")
    label_smoothing: float = setting(0.0, "Label smoothing of the cross-entropy.")
    clip_grad: float | None = setting(None, "Clip the global gradient norm to this value.")
    ema_decay: float | None = setting(None, "Evaluate and save an exponential moving average of the weights, "
                                            "updated after every step with this decay (e.g. 0.999).")
    lookahead_steps: int | None = setting(None, "Lookahead (Zhang et al. 2019): every N steps move slow weights "
                                                "--lookahead-alpha of the way to the fast ones and restart from them.")
    lookahead_alpha: float = setting(0.5, "Lookahead: step size of the slow weights.")
    seed: int = setting(1, "Seeds the model's init and the shuffling (torch.manual_seed before the model is built).")
    device: str = setting("auto", "auto picks CUDA when available.", choices=DEVICES)
    deterministic: bool = setting(True, "Deterministic algorithms (cuDNN too): same seed, same weights.")
    data_dir: str | None = setting(None, "Folder holding MNIST/raw [default: $CNNLAB_DATA, else ~/.cache/cnnlab/data].")
    download: bool = setting(True, "Download missing data when a network exists.")
    out: str | None = setting(None, "Run directory [default: runs/<timestamp>-<model>-<dataset>].")
    eval_batch_size: int = setting(512, "Batch size of forward-only passes (fastest on 2 CPU cores for the ConvNet).")
    stream: bool = setting(False, "imagefolder: decode per batch in DataLoader workers (folders larger than RAM).")
    workers: int = setting(2, "DataLoader workers with --stream.")
    skip_bad_images: bool = setting(False, "imagefolder: skip and count unreadable files.")
    normalize: bool | None = setting(None, "Per-channel mean/std after scaling [default: the dataset's recipe: "
                                           "cifar10 yes, MNIST no].")
    amp: bool = setting(False, "Autocast: bfloat16 on the CPU, float16 with a GradScaler on CUDA.")
    augment: bool = setting(False, "Random crop (and flip for colour images), batch-wise on tensors.")
    tta: bool = setting(False, "Test-time augmentation: score the mean logits of each image and its 1-pixel "
                               "shifts (half weight), and of its mirror image for colour datasets.")
    compile: bool = setting(False, "torch.compile the model for training (compile seconds reported apart in "
                                   "result.json); evaluation stays eager.")
    val_fraction: float = setting(0.0, "Seeded validation split of train: per-epoch figure and model selection; "
                                       "test scored once at the end.")
    # "running": accuracy of the epoch's own minibatch predictions (free; as Keras and Lightning
    # report it). "full": rescan the whole train set in eval mode after the epoch, as the
    # lecture notebook's compute_accuracy() does (one extra forward pass over the train set).
    train_eval: str = setting("running", "Train accuracy from the epoch's own minibatches (free), or a full "
                                         "eval-mode pass over the train set after each epoch, as the lecture "
                                         "notebook computes it.", choices=TRAIN_EVALS)
    channels_last: bool | None = setting(None, "NHWC memory format [default: on for CPU, where oneDNN is faster "
                                               "with it; off on CUDA].")
    pool_before_relu: bool = setting(True, "Train with each max-pool moved before the ReLU feeding it: they commute, "
                                           "so the weights are the same bit for bit and the ReLU does a quarter of "
                                           "the work (torch.fx; a model fx cannot trace runs as written).")
    input_size: int | None = setting(None, "Resize the images once to this side [default: the dataset's].")
    in_channels: int | None = setting(None, "Repeat gray images to this many channels (3 for RGB weights).")
    weights: str | None = setting(None, "Start from this state_dict (torchvision .pth or a cnnlab model.pt); "
                                        "a head of another size is replaced.")
    freeze: list[str] = setting(help="Keep this module's parameters fixed, e.g. --freeze features (repeatable).",
                                factory=list, metavar="MODULE")
    model_options: dict[str, Any] = setting(help="Model option, e.g. -o dropout2d=0.2 (repeatable).", factory=dict,
                                            flags=("--option", "-o"), metavar="KEY=VALUE")
    limit_batches: int | None = setting(None, "Stop each epoch after N batches (quick smoke runs, like Lightning's).")
    init: str = setting("default", "Weight init of every conv and linear layer, biases zeroed (the "
                                   "cnn-with-diff-init notebooks).", choices=INIT_SCHEMES)

    def __post_init__(self) -> None:
        if isinstance(self.epochs, float) and self.epochs.is_integer():
            self.epochs = int(self.epochs)  # --epochs 10 is 10 epochs, written 10 in config.json

    @property
    def epoch_count(self) -> int:
        """Epochs started: ``epochs`` rounded up (1.5 -> 2, the second one stopped halfway)."""
        return math.ceil(self.epochs)

    def total_steps(self, steps_per_epoch: int) -> int:
        """Optimizer steps of the whole run: ``epochs`` times the steps of one epoch, at least 1."""
        return max(1, round(self.epochs * steps_per_epoch))

    def validate(self) -> None:
        """One line for the first setting that cannot work (before any data is read)."""
        self._validate_numbers()
        self._validate_names()
        from cnnlab.data import get_dataset_spec  # the dataset registry (torch); only here

        spec = get_dataset_spec(self.dataset)
        if self.normalize and spec.mean is None:
            raise CnnlabError(f"--normalize: {self.dataset} has no standard mean/std; leave it out")
        if self.augment and spec.augment is None:
            raise CnnlabError(f"--augment has no augmentation for {self.dataset} (its images are too small to crop)")
        if self.stream and not spec.needs_data_dir:
            raise CnnlabError("--stream is for --dataset imagefolder (the other datasets fit in memory)")

    def _validate_numbers(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, (int, float)) or not 0 < self.epochs < 1e6:
            raise CnnlabError(f"--epochs must be a positive integer (or a fraction such as 1.5), got {self.epochs!r}")
        for name in ("batch_size", "eval_batch_size", "input_size", "in_channels", "limit_batches", "lookahead_steps"):
            value = getattr(self, name)
            if value is None and name in ("input_size", "in_channels", "limit_batches", "lookahead_steps"):
                continue
            if not isinstance(value, int) or value < 1:
                raise CnnlabError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        for name in ("lr", "momentum", "weight_decay", "warmup_epochs", "gamma", "label_smoothing", "clip_grad",
                     "val_fraction", "ema_decay", "lookahead_alpha"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise CnnlabError(f"--{name.replace('_', '-')} must be a finite number, got {value!r}")
        if not 0 < self.lr < FLOAT32_MAX:
            raise CnnlabError(f"--lr must be a positive number below {FLOAT32_MAX:.3g} (the largest float32), "
                              f"got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise CnnlabError(f"--momentum must be in [0, 1), got {self.momentum!r}")
        if self.weight_decay < 0:
            raise CnnlabError(f"--weight-decay must be >= 0, got {self.weight_decay!r}")
        if not 0 <= self.label_smoothing < 1:
            raise CnnlabError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.clip_grad is not None and not self.clip_grad > 0:
            raise CnnlabError(f"--clip-grad must be positive, got {self.clip_grad!r}")
        if self.warmup_epochs < 0 or self.step_size < 1 or not 0 < self.gamma <= 1:
            raise CnnlabError("--warmup-epochs must be >= 0, --step-size >= 1 and --gamma in (0, 1]")
        if self.workers < 0:
            raise CnnlabError(f"--workers must be >= 0, got {self.workers}")
        if not 0 <= self.val_fraction < 1:
            raise CnnlabError(f"--val-fraction must be in [0, 1), got {self.val_fraction!r}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise CnnlabError(f"--ema-decay must be in (0, 1), e.g. 0.999, got {self.ema_decay!r}")
        if not 0 < self.lookahead_alpha <= 1:
            raise CnnlabError(f"--lookahead-alpha must be in (0, 1], got {self.lookahead_alpha!r}")

    def _validate_names(self) -> None:
        if self.init not in INIT_SCHEMES:
            raise UnknownNameError("init", self.init, INIT_SCHEMES)
        if self.schedule not in SCHEDULES:
            raise UnknownNameError("schedule", self.schedule, SCHEDULES)
        if self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0):
            raise CnnlabError("--nesterov needs --optimizer sgd and a --momentum above 0")
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
