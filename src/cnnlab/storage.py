"""Writing run directories so that nothing is lost and nothing is half-written.

- :func:`atomic_write`: every file of a run is written to a temporary file beside it, flushed,
  fsync'ed, then renamed over the old one: a reader (or a process killed at any moment) sees the
  old file or the new one, never a part of one. A full disk or a read-only folder is one line
  (:class:`~cnnlab.errors.RunDirError`), with the previous file intact. A Python-level signal
  handler (Ctrl-C's KeyboardInterrupt, the command line's SIGTERM) waits until the rename is done:
  a stop never leaves a temporary file or a torn state behind.
- :class:`RunLock`: one process owns a run directory while it writes into it (an exclusive
  ``flock`` on ``RUN_DIR/.cnnlab.lock``, released by the OS even after ``kill -9``).
- :func:`make_run_dir` / :func:`clear_artefacts` / :func:`check_writable`: creating a run
  directory, emptying an old run's files for ``--overwrite``, refusing an ``--out`` that cannot be.
- :func:`read_fingerprinted` / :func:`same_content` / :func:`record_derived` / :func:`derived_status`:
  which model.pt each derived file (report.html, model.onnx, plots) was made from, kept in
  ``RUN_DIR/derived.json``, so that ``cnnlab runs`` can say which ones are stale.
See docs/RELIABILITY.md for what is guaranteed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable, Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking
    fcntl = None  # type: ignore[assignment]

from cnnlab.errors import RunDirError

__all__ = ["ARTEFACTS", "DERIVED_NAME", "LOCK_NAME", "atomic_write", "RunLock", "exclusive", "make_run_dir",
           "clear_artefacts",
           "check_writable", "disk_error", "read_fingerprinted", "same_content", "read_derived", "record_derived",
           "derived_status"]

# every file (or folder) cnnlab writes into a run directory; --overwrite clears exactly these
ARTEFACTS = ("config.json", "metrics.csv", "checkpoint.pt", "model.pt", "result.json", "curves.png",
             "confusion_test.png", "confusion_val.png", "model.onnx", "model.int8.onnx", "tensorboard",
             "report.html", "visualize", "interpret", "derived.json")
LOCK_NAME = ".cnnlab.lock"
DERIVED_NAME = "derived.json"  # derived file -> the model.pt it was made from
# files made from model.pt that cnnlab writes into a run directory by default (and RUN_DIR/visualize/*)
DERIVED_DEFAULTS = ("report.html", "model.onnx", "model.int8.onnx", "confusion_test.png", "confusion_val.png")


def disk_error(path: Path, exc: BaseException, run_dir: Path | None = None) -> RunDirError:
    """One line for a failed write, saying what to do."""
    reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0] or type(exc).__name__
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        then = f"; the run's last checkpoint is intact: free space, then `cnnlab train --resume {run_dir}`" \
            if run_dir is not None else "; free space and try again"
        return RunDirError(f"no space left on the device while writing {path}{then}")
    if getattr(exc, "errno", None) in (errno.EROFS, errno.EACCES, errno.EPERM):
        return RunDirError(f"cannot write {path} ({reason}); choose a folder you can write to")
    return RunDirError(f"cannot write {path} ({reason})")


def _write_file(tmp: Path, content: bytes | str | Callable[[IO[bytes]], Any]) -> None:
    with open(tmp, "wb") as fh:
        if callable(content):
            content(fh)
        else:
            fh.write(content.encode("utf-8") if isinstance(content, str) else content)
        fh.flush()
        os.fsync(fh.fileno())


_HELD_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Python-level signal handlers wait while the block runs, then each signal that came is handled
    (its handler may raise, e.g. KeyboardInterrupt). Main thread only; a default or ignored signal
    is the OS's business and is left alone (kill -9 cannot be held: hence the rename)."""
    previous, came = {}, []
    if threading.current_thread() is threading.main_thread():
        for name in _HELD_SIGNALS:
            signum = getattr(signal, name, None)
            handler = signal.getsignal(signum) if signum is not None else None
            if callable(handler):
                previous[signum] = signal.signal(signum, lambda n, frame: came.append((n, frame)))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum, frame in dict(came).items():
            previous[signum](signum, frame)


def atomic_write(path: str | os.PathLike, content: bytes | str | Callable[[IO[bytes]], Any], *,
                 parents: bool = False) -> None:
    """Write ``content`` (bytes, text, or a function writing into a binary file) to ``path``
    atomically: temporary file beside it, fsync, rename. On failure the old file stays as it was
    and the temporary file is removed; a Ctrl-C or SIGTERM is handled once the rename is done.
    ``parents``: create the missing folders first (a failure is the same one-line error)."""
    path = Path(path)
    if parents:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise disk_error(path, exc) from None
    tmp = path.with_name(f".{path.name}.tmp")
    with _signals_held():
        try:
            _write_file(tmp, content)
            os.replace(tmp, path)
        except BaseException as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            # torch.save reports a failed write as a RuntimeError
            if not isinstance(exc, (OSError, RuntimeError)) or (isinstance(exc, RuntimeError)
                                                                and "write" not in str(exc).lower()):
                raise
            raise disk_error(path, exc, path.parent) from None


