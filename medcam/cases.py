"""Where a cohort's cases come from: a folder of studies, a CSV that lists them, a synthetic task;
and which of them one process runs (a part of a sharded run).

The folder and CSV readers return :class:`~medcam.study.Study` objects that are not read yet: a
case that cannot be read fails on its own, where it is explained.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from medcam.errors import MedcamError
from medcam.io.volume import is_nifti_path
from medcam.study import Study, safe_case_id

__all__ = ["find_cases", "cases_from_csv", "synthetic_cases", "shard", "part_from_environment"]


def find_cases(root: str | Path) -> list[Study]:
    """Every NIfTI file and every DICOM image series below ``root``, as studies not yet read."""
    root = Path(root)
    if not root.is_dir():
        raise MedcamError(f"{root}: expected a folder of studies")
    cases = [Study(p, safe_case_id(str(p.relative_to(root)))) for p in sorted(root.rglob("*")) if p.is_file() and is_nifti_path(p)]
    dicom_files = [p for p in root.rglob("*") if p.is_file() and not is_nifti_path(p) and not p.name.startswith(".")]
    if dicom_files:
        from medcam.io.dicom_scan import scan_files

        scan = scan_files(sorted(dicom_files))
        for info in scan.series:
            folder = info.files[0].parent
            label = str(folder.relative_to(root)) if folder != root else root.name
            suffix = f"_s{info.number}" if sum(1 for s in scan.series if s.files[0].parent == folder) > 1 else ""
            cases.append(Study(folder, safe_case_id(label + suffix), info.uid))
        series_folders = {info.files[0].parent for info in scan.series}
        for bad in scan.unreadable:  # a damaged file in a series folder fails that series' case; alone, its own
            if bad.path.parent not in series_folders:
                cases.append(Study(bad.path, safe_case_id(str(bad.path.relative_to(root)))))
    if not cases:
        raise MedcamError(f"{root}: no NIfTI file or DICOM image series found")
    return sorted(_unique_ids(cases), key=lambda c: c.case_id)


def _unique_ids(cases: list[Study]) -> list[Study]:
    """Cases whose ids collide (two series of one folder with the same SeriesNumber, say) get a
    short digest of their series UID or path appended: one folder per case, always."""
    from collections import Counter
    from dataclasses import replace
    from hashlib import sha256

    counts = Counter(case.case_id for case in cases)
    unique = []
    for case in cases:
        if counts[case.case_id] > 1:
            key = case.series_uid or str(case.source)
            case = replace(case, case_id=f"{case.case_id}_{sha256(key.encode()).hexdigest()[:8]}", _loaded={})
        unique.append(case)
    return unique


def cases_from_csv(path: str | Path) -> list[Study]:
    """Cases listed in a CSV with an ``image`` column (a DICOM folder or file, a NIfTI file) and,
    optionally, ``case_id`` (default: the image path as written), ``series_uid`` (one series of a
    folder), ``mask`` (a lesion mask on any grid), ``label`` (a class name or index) and ``map``
    (a map already written, e.g. ``cam.nii.gz``, for :func:`medcam.metrics.evaluation.evaluate`
    to score); paths relative to the CSV. A case without a label is positive when it has a mask.

    Raises
    ------
    MedcamError
        Not a readable CSV, no ``image`` column, an empty image cell, or two rows with one case id.
    """
    from medcam.io.tables import read_table, table_path

    path = Path(path)
    _, rows = read_table(path, ["image"], what="cohort CSV")
    cases: list[Study] = []
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, start=2):
        if not (row.get("image") or "").strip():
            raise MedcamError(f"{path} row {number}: the image column is empty")
        source = table_path(path, row["image"])
        # the id: the case_id column, else the path as written (patient1/ct.nii.gz and patient2/ct.nii.gz differ)
        case_id = safe_case_id(row.get("case_id") or row["image"].strip())
        if case_id in seen:
            raise MedcamError(f"{path} rows {seen[case_id]} and {number}: both are case {case_id!r}; "
                              "give each row its own case_id (every case writes its own folder)")
        seen[case_id] = number
        mask, map_path = (table_path(path, row.get(key)) for key in ("mask", "map"))
        cases.append(Study(source, case_id, row.get("series_uid") or None, mask,
                           (row.get("label") or "").strip() or None, map_path))
    return cases


def synthetic_cases(task_name: str, n: int, seed: int) -> Iterator[Study]:
    """``n`` lesion-positive studies of a synthetic task drawn with ``seed``."""
    from medcam.synthetic.tasks import get_task

    task = get_task(task_name)
    for index in range(n):
        study, _ = task.matched_pair(index, seed)
        yield study.to_study(f"{task_name}-{seed}-{index}")


def shard(cases: Sequence[Study], num_parts: int, part_id: int) -> list[Study]:
    """Part ``part_id`` (0-based) of ``num_parts``: every ``num_parts``-th case from the
    ``part_id``-th on, in the order given (the order :func:`find_cases` and a CSV give are the
    same in every process), so the parts together hold every case exactly once."""
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise MedcamError(f"part {part_id} of {num_parts}: the part id must lie in 0..{max(num_parts, 1) - 1} and parts be >= 1")
    return list(cases[part_id::num_parts])


def part_from_environment(
    num_parts: int | None = None, part_id: int | None = None, environ: Mapping[str, str] | None = None
) -> tuple[int, int]:
    """(number of parts, 0-based part id) of a sharded run: ``num_parts``/``part_id`` when given,
    else torchrun's ``WORLD_SIZE``/``RANK``, else a SLURM job array's task count and id (from its
    ``SLURM_ARRAY_TASK_MIN``), else (1, 0), the whole cohort. ``environ`` defaults to ``os.environ``.

    >>> part_from_environment(environ={"SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_MIN": "5"})
    (4, 1)

    Raises
    ------
    MedcamError
        Only one of ``num_parts`` and ``part_id``, or a variable that is not a whole number.
    """
    import os

    environ = os.environ if environ is None else environ
    if num_parts is not None or part_id is not None:
        if num_parts is None or part_id is None:
            raise MedcamError("--num-parts and --part-id go together")
        return num_parts, part_id
    variables = (("WORLD_SIZE", "RANK", None), ("SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN"))
    for count, index, first in variables:
        if environ.get(count) and environ.get(index):
            try:
                offset = int(environ.get(first) or 0) if first else 0  # SLURM array ids may start anywhere
                return int(environ[count]), int(environ[index]) - offset
            except ValueError as exc:
                raise MedcamError(f"{count}={environ[count]!r}, {index}={environ[index]!r}: expected whole numbers") from exc
    return 1, 0
