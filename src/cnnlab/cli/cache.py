"""``cnnlab cache list`` and ``cnnlab cache clear``: the decoded-image cache (see
:mod:`cnnlab.data.cache`), kept in the user's cache directory, never in a data folder."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import click

from cnnlab.cli._common import CONTEXT, console, print_json, print_table
from cnnlab.cli.options import format_option
from cnnlab.errors import CnnlabError

__all__ = ["cache"]


def human(size: int) -> str:
    """1536 -> '1.5 KB' (decimal units, as ``du --si``)."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"  # pragma: no cover


def _entries(count: int) -> str:
    return f"{count} cache entr{'y' if count == 1 else 'ies'}"


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def _by_folder(entries) -> list[dict]:
    """Entries grouped by source folder, most recently used first."""
    groups: dict[str, list] = {}
    for entry in entries:
        groups.setdefault("?" if entry.source is None else os.fsdecode(entry.source), []).append(entry)
    rows = []
    for folder, group in groups.items():
        last = max(e.last_used for e in group)
        rows.append({"folder": folder, "exists": folder != "?" and Path(folder).is_dir(), "entries": len(group),
                     "images": max(e.images or 0 for e in group), "bytes": sum(e.bytes for e in group),
                     "last_used": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(last)), "_last": last,
                     "cached": [e.to_json() for e in group]})
    return sorted(rows, key=lambda r: (-r["_last"], r["folder"]))


def _legacy(entries) -> list[Path]:
    from cnnlab.data.cache import legacy_caches, old_home_cache

    sources = {e.source.parent for e in entries if e.source is not None}
    old = old_home_cache()
    return ([old] if old else []) + legacy_caches(sorted(sources))


@click.group(context_settings=CONTEXT)
def cache() -> None:
    """The decoded-image cache of --dataset imagefolder (in $CNNLAB_CACHE, else $XDG_CACHE_HOME/cnnlab/images,
    else ~/.cache/cnnlab/images; never inside your data folder)."""


@cache.command("list", context_settings=CONTEXT)
@format_option
def list_cache(format: str) -> None:
    """List the cached folders and the total size.

    Per folder: entries (one per size and channels decoded), images, size on disk, last used."""
    from cnnlab.data.cache import cache_dir, list_entries

    directory = cache_dir()
    entries = list_entries(directory)
    rows, legacy = _by_folder(entries), _legacy(entries)
    total = sum(e.bytes for e in entries)
    if format == "json":
        for row in rows:
            row.pop("_last")
        print_json({"cache_dir": os.fsdecode(directory), "folders": rows, "entries": len(entries),
                    "bytes": total, "legacy": [os.fsdecode(p) for p in legacy]})
        return
    if not entries:
        console().print(f"The image cache is empty ({directory}).")
    else:
        print_table(f"image cache: {directory}", ("folder", "entries", "images", "size", "last used"),
                    [(r["folder"] + ("" if r["exists"] else " (gone)"), r["entries"], r["images"], human(r["bytes"]),
                      _when(r["_last"])) for r in rows], left=("folder",))
        console().print(f"Total: {_entries(len(entries))}, {human(total)} in {len(rows)} folder(s).")
    for path in legacy:
        how = "--all" if path.name != ".cnnlab-cache" else os.fsdecode(path.parent)
        console().print(f"Old image cache left by an earlier cnnlab (no longer used): {path}; "
                        f"`cnnlab cache clear {how}` removes it.")


def _select(entries, folders: tuple[Path, ...], older_than: float | None):
    chosen = entries
    if folders:
        wanted = [Path(os.path.abspath(f.expanduser())).resolve() for f in folders]
        chosen = [e for e in chosen if e.source is not None and any(e.source == w or w in e.source.parents
                                                                     for w in wanted)]
    if older_than is not None:
        cutoff = time.time() - older_than * 86400
        chosen = [e for e in chosen if e.last_used < cutoff]
    return chosen


@cache.command("clear", context_settings=CONTEXT)
@click.argument("folders", nargs=-1, type=click.Path(path_type=Path))
@click.option("--all", "all_", is_flag=True, help="Remove every entry.")
@click.option("--older-than", type=click.FloatRange(min=0), default=None, metavar="DAYS",
              help="Only entries last used more than DAYS days ago.")
def clear_cache(folders: tuple[Path, ...], all_: bool, older_than: float | None) -> None:
    """Remove cached images: of FOLDER..., --all, or --older-than DAYS.

    FOLDER is a data folder or one of its splits; the .cnnlab-cache folders that earlier versions
    left inside it are removed too."""
    from cnnlab.data.cache import cache_dir, clear_entries, clear_leftovers, legacy_caches, list_entries, \
        old_home_cache, remove_legacy

    if older_than is not None and not math.isfinite(older_than):
        raise CnnlabError(f"--older-than must be a finite number of days >= 0, got {older_than}")
    if all_ and folders:
        raise CnnlabError("cnnlab cache clear takes --all or FOLDER..., not both; pass one")
    if not (all_ or folders or older_than is not None):
        raise CnnlabError("say what to clear: cnnlab cache clear --all, FOLDER..., or --older-than DAYS")
    directory = cache_dir()
    entries = _select(list_entries(directory), folders, older_than)
    try:
        count, freed = clear_entries(entries)
        old = legacy_caches([Path(os.path.abspath(f.expanduser())) for f in folders]) if older_than is None else []
        if all_ and older_than is None:
            freed += clear_leftovers(directory)
            old += [p for p in [old_home_cache()] if p is not None]
        freed += sum(remove_legacy(p) for p in old)
    except OSError as exc:
        raise CnnlabError(f"cannot clear the image cache in {directory} ({exc.strerror or exc}); "
                          f"check its permissions") from None
    if not count and not old:
        what = f" last used more than {older_than:g} days ago" if older_than is not None else ""
        where = f" of {', '.join(os.fsdecode(f) for f in folders)}" if folders else ""
        console().print(f"Nothing to clear: no cached images{where}{what} in {directory}.")
        return
    console().print(f"Removed {_entries(count)}"
                    + (f" and {len(old)} old .cnnlab-cache folder(s)" if old else "") + f", {human(freed)} freed.")
