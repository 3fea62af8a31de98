"""One view of a finished run: :class:`Run` (``Run.open(path)``) holds its model.pt as read, in one
piece with its fingerprint, checked to be the run's own, and gives its settings, classes, input
shape, preprocessing (:mod:`cnnlab.runs.preprocessing`), its splits prepared exactly as training
prepared them, and its model. :func:`load_run` / :class:`LoadedRun` are the run with its model built."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cnnlab.data import BatchSource
from cnnlab.errors import CnnlabError, RunDirError
from cnnlab.models import create_model, load_state_dict_checked
from cnnlab.paths import check_folder
from cnnlab.runs.format import CONFIG_FILE, MODEL_FILE, MODEL_KEYS, identity_differences, read_checkpoint, \
    read_config_doc
from cnnlab.runs.preprocessing import Preprocessing, load_run_splits, preprocessing_of
from cnnlab.storage import read_fingerprinted
from cnnlab.training.config import TrainConfig

__all__ = ["Run", "open_run", "LoadedRun", "load_run", "check_model_identity", "SPLITS"]

SPLITS = ("train", "val", "test")


@dataclass
class Run:
    """A run directory whose training finished (its model.pt), as one object."""

    path: Path
    config: TrainConfig  # the settings model.pt was trained with
    classes: list[str]
    input_shape: tuple[int, int, int]  # (C, H, W) the model takes
    checkpoint: dict[str, Any]  # model.pt as read
    # model.pt as read: sha256, size, mtime_ns, inode (see cnnlab.storage.same_content), and its run id
    model_file: dict[str, Any] = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where split() and the model go

    @classmethod
    def open(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> "Run":
        """Read ``path/model.pt`` (``weights_only=True``) in one piece -- an atomic rewrite meanwhile
        gives the old file or the new one -- after checking it is the run's own
        (:func:`check_model_identity`). ``device``: where :meth:`split` and :meth:`load_model` put
        things unless told otherwise, and what :attr:`preprocessing`'s memory format is for."""
        path = Path(path)
        checkpoint, fingerprint = _read_model_file(path)
        c, h, w = checkpoint["input_shape"]
        fingerprint["run_id"] = checkpoint.get("run_id")
        return cls(path, TrainConfig.from_dict(checkpoint["config"]), list(checkpoint["classes"]), (c, h, w),
                   checkpoint, fingerprint, torch.device(device))

    @cached_property
    def preprocessing(self) -> Preprocessing:
        """Resize side, channels, scaling, normalisation and memory format: as in training."""
        return preprocessing_of(self.config, self.device, self.input_shape)

    def split(self, name: str, data_dir: str | os.PathLike | None = None,
              device: torch.device | str | None = None) -> BatchSource:
        """The run's ``train``, ``val`` or ``test`` split, prepared exactly as training prepared it
        (same side, channels and seeded validation split), on ``device`` (default: the run's);
        ``data_dir``: where the dataset is now, if it moved."""
        if name not in SPLITS:
            raise CnnlabError(f"the split must be one of {', '.join(SPLITS)}, got {name!r}")
        splits = load_run_splits(self.config, self.preprocessing, data_dir)
        chosen = {"train": splits.train, "val": splits.val, "test": splits.test}[name]
        if chosen is None:
            raise CnnlabError(f"{self.path} was trained without --val-fraction, so it has no validation split; "
                              f"use --split test")
        return chosen.to(self.device if device is None else device)

    def load_model(self, device: torch.device | str | None = None) -> nn.Module:
        """The trained model rebuilt from model.pt, in eval mode on ``device`` (default: the run's)."""
        c, h, _ = self.input_shape
        model = create_model(self.config.model, num_classes=len(self.classes), in_channels=c, input_size=h,
                             **self.config.model_options)
        load_state_dict_checked(model, self.checkpoint["state_dict"],
                                f"{self.path / MODEL_FILE} (model {self.config.model!r})")
        return model.to(self.device if device is None else device).eval()


def open_run(path: str | os.PathLike, device: torch.device | str = "cpu") -> Run:
    """``Run.open(path, device)``."""
    return Run.open(path, device)


@dataclass
class LoadedRun(Run):
    """A :class:`Run` with its model built (:func:`load_run`)."""

    model: nn.Module | None = None


def load_run(run_dir: str | os.PathLike, device: Any = "cpu") -> LoadedRun:
    """Rebuild the model of a run directory from its ``model.pt`` (:meth:`Run.open`, then
    :meth:`Run.load_model`)."""
    run = Run.open(run_dir, device)
    loaded = LoadedRun(run.path, run.config, run.classes, run.input_shape, run.checkpoint, run.model_file,
                       run.device)
    loaded.model = run.load_model()
    return loaded


def check_model_identity(path: Path, checkpoint: dict[str, Any]) -> None:
    """model.pt must be the run's own: refuse (one line naming both files) one copied from another
    run. A directory without config.json (a lone model.pt) has nothing to compare with."""
    config_file = path / CONFIG_FILE
    if not config_file.exists():
        return
    doc = read_config_doc(path)
    if doc is None:
        raise RunDirError(f"{config_file} is damaged, so {path / MODEL_FILE} cannot be checked against its run; "
                          f"restore config.json, or retrain")
    differences = identity_differences(doc, checkpoint)
    if differences:
        raise RunDirError(f"{path / MODEL_FILE} belongs to another run than {config_file} (model.pt vs config.json: "
                          f"{'; '.join(differences[:3])}); put the run's own model.pt back, or retrain")


def _read_model_file(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model.pt's contents, its fingerprint), checked: a directory, the file there, readable,
    cnnlab's, sensible, and the run's own."""
    if os.path.lexists(path):
        check_folder(path, "run directory")  # a file, a link that loops, no permission: said as such
    if not path.is_dir():
        raise RunDirError(f"run directory {path} does not exist; pass the folder `cnnlab train` wrote (see --out)")
    ckpt_path = path / MODEL_FILE
    if not ckpt_path.is_file():
        raise RunDirError(f"{ckpt_path} is missing; the run did not finish, or {path} is not a cnnlab run directory")
    try:
        data, fingerprint = read_fingerprinted(ckpt_path)
    except OSError as exc:
        raise RunDirError(f"cannot read {ckpt_path} ({exc.strerror or type(exc).__name__})") from None
    checkpoint = read_checkpoint(ckpt_path, MODEL_KEYS, "checkpoint", data)
    _check_model_contents(ckpt_path, checkpoint)
    check_model_identity(path, checkpoint)
    return checkpoint, fingerprint


def _check_model_contents(ckpt_path: Path, checkpoint: dict[str, Any]) -> None:
    shape, classes = checkpoint["input_shape"], checkpoint["classes"]
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise RunDirError(f"{ckpt_path} holds an impossible input shape {shape!r} (needs C, H, W > 0); it was edited "
                          f"or damaged: retrain, or restore the file")
    if not (isinstance(classes, list) and classes and all(isinstance(v, str) for v in classes)):
        raise RunDirError(f"{ckpt_path} holds no list of class names; it was edited or damaged")
    if not isinstance(checkpoint["config"], dict) or not isinstance(checkpoint["state_dict"], dict):
        raise RunDirError(f"{ckpt_path} is not a cnnlab checkpoint (its config or state_dict is not a mapping)")
