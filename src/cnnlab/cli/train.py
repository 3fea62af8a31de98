"""``cnnlab train`` and ``cnnlab experiment``.

``train``'s training options are generated from :class:`cnnlab.training.config.TrainConfig`:
each field becomes one option with the field's name, default, choices and help, so a new
setting appears on the command line the day it is added to the config.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Callable

import click

from cnnlab.cli._common import CONTEXT, console, parse_options, print_json, print_table
from cnnlab.cli.options import LR_OR_FIND, SettingOption, format_option, overwrite_option
from cnnlab.errors import CnnlabError
from cnnlab.paths import check_output
from cnnlab.training.config import GROUPS, INIT_SCHEMES, TrainConfig, option_flag, resume_safe, setting_field

__all__ = ["config_options", "explicit_settings", "train", "experiment", "recipes"]

INIT_SETTINGS = ("model", "dataset", "epochs", "seed", "data_dir", "device")  # experiment inits: train's options


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``int | None`` -> (int, True); ``int`` -> (int, False)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _option(f: dataclasses.Field, tp: Any, override: dict[str, Any] | None = None) -> Callable:
    """The click option of one config field (``override``: click attributes that replace the generated ones)."""
    meta = f.metadata
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
    flag = "--" + f.name.replace("_", "-")
    flags = tuple(meta.get("flags") or (flag,))
    common: dict[str, Any] = {"help": meta.get("help", ""), "metavar": meta.get("metavar"), "cls": SettingOption}
    base, optional = _unwrap_optional(tp)
    origin = typing.get_origin(base)
    if base is bool:  # --x/--no-x for every switch: a recipe's "on" must be undoable from the command line
        return click.option(f"{flag}/--no-{flag[2:]}", f.name, default=default, show_default=default is True,
                            help=common["help"], cls=SettingOption)
    if origin is list:
        return click.option(*flags, f.name, multiple=True, callback=lambda ctx, p, v: list(v), **common)
    if origin is dict:
        return click.option(*flags, f.name, multiple=True, callback=lambda ctx, p, v: parse_options(v), **common)
    kind = click.Choice(meta["choices"]) if meta.get("choices") else base
    attrs = {"type": kind, "default": default, "show_default": not optional, **common, **(override or {})}
    return click.option(*flags, f.name, **attrs)


def config_options(config_cls: type = TrainConfig, only: tuple[str, ...] | None = None,
                   overrides: dict[str, dict[str, Any]] | None = None) -> Callable[[Callable], Callable]:
    """A decorator adding one click option per field of ``config_cls`` (fields marked ``cli=False`` excepted;
    with ``only``: those fields, in that order): a run's settings are declared once, in the config.
    ``overrides``: per field, click attributes replacing the generated ones (``train``'s ``--lr`` also takes
    ``find``)."""
    hints = typing.get_type_hints(config_cls)
    fields = {f.name: f for f in dataclasses.fields(config_cls) if f.metadata.get("cli", True)}
    overrides = overrides or {}
    options = [_option(fields[name], hints[name], overrides.get(name)) for name in (only or fields)]

    def decorate(fn: Callable) -> Callable:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def explicit_settings(ctx: click.Context, settings: dict[str, Any]) -> set[str]:
    """The settings the user typed (as opposed to defaults)."""
    return {name for name in settings if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE}


def _resume_help() -> str:
    safe = [option_flag(name) for name in resume_safe()]
    return (f"Continue this run directory from its checkpoint.pt with the run's own settings; only "
            f"{', '.join(safe[:-1])} and {safe[-1]} may be given with it (--epochs to go on longer), any other "
            f"option is refused.")


class GroupedOptions(click.Command):
    """``--help`` lists the options under the concern of their :class:`TrainConfig` field (data, model,
    optimization, ...); the options that are not settings of the run come last, under :attr:`last_section`."""

    last_section = "Launch"

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        group_of = {f.name: f.metadata["group"] for f in dataclasses.fields(TrainConfig)}
        sections: dict[str, list[tuple[str, str]]] = {name: [] for name in (*GROUPS, "launch")}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                sections[group_of.get(param.name or "", "launch")].append(record)
        for name, records in sections.items():
            if records:
                title = f"{name.capitalize()}: {GROUPS[name]}" if name in GROUPS else self.last_section
                with formatter.section(title):
                    formatter.write_dl(records)


@click.command(cls=GroupedOptions, context_settings=CONTEXT)
@config_options(TrainConfig, overrides={"lr": {"type": LR_OR_FIND}})
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), default=None, help=_resume_help())
@overwrite_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or epoch lines.")
@click.option("--tensorboard", is_flag=True, help="Also write TensorBoard event files to RUN_DIR/tensorboard.")
@click.option("--nproc", type=int, default=1, show_default=True,
              help="Data-parallel processes on this machine: relaunches itself under torchrun (DDP; gloo on CPU, "
                   "nccl on CUDA); at most one per CPU core (or per GPU on CUDA).")
@click.option("--force-nproc", is_flag=True, help="Allow --nproc above the CPU cores this process may use.")
def train(resume_dir: Path | None, overwrite: bool, quiet: bool, tensorboard: bool, nproc: int, force_nproc: bool,
          **settings: Any) -> None:
    """Train a model. With no arguments: the lecture's ConvNet recipe on MNIST."""
    ctx = click.get_current_context()
    explicit = explicit_settings(ctx, {name: None for name in ctx.params if name != "resume_dir"})
    lr_rule = _lr_find_rule(settings, resume_dir, nproc)
    config = TrainConfig(**settings)
    if resume_dir is not None:  # one line before anything is read; launch() checks both again
        from cnnlab.training.launcher import check_resume_options

        check_resume_options(resume_dir, config, explicit)
    config.check_ranges()
    if config.out:
        check_output(config.out, "folder", writes="a run directory")
    from cnnlab.training.launcher import launch, needs_relaunch, relaunch

    if needs_relaunch(nproc):  # --nproc N: this command again under torchrun; its exit code is ours
        raise click.exceptions.Exit(relaunch(config, explicit, nproc=nproc, overwrite=overwrite,
                                             force_nproc=force_nproc))
    outcome = launch(config, explicit, resume_dir=resume_dir, overwrite=overwrite, quiet=quiet,
                     tensorboard=tensorboard, nproc=nproc, force_nproc=force_nproc, console=console(), lr_find=lr_rule)
    if outcome is None:  # a rank other than 0
        return
    accuracy = f"Test accuracy: {outcome.test_acc:.2f}% ({outcome.test_correct}/{outcome.test_total})"
    if resume_dir is not None:
        console().print(accuracy if quiet else f"Resumed and finished {outcome.run_dir}")
        return
    if quiet:
        console().print(accuracy)
    console().print(f"Saved config.json, metrics.csv, model.pt and curves.png in {outcome.run_dir}")


