"""Every option that more than one command takes, declared once: one decorator per option, with one
default and one help text, and the click types they share (a seed, a positive integer, a CxHxW
shape, a byte size).

Two kinds of declaration exist, and no third:

* a command's option: here (:data:`SHARED`), or in the command's module when only it has it;
* a run's setting: a field of :class:`cnnlab.training.config.TrainConfig`, from which ``cnnlab
  train`` and ``cnnlab experiment inits`` generate theirs (:class:`SettingOption`). ``--device``
  takes its default and help from that field, so it reads the same everywhere; a run's ``--seed``
  defaults to 1 (the lecture's recipe), a picture's or a benchmark's to 0.

Names that several commands use with a different meaning or default on purpose are listed in
:data:`VARIANTS` with the reason; a test keeps every other repeated name in :data:`SHARED`.

Nothing here imports torch: a type that needs the library imports it when it converts a value.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import click

from cnnlab.cli._common import parse_options
from cnnlab.errors import CnnlabError
from cnnlab.parsing import MAX_INT, parse_bytes, parse_shape
from cnnlab.training.config import DEVICES as DEVICE_NAMES
from cnnlab.training.config import SEED_RANGE, Range, setting_field

__all__ = ["SettingOption", "RangedInt", "LearningRateOrFind", "LR_OR_FIND", "SEED", "POSITIVE", "NON_NEGATIVE",
           "SHAPE", "BYTES", "DEVICES", "FORMATS", "PATH", "SHARED", "VARIANTS", "flag_of", "device_option", "seed_option",
           "format_option", "data_dir_option", "dataset_option", "weights_option", "model_option",
           "num_classes_option", "in_channels_option", "input_size_option", "index_option", "convert_option",
           "optimize_option", "overwrite_option", "methods_option"]


class SettingOption(click.Option):
    """An option generated from a :class:`TrainConfig` field: declared there (default, help, range)."""


def flag_of(param: click.Parameter | None) -> str:
    """The option's long flag (``--seed``), as messages name it."""
    if param is None:
        return "the value"
    opts = getattr(param, "opts", None) or [param.name or "value"]
    return next((o for o in opts if o.startswith("--")), opts[0])


class RangedInt(click.IntRange):
    """:class:`click.IntRange` whose refusal is cnnlab's one line, the words ``TrainConfig`` uses:
    ``--seed must be an integer in [a, b] (...), got v``; ``help_range``: how ``--help`` shows it."""

    def __init__(self, bounds: Range, help_range: str | None = None):
        super().__init__(min=bounds.lo, max=bounds.hi)
        self.bounds, self.help_range = bounds, help_range

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.INT.convert(value, param, ctx)
        self.bounds.check(flag_of(param), number)  # a CnnlabError: one line, exit 2, before any work
        if self.bounds.hi is None and abs(number) > MAX_INT:  # 10**30 repeats or pixels: torch cannot hold it (or it would never end)
            raise CnnlabError(f"{flag_of(param)} must be {self.bounds.describe()} at most 2**63-1, got {number}")
        return number

    def _describe_range(self) -> str:
        return self.help_range if self.help_range is not None else super()._describe_range()


class _Checked(click.ParamType):
    """Text checked by a library parser when it is given (the parser's message names the option);
    ``keep_text``: the command receives the text as typed, else the parsed value."""

    def __init__(self, name: str, parser: Callable[[str], Any], keep_text: bool):
        self.name, self.parser, self.keep_text = name, parser, keep_text

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return self.name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        parsed = self.parser(value)
        return value if self.keep_text else parsed


class LearningRateOrFind(click.types.FloatParamType):
    """``cnnlab train --lr``: a learning rate, or ``find[:RULE]`` (the text ``find:RULE`` is passed on,
    the rule checked): the rate a range test's RULE suggests (``cnnlab lr-find``; valley by default)."""

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "FLOAT|find[:RULE]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)  # the default
        text = str(value).strip()
        if text.lower() == "find" or text.lower().startswith("find:"):
            from cnnlab.training.lr_rules import DEFAULT_RULE, check_rule  # numpy: only when asked for

            return "find:" + check_rule(text.partition(":")[2].strip() or DEFAULT_RULE)
        try:
            return float(text)
        except ValueError:
            raise CnnlabError(f"{flag_of(param)} takes a learning rate such as 0.05, or find[:RULE] to use the one "
                              f"`cnnlab lr-find` suggests, got {text!r}") from None


SEED = RangedInt(Range(*SEED_RANGE, integer=True, hint=" (the range torch.manual_seed takes)"),
                 help_range="-2**63<=x<=2**64-1")
