"""Explain a cohort (:mod:`medcam.cases` finds or lists its cases): a manifest row per case, resumable.

Cases run in this process one after another, side by side in ``workers`` worker processes
(:mod:`medcam.workers`: spawned, each holding the model once), or on the caller's executor (a
Dask ``distributed.Client`` included: :mod:`medcam.cluster`). Each case is written on its own;
this process keeps the manifest as results come in. A cohort can also be cut into parts
(:func:`medcam.cases.shard`) run by independent processes or machines, each with its own manifest.
A case that fails is recorded with its error and the run goes on.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from medcam.cases import shard
from medcam.errors import MedcamError
from medcam.explanation import as_model, default_target, explain, output_name
from medcam.export.case import DEFAULT_FORMATS
from medcam.models.explainable import ExplainableModel
from medcam.progress import Progress, ProgressCallback
from medcam.study import Study

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["MANIFEST_COLUMNS", "manifest_name", "run_cohort", "CohortSummary"]

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = (
    "case_id", "source", "series_uid", "modality", "prediction", "mapped_class", "probability", "peak_lps_mm",
    "outputs", "status", "error", "seconds", "request", "sent",
)


@dataclass
class CohortSummary:
    """What a cohort run did: cases explained, already done and failed, and the manifest it kept."""
    done: int
    skipped: int
    failed: int
    seconds: float
    manifest: Path
    not_sent: int = 0  # with send_to: cases written but not sent

    def __str__(self) -> str:
        unsent = f", {self.not_sent} written but not sent" if self.not_sent else ""
        return (f"{self.done} explained, {self.skipped} already done, {self.failed} failed{unsent} in {self.seconds:.1f} s; "
                f"manifest {self.manifest}")


def manifest_name(num_parts: int = 1, part_id: int = 0) -> str:
    """``manifest.csv``, or ``manifest.part-I-of-K.csv`` for part I of K (1-based in the name)."""
    return "manifest.csv" if num_parts == 1 else f"manifest.part-{part_id + 1}-of-{num_parts}.csv"


def _read_manifests(out: Path) -> dict[str, dict[str, str]]:
    """The rows of every manifest in ``out`` (the whole cohort's and each part's), the newest file's
    row winning for a case in several: a run sees what every part did."""
    rows: dict[str, dict[str, str]] = {}
    for path in sorted(out.glob("manifest*.csv"), key=lambda p: p.stat().st_mtime_ns):
        try:
            with open(path, newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                if "case_id" not in (reader.fieldnames or []):
                    raise MedcamError(f"{path}: not a medcam manifest (no case_id column); move it out of the output folder")
                rows.update({row["case_id"]: row for row in reader})
        except (UnicodeDecodeError, csv.Error) as exc:
            raise MedcamError(f"{path}: not a medcam manifest ({exc}); move it out of the output folder") from exc
    return rows


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


def _explain_case(study: Study, model: ExplainableModel, out_dir: Path, *, method: str, formats: Sequence[str],
                  deterministic_uids: bool, overwrite: bool, threshold=None, **options) -> dict[str, str]:
    start = time.perf_counter()
    row = {"case_id": study.case_id, "source": str(study.source), "series_uid": study.series_uid or ""}
    try:
        _ = study.volume
        row["series_uid"], row["modality"] = study.source_series_uid or "", study.modality or "NIfTI"
        explanation = explain(model, study, method=method, **options)
        outputs = explanation.save(out_dir / study.case_id, formats=formats, threshold=threshold,
                                   deterministic_uids=deterministic_uids, overwrite=overwrite)
        files = [p for paths in outputs.paths.values() for p in paths]
        row.update(
            prediction=explanation.predicted_name or "", mapped_class=explanation.target_name,
            probability=f"{explanation.probability:.4f}",
            peak_lps_mm=" ".join(f"{v:.2f}" for v in explanation.peak_lps), outputs=";".join(str(p) for p in files),
            status="ok", error="; ".join(outputs.notes),
        )
    except Exception as exc:  # noqa: BLE001 - one bad case must not stop a cohort
        row.update(status="failed", error=f"{type(exc).__name__}: {' '.join(str(exc).split())}")
    finally:
        study.release()  # a cohort keeps its studies listed, not read
    row["seconds"] = f"{time.perf_counter() - start:.2f}"
    return {column: row.get(column, "") for column in MANIFEST_COLUMNS}


def _case_task(handle, study: Study, out_dir: Path, options: dict) -> dict[str, str]:
    """One case in a worker process: the model is the one that process holds."""
    from medcam.workers import worker_model

    return _explain_case(study, worker_model(handle), out_dir, **options)


def _failed_row(study: Study, error: str) -> dict[str, str]:
    row = {"case_id": study.case_id, "source": str(study.source), "series_uid": study.series_uid or "", "status": "failed",
           "error": error}
    return {column: row.get(column, "") for column in MANIFEST_COLUMNS}


def run_cohort(
    cases: Sequence[Study],
    model,
    out_dir: str | Path,
    *,
    method: str = "cam",
    formats: Sequence[str] = DEFAULT_FORMATS,
    workers: int = 1,
    executor: Executor | Client | None = None,
    num_parts: int = 1,
    part_id: int = 0,
    force: bool = False,
    deterministic_uids: bool = False,
    input_roots: Sequence[str | Path] = (),
    progress: ProgressCallback | None = None,
    log: Callable[[str], None] | None = None,
    layer: str | None = None,
    fc_layer: str | None = None,
    allow_modality_mismatch: bool = False,
    target: int | str | None = None,
    threshold: float | str | None = None,
    send_to: str | None = None,
    calling_aet: str = "MEDCAM",
) -> CohortSummary:
    """Explain every case into ``out_dir/<case_id>/`` and keep the manifest up to date.

    ``model`` is an :class:`~medcam.models.ExplainableModel` (or a Checkpoint or path);
    ``target``, ``layer``, ``fc_layer`` and ``allow_modality_mismatch`` are passed to
    :func:`medcam.explain`, ``threshold`` to :meth:`Explanation.save` (the SEG's), as for one case.
    A class or threshold that cannot be used is refused before any case runs.

    Where the cases run: with ``workers`` 1 (the default) in this process, one after another;
    with more, in that many spawned worker processes that each load the model once
    (:func:`medcam.workers.process_pool`; a worker that dies takes its cases to another, and a
    case that kills workers twice is recorded as failed); or on ``executor``: any
    :class:`concurrent.futures.Executor` the caller owns, or a Dask ``distributed.Client``, whose
    workers then load the model once each (:func:`medcam.cluster.cluster_executor`). Outputs
    must lie on a folder every worker sees.

    With ``num_parts`` > 1 only part ``part_id`` of the cases runs (:func:`medcam.cases.shard`), and its rows
    go to its own manifest (:func:`manifest_name`); a run sees the rows of every manifest in the
    folder. Cases recorded as ``ok`` for the same request (method, model, formats, class,
    threshold, layer: the manifest's ``request`` column) whose outputs and completion marker all
    exist are skipped unless ``force``; a case asked for differently, or left half-written, is
    redone. The manifest is rewritten (atomically) after every case, so an interrupted run
    resumes. ``out_dir`` may lie neither in a DICOM series folder nor in any of ``input_roots``.

    With ``send_to`` (a DICOMweb URL or ``dimse://AET@host:port``) every case's DICOM outputs are
    then sent (:func:`medcam.pacs.send_outputs`, calling AE title ``calling_aet`` for DIMSE); the
    manifest's ``sent`` column says "sent to ..." or "written, not sent: <reason>", and a re-run
    sends only what the destination has not acknowledged (cases already done included).
    """
    log = log or logger.info  # the caller's logging configuration decides what shows
    from medcam.cam import CamMethod
    from medcam.export.atomic import atomic_output, check_output_dir, completion_marker

    model = as_model(model)
    method = CamMethod.from_name(method).value
    if target is not None:
        target = model.class_index(target)
    if threshold is not None or "seg" in formats:
        from medcam.export.threshold import parse_threshold

        if parse_threshold(threshold) is None:
            raise MedcamError("the 'seg' output needs --threshold: a raw value (2.5), a share of the maximum (50%) or a percentile (p99)")
    if workers < 1:
        raise MedcamError(f"workers must be at least 1, found {workers}")
    if send_to is not None:
        from medcam.pacs.targets import check_calling_aet, parse_target

        send_to, calling_aet = str(parse_target(send_to)), check_calling_aet(calling_aet)  # refused before any case runs
    cases = shard(cases, num_parts, part_id)
    out = check_output_dir(out_dir, [*input_roots, *(case.source for case in cases if case.source is not None and case.source.is_dir())])
    manifest_path = out / manifest_name(num_parts, part_id)
    rows = _read_manifests(out)
    # the class as explain() resolves it (a two-class model's finding class by default), so that runs
    # recorded before that default count as another request
    explained = target if target is not None else default_target(model)
    explained = "predicted" if explained is None else explained
    request = request_key(model, method=method, formats=sorted(formats), target=explained, threshold=threshold, layer=layer,
                          fc_layer=fc_layer, deterministic_uids=deterministic_uids)
    todo = [case for case in cases if force or not _complete(
        rows.get(case.case_id), request, completion_marker(out / case.case_id, output_name(method)))]
    skipped = len(cases) - len(todo)
    options: dict[str, Any] = dict(
        method=method, formats=tuple(formats), deterministic_uids=deterministic_uids, overwrite=True, layer=layer,
        fc_layer=fc_layer, allow_modality_mismatch=allow_modality_mismatch, target=target, threshold=threshold)
    start = time.perf_counter()

    def save() -> None:
        with atomic_output(manifest_path, overwrite=True) as temporary:
            with open(temporary, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(MANIFEST_COLUMNS))
                writer.writeheader()
                writer.writerows(rows[case.case_id] for case in cases if case.case_id in rows)

    done = failed = 0

    def record(row: dict[str, str]) -> None:
        nonlocal done, failed
        row["request"] = request
        rows[row["case_id"]] = row
        save()
        done += 1
        if progress is not None:
            progress(Progress("explaining", done, len(todo), "case", item=row["case_id"]))
        if row["status"] == "failed":
            failed += 1
            log(f"{row['case_id']}: failed: {row['error']}")

    if executor is None and workers == 1:
        for case in todo:
            record(_explain_case(case, model, out, **options))
    elif executor is None:
        _run_in_pool(todo, model, out, options, workers, record)
    else:
        _run_on_executor(todo, model, out, options, executor, record)
    not_sent = 0
    if send_to is not None:
        not_sent = _send_cases(cases, rows, out, output_name(method), send_to, calling_aet, log)
    if not todo or send_to is not None:
        save()
    return CohortSummary(len(todo) - failed, skipped, failed, time.perf_counter() - start, manifest_path, not_sent)


def _send_cases(cases: Sequence[Study], rows: dict[str, dict[str, str]], out: Path, name: str, send_to: str,
                calling_aet: str, log: Callable[[str], None]) -> int:
    """Send each ok case's outputs; its row's ``sent`` says how it went. A destination that cannot
    be reached fails every case alike, once each: the outputs stay, and a re-run sends them.
    Returns the number of cases not sent."""
    from medcam.pacs import PacsError, send_outputs

    not_sent = 0
    for case in cases:
        row = rows.get(case.case_id)
        if row is None or row.get("status") != "ok":
            continue
        try:
            result = send_outputs(out / case.case_id, send_to, names=[name], calling_aet=calling_aet)
            row["sent"] = f"sent to {send_to}"
            if result.sent:
                log(f"{case.case_id}: {result}")
        except PacsError as exc:
            row["sent"] = f"written, not sent: {' '.join(str(exc).split())}"
            log(f"{case.case_id}: {row['sent']}")
            not_sent += 1
    return not_sent


def _run_on_executor(todo: Sequence[Study], model: ExplainableModel, out: Path, options: dict[str, Any],
                     executor: Executor | Client, record: Callable[[dict[str, str]], None]) -> None:
    """Every case on the caller's executor (a Dask Client: its workers hold the model once each)."""
    from medcam.workers import model_handle

    handle = model_handle(model)
    pool: Any = executor  # anything with submit() that returns concurrent futures
    if hasattr(executor, "get_executor") and hasattr(executor, "register_plugin"):
        # a distributed.Client: its workers load the model once each; the tasks carry only its key
        from medcam.cluster import cluster_executor

        pool, handle = cluster_executor(cast("Client", executor), handle), handle.light()
    futures = {pool.submit(_case_task, handle, case, out, options): case for case in todo}
    for future in as_completed(futures):
        try:
            row = future.result()
        except Exception as exc:  # noqa: BLE001 - a worker lost for good, a task the cluster gave up on
            row = _failed_row(futures[future], f"{type(exc).__name__}: {' '.join(str(exc).split())}")
        record(row)


#: How many worker processes a case may take down with it before it is recorded as failed.
_WORKER_DEATHS_PER_CASE = 2


def _run_in_pool(todo: Sequence[Study], model: ExplainableModel, out: Path, options: dict, workers: int, record) -> None:
    """Every case in ``workers`` spawned processes of medcam's own. When a worker dies (killed,
    out of memory) the pool breaks: it is started again and the cases not yet finished run
    again. The first ``workers`` of them in submission order (those that may have been running)
    are suspects; a case suspected twice is recorded as failed rather than tried forever."""
    from medcam.workers import model_handle, process_pool

    handle = model_handle(model)
    suspected = {case.case_id: 0 for case in todo}
    pending = list(todo)
    while pending:
        size = min(workers, len(pending))
        pool = process_pool(size, handle)
        try:
            futures = {pool.submit(_case_task, handle.light(), case, out, options): case for case in pending}
            broken = []
            for future in as_completed(futures):
                try:
                    record(future.result())
                except BrokenProcessPool:
                    broken.append(futures[future])
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=not broken)
        order = {case.case_id: n for n, case in enumerate(pending)}
        pending = []
        for n, case in enumerate(sorted(broken, key=lambda c: order[c.case_id])):
            suspected[case.case_id] += n < size
            if suspected[case.case_id] >= _WORKER_DEATHS_PER_CASE:
                record(_failed_row(case, f"its worker process died {suspected[case.case_id]} times (killed, or out of memory)"))
            else:
                pending.append(case)
