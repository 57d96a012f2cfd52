"""One writer in a forked child process, so that two writers that are mostly Python (highdicom's
Parametric Map, pydicom's Secondary Capture files) use two CPUs instead of taking turns under one
interpreter lock.

The child is a fork: it sees the heatmap and the source headers without copying or pickling
them, writes its files itself (to temporary names, renamed when complete, as every writer does)
and sends back only what the function returns, or the exception it raised. Forking is used on
Linux only, and not from a daemonic process (a ``multiprocessing.Pool`` worker may not have
children); elsewhere the call simply runs in this process.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import traceback
from typing import Any, Callable

from medcam.errors import ExportError

__all__ = ["ForkedCall", "can_fork"]


def can_fork() -> bool:
    """Whether :class:`ForkedCall` runs its function in a child process here."""
    return (
        sys.platform.startswith("linux")
        and "fork" in multiprocessing.get_all_start_methods()
        and not multiprocessing.current_process().daemon
    )


class _RemoteTraceback(Exception):
    """The child's traceback, attached as the cause of the exception it raised."""

    def __str__(self) -> str:
        return self.args[0]


def _run_and_send(sender, nice: int, function: Callable, args: tuple, kwargs: dict) -> None:
    if nice:
        os.nice(nice)  # this child only: the caller keeps its own priority
    try:
        outcome: tuple = ("ok", function(*args, **kwargs), None)
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        outcome = ("error", exc, traceback.format_exc())
    try:
        sender.send(outcome)
    except Exception as exc:  # noqa: BLE001 - a result or exception that does not pickle
        detail = outcome[1] if outcome[0] == "error" else exc
        sender.send(("error", ExportError(f"{type(detail).__name__}: {detail}"), outcome[2]))
    finally:
        sender.close()


class ForkedCall:
    """``function(*args, **kwargs)`` started in a forked child (or run here when
    :func:`can_fork` is false); :meth:`result` waits for it and returns its value or raises its
    exception, with the child's traceback as the cause.

    ``nice`` (keyword only, not passed on) lowers the child's scheduling priority by that much,
    so that when the CPUs are all busy the caller's own work, usually the longer, goes first.
    """

    def __init__(self, function: Callable, *args: Any, nice: int = 0, **kwargs: Any) -> None:
        self._name = getattr(function, "__name__", "writer")
        self._process = None
        if not can_fork():
            try:
                self._outcome: tuple | None = ("ok", function(*args, **kwargs), None)
            except Exception as exc:  # noqa: BLE001 - raised from result(), as from a child
                self._outcome = ("error", exc, None)
            return
        self._outcome = None
        context = multiprocessing.get_context("fork")
        self._receiver, sender = context.Pipe(duplex=False)
        self._process = context.Process(target=_run_and_send, args=(sender, nice, function, args, kwargs), daemon=True)
        self._process.start()
        sender.close()

    @property
    def pid(self) -> int | None:
        """The child's process id; None when the call ran in this process."""
        return self._process.pid if self._process is not None else None

    def result(self) -> Any:
        if self._outcome is None:
            try:
                self._outcome = self._receiver.recv()
            except EOFError:
                self._process.join()
                message = (f"{self._name}: the writer process ended without a result (exit code "
                           f"{self._process.exitcode}; killed for lack of memory?)")
                self._outcome = ("error", ExportError(message), None)
            finally:
                self._receiver.close()
            self._process.join()
        status, value, remote_traceback = self._outcome
        if status == "ok":
            return value
        if remote_traceback and not isinstance(value, ExportError):
            raise value from _RemoteTraceback(remote_traceback)
        raise value
