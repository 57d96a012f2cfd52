"""A writer in a forked child: it sees this process's data without pickling, and its result,
its exception or its death come back to the caller."""

import os
import threading

import numpy as np
import pytest

from medcam.errors import ExportError
from medcam.export import forked
from medcam.export.forked import ForkedCall, can_fork

needs_fork = pytest.mark.skipif(not can_fork(), reason="forking is used on Linux only")


def _checksum_in_child(array, lock):
    with lock:  # a lock does not pickle: it reached the child because the child is a fork
        return os.getpid(), float(array.sum())


@needs_fork
def test_the_call_runs_in_another_process_on_this_process_data():
    array = np.arange(1_000_000, dtype=np.float64)
    call = ForkedCall(_checksum_in_child, array, threading.Lock())
    pid, total = call.result()
    assert pid == call.pid != os.getpid() and total == float(array.sum())


def _fail(kind):
    if kind == "export":
        raise ExportError("the source was resampled")
    if kind == "other":
        raise ValueError("a bug in a writer")
    if kind == "die":
        os._exit(3)
    return lambda: None  # a result that does not pickle


@needs_fork
def test_an_export_error_comes_back_as_itself():
    with pytest.raises(ExportError, match="the source was resampled"):
        ForkedCall(_fail, "export").result()


@needs_fork
def test_another_exception_comes_back_with_the_child_traceback_as_its_cause():
    with pytest.raises(ValueError, match="a bug in a writer") as info:
        ForkedCall(_fail, "other").result()
    assert "_fail" in str(info.value.__cause__) and "Traceback" in str(info.value.__cause__)


@needs_fork
def test_a_child_that_dies_gives_a_clear_error_with_its_exit_code():
    call = ForkedCall(_fail, "die")
    with pytest.raises(ExportError, match="exit code 3"):
        call.result()
    with pytest.raises(ExportError, match="exit code 3"):  # asking again gives the same answer
        call.result()


@needs_fork
def test_a_result_that_does_not_pickle_is_an_error_not_a_hang():
    with pytest.raises(ExportError, match="pickle|lambda"):
        ForkedCall(_fail, "unpicklable").result()


def test_without_fork_the_call_runs_here_with_the_same_outcomes(monkeypatch):
    monkeypatch.setattr(forked, "can_fork", lambda: False)
    call = ForkedCall(_checksum_in_child, np.ones(10), threading.Lock())
    pid, total = call.result()
    assert pid == os.getpid() and call.pid is None and total == 10.0
    with pytest.raises(ExportError, match="resampled"):
        ForkedCall(_fail, "export").result()


def _niceness():
    return os.nice(0)


@needs_fork
def test_nice_lowers_the_child_priority_only():
    before = os.nice(0)
    assert ForkedCall(_niceness, nice=5).result() == min(before + 5, 19)
    assert os.nice(0) == before
