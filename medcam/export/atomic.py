"""Rules every exporter follows: never write inside the input, never overwrite silently, and
never leave a half-written file (write to a temporary name in the same folder, then rename); one
run at a time in an output folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medcam.errors import ExportError

__all__ = ["LOCK_NAME", "check_output_dir", "completion_marker", "output_lock", "partial_path", "atomic_output"]


def check_output_dir(out_dir: str | Path, inputs: list[str | Path]) -> Path:
    """Create ``out_dir``; refuse it when it lies inside an input folder (or is one), or is the
    folder that holds an input file (the outputs would sit among the inputs)."""
    out = Path(out_dir).resolve()
    for source in inputs:
        source = Path(source).resolve()
        if source.is_dir() and (out == source or source in out.parents):
            raise ExportError(f"{out_dir}: the output folder lies inside the input folder {source}; choose another place")
        if not source.is_dir() and out == source.parent:
            raise ExportError(f"{out_dir}: the output folder is the one that holds the input {source.name}; "
                              "the outputs would be mixed with the inputs; choose another place")
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out_dir}: exists and is not a folder; the outputs need a folder (give another --out)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{out_dir}: cannot create the output folder ({exc.strerror or exc})") from exc
    return out


def partial_path(path: Path) -> Path:
    """A temporary name next to ``path``, unique to this process and call: two runs writing the
    same output never share one."""
    import uuid

    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")


LOCK_NAME = ".medcam.lock"


@contextmanager
def output_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock while an output set is written there; a second run that asks for it
    meanwhile gets an ExportError at once instead of writing over the first one's files. (An
    advisory ``flock``: released by the system when the holder dies, so a killed run leaves no
    stale lock.)"""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    try:
        handle = open(folder / LOCK_NAME, "a+")
    except OSError as exc:
        raise ExportError(f"{folder}: cannot write there ({exc.strerror or exc})") from exc
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExportError(f"{folder}: another medcam run is writing its outputs here (it holds {LOCK_NAME}); "
                              "wait for it to finish, or choose another output folder") from None
        yield
    finally:
        handle.close()  # releases the lock


def completion_marker(folder: Path, name: str) -> Path:
    """The file written last, when every output of the set ``name`` in ``folder`` is complete."""
    return folder / f".{name}.complete.json"


@contextmanager
def atomic_output(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` when the block succeeds.

    Raises ExportError when ``path`` exists and ``overwrite`` is False, and when the system
    refuses the write (a full disk, a read-only location), naming ``path``. On any failure the
    temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise ExportError(f"{path}: already exists; pass overwrite=True (--overwrite) to replace it")
    temporary = partial_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield temporary
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ExportError(f"{path}: cannot be written ({exc.strerror or exc})") from exc
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