def _lr_find_rule(settings: dict[str, Any], resume_dir: Path | None, nproc: int) -> str | None:
    """``--lr find:RULE`` -> RULE, with ``settings["lr"]`` set to a number until the range test picks it."""
    lr = settings.get("lr")
    if not isinstance(lr, str):
        return None
    if resume_dir is not None:
        raise CnnlabError("--lr find starts a new run with the learning rate it finds; leave it out with "
                               "--resume (the run keeps its own --lr)")
    if nproc != 1:
        raise CnnlabError("--lr find runs in one process; run `cnnlab lr-find` with these settings first and "
                               f"pass the learning rate it suggests as --lr with --nproc {nproc}")
    settings["lr"] = setting_field("lr").default
    return lr.partition(":")[2]


@click.command(context_settings=CONTEXT)
@click.argument("name", required=False)
@format_option
def recipes(name: str | None, format: str) -> None:
    """The named training recipes (`cnnlab train --recipe NAME`); with NAME, its settings file."""
    from cnnlab.training.recipes import list_recipes, load_recipe

    chosen = [load_recipe(name)] if name else list_recipes()
    if format == "json":
        print_json([{"name": r.name, "path": str(r.path), "description": r.description, "settings": r.settings,
                     "measured": r.measured} for r in chosen])
    elif name:
        click.echo(f"# {chosen[0].path}\n{chosen[0].path.read_text(encoding='utf-8').rstrip()}")
    else:
        print_table("Recipes: cnnlab train --recipe NAME (options given on the command line override them)",
                    ("name", "model", "epochs", "description"),
                    [(r.name, r.settings.get("model", "convnet"), f"{r.settings.get('epochs', 10):g}", r.description)
                     for r in chosen], left=("name", "model", "description"))


@click.group(context_settings=CONTEXT)
def experiment() -> None:
    """The lecture's experiments, each one command."""


@experiment.command("inits", context_settings=CONTEXT)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/inits"), show_default=True,
              help="Folder for one run per init, inits.csv and inits.png.")
@click.option("--inits", default=",".join(INIT_SCHEMES), show_default=True, help="Comma-separated init schemes.")
@config_options(TrainConfig, only=INIT_SETTINGS)
@overwrite_option
def experiment_inits(out: Path, inits: str, overwrite: bool, **settings: Any) -> None:
    """Train the ConvNet recipe once per weight init; table and accuracy plot (cnn-with-diff-init)."""
    base = TrainConfig(**settings)  # the settings are train's own options (declared once, in TrainConfig)
    base.check_ranges()
    check_output(out, "folder", writes="a folder of runs, inits.csv and inits.png")
    from cnnlab.experiments import LECTURE_INIT_TABLE, run_init_experiment
    from cnnlab.training.callbacks import ConsoleLogger

    names = [n.strip() for n in inits.split(",") if n.strip()]
    rows = run_init_experiment(out, names, base, [ConsoleLogger(console())], overwrite=overwrite)
    model, dataset, epochs = base.model, base.dataset, base.epochs
    lecture = (model, dataset, epochs) == ("convnet", "mnist", 10)

    def cell(value: float, row, i: int) -> str:
        ref = LECTURE_INIT_TABLE.get(row.init) if lecture else None
        return f"{value:.2f}" + (f" ({ref[i]:.2f})" if ref else "")

    print_table(f"{model} on {dataset}, {epochs:g} epochs, one run per init (lecture's figures in brackets)",
                ("init", "epoch-1 train %", "final train %", "test %", "seconds"),
                [(r.init, cell(r.epoch1_train_acc, r, 0), cell(r.final_train_acc, r, 1), cell(r.test_acc, r, 2),
                  f"{r.seconds:.1f}") for r in rows], left=("init",))
    console().print(f"Wrote {out / 'inits.csv'} and {out / 'inits.png'}")
