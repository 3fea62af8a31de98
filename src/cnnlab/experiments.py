"""The lecture's experiments on top of the zoo.

``inits``: the cnn-with-diff-init notebooks -- the ConvNet recipe trained once per weight
initialisation, one table (final train and test accuracy, time) and one plot of accuracy per
epoch. Train accuracy is measured as the notebooks do (a full eval-mode pass over the train
set after each epoch), so the table lines up with theirs.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cnnlab.errors import UnknownNameError
from cnnlab.figures import plot_init_experiment
from cnnlab.runs import check_run_dir
from cnnlab.storage import atomic_write
from cnnlab.training.callbacks import Callback
from cnnlab.training.config import INIT_SCHEMES, TrainConfig
from cnnlab.training.launcher import train
from cnnlab.training.records import TrainResult

__all__ = ["InitRow", "LECTURE_INIT_TABLE", "run_init_experiment"]

# The notebooks' reported figures (torch 1.0.1, GPU): (epoch-1 train, final train, test) in %.
LECTURE_INIT_TABLE = {
    "default": (92.72, 97.77, 97.77),
    "kaiming_normal": (91.97, 97.80, 97.67),
    "kaiming_uniform": (92.75, 97.78, 97.54),
    "normal": (86.53, 97.51, 97.76),
    "uniform": (90.10, 97.64, 97.63),
    "xavier_normal": (91.04, 97.75, 97.69),
    "xavier_uniform": (91.53, 97.47, 97.36),
}


@dataclass
class InitRow:
    init: str
    epoch1_train_acc: float
    final_train_acc: float
    test_acc: float
    seconds: float
    history: list  # EpochRecord per epoch


def run_init_experiment(
    out: str | os.PathLike,
    inits: Sequence[str] | None = None,
    base: TrainConfig | None = None,
    callbacks: Sequence[Callback] = (),
    overwrite: bool = False,
) -> list[InitRow]:
    """Train ``base`` (default: the lecture's ConvNet recipe) once per init scheme.

    Writes ``OUT/<init>/`` run directories, ``OUT/inits.csv`` and ``OUT/inits.png``.
    """
    inits = list(inits or INIT_SCHEMES)
    for name in inits:
        if name not in INIT_SCHEMES:
            raise UnknownNameError("init", name, INIT_SCHEMES)
    out = Path(out)
    check_run_dir(out, overwrite)
    base = dataclasses.replace(base or TrainConfig(), train_eval="full")
    rows = []
    for name in inits:
        config = dataclasses.replace(base, init=name, out=str(out / name))
        result: TrainResult = train(config, callbacks, overwrite=overwrite)
        rows.append(InitRow(name, result.history[0].train_acc, result.history[-1].train_acc, result.test_acc,
                            result.seconds, result.history))
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(["init", "epoch1_train_acc", "final_train_acc", "test_acc", "seconds",
                     "lecture_epoch1_train_acc", "lecture_final_train_acc", "lecture_test_acc"])
    for r in rows:
        lecture = LECTURE_INIT_TABLE.get(r.init, ("", "", ""))
        writer.writerow([r.init, f"{r.epoch1_train_acc:.2f}", f"{r.final_train_acc:.2f}", f"{r.test_acc:.2f}",
                         f"{r.seconds:.1f}", *lecture])
    atomic_write(out / "inits.csv", table.getvalue())  # the old table or the new one, never a part
    plot_init_experiment(rows, out / "inits.png")
    return rows
