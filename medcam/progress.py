"""Progress of long library work, reported to a callback the caller gives.

The library never draws a progress bar: a long call (a cohort run, training, an evaluation, data
generation) takes ``progress``, a callable that receives a :class:`Progress` after each unit of
work, and the caller shows it as it likes. The command line turns the reports into tqdm bars or
lines with the time left (:func:`progress_line`)::

    def show(report: Progress) -> None:
        print(f"{report.task}: {report.done} of {report.total} {report.unit}s ({report.item})")

    run_cohort(cases, model, "out/", progress=show)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Progress", "ProgressCallback", "report_each", "progress_line"]

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` units of ``task`` are finished.

    Attributes
    ----------
    task : str
        What is under way ("explaining", "epoch 3/20", "generating ct3d"): a new task name starts a
        new bar.
    done : int
        Units finished so far in this task, from 1.
    total : int or None
        Units the task has, None when not known in advance.
    unit : str
        What a unit is ("case", "batch", "study").
    item : str or None
        The unit just finished, where it has a name (a case id).
    """

    task: str
    done: int
    total: int | None
    unit: str = "it"
    item: str | None = None


#: What a long library call accepts as ``progress``.
ProgressCallback = Callable[[Progress], None]


def report_each(
    items: Iterable[T], progress: ProgressCallback | None, *, task: str, total: int | None, unit: str = "it"
) -> Iterator[T]:
    """``items`` one by one, reporting each to ``progress`` once the caller has finished with it
    (when the loop asks for the next one, or ends).

    >>> seen = []
    >>> for _ in report_each("ab", seen.append, task="letters", total=2, unit="letter"):
    ...     pass
    >>> [(p.done, p.total) for p in seen]
    [(1, 2), (2, 2)]
    """
    for done, item in enumerate(items, start=1):
        yield item
        if progress is not None:
            progress(Progress(task, done, total, unit))


def progress_line(done: int, total: int | None, item: str, seconds: float, elapsed: float) -> str:
    """'case 2 of 10 (a): 4.0 s, about 2 min 0 s left': the time left from the mean time per
    unit so far (``elapsed`` over ``done``); without a total, no time left.

    >>> progress_line(2, 10, "a", 4.04, 30.0)
    'case 2 of 10 (a): 4.0 s, about 2 min 0 s left'
    """
    line = f"case {done}{f' of {total}' if total else ''} ({item}): {seconds:.1f} s"
    if total and done < total:
        left = round(elapsed / done * (total - done))
        line += f", about {f'{left // 60} min ' if left >= 60 else ''}{left % 60} s left"
    return line
