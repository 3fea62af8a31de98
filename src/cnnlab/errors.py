"""Errors that are the user's to fix.

Each carries one line saying what was wrong and what to do. The CLI prints it as
``cnnlab: error: <message>`` and exits with code 2, never with a traceback.
"""

from __future__ import annotations

import difflib
import operator
from typing import Any, Iterable


class CnnlabError(Exception):
    """A mistake the user can fix; ``str(err)`` is the one-line message."""

    exit_code = 2


class UnknownNameError(CnnlabError, ValueError):
    """An unknown model, dataset, optimizer ... name; suggests the closest known ones."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"choose one of: {', '.join(known)}"
        super().__init__(f"unknown {kind} {name!r}; {hint}")
        self.name = name
        self.close = close


class DataNotFoundError(CnnlabError, FileNotFoundError):
    """The dataset's files are not where we looked and could not be downloaded."""


class RunDirError(CnnlabError):
    """A run directory is missing, incomplete, or would be overwritten."""


class ShapeError(CnnlabError, ValueError):
    """An input size that an architecture cannot take (a feature map would vanish)."""


class CnnlabValueError(CnnlabError, ValueError):
    """A Python API argument with the right type but a wrong value."""


class CnnlabTypeError(CnnlabError, TypeError):
    """A Python API argument of the wrong type (a tuple where a tensor goes, ...)."""


class PathError(CnnlabError, OSError):
    """A path the user gave that cannot be used as it is: missing, a folder where a file goes (or
    the reverse), a symbolic-link loop, no permission, an ``--out`` of the wrong kind."""


def _is_int(value: Any) -> bool:
    """An integer (int, numpy or 0-d torch integer), not a bool."""
    if isinstance(value, bool):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def check_shape(value: Any, what: str = "input_shape", ndims: Iterable[int] | None = (3,)) -> tuple[int, ...]:
    """A shape (or list of sizes) argument of the Python API as a tuple of positive ints with one of
    ``ndims`` entries (e.g. (C, H, W); None: any number but none); else a :class:`CnnlabTypeError`
    or :class:`CnnlabValueError` in one sentence."""
    ndims = tuple(ndims) if ndims is not None else None
    example = "(1, 8)" if ndims is None else "(1, 28, 28)" if 3 in ndims else f"({', '.join(['8'] * ndims[0])})"
    count = "" if ndims is None else " of " + " or ".join(map(str, ndims))
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise CnnlabTypeError(f"{what} must be a tuple{count} positive integers such as {example}, got {shown(value)}")
    dims = tuple(value)
    if not dims or (ndims is not None and len(dims) not in ndims) or not all(_is_int(d) for d in dims):
        raise CnnlabValueError(f"{what} must be a tuple{count} positive integers such as {example}, got {dims!r}")
    if min(dims) < 1:
        raise CnnlabValueError(f"{what} must be positive integers such as {example}, got {dims!r}")
    return tuple(operator.index(d) for d in dims)


def check_type(value: Any, types: type | tuple[type, ...], what: str, wanted: str) -> Any:
    """``value`` if it is an instance of ``types``; else a :class:`CnnlabTypeError` saying ``what``
    must be ``wanted`` (e.g. ``"an nn.Module"``) and what it got."""
    if isinstance(value, types) and not (isinstance(value, bool) and types in (int, (int,))):
        return value
    raise CnnlabTypeError(f"{what} must be {wanted}, got {shown(value)}")


def shown(value: Any) -> str:
    """A value as a message shows it: ``'abc'``, ``5``, ``None``, or ``a Tensor`` (never a multi-line repr)."""
    if isinstance(value, (str, bytes, int, float, type(None))) and len(repr(value)) <= 80:
        return repr(value)
    return f"a {type(value).__name__}"
