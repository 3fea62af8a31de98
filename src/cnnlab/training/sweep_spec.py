"""The spec of ``cnnlab sweep SPEC.toml``: what is searched, over what, and how it is scored.

A spec is a TOML file::

    trials = 4                   # finished trials (complete or pruned) the sweep ends with
    metric = "val_acc"           # val_acc (default), test_acc, train_acc: maximized; train_loss: minimized
    sampler = "tpe"              # tpe (default), random, grid
    seed = 0                     # optional: the sampler's seed
    pruner = "median"            # median (default: per-epoch median rule) or none
    name = "digits-lr"           # optional: the study's name [default: the file's name]

    [base]                       # the settings every trial starts from: a recipe and/or settings
    recipe = "mnist-fast"        # optional: a shipped recipe or a .toml/.json settings file
    dataset = "digits"
    val_fraction = 0.2

    [space]                      # TrainConfig fields: a range or a list of choices each
    lr = { low = 1e-3, high = 0.3, log = true }
    batch_size = { choices = [64, 128] }
    epochs = { low = 1, high = 3, step = 1 }

Everything is checked before anything runs (:func:`load_spec`): one line naming the key or field
for an unknown name, a wrong type, an empty range, a value outside the setting's range. This
module does not import optuna.
"""

from __future__ import annotations

import dataclasses
import json
import difflib
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.paths import check_file
from cnnlab.training.config import TrainConfig, setting_field
from cnnlab.training.recipes import _type_ok, load_recipe
from cnnlab.training.setup import check_data_settings

__all__ = ["SweepSpec", "Dimension", "load_spec", "parse_spec", "METRICS", "SAMPLERS", "PRUNERS"]

METRICS = {"val_acc": "maximize", "test_acc": "maximize", "train_acc": "maximize", "train_loss": "minimize"}
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "none")
TOP_KEYS = ("name", "trials", "metric", "sampler", "seed", "pruner", "description", "base", "space")
DIM_KEYS = ("low", "high", "step", "log", "choices")
NOT_SEARCHED = {"out": "each trial's run directory is the sweep's", "recipe": "name it in [base]",
                "model_options": "a table, not a value", "freeze": "a list, not a value",
                "data_dir": "where the data is, not a setting of the model", "device": "the machine, not the model"}
MAX_GRID = 100_000


@dataclass(frozen=True)
class Dimension:
    """One searched setting: ``choices``, or a ``low``..``high`` range (``step``, ``log``) of ints or floats."""

    name: str
    kind: str  # "int", "float" or "choice"
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def grid(self) -> list[Any]:
        """The values a grid search visits: the choices, or ``low, low + step, ... <= high``."""
        if self.kind == "choice":
            return list(self.choices)
        assert self.low is not None and self.high is not None
        step = self.step if self.step is not None else 1
        count = math.floor((self.high - self.low) / step + 1e-9) + 1
        values = [self.low + k * step for k in range(count)]
        return [int(v) for v in values] if self.kind == "int" else [round(v, 12) for v in values]

    def describe(self) -> str:
        if self.kind == "choice":
            return "{" + ", ".join(map(str, self.choices)) + "}"
        extra = (f" step {self.step:g}" if self.step is not None else "") + (" log" if self.log else "")
        return f"[{self.low:g}, {self.high:g}]{extra}"


@dataclass(frozen=True)
class SweepSpec:
    path: Path
    name: str
    trials: int
    metric: str
    sampler: str
    pruner: str
    base: dict[str, Any]  # the settings as written in [base] (with its recipe, if any)
    space: tuple[Dimension, ...]
    seed: int | None = None
    description: str = ""
    settings: dict[str, Any] = field(default_factory=dict)  # [base] resolved: the recipe's settings, then [base]

    @property
    def direction(self) -> str:
        return METRICS[self.metric]

    def config(self, params: dict[str, Any]) -> TrainConfig:
        """The settings of one trial: the resolved base, then the trial's values."""
        return TrainConfig.from_dict({**self.settings, **params})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "trials": self.trials, "metric": self.metric, "direction": self.direction,
                "sampler": self.sampler, "pruner": self.pruner, "seed": self.seed, "base": self.base,
                "space": {d.name: dataclasses.asdict(d) for d in self.space}}


def _fail(where: str, message: str) -> CnnlabError:
    return CnnlabError(f"{where}: {message}")


