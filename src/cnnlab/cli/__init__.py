"""The ``cnnlab`` command line: one small module per command group; each command parses its
options, calls one library function and prints.

A user's mistake ends in one line (``cnnlab: error: ...``) and exit code 2, never a
traceback; see :func:`run`. :func:`main`, the command's entry point, first sets the C allocator's
policy of the process (:func:`cnnlab.allocator.apply`; ``CNNLAB_MALLOC=tcmalloc`` restarts it with that library
preloaded). SIGTERM and SIGHUP stop a command as Ctrl-C does, with one line and exit code 143 (129); see
:mod:`cnnlab.cli._signals`. Importing this package loads click only:
torch and rich are imported by the commands that need them.
"""

from __future__ import annotations

import sys
import warnings

import click

from cnnlab.cli._common import CONTEXT
from cnnlab.cli._signals import Terminated, stop_signals_raise, stopped_message
from cnnlab.cli.analyze import analyze
from cnnlab.cli.arith import arith
from cnnlab.cli.cache import cache
from cnnlab.cli.compare import compare, interpret
from cnnlab.cli.conv import bench, demo
from cnnlab.cli.explore import explore
from cnnlab.cli.infer import bench_infer
from cnnlab.cli.lrfind import lr_find
from cnnlab.cli.models import models, summary
from cnnlab.cli.runs import evaluate, export, predict, runs
from cnnlab.cli.sweep import sweep
from cnnlab.cli.train import experiment, recipes, train
from cnnlab.cli.trust import trust
from cnnlab.cli.visualize import animate, demo_dropout, report, show
from cnnlab.errors import CnnlabError

__all__ = ["app", "run", "main"]


class _Passing(Exception):
    """Carries a :class:`Terminated` past click, which would print a blank line for it (there to
    close the terminal's ``^C`` echo, which a SIGTERM does not have)."""

    def __init__(self, stop: Terminated):
        super().__init__(str(stop))
        self.stop = stop


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Terminated as exc:
            raise _Passing(exc) from exc


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(package_name="cnnlab", prog_name="cnnlab")
def app() -> None:
    """The CNN lecture as runnable, tested, fast software: train, inspect and time classic CNNs."""


for _command in (train, evaluate, predict, runs, export, arith, summary, models, experiment, demo, bench, analyze):
    app.add_command(_command)
app.add_command(show)
app.add_command(animate)
app.add_command(report)
app.add_command(explore)
app.add_command(trust)
app.add_command(recipes)
app.add_command(cache)
app.add_command(lr_find)
app.add_command(interpret)
app.add_command(compare)
app.add_command(sweep)
demo.add_command(demo_dropout)
bench.add_command(bench_infer)


def _error(message: str, code: int = 2, *, one_line: bool = False) -> int:
    """Print ``cnnlab: error: MESSAGE`` as exactly one line on stderr. A cnnlab message is one line
    by construction (a newline inside it, e.g. from a file name, is shown as \\n); a library's
    message is cut to its first line."""
    text = message.strip()
    if one_line:
        text = text.replace("\r", "\\r").replace("\n", "\\n")
    first = text.splitlines()[0] if text else "unknown error"
    print(f"cnnlab: error: {first}", file=sys.stderr)
    return code


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (user mistakes: one line on stderr, code 2).

    Library warnings are not shown: stderr carries nothing but an error line, if any. Ctrl-C:
    ``interrupted``, code 130; SIGTERM or SIGHUP: ``terminated (SIGTERM)`` and how to resume, code
    128 + the signal's number (the handlers are this function's, restored when it returns).
    """
    for stream in (sys.stdout, sys.stderr):  # file and class names that are not valid UTF-8 print escaped
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _run(argv)


def _run(argv: list[str] | None) -> int:
    try:
        with stop_signals_raise():
            result = app.main(args=argv, prog_name="cnnlab", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except (_Passing, Terminated) as exc:
        stop = exc.stop if isinstance(exc, _Passing) else exc
        return _error(stopped_message(stop), stop.exit_code, one_line=True)
    except CnnlabError as exc:
        return _error(str(exc), exc.exit_code, one_line=True)
    except click.exceptions.NoArgsIsHelpError as exc:  # bare `cnnlab`: the help text
        print(exc.ctx.get_help() if exc.ctx else "")
        return 0
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        return _error(exc.format_message() + hint, exc.exit_code)
    except click.ClickException as exc:
        return _error(exc.format_message(), exc.exit_code)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        if isinstance(exc.__cause__, Terminated):  # stopped while click parsed the options
            return _error(stopped_message(exc.__cause__), exc.__cause__.exit_code, one_line=True)
        return _error("interrupted", 130)
    except MemoryError:
        return _error("out of memory; try a smaller --batch-size or --input-size")


def main() -> None:
    """The ``cnnlab`` command: the process's allocator policy first (:mod:`cnnlab.allocator`, before
    torch is imported and the heap grows), then :func:`run`."""
    from cnnlab import allocator

    allocator.exec_preloaded()  # CNNLAB_MALLOC=tcmalloc/jemalloc: start again with the library preloaded
    allocator.apply()
    sys.exit(run())
