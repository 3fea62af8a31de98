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

__all__ = ["TrainConfig", "setting", "setting_field", "Range", "GROUPS", "LAUNCH_OPTIONS", "resume_safe", "option_flag",
           "ResumeOptionError", "OPTIMIZERS", "SCHEDULES", "TRAIN_EVALS", "INIT_SCHEMES", "DEVICES"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
TRAIN_EVALS = ("running", "full")
DEVICES = ("auto", "cpu", "cuda")
FLOAT32_MAX = 3.4028234663852886e38  # a larger learning rate cannot even be written in the weights' precision
SEED_RANGE = (-0x8000_0000_0000_0000, 0xFFFF_FFFF_FFFF_FFFF)  # what torch.manual_seed takes; nothing else is seeded
# the concerns a setting belongs to, in the order `cnnlab train --help` shows them
GROUPS = {
    "loop": "the run: recipe, seed, where it is written, what is scored",
    "data": "what the model sees",
    "model": "the network and its starting weights",
    "optimization": "how each step changes the weights",
    "schedule": "how long, and the learning rate over time",
    "system": "how the machine runs it",
}
# the weight-init schemes of cnnlab.models.init (the cnn-with-diff-init notebooks); a test keeps both equal
INIT_SCHEMES = ("default", "normal", "uniform", "xavier_normal", "xavier_uniform", "kaiming_normal", "kaiming_uniform")


@dataclass(frozen=True)
class Range:
    """The values a numeric setting may take. ``lo``/``hi``: bounds (None: none), ``open``: which
    bounds are excluded ("lo", "hi", "both", ""); ``text``: how to say it when the default wording
    does not fit; ``hint``: appended advice."""

    lo: float | None = None
    hi: float | None = None
    open: str = ""
    integer: bool = False
    text: str | None = None
    hint: str = ""

    def describe(self) -> str:
        """``in [0, 1)``, ``>= 0``, ``a positive integer``, ``an integer in [a, b]`` ..."""
        if self.text is not None:
            return self.text
        left, right = "(" if self.open in ("lo", "both") else "[", ")" if self.open in ("hi", "both") else "]"
        show = str if self.integer else (lambda v: f"{v:g}")
        if self.lo is not None and self.hi is not None:
            bounds = f"in {left}{show(self.lo)}, {show(self.hi)}{right}"
        elif self.integer and self.lo == 1:
            return "a positive integer"
        elif self.lo is not None:
            bounds = f"{'>' if left == '(' else '>='} {show(self.lo)}"
        else:
            bounds = f"{'<' if right == ')' else '<='} {show(self.hi)}"
        return f"an integer {bounds}" if self.integer else bounds

    def check(self, option: str, value: Any) -> None:
        """One line naming ``option``, its value and the valid range, if ``value`` is outside it."""
        got = f", got {value!r}"
        if self.integer:
            if isinstance(value, bool) or not isinstance(value, int):
                raise CnnlabError(f"{option} must be {self.describe()}{got}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            kind = self.describe() if self.text is not None else f"a finite number {self.describe()}"
            raise CnnlabError(f"{option} must be {kind}{got}")
        below = self.lo is not None and (value <= self.lo if self.open in ("lo", "both") else value < self.lo)
        above = self.hi is not None and (value >= self.hi if self.open in ("hi", "both") else value > self.hi)
        if below or above:
            raise CnnlabError(f"{option} must be {self.describe()}{self.hint}{got}")


def setting(default: Any = dataclasses.MISSING, help: str = "", *, choices: tuple[str, ...] | None = None,
            flags: tuple[str, ...] | None = None, metavar: str | None = None, factory: Any = None,
            cli: bool = True, range: Range | None = None, resume: bool = False, group: str) -> Any:
    """A :class:`TrainConfig` field with what the command line needs to offer it.

    ``flags``: the option's spellings if not ``--field-name``; ``cli=False`` keeps a field off
    the command line; ``range``: the values :meth:`TrainConfig.validate` accepts (None passes for
    an optional field); ``resume=True``: the field may be given with ``--resume`` (it changes where
    the data is or how long the run goes on, never its numbers: a resumed run stays bitwise equal);
    ``group``: the concern it belongs to, one of :data:`GROUPS` (``cnnlab train --help`` lists the
    options under these headings).
    """
    if group not in GROUPS:
        raise ValueError(f"group must be one of {', '.join(GROUPS)}, got {group!r}")
    metadata = {"help": help, "choices": choices, "flags": flags, "metavar": metavar, "cli": cli, "range": range,
                "resume": resume, "group": group}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Every setting of a run; saved as ``config.json`` in the run directory."""

    # --- loop ---
    recipe: str | None = setting(None, "Start from a named recipe (see `cnnlab recipes`) or a .toml/.json settings "
                                       "file; options given on the command line override its settings.", group="loop")
    seed: int = setting(1, "Seeds the model's init and the shuffling (torch.manual_seed before the model is built).",
                        range=Range(*SEED_RANGE, integer=True, hint=" (the range torch.manual_seed takes; nothing "
                                                                    "else is seeded from it)"), group="loop")
    out: str | None = setting(None, "Run directory [default: runs/<timestamp>-<model>-<dataset>].", group="loop")
    # "running": accuracy of the epoch's own minibatch predictions (free; as Keras and Lightning
    # report it). "full": rescan the whole train set in eval mode after the epoch, as the
    # lecture notebook's compute_accuracy() does (one extra forward pass over the train set).
    train_eval: str = setting("running", "Train accuracy from the epoch's own minibatches (free), or a full "
                                         "eval-mode pass over the train set after each epoch, as the lecture "
                                         "notebook computes it.", choices=TRAIN_EVALS, group="loop")
    eval_batch_size: int = setting(512, "Batch size of forward-only passes (fastest on 2 CPU cores for the ConvNet); "
                                        "on the CPU halved while one layer's output for the batch passes 32 MiB "
                                        "(faster and leaner for large feature maps).",
                                   range=Range(1, integer=True), group="loop")
    tta: bool = setting(False, "Test-time augmentation: score the mean logits of each image and its 1-pixel "
                               "shifts (half weight), and of its mirror image for colour datasets.", group="loop")
    tta_margin: float | None = setting(None, "With --tta: augment only the unsure images, those whose top-1 and "
                                             "top-2 probabilities are closer than this (e.g. 0.5); the others keep "
                                             "their plain logits [default: every image].",
                                       range=Range(0, 1, "lo"), group="loop")
    limit_batches: int | None = setting(None, "Stop each epoch after N batches (quick smoke runs, like Lightning's).",
                                        range=Range(1, integer=True), group="loop")

    # --- data ---
    dataset: str = setting("mnist", "mnist, fashion-mnist, cifar10, digits (bundled, offline), or imagefolder "
                                    "(--data-dir DIR with DIR/train/<class>/*).", group="data")
    data_dir: str | None = setting(None, "Folder holding MNIST/raw [default: $CNNLAB_DATA, else ~/.cache/cnnlab/data].",
                                   resume=True, group="data")
    download: bool = setting(True, "Download missing data when a network exists.", resume=True, group="data")
    input_size: int | None = setting(None, "Resize the images once to this side [default: the dataset's].",
                                     range=Range(1, integer=True), group="data")
    in_channels: int | None = setting(None, "Repeat gray images to this many channels (3 for RGB weights).",
                                      range=Range(1, integer=True), group="data")
    val_fraction: float = setting(0.0, "Seeded validation split of train: per-epoch figure and model selection; "
                                       "test scored once at the end.", range=Range(0, 1, "hi"), group="data")
    normalize: bool | None = setting(None, "Per-channel mean/std after scaling [default: the dataset's recipe: "
                                           "cifar10 yes, MNIST no].", group="data")
    augment: bool = setting(False, "Random crop (and flip for colour images), batch-wise on tensors.", group="data")
    stream: bool = setting(False, "imagefolder: decode per batch in DataLoader workers (folders larger than RAM).",
                           group="data")
    workers: int = setting(2, "imagefolder: DataLoader workers that decode the images (per batch with --stream; "
                              "the first, uncached decode of a folder of 512 images or more without it).",
                           range=Range(0, integer=True), resume=True,
                           group="data")
    skip_bad_images: bool = setting(False, "imagefolder: skip and count unreadable files.", group="data")
    shuffle_labels: bool = setting(False, "Train on the training labels permuted with --seed (Zhang et al. 2017: "
                                          "the network memorises them); images, validation and test labels "
                                          "untouched. The twin run of `cnnlab trust --twin`.", group="data")

    # --- model ---
    model: str = setting("convnet", "Model name (see `cnnlab models`).", group="model")
    model_options: dict[str, Any] = setting(help="Model option, e.g. -o dropout2d=0.2 (repeatable).", factory=dict,
                                            flags=("--option", "-o"), metavar="KEY=VALUE", group="model")
    init: str = setting("default", "Weight init of every conv and linear layer, biases zeroed (the "
                                   "cnn-with-diff-init notebooks).", choices=INIT_SCHEMES, group="model")

    weights: str | None = setting(None, "Start from this state_dict (torchvision .pth or a cnnlab model.pt); "
                                        "a head of another size is replaced.", group="model")
    freeze: list[str] = setting(help="Keep this module's parameters fixed, e.g. --freeze features (repeatable).",
                                factory=list, metavar="MODULE", group="model")

    # --- optimization ---
    batch_size: int = setting(128, "Minibatch size.", range=Range(1, integer=True), group="optimization")
    optimizer: str = setting("sgd", "Optimizer.", choices=OPTIMIZERS, group="optimization")
    # per batch of 128, SGD without momentum, as in the lecture's notebook
    lr: float = setting(0.05, "Learning rate; `cnnlab train --lr find[:RULE]`: the rate a range test on these "
                              "settings suggests by RULE (steepest, minimum/10, valley: the default; see "
                              "`cnnlab lr-find`).", range=Range(0, FLOAT32_MAX, "both", text=(
        f"a positive number below {FLOAT32_MAX:.3g} (the largest float32)")), group="optimization")
    momentum: float = setting(0.0, "SGD momentum (the lecture uses none).", range=Range(0, 1, "hi"),
                              group="optimization")
    nesterov: bool = setting(False, "Nesterov momentum (SGD).", group="optimization")
    weight_decay: float = setting(0.0, "L2 weight decay (decoupled for adamw).", range=Range(0), group="optimization")
    label_smoothing: float = setting(0.0, "Label smoothing of the cross-entropy.", range=Range(0, 1, "hi"),
                                     group="optimization")
    clip_grad: float | None = setting(None, "Clip the global gradient norm to this value.",
                                      range=Range(0, open="lo"), group="optimization")
    ema_decay: float | None = setting(None, "Evaluate and save an exponential moving average of the weights, "
                                            "updated after every step with this decay (e.g. 0.999).",
                                     range=Range(0, 1, "both", hint=", e.g. 0.999"), group="optimization")
    lookahead_steps: int | None = setting(None, "Lookahead (Zhang et al. 2019): every N steps move slow weights "
                                                "--lookahead-alpha of the way to the fast ones and restart from them.",
                                         range=Range(1, integer=True), group="optimization")
    lookahead_alpha: float = setting(0.5, "Lookahead: step size of the slow weights.", range=Range(0, 1, "lo"),
                                     group="optimization")

    # --- schedule ---
    # the lecture's notebook: 10; a fraction (1.5) stops inside the last epoch, the schedule fitted to it
    epochs: float = setting(10, "Passes over the training set; a fraction such as 1.5 stops inside the last epoch.",
                            range=Range(0, 1e6, "both", text="a positive integer (or a fraction such as 1.5) below "
                                                             "1000000"), resume=True, group="schedule")
    schedule: str = setting("constant", "Learning-rate schedule, stepped every batch.", choices=SCHEDULES,
                            group="schedule")
    warmup_epochs: float = setting(0.0, "Linear warm-up from 0 (fractions of an epoch allowed).", range=Range(0),
                                   group="schedule")
    step_size: int = setting(30, "schedule step: epochs between decays.", range=Range(1, integer=True),
                             group="schedule")
    gamma: float = setting(0.1, "schedule step: decay factor.", range=Range(0, 1, "lo"), group="schedule")

    # --- system ---
    device: str = setting("auto", "auto picks CUDA when available.", choices=DEVICES, group="system")
    deterministic: bool = setting(True, "Deterministic algorithms (cuDNN too): same seed, same weights.",
                                  group="system")
    amp: bool = setting(False, "Autocast: bfloat16 on the CPU, float16 with a GradScaler on CUDA.", group="system")
    compile: bool = setting(False, "torch.compile the model for training (compile seconds reported apart in "
                                   "result.json); evaluation stays eager.", group="system")
    channels_last: bool | None = setting(None, "NHWC memory format [default: on for CPU, where oneDNN is faster "
                                               "with it; off on CUDA].", group="system")
    pool_before_relu: bool = setting(True, "Train with each max-pool moved before the ReLU feeding it: they commute, "
                                           "so the weights are the same bit for bit and the ReLU does a quarter of "
                                           "the work (torch.fx; a model fx cannot trace runs as written).",
                                     group="system")

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
        """One line for the first setting that cannot work (before any data is read). What depends on
        the dataset (--normalize, --augment, --stream) is checked by
        :func:`cnnlab.training.setup.check_data_settings`, which knows the datasets."""
        self.check_ranges()
        self._validate_names()

    def check_ranges(self) -> None:
        """Each numeric field against its ``range``: one message naming the option, its value and the range."""
        for f in dataclasses.fields(self):
            value, bounds = getattr(self, f.name), f.metadata.get("range")
            if bounds is not None and not (value is None and f.default is None):
                bounds.check(option_flag(f.name), value)

    def _validate_names(self) -> None:
        if self.init not in INIT_SCHEMES:
            raise UnknownNameError("init", self.init, INIT_SCHEMES)
        if self.schedule not in SCHEDULES:
            raise UnknownNameError("schedule", self.schedule, SCHEDULES)
        if self.nesterov and self.optimizer != "sgd":
            raise CnnlabError(f"--nesterov needs --optimizer sgd, got --optimizer {self.optimizer}")
        if self.nesterov and self.momentum <= 0:
            raise CnnlabError(f"--nesterov needs a --momentum above 0, got --momentum {self.momentum:g}")
        if self.train_eval not in TRAIN_EVALS:
            raise CnnlabError(f"--train-eval must be one of {', '.join(TRAIN_EVALS)}, got {self.train_eval!r}")
        if self.optimizer not in OPTIMIZERS:
            raise UnknownNameError("optimizer", self.optimizer, OPTIMIZERS)
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise CnnlabError(f"--device must be auto, cpu or cuda, got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def groups(cls) -> dict[str, list[str]]:
        """``{"data": ["dataset", "data_dir", ...], "model": [...], ...}``: the fields of each concern, in order."""
        grouped: dict[str, list[str]] = {name: [] for name in GROUPS}
        for f in dataclasses.fields(cls):
            grouped[f.metadata["group"]].append(f.name)
        return grouped

    def section(self, group: str) -> dict[str, Any]:
        """The settings of one concern, e.g. ``config.section("optimization")`` -> {"batch_size": 128, "lr": 0.05, ...}."""
        if group not in GROUPS:
            raise UnknownNameError("settings group", group, GROUPS)
        return {name: getattr(self, name) for name in self.groups()[group]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


# The options of ``cnnlab train`` that are not settings of the run (see cnnlab.cli.train), each with whether it
# may be given with --resume: output only, never the run's numbers.
LAUNCH_OPTIONS = {"quiet": True, "tensorboard": True, "overwrite": False, "nproc": False, "force_nproc": False}


def setting_field(name: str) -> dataclasses.Field:
    """The :class:`TrainConfig` field called ``name``: its default, and in its metadata its help, range and group."""
    return next(f for f in dataclasses.fields(TrainConfig) if f.name == name)


def option_flag(name: str) -> str:
    """A setting's flags: ``batch_size`` -> ``--batch-size``, ``model_options`` -> ``--option/-o``."""
    for f in dataclasses.fields(TrainConfig):
        if f.name == name and f.metadata.get("flags"):
            return "/".join(f.metadata["flags"])
    return "--" + name.replace("_", "-")


def resume_safe() -> tuple[str, ...]:
    """The settings and options that may be given with ``--resume`` (marked ``resume=True`` on their
    field, or in :data:`LAUNCH_OPTIONS`): where the data is, how long the run goes on, what it prints;
    none changes a number of the run, so a resumed run stays bitwise equal to one never stopped."""
    fields = [f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("resume")]
    return (*fields, *(name for name, safe in LAUNCH_OPTIONS.items() if safe))


class ResumeOptionError(CnnlabError, ValueError):
    """A setting given with ``--resume`` that the run would not take (see :func:`resume_safe`)."""
