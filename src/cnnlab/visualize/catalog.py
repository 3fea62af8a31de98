"""What ``cnnlab explore`` serves: its subjects (the runs under the folder it was given, one run, or one
zoo model), each known by an id that is looked up, never used as a path.

A run is listed from its config.json, metrics.csv and result.json (nothing loaded); its model is loaded on
first use (:func:`cnnlab.visualize.source.load_subject`: model.pt checked to be the run's own) and kept,
the few most recently used at a time. A run directory whose real path leaves the served folder (a symlink
out of the tree) is not served. Each subject has a lock: its model is used by one request at a time
(hooks and eval mode are per model), different subjects in parallel.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError, RunDirError
from cnnlab.models import get_model_info, list_models
from cnnlab.paths import check_folder
from cnnlab.runs import read_config_doc, read_test_accuracy, run_dirs_under
from cnnlab.runs.compare import read_curves
from cnnlab.visualize.source import InputImage, Subject, image_from_bytes, load_subject, load_test_split, \
    test_image

__all__ = ["Entry", "Catalog", "SubjectNotFound", "MAX_LOADED"]

MAX_LOADED = 4  # models kept in memory at once (a ResNet-152 is 240 MB)


class SubjectNotFound(CnnlabError):
    """An id that names no subject served here (a 404)."""


@dataclass
class Entry:
    """One subject: a run directory or a zoo model, described without loading it."""

    id: str
    kind: str  # "run" | "model"
    name: str
    model: str
    dataset: str | None
    input_shape: list[int]
    classes: list[str]
    path: Path | None = None  # the run directory
    test_acc: float | None = None
    curves: dict[str, list] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    subject: Subject | None = field(default=None, repr=False)
    test_data: Any = field(default=None, repr=False)

    def record(self) -> dict[str, Any]:
        """The ``/api/subjects`` entry."""
        return {"id": self.id, "kind": self.kind, "name": self.name, "model": self.model, "dataset": self.dataset,
                "test_acc": self.test_acc, "input_shape": list(self.input_shape), "classes": list(self.classes),
                "curves": self.curves}


def run_entry(path: Path, run_id: str) -> Entry | None:
    """A finished run directory as an entry (None: not a finished cnnlab run)."""
    doc = read_config_doc(path)
    if doc is None or not (path / "model.pt").is_file():
        return None
    config = doc["config"]
    curves = read_curves(path)  # metrics.csv as columns, as cnnlab compare reads it
    curves = curves if curves["epoch"] else None
    shape = doc.get("input_shape") or []
    return Entry(run_id, "run", path.name, str(config.get("model")), config.get("dataset"), list(shape),
                 [str(c) for c in doc.get("classes") or []], path, read_test_accuracy(path), curves)


@dataclass
class Source:
    """What ``cnnlab explore`` was given: a runs folder or one run (``root``), or a model name."""

    root: Path | None = None
    model: str | None = None
    weights: str | None = None
    dataset: str | None = None
    data_dir: str | None = None
    device: str = "cpu"


class Catalog:
    """The subjects served, found again on each listing (a run trained meanwhile appears)."""

    def __init__(self, source: Source):
        self.source = source
        self.entries: dict[str, Entry] = {}
        self._lock = threading.Lock()
        self._loaded: OrderedDict[str, Entry] = OrderedDict()
        self.refresh()

    @classmethod
    def open(cls, target: str | os.PathLike, *, weights: str | None = None, dataset: str | None = None,
             data_dir: str | None = None, device: str = "cpu") -> "Catalog":
        """``target``: a run directory, a folder of run directories, or a model name of the zoo."""
        text = str(target)
        if text in list_models() and not Path(text).exists():
            return cls(Source(model=text, weights=weights, dataset=dataset, data_dir=data_dir, device=device))
        path = Path(target)
        if not os.path.lexists(path):
            raise RunDirError(f"{path} is neither a run directory, a folder of runs nor a model name "
                              f"(cnnlab models lists them)")
        check_folder(path, "runs folder")
        if weights is not None:
            raise CnnlabError(f"--weights is for a model name; {path} is a folder of runs with their own weights")
        catalog = cls(Source(root=path.resolve(), dataset=dataset, data_dir=data_dir, device=device))
        if not catalog.entries:
            raise RunDirError(f"{path} holds no finished run (a folder with config.json and model.pt); train one "
                              f"with cnnlab train, or pass a model name")
        return catalog

    def refresh(self) -> None:
        found = self._model_entries() if self.source.model is not None else self._run_entries()
        with self._lock:
            for key, entry in found.items():
                old = self.entries.get(key)
                if old is None or old.path != entry.path:
                    self.entries[key] = entry
                else:  # keep the loaded model and lock; take the new accuracy and curves
                    old.test_acc, old.curves = entry.test_acc, entry.curves
            for key in set(self.entries) - set(found):
                del self.entries[key]
                self._loaded.pop(key, None)

    def _model_entries(self) -> dict[str, Entry]:
        name = self.source.model
        info = get_model_info(name)
        return {name: Entry(name, "model", name, name, self.source.dataset,
                            [info.in_channels, info.input_size, info.input_size],
                            [str(i) for i in range(info.num_classes)])}

    def _run_entries(self) -> dict[str, Entry]:
        root = self.source.root
        found = {}
        for path in run_dirs_under(root):
            real = path.resolve()
            if real != root and root not in real.parents:
                continue  # a link out of the served folder
            key = path.name
            entry = run_entry(path, key)
            if entry is not None:
                found[key] = entry
        return found

    @property
    def only(self) -> str | None:
        """The id of the one subject served, where there is exactly one (the page opens it at once)."""
        return next(iter(self.entries)) if len(self.entries) == 1 else None

    def list(self) -> list[dict[str, Any]]:
        self.refresh()
        return [e.record() for e in self.entries.values()]

    def get(self, key: str) -> Entry:
        """The entry called ``key``; unknown (``..``, a path, a run removed): :class:`SubjectNotFound`."""
        entry = self.entries.get(key)
        if entry is None:
            self.refresh()
            entry = self.entries.get(key)
        if entry is None:
            raise SubjectNotFound(f"no subject {key!r} is served here; GET /api/subjects lists them")
        return entry

    def subject(self, entry: Entry) -> Subject:
        """The entry's model, loaded once (call under ``entry.lock``)."""
        if entry.subject is None:
            src = self.source
            target = str(entry.path) if entry.path is not None else entry.model
            entry.subject = load_subject(target, weights=src.weights, dataset=src.dataset, data_dir=src.data_dir,
                                         device=src.device)
            if entry.kind == "model":  # what the model really takes (options may change it)
                entry.input_shape, entry.classes = list(entry.subject.input_shape), list(entry.subject.classes)
        with self._lock:
            self._loaded[entry.id] = entry
            self._loaded.move_to_end(entry.id)
            while len(self._loaded) > MAX_LOADED:
                _, old = self._loaded.popitem(last=False)
                old.subject, old.test_data = None, None
        return entry.subject

    def test_size(self, entry: Entry) -> int | None:
        """How many test images ``{"index": N}`` can name (None: the subject has no dataset)."""
        subject = self.subject(entry)
        if subject.dataset is None:
            return None
        if entry.test_data is None:
            entry.test_data = load_test_split(subject)
        return len(entry.test_data)

    def image(self, entry: Entry, index: int | None, data: bytes | None) -> InputImage:
        """The request's image as the model takes it: test image ``index``, or a file's bytes."""
        subject = self.subject(entry)
        if data is not None:
            return image_from_bytes(subject, data)
        if subject.dataset is None:
            raise CnnlabError(f"{entry.name} has no dataset to take test image {index} from: send an image, or "
                              f"start cnnlab explore with --dataset NAME")
        self.test_size(entry)
        return test_image(subject, 0 if index is None else index, entry.test_data)
