"""One progress convention: the library reports to a callback; only the command line draws bars."""

import ast
from pathlib import Path

import pytest

import medcam
from medcam.progress import Progress, progress_line, report_each

PACKAGE = Path(medcam.__file__).parent


def test_progress_lines_give_the_time_left_from_the_mean_so_far():
    assert progress_line(2, 10, "a", 4.04, 30.0) == "case 2 of 10 (a): 4.0 s, about 2 min 0 s left"
    assert progress_line(9, 10, "b", 2.0, 45.0) == "case 9 of 10 (b): 2.0 s, about 5 s left"
    assert progress_line(10, 10, "b", 3.0, 30.0) == "case 10 of 10 (b): 3.0 s"
    assert progress_line(3, None, "c", 1.0, 3.0) == "case 3 (c): 1.0 s"


def test_each_item_is_reported_once_the_caller_is_done_with_it():
    seen: list[Progress] = []
    handled = []
    for item in report_each(["x", "y", "z"], seen.append, task="letters", total=3, unit="letter"):
        handled.append((item, len(seen)))  # while the caller holds an item, it is not reported yet
    assert handled == [("x", 0), ("y", 1), ("z", 2)]
    assert seen == [Progress("letters", done, 3, "letter") for done in (1, 2, 3)]
    assert list(report_each(range(2), None, task="quiet", total=2)) == [0, 1]


def test_an_error_in_the_loop_reports_nothing_for_the_unit_it_stopped():
    seen: list[Progress] = []
    with pytest.raises(ZeroDivisionError):
        for number in report_each([1, 0], seen.append, task="dividing", total=2):
            1 / number
    assert [p.done for p in seen] == [1]


def test_only_the_command_line_draws_progress_bars():
    """tqdm is imported by cli.py alone; the library takes ``progress`` callbacks (a bool flag
    that switches a bar on would draw from inside the library)."""
    importing, flags = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = str(path.relative_to(PACKAGE))
        for node in ast.walk(ast.parse(path.read_text(), where)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                if any(n.split(".")[0] == "tqdm" for n in names) and where != "cli.py":
                    importing.append(where)
            if isinstance(node, ast.arg) and node.arg == "progress" and ast.unparse(node.annotation or ast.Constant(None)) == "bool":
                flags.append(where)
    assert importing == [] and flags == []


def test_the_command_line_draws_a_bar_per_task(capsys):
    from medcam.cli import _Bars

    bars = _Bars()
    for report in (Progress("epoch 1/2", 1, 2, "batch"), Progress("epoch 1/2", 2, 2, "batch"), Progress("epoch 2/2", 1, 2, "batch")):
        bars(report)
    bars.close()
    drawn = capsys.readouterr().err
    assert "epoch 1/2" in drawn and "2/2" in drawn and "epoch 2/2" in drawn and "batch" in drawn