class RunLock:
    """An exclusive lock on a run directory, held while one process writes into it.

    ``acquire()`` raises a one-line :class:`RunDirError` when another live process holds it.
    The lock is advisory (``fcntl.flock``) and dies with its process, so a killed run never
    leaves a directory locked.
    """

    def __init__(self, run_dir: str | os.PathLike, name: str = LOCK_NAME, what: str = "run directory"):
        self.path = Path(run_dir) / name
        self.what = what  # how the refusal names the folder
        self._fh: IO[str] | None = None

    def fileno(self) -> int:
        """The lock file's descriptor, to hand the lock to child processes (``pass_fds``); held only."""
        assert self._fh is not None, "acquire() the lock first"
        return self._fh.fileno()

    def acquire(self, hint: str = "wait for it to finish, or choose another --out") -> "RunLock":
        if fcntl is None:  # pragma: no cover - not POSIX: no locking
            return self
        try:
            fh = open(self.path, "a+")
        except OSError as exc:
            raise disk_error(self.path, exc) from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            owner = fh.read().strip() or "?"
            fh.close()
            raise RunDirError(f"{self.what} {self.path.parent} is in use by another cnnlab process (pid {owner}); "
                              f"{hint}") from None
        except OSError as exc:  # e.g. ENOLCK on a network file system: the file is closed, not leaked
            fh.close()
            raise disk_error(self.path, exc) from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
        except OSError as exc:  # a full disk: the lock is released with the file, never held without an owner
            fh.close()
            raise disk_error(self.path, exc) from None
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing the file releases the flock
            self._fh = None


@contextlib.contextmanager
def exclusive(path: str | os.PathLike | None) -> Iterator[None]:
    """Wait for an exclusive advisory lock on the file ``path`` (created if missing) and hold it while the
    block runs: how processes sharing a machine take turns (the benchmarks' ``--lock``). ``None``, or a
    platform without ``fcntl``: no lock."""
    if path is None or fcntl is None:
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def check_writable(path: Path) -> None:
    """Refuse an ``--out`` that cannot become a directory: under a file, or on a read-only or
    unwritable file system (checked on the nearest existing folder; nothing is written)."""
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                where = "is a file" if parent == path else f"is under {parent}, which is a file"
                raise RunDirError(f"--out {path} {where}, not a directory; choose another --out")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise RunDirError(f"--out {path}: {parent} is not writable (read-only or no permission); "
                                  f"choose another --out")
            return


def make_run_dir(path: Path) -> None:
    """``mkdir -p`` with one-line errors."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise disk_error(path, exc) from None


def clear_artefacts(run_dir: Path) -> None:
    """Remove an old run's files (``--overwrite``), so no stale model.pt or result.json stays
    beside a new run's checkpoint. Files cnnlab did not write are left alone."""
    for name in ARTEFACTS:
        target = run_dir / name
        try:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
        except OSError as exc:
            raise disk_error(target, exc) from None
    for tmp in run_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------
# Derived files: which model.pt each one was made from


def read_fingerprinted(path: Path) -> tuple[bytes, dict[str, Any]]:
    """A file's bytes and its fingerprint (sha256, size, mtime_ns), both of the same file even if
    it is replaced meanwhile (stat and read go through one open descriptor)."""
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        data = fh.read()
    return data, {"sha256": hashlib.sha256(data).hexdigest(), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                  "inode": st.st_ino}


def same_content(path: Path, fingerprint: dict[str, Any]) -> bool:
    """Whether ``path`` still holds the file ``fingerprint`` describes: the same file (inode, size,
    mtime: an atomic rewrite always makes a new inode), or else (a copied run directory) the same sha256."""
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_size != fingerprint.get("size"):
        return False
    if (st.st_mtime_ns, st.st_ino) == (fingerprint.get("mtime_ns"), fingerprint.get("inode")):
        return True
    try:
        return read_fingerprinted(path)[1]["sha256"] == fingerprint.get("sha256")
    except OSError:
        return False


def _stat(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def read_derived(run_dir: Path) -> dict[str, dict[str, Any]]:
    """``RUN_DIR/derived.json``'s entries (relative path -> record); {} when missing or damaged."""
    try:
        doc = json.loads((Path(run_dir) / DERIVED_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    files = doc.get("files") if isinstance(doc, dict) else None
    return {k: v for k, v in files.items() if isinstance(v, dict)} if isinstance(files, dict) else {}


def record_derived(run_dir: Path, paths: list[Path], model: dict[str, Any], command: str) -> None:
    """Record in ``RUN_DIR/derived.json`` that ``paths`` (files inside ``run_dir``, just written)
    were made from the model.pt ``model`` describes. Call it holding the run's lock."""
    run_dir = Path(run_dir)
    files = {name: entry for name, entry in read_derived(run_dir).items() if (run_dir / name).is_file()}
    for path in paths:
        name = Path(os.path.relpath(Path(path).resolve(), run_dir.resolve())).as_posix()
        files[name] = {"model": model, "file": _stat(Path(path)), "command": command,
                       "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write(run_dir / DERIVED_NAME, json.dumps({"version": 1, "files": files}, indent=2) + "\n")


def derived_status(run_dir: Path) -> dict[str, str]:
    """Each derived file of a run directory -> "fresh" (made from the current model.pt), "stale"
    (model.pt changed since, or is gone) or "unrecorded" (not written by a cnnlab that records,
    or changed since it was written)."""
    run_dir = Path(run_dir)
    entries = read_derived(run_dir)
    names = {n for n in DERIVED_DEFAULTS if (run_dir / n).is_file()}
    names |= {p.relative_to(run_dir).as_posix() for p in (run_dir / "visualize").glob("*") if p.is_file()}
    names |= {n for n in entries if (run_dir / n).is_file()}
    status = {}
    for name in sorted(names):
        entry, path = entries.get(name), run_dir / name
        if entry is None or not isinstance(entry.get("model"), dict) or entry.get("file") != _stat(path):
            status[name] = "unrecorded"
        else:
            status[name] = "fresh" if same_content(run_dir / "model.pt", entry["model"]) else "stale"
    return status
