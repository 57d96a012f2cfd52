"""Reading the CSV tables a user gives (cohort lists, training and evaluation manifests).

One reader for all of them, so every table is read alike: UTF-8 with or without the byte-order
mark Excel writes, every problem (not text, not CSV, a missing column, no rows) a one-line
:class:`~medcam.errors.MedcamError` naming the file.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from medcam.errors import MedcamError
from medcam.io.paths import checked_input

__all__ = ["read_json_object", "read_table", "table_path"]


def read_table(path: str | Path, required: Sequence[str], *, what: str = "CSV") -> tuple[list[str], list[dict[str, str]]]:
    """The column names and rows of the CSV file ``path``, which must have the ``required`` columns
    and at least one row. Row ``i`` of the list is line ``i + 2`` of the file (after the header).

    Raises
    ------
    MedcamError
        ``path`` is not a readable file, not UTF-8 text, not CSV, lacks a required column or has no
        rows. ``what`` names the table in the message ("manifest", say).
    """
    path = checked_input(path)
    if path.is_dir():
        raise MedcamError(f"{path}: a folder, expected a {what} file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # Excel writes a byte-order mark
    except UnicodeDecodeError as exc:
        raise MedcamError(f"{path}: not a text {what} (byte {exc.start} is not UTF-8)") from None
    if "\x00" in text:
        raise MedcamError(f"{path}: not a text {what} (it holds NUL bytes)")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        columns = [name.strip() for name in reader.fieldnames or []]
        reader.fieldnames = columns
        rows = list(reader)
    except csv.Error as exc:
        raise MedcamError(f"{path}: not a readable {what} ({exc})") from None
    missing = [name for name in required if name not in columns]
    if missing:
        raise MedcamError(f"{path}: expected a {what} with the column{'s' if len(missing) > 1 else ''} "
                          f"{', '.join(repr(m) for m in missing)}; found {columns}")
    if not rows:
        raise MedcamError(f"{path}: the {what} has no rows")
    return columns, rows


def read_json_object(path: Path, error: type[MedcamError], where: str) -> dict:
    """The JSON object in ``path``; anything else (not UTF-8, not JSON, an array) raises ``error``
    with ``where`` (the file as the user knows it) at the start of the message."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{where} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise error(f"{where} is a JSON {type(value).__name__}, expected an object")
    return value


def table_path(table: Path, value: str | None) -> Path | None:
    """A path written in a table, relative to the table's folder unless absolute; None when blank."""
    text = (value or "").strip()
    if not text:
        return None
    path = Path(text)
    return path if path.is_absolute() else table.parent / path
