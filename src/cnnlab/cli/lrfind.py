"""``cnnlab lr-find``: the learning-rate range test (Smith 2017) on a run's settings.

Its options are ``cnnlab train``'s, generated from :class:`cnnlab.training.config.TrainConfig` by the
same machinery (:func:`cnnlab.cli.train.config_options`), but for ``--lr`` (the sweep sets every
step's rate) and ``--out`` (here the plot); then the sweep's own: ``--start-lr``, ``--end-lr``,
``--num-iter``, ``--out FILE.png`` and ``--format``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from cnnlab.cli._common import CONTEXT, console, print_json, print_table
from cnnlab.cli.options import PATH, format_option
from cnnlab.cli.train import GroupedOptions, config_options, explicit_settings
from cnnlab.errors import CnnlabError
from cnnlab.paths import check_output
from cnnlab.training.config import TrainConfig

__all__ = ["lr_find"]

# train's settings but --lr (the sweep's) and --out (a run directory there, the plot here)
SETTINGS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("cli", True)
                 and f.name not in ("lr", "out"))
RULE_TEXT = {"steepest": "where the loss falls fastest against log(lr)",
             "minimum/10": "a tenth of the rate of the lowest loss",
             "valley": "inside the longest descending stretch (fastai's default)"}


def _no_lr(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is not None:
        raise CnnlabError(f"lr-find sets the learning rate of every step itself (from --start-lr to --end-lr); leave "
                          f"out --lr {value}")


class _Sections(GroupedOptions):
    last_section = "Range test"


@click.command("lr-find", cls=_Sections, context_settings=CONTEXT)
@config_options(TrainConfig, only=SETTINGS)
@click.option("--start-lr", type=float, default=1e-7, show_default=True, help="The sweep's first learning rate.")
@click.option("--end-lr", type=float, default=10.0, show_default=True, help="The sweep's last learning rate.")
@click.option("--num-iter", type=int, default=100, show_default=True,
              help="Minibatches (one step each) of the sweep; past an epoch it goes on with the data shuffled again.")
@click.option("--out", "plot", type=PATH, default=Path("lr-find.png"), show_default=True,
              help="The plot: loss against learning rate, each rule's suggestion marked.")
@format_option
@click.option("--lr", hidden=True, expose_value=False, callback=_no_lr)
def lr_find(start_lr: float, end_lr: float, num_iter: int, plot: Path, format: str, **settings: Any) -> None:
    """Learning-rate range test (Smith 2017, as fastai's lr_find): train on an exponential sweep of the
    learning rate with these settings, stop when the loss diverges, and print what each rule suggests
    (steepest, minimum/10, valley). The model and data are left as they were; only the plot is written."""
    explicit = explicit_settings(click.get_current_context(), settings)
    config = TrainConfig(**settings)
    config.check_ranges()  # one line before torch loads
    from cnnlab.training.lr_rules import check_sweep

    check_sweep(start_lr, end_lr, num_iter)
    out = check_output(plot, "file", suffixes=(".png",), default_suffix=".png",
                       writes="a PNG of the loss against the learning rate")
    from cnnlab.figures import plot_lr_find
    from cnnlab.training.launcher import resolve_launch
    from cnnlab.training.lr_find import lr_find as range_test

    config = resolve_launch(config, explicit)
    result = range_test(config, start_lr=start_lr, end_lr=end_lr, num_iter=num_iter)
    plot_lr_find(lrs=result.lrs, losses=result.losses, smoothed=result.smoothed, suggestions=result.suggestions,
                 path=out, window=result.window,
                 title=f"Range test: {config.model} on {config.dataset}, {config.optimizer}, batch {config.batch_size}")
    if format == "json":
        print_json({**result.to_dict(), "plot": str(out)})
        return
    print_table(f"lr-find: {config.model} on {config.dataset}, {len(result.lrs)} steps from {start_lr:g} to "
                f"{result.lrs[-1]:.3g}", ("rule", "lr", "smoothed loss", "how"),
                [(rule, f"{lr:.3g}", f"{result.smoothed_at(lr):.4f}", RULE_TEXT[rule])
                 for rule, lr in result.suggestions.items()], left=("rule", "how"))
    stop = f"stopped early: {result.stop_reason}" if result.stopped_early else result.stop_reason
    console().print(f"{stop[0].upper() + stop[1:]}. Train with one: cnnlab train --lr find:RULE (valley by default), "
                    f"or --lr VALUE.")
    console().print(f"Plot: {out}")