def _unknown(where: str, key: str, known: list[str], what: str, noun: str = "setting") -> CnnlabError:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else f"; {what}"
    return _fail(where, f"unknown {noun} {key!r}{hint}")


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check a spec file (see the module's doc); one line naming what is wrong."""
    path = check_file(Path(path), "SPEC")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _fail(str(path), f"cannot read it as TOML ({str(exc).splitlines()[0]})") from None
    return parse_spec(doc, path)


def parse_spec(doc: dict[str, Any], path: Path) -> SweepSpec:
    where = str(path)
    for key in doc:
        if key not in TOP_KEYS:
            raise _unknown(where, key, list(TOP_KEYS), f"a spec takes {', '.join(TOP_KEYS)}", "key")
    trials = doc.get("trials", 20)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise _fail(where, f"trials must be a positive integer, got {trials!r}")
    metric, sampler, pruner = (doc.get(k, d) for k, d in (("metric", "val_acc"), ("sampler", "tpe"),
                                                           ("pruner", "median")))
    for key, value, allowed in (("metric", metric, tuple(METRICS)), ("sampler", sampler, SAMPLERS),
                                ("pruner", pruner, PRUNERS)):
        if value not in allowed:
            raise _fail(where, f"{key} must be one of {', '.join(allowed)}, got {value!r}")
    seed = doc.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32):
        raise _fail(where, f"seed must be an integer in [0, 2**32), got {seed!r}")
    name, description = doc.get("name", path.stem), doc.get("description", "")
    if not isinstance(name, str) or not name.strip() or not isinstance(description, str):
        raise _fail(where, f"name and description must be text, got name = {name!r}")
    base, space = _table(doc, "base", where), _table(doc, "space", where)
    if not space:
        raise _fail(where, "[space] is empty: name at least one setting to search, e.g. lr = { low = 1e-3, "
                           "high = 0.3, log = true }")
    settings = _resolve_base(base, where)
    dims = tuple(_dimension(name_, spec_, where) for name_, spec_ in space.items())
    spec = SweepSpec(path, name.strip(), trials, metric, sampler, pruner, base, dims, seed, description, settings)
    _check_combinations(spec, where)
    if sampler == "grid":
        _check_grid(spec, where)
    return spec


