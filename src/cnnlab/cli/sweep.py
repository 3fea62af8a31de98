"""``cnnlab sweep``: a hyperparameter search (Optuna) over ``cnnlab train``'s settings, each trial a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cnnlab.cli._common import CONTEXT, console, print_json, print_table
from cnnlab.cli.options import POSITIVE, format_option
from cnnlab.errors import CnnlabError
from cnnlab.paths import check_output

__all__ = ["sweep"]

_HELP = """Search `cnnlab train`'s settings with Optuna, as SPEC.toml says (its [base] settings or recipe, its
[space] of ranges and choices, the metric, the number of trials, the sampler); each trial is an ordinary
run directory DIR/trial-NNNN, stopped early by the median pruner when its epochs fall behind.

\b
Writes DIR/results.json, DIR/best.toml (cnnlab train --recipe DIR/best.toml), DIR/history.png and
DIR/importance.png. A stopped or killed sweep goes on with `cnnlab sweep --resume DIR`.
\b
Several machines, one study: run on each
  cnnlab sweep SPEC.toml --storage postgresql://USER@HOST/DB --out DIR --workers N
(the same SPEC; the password in ~/.pgpass). Together they run the spec's trials once."""


@click.command(context_settings=CONTEXT, help=_HELP)
@click.argument("spec", required=False, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="The sweep folder (new or empty) [default: sweeps/<timestamp>-<name>].")
@click.option("--workers", type=POSITIVE, default=1, show_default=True,
              help="Trial processes on this machine, sharing the study's storage.")
@click.option("--storage", metavar="URL", default=None,
              help="An Optuna storage shared by several machines, e.g. postgresql://user@host/db "
                   "[default: DIR/study.db, SQLite].")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), default=None,
              help="Continue this sweep folder where it stopped (its spec and storage are in it).")
@format_option
def sweep(spec: Path | None, out: Path | None, workers: int, storage: str | None, resume_dir: Path | None,
          format: str) -> None:
    if (spec is None) == (resume_dir is None):
        raise CnnlabError("give a SPEC.toml to start a sweep, or --resume DIR to continue one (not both)")
    if resume_dir is not None and out is not None:
        raise CnnlabError(f"--resume {resume_dir} writes into that folder; leave out --out")
    if out is not None:
        check_output(out, "folder", writes="a sweep folder")
    from cnnlab.training.sweep import resume_sweep, run_sweep

    say = (lambda line: None) if format == "json" else (lambda line: console().print(line, highlight=False))
    if resume_dir is not None:
        result = resume_sweep(resume_dir, workers=workers, storage=storage, say=say)
    else:
        result = run_sweep(spec, out, workers=workers, storage=storage, say=say)
    if format == "json":
        print_json(result.to_dict())
        return
    _print_result(result)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _state(row: dict[str, Any]) -> str:
    state = row["state"]
    if "retried_as" in row:
        return f"{state} (retried as {row['retried_as']})"
    if "retry_of" in row:
        return f"{state} (retry of {row['retry_of']})"
    if "pruned_at" in row and state == "PRUNED":
        return f"PRUNED (epoch {row['pruned_at']})"
    return state


def _print_result(result: Any) -> None:
    spec = result.spec
    names = [d.name for d in spec.space]
    done = sum(r["state"] in ("COMPLETE", "PRUNED") for r in result.trials)
    print_table(f"sweep {spec.name}: {spec.metric} ({spec.direction}), {done} of {spec.trials} trials finished",
                ("trial", "state", spec.metric, *names, "run directory"),
                [(r["number"], _state(r), _cell(r["value"]), *(_cell(r["params"].get(n)) for n in names),
                  r["run_dir"] or "-") for r in result.trials], left=("state", "run directory"))
    for row in result.trials:
        if "error" in row:
            console().print(f"trial {row['number']} failed: {row['error']}", highlight=False)
    best = result.best
    if best is not None:
        console().print(f"Best: trial {best['number']}, {spec.metric} {best['value']:.4g} "
                        f"({', '.join(f'{k}={_cell(v)}' for k, v in best['params'].items())}); "
                        f"train with it: cnnlab train --recipe {result.files['best']}", highlight=False)
    for note in result.notes:
        console().print(note.capitalize(), highlight=False)
    shown = [result.files[k] for k in ("history", "importance", "results") if k in result.files]
    console().print(f"Wrote {', '.join(shown)}", highlight=False)
