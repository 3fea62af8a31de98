"""Paths the user typed, checked before any work with one-line messages.

Reading (:func:`check_file`, :func:`check_folder`): a path that does not exist, is a folder where
a file goes (or a file where a folder goes), is a symbolic link that loops or points nowhere, sits
under a file, cannot be read, or is not a regular file (a pipe, a device) -- each says so, naming
the flag or argument it came from (``--recipe x.toml is a folder, not a file``).

Writing (:func:`check_output`): an ``--out`` is checked against what the command writes -- a file
with one of its suffixes (a name without a suffix gets the default one: the path returned is the
file that will exist, the one to print) or a folder (a name ending in a file suffix such as
``maps.jpg`` is refused rather than made into a folder). Nothing is created here.

A low layer: it imports nothing of cnnlab but :mod:`cnnlab.errors`, and no torch.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Sequence

from cnnlab.errors import PathError

__all__ = ["check_file", "check_folder", "check_output", "os_error_message", "FILE_SUFFIXES", "FIGURE_SUFFIXES"]

# suffixes that name a file, never a folder a command should create
FILE_SUFFIXES = frozenset({
    ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".ico", ".pdf", ".svg",
    ".eps", ".ps", ".html", ".htm", ".json", ".csv", ".tsv", ".txt", ".md", ".toml", ".yaml", ".yml", ".onnx",
    ".pt", ".pth", ".ckpt", ".npy", ".npz", ".pkl", ".zip", ".gz", ".tar", ".py", ".log", ".mp4", ".webm",
})
FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")  # what matplotlib's savefig writes here

_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"))


def _label(what: str, path: Path | str) -> str:
    return f"{what} {path}" if what else str(path)


def _blocking_parent(path: Path) -> Path | None:
    """The nearest ancestor of ``path`` that exists but is not a folder (a file in the way)."""
    for parent in path.parents:
        if os.path.lexists(parent):
            return None if parent.is_dir() else parent
    return None


def os_error_message(exc: OSError, path: Path | str, what: str = "", expect: str = "") -> str:
    """One line for an :class:`OSError` met opening ``path`` (``what``: the flag or role, e.g.
    ``--weights``; ``expect``: ``"file"`` or ``"folder"``, what should have been there)."""
    path = Path(path)
    label = _label(what, path)
    code = exc.errno
    if code == errno.ELOOP:
        return f"{label} is a symbolic link that loops (it leads back to itself); point it at a real {expect or 'path'}"
    if code == errno.ENOTDIR:
        parent = _blocking_parent(path)
        if parent is not None:
            return f"{label} does not exist: it is under {parent}, which is a file, not a folder"
        return f"{label} is a file, not a folder"
    if code == errno.ENOENT:
        if os.path.islink(path):
            return f"{label} is a symbolic link to {os.readlink(path)}, which does not exist"
        return f"{label}: no such {expect}" if expect else f"{label} does not exist"
    if code in (errno.EACCES, errno.EPERM):
        return f"{label} cannot be opened: permission denied"
    if code == errno.EISDIR:
        return f"{label} is a folder, not a file"
    if code == errno.ENAMETOOLONG:
        return f"{label}: the name is too long for the file system"
    return f"{label} cannot be opened ({exc.strerror or type(exc).__name__})"


def _stat(path: Path, what: str, expect: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as exc:
        raise PathError(os_error_message(exc, path, what, expect)) from None
    except ValueError:  # a NUL byte in the name
        raise PathError(f"{_label(what, path)} is not a valid path (it contains a NUL byte)") from None


def check_file(path: str | os.PathLike, what: str = "") -> Path:
    """``path`` as a :class:`Path` if it is a regular file this process can read; else a
    :class:`~cnnlab.errors.PathError` saying which way it is not (``what`` names the flag or role)."""
    path = Path(path).expanduser()
    st = _stat(path, what, "file")
    label = _label(what, path)
    if stat.S_ISDIR(st.st_mode):
        raise PathError(f"{label} is a folder, not a file")
    for test, kind in _KINDS:
        if test(st.st_mode):
            raise PathError(f"{label} is not a regular file (it is {kind})")
    if not os.access(path, os.R_OK):
        raise PathError(f"{label} cannot be read: permission denied")
    return path


def check_folder(path: str | os.PathLike, what: str = "") -> Path:
    """``path`` as a :class:`Path` if it is a folder this process can list; else a :class:`PathError`."""
    path = Path(path).expanduser()
    st = _stat(path, what, "folder")
    if not stat.S_ISDIR(st.st_mode):
        raise PathError(f"{_label(what, path)} is a file, not a folder")
    if not os.access(path, os.R_OK | os.X_OK):
        raise PathError(f"{_label(what, path)} cannot be read: permission denied")
    return path


def _check_writable_place(path: Path, what: str) -> None:
    """The nearest existing folder above ``path`` must be a folder we can write in."""
    for parent in path.parents:
        if not os.path.lexists(parent):
            continue
        try:
            st = os.stat(parent)
        except OSError as exc:
            raise PathError(f"{_label(what, path)}: " + os_error_message(exc, parent)) from None
        if not stat.S_ISDIR(st.st_mode):
            raise PathError(f"{_label(what, path)} cannot be written: it is under {parent}, which is a file, "
                            f"not a folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise PathError(f"{_label(what, path)} cannot be written: permission denied in {parent}")
        return


def _existing(path: Path, what: str) -> os.stat_result | None:
    """The stat of ``path`` if something is there (a loop or a dangling link is an error), else None."""
    if not os.path.lexists(path):
        return None
    try:
        return os.stat(path)
    except OSError as exc:
        raise PathError(os_error_message(exc, path, what)) from None


def check_output(path: str | os.PathLike, kind: str = "file", *, what: str = "--out",
                 suffixes: Sequence[str] = (), default_suffix: str | None = None, writes: str = "") -> Path:
    """The path a command will write for ``--out PATH``, checked against ``kind`` (``"file"`` or
    ``"folder"``) before any work. A file must end in one of ``suffixes`` (case-insensitive); a
    name without a suffix gets ``default_suffix`` (the returned path is the one written). A folder
    may not end in a file suffix unless it already exists as a folder. ``writes`` describes the
    output for the messages (``"a PNG"``, ``"a folder of PNGs"``)."""
    path = Path(path).expanduser()
    label = _label(what, path)
    _check_writable_place(path, what)
    st = _existing(path, what)
    writes = writes or ("a folder" if kind == "folder" else "a file")
    if kind == "folder":
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise PathError(f"{label} is a file; give a folder (this command writes {writes})")
        if st is None and path.suffix.lower() in FILE_SUFFIXES:
            raise PathError(f"{label} names a {path.suffix} file, but this command writes {writes}; give a folder "
                            f"name such as {path.with_suffix('')}")
        return path
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise PathError(f"{label} is a folder; give a file name{_example(path, default_suffix)} (this command "
                        f"writes {writes})")
    suffix = path.suffix.lower()
    if not suffix and default_suffix:
        return check_output(path.with_name(path.name + default_suffix), kind, what=what, suffixes=suffixes,
                            writes=writes)
    if suffixes and suffix not in suffixes:
        raise PathError(f"{label}: this command writes {writes}, a file ending in {' or '.join(suffixes)}, "
                        f"not {suffix or 'a name without a suffix'}")
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise PathError(f"{label} exists and is not a regular file; give another file name")
        if not os.access(path, os.W_OK):
            raise PathError(f"{label} cannot be written: permission denied")
    return path


def _example(path: Path, default_suffix: str | None) -> str:
    return f" such as {path / ('out' + default_suffix)}" if default_suffix else ""