def _table(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise _fail(where, f"{key} must be a table ([{key}] with KEY = VALUE lines), got {value!r}")
    return value


def _fields() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _resolve_base(base: dict[str, Any], where: str) -> dict[str, Any]:
    """[base]'s settings on top of its recipe's (if it names one), each checked against TrainConfig."""
    hints, settings = _fields(), {}
    recipe = base.get("recipe")
    if recipe is not None:
        if not isinstance(recipe, str):
            raise _fail(where, f"[base] recipe must be a recipe's name or a file, got {recipe!r}")
        settings.update(load_recipe(recipe).settings)
    for key, value in base.items():
        if key == "recipe":
            continue
        if key not in hints or key == "out":
            raise _unknown(f"{where}: [base]", key, [n for n in hints if n != "out"],
                           "see `cnnlab train --help` for the settings" if key != "out" else "use --out")
        if not _type_ok(value, hints[key]):
            raise _fail(where, f"[base] {key} takes {_kind(hints[key])}, got {value!r}")
        settings[key] = value
    return settings


def _kind(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _base_type(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if type(None) in typing.get_args(annotation) and len(args) == 1 else annotation


def _dimension(name: str, spec: Any, where: str) -> Dimension:
    hints = _fields()
    if name not in hints:
        raise _unknown(f"{where}: [space]", name, list(hints), "see `cnnlab train --help` for the settings")
    if name in NOT_SEARCHED or typing.get_origin(_base_type(hints[name])) in (list, dict):
        raise _fail(where, f"[space] {name} cannot be searched ({NOT_SEARCHED.get(name, 'not a single value')})")
    if not isinstance(spec, dict):
        raise _fail(where, f"[space] {name} takes a table: {{ low = ..., high = ... }} or {{ choices = [...] }}, "
                           f"got {spec!r}")
    for key in spec:
        if key not in DIM_KEYS:
            raise _unknown(f"{where}: [space] {name}", key, list(DIM_KEYS), f"a range takes {', '.join(DIM_KEYS)}",
                           "key")
    kind = _base_type(hints[name])
    if "choices" in spec:
        return _choice_dimension(name, spec, kind, where)
    return _range_dimension(name, spec, kind, where)


def _choice_dimension(name: str, spec: dict[str, Any], kind: Any, where: str) -> Dimension:
    choices = spec["choices"]
    if set(spec) != {"choices"}:
        raise _fail(where, f"[space] {name}: give choices, or low and high, not both")
    if not isinstance(choices, list) or not choices:
        raise _fail(where, f"[space] {name}: choices must be a non-empty list, got {choices!r}")
    if len(set(map(repr, choices))) != len(choices):
        raise _fail(where, f"[space] {name}: choices has a value twice ({choices!r})")
    field_ = setting_field(name)
    for value in choices:
        if not _type_ok(value, kind):
            raise _fail(where, f"[space] {name} takes {_kind(kind)} values, got {value!r} in choices")
        allowed = field_.metadata.get("choices")
        if allowed and value not in allowed:
            raise _fail(where, f"[space] {name}: {value!r} is not one of {', '.join(allowed)}")
        if field_.metadata.get("range") is not None:
            field_.metadata["range"].check(f"{where}: [space] {name} choice", value)
    return Dimension(name, "choice", choices=tuple(choices))


def _range_dimension(name: str, spec: dict[str, Any], kind: Any, where: str) -> Dimension:
    if kind not in (int, float):
        raise _fail(where, f"[space] {name} takes {_kind(kind)} values: give choices = [...], not a range")
    if "low" not in spec or "high" not in spec:
        raise _fail(where, f"[space] {name}: give low and high (or choices = [...])")
    low, high, step, log = spec["low"], spec["high"], spec.get("step"), spec.get("log", False)
    for key, value in (("low", low), ("high", high)) + ((("step", step),) if step is not None else ()):
        if not _type_ok(value, kind):
            raise _fail(where, f"[space] {name} takes {_kind(kind)} values, got {key} = {value!r}")
    if not isinstance(log, bool):
        raise _fail(where, f"[space] {name}: log must be true or false, got {log!r}")
    if not low < high:
        raise _fail(where, f"[space] {name}: the range is empty: low ({low!r}) must be below high ({high!r})")
    if step is not None and not step > 0:
        raise _fail(where, f"[space] {name}: step must be above 0, got {step!r}")
    if log and low <= 0:
        raise _fail(where, f"[space] {name}: log = true needs low above 0, got {low!r}")
    if log and step is not None and not (kind is int and step == 1):
        raise _fail(where, f"[space] {name}: a log range takes no step")
    bounds = setting_field(name).metadata.get("range")
    if bounds is not None:
        bounds.check(f"{where}: [space] {name}.low", low)
        bounds.check(f"{where}: [space] {name}.high", high)
    return Dimension(name, kind.__name__, float(low) if kind is float else low,
                     float(high) if kind is float else high, step, log)


def _check_combinations(spec: SweepSpec, where: str) -> None:
    """Every choice and both ends of every range, each on the base: the settings must work together
    (``--nesterov`` needs sgd ...). What no single value decides (two dimensions together) fails its trial."""
    try:
        spec.config({}).validate()
    except CnnlabError as exc:
        raise _fail(where, f"[base]: {exc}") from None
    for dim in spec.space:
        for value in dim.choices if dim.kind == "choice" else (dim.low, dim.high):
            config = spec.config({dim.name: value})
            try:
                config.validate()
                check_data_settings(config)
            except CnnlabError as exc:
                raise _fail(where, f"[space] {dim.name} = {json.dumps(value)}: {exc}") from None
    val_fraction = spec.config({}).val_fraction
    searched = next((d for d in spec.space if d.name == "val_fraction"), None)
    if spec.metric == "val_acc" and val_fraction <= 0 and searched is None:
        raise _fail(where, "metric val_acc needs a validation split: set val_fraction (e.g. 0.2) in [base], "
                           "or choose metric = \"test_acc\"")


def _check_grid(spec: SweepSpec, where: str) -> None:
    size = 1
    for dim in spec.space:
        if dim.kind != "choice" and (dim.log or (dim.kind == "float" and dim.step is None)):
            raise _fail(where, f"[space] {dim.name}: sampler grid needs choices or a step (a grid has points)")
        size *= len(dim.grid())
        if size > MAX_GRID:
            raise _fail(where, f"sampler grid: the grid has more than {MAX_GRID:,} points; narrow [space]")
    if spec.trials > size:
        raise _fail(where, f"trials: the grid has {size} points, fewer than trials = {spec.trials}; "
                           f"set trials = {size} or widen [space]")
