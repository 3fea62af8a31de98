"""The decoded-image cache: image folders decoded once, kept as uint8 tensors in the user's cache
directory -- never inside the data folder, which stays exactly as the user left it.

Where: ``$CNNLAB_CACHE``, else ``$XDG_CACHE_HOME/cnnlab/images``, else ``~/.cache/cnnlab/images``.
Each entry is ``KEY.pt`` (the tensors, read back with ``torch.load(weights_only=True)``: no pickled
code is ever run), ``KEY.json`` (the source folder, the settings, the image count; its mtime is
"last used") and ``KEY.lock`` (one process decodes while the others of a ``--nproc`` run wait).
KEY hashes the folder's resolved path, every file's relative path, label, size and mtime_ns, the
decoding settings and the decoder version, so a changed folder never reads a stale entry; writing
a new entry removes the entries of the same folder and settings it replaces.

The cache is an optimisation only: a directory that cannot be written (read-only, full, under a
file) gives one ``cnnlab: note:`` line on stderr and the images are decoded without a cache.
Earlier versions wrote ``DIR/train/.cnnlab-cache/`` into the data folder (and
``~/.cache/cnnlab/tensors``); :func:`legacy_caches` finds those for ``cnnlab cache clear``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking
    fcntl = None  # type: ignore[assignment]

import PIL
import torch

from cnnlab.errors import RunDirError
from cnnlab.storage import atomic_write

__all__ = ["CacheEntry", "STATS", "cache_dir", "cached", "clear_entries", "clear_leftovers", "legacy_caches",
           "list_entries", "old_home_cache", "remove_legacy"]

FORMAT = "cnnlab-image-cache-v3"  # v3: outside the data folder; v2: 16-bit scaling, EXIF
LEGACY_NAME = ".cnnlab-cache"
STATS = {"hits": 0, "misses": 0, "writes": 0}  # this process's cache use (for tests and diagnostics)
_LEGACY_FILE = re.compile(r"^[0-9a-f]{24}\.pt$|\.tmp$")
_notes_shown: set[str] = set()


def cache_dir() -> Path:
    """``$CNNLAB_CACHE``, else ``$XDG_CACHE_HOME/cnnlab/images`` (an absolute XDG path only, as the
    XDG spec says), else ``~/.cache/cnnlab/images``."""
    env = os.environ.get("CNNLAB_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "cnnlab" / "images"


def note(message: str) -> None:
    """One ``cnnlab: note:`` line on stderr, once per process."""
    if message not in _notes_shown:
        _notes_shown.add(message)
        print(f"cnnlab: note: {message}", file=sys.stderr, flush=True)


def _reason(exc: BaseException) -> str:
    cause = exc.__context__ if isinstance(exc, RunDirError) and exc.__context__ is not None else exc
    return getattr(cause, "strerror", None) or str(cause).splitlines()[0] or type(cause).__name__


def _no_cache(directory: Path, exc: BaseException) -> None:
    note(f"cannot write the image cache in {directory} ({_reason(exc)}); decoding without a cache")


def cache_key(folder: Path, items: Iterable[tuple[Path, int]], settings: dict[str, Any]) -> str:
    """A key that changes whenever the folder, a file (name, label, size, mtime) or a setting does."""
    head = {"format": FORMAT, "pillow": PIL.__version__, "settings": settings}
    h = hashlib.sha256(json.dumps(head, sort_keys=True).encode() + b"\0" + os.fsencode(folder.resolve()) + b"\0")
    prefix = os.fsencode(os.path.join(folder, ""))
    for path, label in items:
        try:
            st = os.stat(path)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:  # gone since the scan: decoding will say so
            stamp = "missing"
        name = os.fsencode(path)
        relative = name[len(prefix):] if name.startswith(prefix) else os.fsencode(path.relative_to(folder))
        h.update(relative + f"\0{label}:{stamp}\0".encode())
    return h.hexdigest()[:32]


@dataclass
class CacheEntry:
    """One cached decoding of one folder."""

    key: str
    source: Path | None  # None: its metadata is missing or unreadable
    settings: dict[str, Any]
    images: int | None
    bytes: int
    last_used: float  # seconds since the epoch
    files: list[Path] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "source": None if self.source is None else os.fsdecode(self.source),
                "settings": self.settings, "images": self.images, "bytes": self.bytes,
                "last_used": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.last_used)),
                "files": [os.fsdecode(f) for f in self.files]}


def _read_meta(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(path.read_text(encoding="utf-8", errors="surrogateescape"))
        return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None
    except (OSError, ValueError):
        return None


def _entry(directory: Path, key: str) -> CacheEntry:
    files = [p for p in (directory / f"{key}{ext}" for ext in (".pt", ".json", ".lock")) if p.exists()]
    meta = _read_meta(directory / f"{key}.json") or {}
    stamps = [p.stat().st_mtime for p in files if p.suffix in (".json", ".pt")] or [0.0]
    source = meta.get("source")
    return CacheEntry(key, Path(source) if isinstance(source, str) else None, meta.get("settings") or {},
                      meta.get("images"), sum(p.stat().st_size for p in files), max(stamps), files)


def list_entries(directory: Path | None = None) -> list[CacheEntry]:
    """Every entry in the cache directory, most recently used first."""
    directory = cache_dir() if directory is None else directory
    if not directory.is_dir():
        return []
    keys = {p.stem for p in directory.iterdir() if p.suffix in (".pt", ".json") and not p.name.startswith(".")}
    entries = []
    for key in keys:
        try:
            entries.append(_entry(directory, key))
        except OSError:  # removed while we looked
            continue
    return sorted(entries, key=lambda e: (-e.last_used, e.key))


def clear_entries(entries: Iterable[CacheEntry]) -> tuple[int, int]:
    """Remove the entries' files: (entries removed, bytes freed)."""
    count = freed = 0
    for entry in entries:
        for path in entry.files:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
        count, freed = count + 1, freed + entry.bytes
    return count, freed


