"""Errors that are the user's to fix.

Each carries one line saying what was wrong and what to do. The CLI prints it as
``cnnlab: error: <message>`` and exits with code 2, never with a traceback.
"""

from __future__ import annotations

import difflib
from typing import Iterable


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
