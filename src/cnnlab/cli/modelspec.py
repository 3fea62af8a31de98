"""Models named on the command line: a registry name, or a Python file of the user's own
(``path/to/file.py:ClassName``); ``cnnlab summary`` as one call (:func:`run_summary`) and the
rows of ``cnnlab models`` (:func:`zoo_rows`). Shapes, lists and sizes as typed are read by
:mod:`cnnlab.parsing`.

This module imports torch and the library at its top: the commands import it when they run
(``cnnlab --help`` never loads it).

A model file is *executed* (imported with :mod:`importlib`, its folder first on ``sys.path`` so
it can import its neighbours): it is the user's own code, run as ``python file.py`` would run it.
The class is built with no arguments, as ``ConvNet()``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

import torch.nn as nn

from cnnlab.analysis.shapes import MAX_SIDE, probe, square_input_search
from cnnlab.analysis.training import fit_batch_size
from cnnlab.errors import CnnlabError
from cnnlab.models import get_model_info, list_models
from cnnlab.parsing import parse_bytes, parse_shape
from cnnlab.paths import check_file
from cnnlab.summary import summarize, summarize_model

__all__ = ["is_model_file", "load_model_file", "guess_input_shape", "run_summary", "zoo_rows"]


def is_model_file(spec: str) -> bool:
    """``file.py`` or ``file.py:ClassName`` (a registry name never contains ``.py``)."""
    return spec.partition(":")[0].endswith(".py")


def _import(path: Path):
    name = f"cnnlab_user_{path.stem}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except SystemExit as exc:  # sys.exit() / exit() at import: the file ran as a script
        sys.modules.pop(name, None)
        raise CnnlabError(f"importing {path} ended the program ({_exit_call(exc)} at import); a model file must "
                          f"define its class without exiting: guard script code with if __name__ == '__main__':") \
            from None
    except Exception as exc:  # noqa: BLE001 -- the user's file: one line, not a traceback
        sys.modules.pop(name, None)
        where = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) and exc.lineno else ""
        raise CnnlabError(f"importing {path} failed{where}: {_first_line(exc)}") from None
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"


def _exit_call(exc: SystemExit) -> str:
    return f"sys.exit({exc.code!r})" if exc.code is not None else "sys.exit()"


def load_model_file(spec: str) -> tuple[Any, str]:
    """Import ``path/to/file.py[:ClassName]`` (executing it) and build the class with no arguments.
    Without ``:ClassName`` the file must define exactly one ``nn.Module`` subclass. Returns (model, class name)."""
    file, _, class_name = spec.partition(":")
    path = check_file(file, "model file")
    module = _import(path)
    classes = {k: v for k, v in vars(module).items()
               if isinstance(v, type) and issubclass(v, nn.Module) and v.__module__ == module.__name__}
    if not class_name:
        if len(classes) != 1:
            found = ", ".join(sorted(classes)) or "none"
            raise CnnlabError(f"{file} defines {len(classes)} nn.Module classes ({found}); name one: {file}:ClassName")
        class_name = next(iter(classes))
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        found = ", ".join(sorted(classes)) or "none"
        raise CnnlabError(f"{file} has no nn.Module class {class_name!r}; its nn.Module classes: {found}")
    return _build(cls, file), class_name


def _build(cls, file: str):
    required = [p.name for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
                if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if required:
        raise CnnlabError(f"{cls.__name__}() in {file} needs arguments ({', '.join(required)}); cnnlab builds "
                          f"it with none: give them default values")
    try:
        return cls()
    except SystemExit as exc:
        raise CnnlabError(f"{cls.__name__}() in {file} ended the program ({_exit_call(exc)}); a model's "
                          f"__init__ must not exit") from None
    except Exception as exc:  # noqa: BLE001
        raise CnnlabError(f"{cls.__name__}() in {file} failed: {_first_line(exc)}") from None


def guess_input_shape(model) -> tuple[tuple[int, ...], str]:
    """An input for a model that names none: the first layer's channels (or features) and, for
    images, 28 px for one channel (MNIST) and 32 px otherwise (CIFAR), or the smallest square
    input that fits where those do not. Returns (shape, how it was chosen)."""
    first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
    if isinstance(first, nn.Linear):
        return (first.in_features,), f"the first layer takes {first.in_features} features"
    c = first.in_channels if first is not None else 3
    side = 28 if c == 1 else 32
    if probe(model, (c, side, side)) is None:
        return (c, side, side), f"guessed from the first layer's {c} channel(s); give --input CxHxW"
    smallest, capped = square_input_search(model, c)
    if smallest is None:
        why = f"no square input up to {MAX_SIDE} px (the search's limit) fits" if capped else "no square input fits"
        return (c, side, side), f"guessed, {why}; give --input CxHxW"
    return (c, smallest, smallest), "the smallest square input that fits"


def run_summary(model: str, *, input: str | None = None, num_classes: int | None = None,
                options: dict[str, Any] | None = None, train: bool = False, measure: bool = False,
                fit_memory: str | None = None, eval: bool = False, batch_size: int = 1,
                settings: Any = None):
    """``cnnlab summary``: a registry model or ``file.py:Class``, traced (and costed for
    training, measured, or fitted to a memory budget) -- every argument checked first."""
    if eval and fit_memory is None:
        raise CnnlabError("--eval goes with --fit-memory (the largest batch for inference)")
    budget = parse_bytes(fit_memory) if fit_memory is not None else None
    if settings is not None:
        settings.check()
    train_kw = dict(train=train or measure, measure=measure, batch_size=batch_size, settings=settings)
    if is_model_file(model):
        if num_classes is not None or options:
            raise CnnlabError("--num-classes and -o apply to registry models; a model file builds its class as it is")
        net, name = load_model_file(model)
        shape, note = (parse_shape(input), None) if input else guess_input_shape(net)
        result = summarize(net, shape, name=name, **train_kw)
        result.note = note
    else:
        shape = parse_shape(input) if input else None
        result = summarize_model(model, shape, num_classes=num_classes, **train_kw, **(options or {}))
    if budget is not None:
        result.fit = fit_batch_size(result.module, result.input_shape, budget, settings, train=not eval)
    return result


def zoo_rows() -> list[dict[str, Any]]:
    """One row per registered model at its default input: family, input, parameters, MACs, paper."""
    rows = []
    for name in list_models():
        info = get_model_info(name)
        s = summarize_model(name)
        rows.append({"name": name, "family": info.family, "input": "x".join(map(str, info.input_shape)),
                     "params": s.total_params, "macs": s.total_macs, "paper": info.paper})
    return rows