POSITIVE = RangedInt(Range(1, integer=True))
NON_NEGATIVE = RangedInt(Range(0, integer=True))
SHAPE = _Checked("CxHxW", parse_shape, keep_text=True)  # "1x28x28", checked before the model is built
BYTES = _Checked("SIZE", parse_bytes, keep_text=False)  # "8GiB" -> 8589934592
DEVICES = click.Choice(list(DEVICE_NAMES))
FORMATS = click.Choice(["table", "json"])
LR_OR_FIND = LearningRateOrFind()
PATH = click.Path(path_type=Path)


def _setting(name: str) -> dataclasses.Field:
    return setting_field(name)


def _declare(*decls: str, **attrs: Any) -> Callable[[Callable], Callable]:
    return click.option(*decls, **attrs)


# --- the shared options: one declaration each -------------------------------------------------------------------

device_option = _declare("--device", type=DEVICES, default=_setting("device").default, show_default=True,
                         help=_setting("device").metadata["help"])
seed_option = _declare("--seed", type=SEED, default=0, show_default=True,
                       help="Seeds the random values drawn (torch.manual_seed's range).")
format_option = _declare("--format", "format", type=FORMATS, default="table", show_default=True,
                         help="table, or json for programs.")
data_dir_option = _declare("--data-dir", type=click.Path(), default=None,
                           help="Where the dataset is now, if not where the run found it (with a model name: "
                                "where --dataset is).")
dataset_option = _declare("--dataset", default=None,
                          help="With a model name: the dataset its test images (--index, the report) come from.")
weights_option = _declare("--weights", type=PATH, default=None,
                          help="With a model name: a state_dict file (torchvision .pth or cnnlab model.pt).")
model_option = _declare("--option", "-o", "option", multiple=True, metavar="KEY=VALUE",
                        callback=lambda ctx, param, value: parse_options(value),
                        help="A model option of a model name, e.g. -o dropout2d=0.2 (repeatable).")
num_classes_option = _declare("--num-classes", type=POSITIVE, default=None,
                              help="With a model name: its output classes [default: the model's, or --dataset's].")
in_channels_option = _declare("--in-channels", type=POSITIVE, default=None,
                              help="With a model name: its input channels [default: the model's].")
input_size_option = _declare("--input-size", type=POSITIVE, default=None,
                             help="With a model name: its input side in pixels [default: the model's].")
index_option = _declare("--index", type=int, default=None,
                        help="Test image N of the run's dataset (or of --dataset) instead of an IMAGE file "
                             "[default: 0].")
convert_option = _declare("--convert", is_flag=True,
                          help="Convert an IMAGE whose channel count differs from the model's.")
optimize_option = _declare("--optimize", "optimize", metavar="MODE", default=None,
                           help="Run the model through cnnlab.optimize: eager, channels_last, compile, bf16, fp16, "
                                "onnxruntime, int8 (calibrated on 256 training images) or auto.")
methods_option = _declare("--methods", default="gradcam,saliency,ig", show_default=True,
                          help="Comma-separated: gradcam, saliency (vanilla gradient), ig (integrated gradients).")
overwrite_option = _declare("--overwrite", is_flag=True,
                            help="Allow writing over what --out names (a file, or a non-empty folder).")

SHARED: dict[str, Callable[[Callable], Callable]] = {
    "device": device_option, "seed": seed_option, "data_dir": data_dir_option, "dataset": dataset_option,
    "weights": weights_option, "option": model_option, "num_classes": num_classes_option,
    "in_channels": in_channels_option, "input_size": input_size_option, "index": index_option,
    "convert": convert_option, "optimize": optimize_option, "overwrite": overwrite_option, "methods": methods_option,
}

# names several commands use on purpose with their own default or meaning (each declared by its command)
VARIANTS: dict[str, str] = {
    "format": "table/json (format_option) for most; analyze adds csv; export's --format is the file format (onnx)",
    "out": "each command writes its own thing (a PNG, a folder, a GIF, a run directory) with its own default",
    "input": "summary and analyze take a CxHxW shape (SHAPE); animate and arith one side in pixels",
    "layer": "each picture has its own default layer",
    "images": "show rf: random images the effective receptive field averages; report: test images shown",
    "batch_sizes": "each benchmark has its own default sizes",
    "repeats": "bench infer: interleaved rounds (7); analyze: timed runs per batch size (10, --quick 3)",
    "runs": "bench conv: timed runs per case (an integer); analyze: run directories to read accuracies from",
    "html": "analyze writes the analysis as a page, compare the comparison: each its own page",
    "quick": "each benchmark has its own quick settings, said in its help",
    "kernel": "arith and animate conv/pool require it; animate xcorr draws the slide's 3",
    "stride": "a convolution's default is 1, a pooling window's its side (as nn.MaxPool2d)",
    "padding": "a convolution takes an integer, same or valid; pooling and xcorr an integer",
    "dilation": "arith and animate: the same meaning, arith adds the short flag -d",
    "ceil_mode": "arith and animate pool: the same meaning, each says it in its words",
    "resume": "train: a run directory to continue from its checkpoint; sweep: a sweep folder to continue",
}
