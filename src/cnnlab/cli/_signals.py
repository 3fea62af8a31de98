"""SIGTERM and SIGHUP -- what Slurm, Kubernetes, systemd, ``timeout`` and a closed terminal send --
stop a command the way Ctrl-C does, installed by the command line only (a program that imports
cnnlab keeps its own signal handling).

The signal raises :class:`Terminated`, a ``KeyboardInterrupt``, in the main thread: every
``except KeyboardInterrupt`` and ``finally`` on the way out runs, a file being written is
finished first (:func:`cnnlab.storage.atomic_write` holds Python-level handlers until its
rename), the run's last checkpoint stays resumable, and :func:`cnnlab.cli.run` prints one line
and returns 128 + the signal's number (143 for SIGTERM), as a shell reports a process that the
signal ended. A signal that is ignored when the command starts (``nohup``) stays ignored.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

__all__ = ["STOP_SIGNALS", "Terminated", "stop_signals_raise", "stopped_message"]

STOP_SIGNALS = ("SIGTERM", "SIGHUP")


class Terminated(KeyboardInterrupt):
    """The command was asked to stop by a signal other than Ctrl-C's SIGINT."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        self.name = signal.Signals(self.signum).name
        super().__init__(self.name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP raise :class:`Terminated` (main thread only;
    elsewhere, or where a signal is ignored, nothing changes); the previous handlers come back after."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for name in STOP_SIGNALS:
            signum = getattr(signal, name, None)  # SIGHUP: POSIX only
            if signum is not None and signal.getsignal(signum) is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, _raise_terminated)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def stopped_message(exc: Terminated) -> str:
    """``terminated (SIGTERM)``, with how to resume when a run directory was being trained (the run
    directory's writer names it on the exception: ``exc.resume_dir``)."""
    resume_dir = getattr(exc, "resume_dir", None)
    if resume_dir is None:
        return f"terminated ({exc.name})"
    return f"terminated ({exc.name}); resume with `cnnlab train --resume {resume_dir}`"
