"""Explain a cohort: every study under a folder (or listed in a CSV), a manifest row per case, resumable.

One model stays in memory; ``workers`` threads read and write studies in parallel while the
model runs one case at a time. A case that fails is recorded with its error and the run goes on.
"""

from __future__ import annotations

import csv
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from medcam.errors import MedcamError
from medcam.explanation import as_model, explain, output_name
from medcam.export.case import DEFAULT_FORMATS
from medcam.io.volume import is_nifti_path
from medcam.models.explainable import ExplainableModel
from medcam.study import Study, safe_case_id

__all__ = ["MANIFEST_COLUMNS", "find_cases", "cases_from_csv", "run_cohort", "CohortSummary"]

MANIFEST_COLUMNS = (
    "case_id", "source", "series_uid", "modality", "prediction", "probability", "peak_lps_mm",
    "outputs", "status", "error", "seconds", "request",
)


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
    """Cases listed in a CSV with an ``image`` column (and optional ``case_id``, ``series_uid``,
    ``mask``, ``label``, ``map``), paths relative to the CSV."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as handle:  # Excel writes a byte-order mark
        rows = list(csv.DictReader(handle))
    if not rows or "image" not in rows[0]:
        raise MedcamError(f"{path}: expected a CSV with an 'image' column and at least one row")
    cases, seen = [], {}
    for number, row in enumerate(rows, start=2):
        given = Path(row["image"])
        source = given if given.is_absolute() else path.parent / given
        # the id: the case_id column, else the path as written (patient1/ct.nii.gz and patient2/ct.nii.gz differ)
        case_id = safe_case_id(row.get("case_id") or str(given))
        if case_id in seen:
            raise MedcamError(f"{path} rows {seen[case_id]} and {number}: both are case {case_id!r}; "
                              "give each row its own case_id (every case writes its own folder)")
        seen[case_id] = number
        mask, map_path = (Path(row[key].strip()) if (row.get(key) or "").strip() else None for key in ("mask", "map"))
        mask, map_path = (p if p is None or p.is_absolute() else path.parent / p for p in (mask, map_path))
        cases.append(Study(source, case_id, row.get("series_uid") or None, mask,
                           (row.get("label") or "").strip() or None, map_path))
    return cases


@dataclass
class CohortSummary:
    done: int
    skipped: int
    failed: int
    seconds: float
    manifest: Path

    def __str__(self) -> str:
        return (f"{self.done} explained, {self.skipped} already done, {self.failed} failed in {self.seconds:.1f} s; "
                f"manifest {self.manifest}")


def _read_manifest(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        return {row["case_id"]: row for row in csv.DictReader(handle)}


def _complete(row: dict[str, str] | None, request: str, marker: Path) -> bool:
    """A case is done when its row is ok for the same request, its outputs exist, and so does
    the completion marker its writer writes last (an interrupted set has none)."""
    if not row or row.get("status") != "ok" or row.get("request") != request or not marker.exists():
        return False
    outputs = [Path(p) for p in row.get("outputs", "").split(";") if p]
    return bool(outputs) and all(p.exists() for p in outputs)


def request_key(model: ExplainableModel, **request) -> str:
    """A digest of everything a cohort run asks of each case: a re-run asking something else
    (another method, model, class, threshold, format list, layer) redoes the case."""
    import hashlib
    import json

    text = json.dumps({"model": model.weights_sha256(), **request}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _explain_case(study: Study, model: ExplainableModel, out_dir: Path, model_lock: threading.Lock, *, method: str,
                  formats: Sequence[str], deterministic_uids: bool, overwrite: bool, threshold=None, **options) -> dict[str, str]:
    start = time.perf_counter()
    row = {"case_id": study.case_id, "source": str(study.source), "series_uid": study.series_uid or ""}
    try:
        _ = study.volume  # read here, outside the model lock: reading and writing run in parallel
        row["series_uid"], row["modality"] = study.source_series_uid or "", study.modality or "NIfTI"
        with model_lock:  # one model, one case at a time on it
            explanation = explain(model, study, method=method, **options)
        outputs = explanation.save(out_dir / study.case_id, formats=formats, threshold=threshold,
                                   deterministic_uids=deterministic_uids, overwrite=overwrite)
        files = [p for paths in outputs.paths.values() for p in paths]
        row.update(
            prediction=explanation.target_name, probability=f"{explanation.probability:.4f}",
            peak_lps_mm=" ".join(f"{v:.2f}" for v in explanation.peak_lps), outputs=";".join(str(p) for p in files),
            status="ok", error="; ".join(outputs.notes),
        )
    except Exception as exc:  # noqa: BLE001 - one bad case must not stop a cohort
        row.update(status="failed", error=f"{type(exc).__name__}: {' '.join(str(exc).split())}")
    finally:
        study.release()  # a cohort keeps its studies listed, not read
    row["seconds"] = f"{time.perf_counter() - start:.2f}"
    return {column: row.get(column, "") for column in MANIFEST_COLUMNS}


def run_cohort(
    cases: Sequence[Study],
    model,
    out_dir: str | Path,
    *,
    method: str = "cam",
    formats: Sequence[str] = DEFAULT_FORMATS,
    workers: int = 2,
    force: bool = False,
    deterministic_uids: bool = False,
    input_roots: Sequence[str | Path] = (),
    progress: bool = False,
    log: Callable[[str], None] = print,
    layer: str | None = None,
    fc_layer: str | None = None,
    allow_modality_mismatch: bool = False,
    target: int | str | None = None,
    threshold: float | str | None = None,
) -> CohortSummary:
    """Explain every case into ``out_dir/<case_id>/`` and keep ``out_dir/manifest.csv`` up to date.

    ``model`` is an :class:`~medcam.models.ExplainableModel` (or a Checkpoint or path);
    ``target``, ``layer``, ``fc_layer`` and ``allow_modality_mismatch`` are passed to
    :func:`medcam.explain`, ``threshold`` to :meth:`Explanation.save` (the SEG's), as for one case.
    A class or threshold that cannot be used is refused before any case runs.

    Cases recorded as ``ok`` for the same request (method, model, formats, class, threshold,
    layer: the manifest's ``request`` column) whose outputs and completion marker all exist are
    skipped unless ``force``; a case asked for differently, or left half-written, is redone. The
    manifest is rewritten (atomically) after every case, so an interrupted run resumes.
    ``out_dir`` may lie neither in a DICOM series folder nor in any of ``input_roots``.
    """
    from tqdm.auto import tqdm

    from medcam.cam import CamMethod
    from medcam.export.outputs import atomic_output, check_output_dir, completion_marker

    model = as_model(model)
    method = CamMethod.from_name(method).value
    if target is not None:
        target = model.class_index(target)
    if threshold is not None or "seg" in formats:
        from medcam.export.threshold import parse_threshold

        if parse_threshold(threshold) is None:
            raise MedcamError("the 'seg' output needs --threshold: a raw value (2.5), a share of the maximum (50%) or a percentile (p99)")
    out = check_output_dir(out_dir, [*input_roots, *(case.source for case in cases if case.source is not None and case.source.is_dir())])
    manifest_path = out / "manifest.csv"
    rows = _read_manifest(manifest_path)
    request = request_key(model, method=method, formats=sorted(formats), target=target, threshold=threshold, layer=layer,
                          fc_layer=fc_layer, deterministic_uids=deterministic_uids)
    todo = [case for case in cases if force or not _complete(
        rows.get(case.case_id), request, completion_marker(out / case.case_id, output_name(method)))]
    skipped = len(cases) - len(todo)
    lock, write_lock = threading.Lock(), threading.Lock()
    start = time.perf_counter()

    def save() -> None:
        with write_lock, atomic_output(manifest_path, overwrite=True) as temporary:
            with open(temporary, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(MANIFEST_COLUMNS))
                writer.writeheader()
                writer.writerows(rows[case.case_id] for case in cases if case.case_id in rows)

    failed = 0
    bar = tqdm(total=len(todo), desc="explaining", disable=not progress, dynamic_ncols=True)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {
            pool.submit(_explain_case, case, model, out, lock, method=method, formats=formats,
                        deterministic_uids=deterministic_uids, overwrite=True, layer=layer, fc_layer=fc_layer,
                        allow_modality_mismatch=allow_modality_mismatch, target=target, threshold=threshold): case
            for case in todo
        }
        for future in as_completed(futures):
            row = future.result()
            row["request"] = request
            rows[row["case_id"]] = row
            save()
            bar.update(1)
            if row["status"] == "failed":
                failed += 1
                log(f"{row['case_id']}: failed: {row['error']}")
    bar.close()
    if not todo:
        save()
    return CohortSummary(len(todo) - failed, skipped, failed, time.perf_counter() - start, manifest_path)
