"""Named training recipes: settings files shipped with cnnlab, as timm ships its hparams files.

A recipe is a TOML (or JSON) file of :class:`~cnnlab.training.config.TrainConfig` settings, plus
a ``description`` and, optionally, a ``[measured]`` table of what it reached where (documentation
only). ``cnnlab recipes`` lists the shipped ones (the ``*.toml`` files beside this module);
``cnnlab train --recipe NAME`` (or ``--recipe my.toml`` / ``my.json``) starts from one, and every
option given on the command line overrides its value. In Python::

    from cnnlab.training import train
    from cnnlab.training.recipes import recipe_config
    train(recipe_config("mnist-fast", {"seed": 3}))

This module imports no torch: listing recipes is instant.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from cnnlab.errors import CnnlabError, PathError, UnknownNameError
from cnnlab.paths import check_file
from cnnlab.training.config import TrainConfig

__all__ = ["RECIPE_DIR", "Recipe", "list_recipes", "recipe_names", "load_recipe", "recipe_config"]

RECIPE_DIR = Path(__file__).resolve().parent
SUFFIXES = (".toml", ".json")
META_KEYS = ("description", "measured")  # not settings: what the recipe is and what it reached
NOT_IN_RECIPES = ("recipe",)  # a recipe does not name another one


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path
    description: str
    settings: dict[str, Any]
    measured: dict[str, Any] = field(default_factory=dict)


def recipe_names() -> list[str]:
    """The shipped recipes' names (their file names without the suffix), sorted."""
    return sorted(p.stem for p in RECIPE_DIR.iterdir() if p.suffix in SUFFIXES)


def list_recipes() -> list[Recipe]:
    return [load_recipe(name) for name in recipe_names()]


def _locate(recipe: str) -> Path:
    """A shipped recipe's file, or the user's own .toml/.json file."""
    given = Path(recipe).expanduser()
    if given.suffix in SUFFIXES or len(given.parts) > 1:
        try:
            return check_file(given, "--recipe")
        except PathError as exc:
            raise PathError(f"{exc} (a recipe is a shipped name or a .toml or .json file)") from None
    for suffix in SUFFIXES:
        if (RECIPE_DIR / f"{recipe}{suffix}").is_file():
            return RECIPE_DIR / f"{recipe}{suffix}"
    raise UnknownNameError("recipe", recipe, recipe_names())


def _parse(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        doc = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, TOMLDecodeError are ValueErrors
        raise CnnlabError(f"--recipe {path}: cannot read it ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise CnnlabError(f"--recipe {path}: the file must hold a table of settings (KEY = VALUE)")
    return doc


def _type_ok(value: Any, annotation: Any) -> bool:
    """Whether a file's value fits a TrainConfig field (None only where the field allows it)."""
    args = typing.get_args(annotation)
    if type(None) in args:
        if value is None:
            return True
        annotation = next(a for a in args if a is not type(None))
    origin = typing.get_origin(annotation) or annotation
    if origin is bool:
        return isinstance(value, bool)
    if origin is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, origin)


def _check_settings(path: Path, settings: dict[str, Any]) -> None:
    hints = typing.get_type_hints(TrainConfig)
    names = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in NOT_IN_RECIPES]
    for key, value in settings.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else "; see `cnnlab train --help` for the settings"
            raise CnnlabError(f"--recipe {path}: unknown setting {key!r}{hint}")
        if not _type_ok(value, hints[key]):
            kind = getattr(hints[key], "__name__", None) or str(hints[key]).replace("typing.", "")
            raise CnnlabError(f"--recipe {path}: {key} takes {kind}, got {value!r}")


def load_recipe(recipe: str) -> Recipe:
    """A shipped recipe by name, or a .toml/.json file; its settings are checked against TrainConfig."""
    path = _locate(recipe)
    doc = _parse(path)
    settings = {k: v for k, v in doc.items() if k not in META_KEYS}
    _check_settings(path, settings)
    description, measured = doc.get("description", ""), doc.get("measured", {})
    if not isinstance(description, str) or not isinstance(measured, dict):
        raise CnnlabError(f"--recipe {path}: description must be text and [measured] a table")
    return Recipe(path.stem if path.parent == RECIPE_DIR else str(recipe), path, description, settings, measured)


def recipe_config(recipe: str, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """The recipe's settings, then ``overrides`` on top (the options a user typed), as a TrainConfig
    whose ``recipe`` field records where they came from."""
    loaded = load_recipe(recipe)
    values = {**loaded.settings, **dict(overrides or {}), "recipe": loaded.name}
    return TrainConfig(**values)