def clear_leftovers(directory: Path | None = None) -> int:
    """Remove the temporary files of killed writes and the locks of entries never written: bytes freed."""
    directory = cache_dir() if directory is None else directory
    if not directory.is_dir():
        return 0
    freed = 0
    locks = [p for p in directory.glob("*.lock") if not p.with_suffix(".pt").exists()]
    for tmp in [*directory.glob(".*.tmp"), *locks]:
        try:
            size = tmp.stat().st_size
            tmp.unlink()
            freed += size
        except OSError:
            continue
    return freed


def legacy_caches(folders: Iterable[Path]) -> list[Path]:
    """Image caches that earlier versions left in data folders (``F/.cnnlab-cache``,
    ``F/<split>/.cnnlab-cache``): only folders that hold nothing but cnnlab's own cache files."""
    found = []
    for folder in folders:
        candidates = [folder / LEGACY_NAME]
        if folder.is_dir():
            candidates += [d / LEGACY_NAME for d in sorted(folder.iterdir()) if d.is_dir() and d.name != LEGACY_NAME]
        found += [c for c in candidates if _is_legacy(c)]
    return list(dict.fromkeys(found))


def old_home_cache() -> Path | None:
    """``~/.cache/cnnlab/tensors``, where earlier versions cached read-only folders, if it is there."""
    path = Path.home() / ".cache" / "cnnlab" / "tensors"
    return path if _is_legacy(path) else None


def _is_legacy(path: Path) -> bool:
    try:
        return path.is_dir() and not path.is_symlink() and all(
            f.is_file() and _LEGACY_FILE.search(f.name) for f in path.iterdir())
    except OSError:
        return False


def legacy_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir())


def remove_legacy(path: Path) -> int:
    """Delete one legacy cache folder (checked with :func:`legacy_caches`): bytes freed."""
    freed = legacy_size(path)
    for f in path.iterdir():
        f.unlink()
    path.rmdir()
    return freed


def _load(pt: Path, check: Callable[[dict], bool]) -> dict | None:
    if not pt.is_file():
        return None
    try:
        payload = torch.load(pt, map_location="cpu", weights_only=True)
        return payload if isinstance(payload, dict) and check(payload) else None
    except Exception:  # unreadable or foreign: decode again and replace it
        return None


def _meta(folder: Path, settings: dict[str, Any], images: int) -> str:
    doc = {"format": FORMAT, "source": os.fsdecode(folder.resolve()), "settings": settings, "images": images,
           "created": time.time()}
    return json.dumps(doc, indent=2) + "\n"


def _mark_used(directory: Path, key: str, meta: str) -> None:
    """A hit: the metadata's mtime is "last used" (written again if a killed run left none)."""
    path = directory / f"{key}.json"
    try:
        if _read_meta(path) is None:
            atomic_write(path, meta)
        else:
            os.utime(path)
    except (OSError, RunDirError):
        pass  # a read-only cache still serves its entries


def _replaced(directory: Path, key: str, folder: Path, settings: dict[str, Any]) -> list[CacheEntry]:
    """Entries of the same folder and settings as ``key`` (the folder has changed since)."""
    source = folder.resolve()
    return [e for e in list_entries(directory) if e.key != key and e.source == source and e.settings == settings]


def _store(directory: Path, key: str, payload: dict, meta: str, replaced: Callable[[], list]) -> None:
    try:
        atomic_write(directory / f"{key}.pt", lambda fh: torch.save(payload, fh))
        atomic_write(directory / f"{key}.json", meta)
        STATS["writes"] += 1
        clear_entries(replaced())
    except (OSError, RunDirError) as exc:  # full disk, read-only: the run goes on without a cache
        _no_cache(directory, exc)


def cached(folder: Path, items: list[tuple[Path, int]], settings: dict[str, Any], compute: Callable[[], dict],
           check: Callable[[dict], bool] = lambda payload: True) -> dict:
    """``compute()`` (a dict of tensors, lists, numbers and strings) for the files ``items`` of
    ``folder``, from the cache when an entry for exactly these files and ``settings`` exists
    (and passes ``check``), else computed and stored."""
    directory = cache_dir()
    key = cache_key(folder, items, settings)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock = open(directory / f"{key}.lock", "a")
    except OSError as exc:
        payload = _load(directory / f"{key}.pt", check)  # a read-only cache still serves its entries
        if payload is not None:
            STATS["hits"] += 1
            return payload
        _no_cache(directory, exc)
        STATS["misses"] += 1
        return compute()
    with lock:
        _flock(lock)
        payload = _load(directory / f"{key}.pt", check)
        if payload is not None:
            STATS["hits"] += 1
            _mark_used(directory, key, _meta(folder, settings, len(payload.get("labels", ()))))
            return payload
        STATS["misses"] += 1
        payload = compute()
        meta = _meta(folder, settings, len(payload.get("labels", ())))
        _store(directory, key, payload, meta, lambda: _replaced(directory, key, folder, settings))
        return payload


def _flock(fh) -> None:
    if fcntl is None:  # pragma: no cover - not POSIX: no locking
        return
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # released when the file is closed
    except OSError:
        pass  # a file system without locks: the writes are atomic anyway
