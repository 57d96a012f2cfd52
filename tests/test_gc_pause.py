"""The collector pause is scoped: restored after the call, after an exception, after nesting and
across threads, and left off if it was off."""

import gc
import threading

import pytest

from medcam.gc_pause import paused_gc, pauses_gc
from medcam.io import read_dicom_series


@pytest.fixture(autouse=True)
def _collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    (gc.enable if was else gc.disable)()


def test_paused_inside_and_restored_after_nesting_and_errors():
    @pauses_gc
    def inner():
        assert not gc.isenabled()
        raise ValueError("boom")

    with paused_gc():
        assert not gc.isenabled()
        with pytest.raises(ValueError):
            inner()
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off():
    gc.disable()
    with paused_gc():
        pass
    assert not gc.isenabled()


def test_overlapping_pauses_in_two_threads_end_with_the_collector_on():
    inside, release = threading.Event(), threading.Event()

    def other():
        with paused_gc():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    with paused_gc():
        thread.start()
        inside.wait(5)
    assert not gc.isenabled()  # the other thread's pause is still running
    release.set()
    thread.join(5)
    assert gc.isenabled()


def test_the_dicom_reader_restores_the_collector(tmp_path, ct_study):
    from medcam.data import write_dicom_series

    write_dicom_series(ct_study.volume, tmp_path / "ct")
    assert read_dicom_series(tmp_path / "ct").volume.shape == ct_study.volume.shape
    assert gc.isenabled()
