"""Write every output of one explained study: NIfTI + sidecar, Parametric Map, Secondary Capture
series, optional SEG and AI-result SR, PNG. Outputs that the source cannot support are skipped
with a note."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom

from medcam import __version__
from medcam.errors import ExportError
from medcam.explanation import Explanation
from medcam.export.atomic import atomic_output, check_output_dir, completion_marker, output_lock
from medcam.export.figures import map_label, write_figure
from medcam.export.identity import UidFactory
from medcam.export.nifti import write_heatmap_nifti
from medcam.export.overlay import HEAT_THRESHOLD
from medcam.export.parametric_map import write_parametric_map
from medcam.export.secondary_capture import write_secondary_capture
from medcam.export.seg import write_segmentation
from medcam.export.structured_report import write_structured_report
from medcam.export.threshold import Threshold, parse_threshold

__all__ = ["FORMATS", "CaseOutputs", "write_case_outputs"]

#: "nifti" writes ``<name>.nii.gz`` (ISA-L gzip level 1); "nii" the same map uncompressed
#: (``<name>.nii``, about 4 bytes a voxel, written at disk speed).
FORMATS = ("nifti", "nii", "pm", "sc", "seg", "sr", "png")
DEFAULT_FORMATS = ("nifti", "pm", "sc", "png")


@dataclass
class CaseOutputs:
    """Paths written per format, and why any asked-for format was skipped."""

    paths: dict[str, list[Path]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _versions() -> dict[str, str]:
    import highdicom
    import monai
    import nibabel
    import pydicom
    import torch

    return {"medcam": __version__, "torch": torch.__version__, "monai": monai.__version__,
            "pydicom": pydicom.__version__, "highdicom": highdicom.__version__, "nibabel": nibabel.__version__}


def write_case_outputs(
    explanation: Explanation,
    out_dir: str | Path,
    *,
    formats: Sequence[str] = DEFAULT_FORMATS,
    threshold: float | str | Threshold | None = None,
    deterministic_uids: bool = False,
    overwrite: bool = False,
    name: str = "cam",
    colormap: str = "jet",
    opacity: float = 0.5,
    executor: Executor | None = None,
    gzip_threads: int = 0,
) -> CaseOutputs:
    """Write the asked-for ``formats`` of ``explanation`` into ``out_dir`` (``Explanation.save``).

    The DICOM outputs need a DICOM study (its headers, ``explanation.study.series``).
    ``threshold`` is needed for ``seg``: raw map units (2.5), a share of the map's maximum ("50%")
    or a percentile ("p99"), see :func:`medcam.export.threshold.parse_threshold`; ``colormap``
    and ``opacity`` shape the Secondary Capture overlay. With ``deterministic_uids`` each DICOM
    object's UIDs are a function of everything that shapes it (:func:`request_seed`): the same
    request gives the same UIDs (and identical files), any change gives new ones.

    The folder is locked while the set is written (a second run there is refused at once), and
    a completion marker (``.<name>.complete.json``) is written last: a set without one is the
    leftover of an interrupted run, and is replaced without ``overwrite``; a complete set is
    replaced only with ``overwrite``.

    The outputs are written one after another in the calling thread, unless the caller gives an
    ``executor`` (a :class:`concurrent.futures.ThreadPoolExecutor`, say, as highdicom takes one for
    its frame encoding): then the NIfTI, Parametric Map, Secondary Capture, SEG and PNG writers
    run on it side by side and the SR after them. ``gzip_threads`` threads of its own deflate
    the ``.nii.gz`` (0: the writing thread does).
    """
    # the request is checked before anything is locked, created or replaced
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ExportError(f"unknown output formats {unknown}; valid: {', '.join(FORMATS)}")
    threshold = parse_threshold(threshold)
    if "seg" in formats and threshold is None:
        raise ExportError("the 'seg' output needs a threshold: raw map units (2.5), a share of the maximum (50%) or a percentile (p99)")
    if "nifti" in formats and "nii" in formats:
        raise ExportError("choose one NIfTI output: 'nifti' (.nii.gz) or 'nii' (uncompressed .nii)")
    study = explanation.study
    out = check_output_dir(out_dir, [study.source] if study.source is not None else [])
    with output_lock(out):
        marker = completion_marker(out, name)
        if not marker.exists():
            overwrite = True  # nothing, or what an interrupted run left: not a result anyone has
        elif overwrite:
            marker.unlink()
        outputs = _write_outputs(explanation, out, formats=formats, threshold=threshold, deterministic_uids=deterministic_uids,
                                 overwrite=overwrite, name=name, colormap=colormap, opacity=opacity, executor=executor,
                                 gzip_threads=gzip_threads)
        written = [str(p) for paths in outputs.paths.values() for p in paths]
        with atomic_output(marker, overwrite=True) as temporary:
            temporary.write_text(json.dumps({"outputs": written, "notes": outputs.notes, "medcam": __version__}, indent=1) + "\n")
    return outputs


def _write_outputs(
    explanation: Explanation,
    out: Path,
    *,
    formats: Sequence[str],
    threshold: Threshold | None,
    deterministic_uids: bool,
    overwrite: bool,
    name: str,
    colormap: str,
    opacity: float,
    executor: Executor | None,
    gzip_threads: int,
) -> CaseOutputs:
    """The outputs themselves, into ``out`` (:func:`write_case_outputs` checks and creates it, holds the
    lock and writes the marker)."""
    study = explanation.study
    series = study.series
    source_path = study.source if study.source is not None else study.case_id
    result = explanation.result
    provenance = explanation.model.provenance
    window = explanation.display_window  # once: it may take percentiles of the whole volume
    sidecar: dict[str, Any] = {
        "method": result.method, "layer": result.layer, "target_class": explanation.target,
        "target_name": explanation.target_name, "score": explanation.score, "probability": explanation.probability,
        "predicted_class": explanation.predicted, "predicted_name": explanation.predicted_name,
        "map_units": "raw (not normalised; higher = more evidence for the target class)",
        "map_range": [float(explanation.heatmap.array.min()), float(explanation.heatmap.array.max())],
        "display": {"normalisation": "value / map maximum, negative values as 0", "transparent_below": HEAT_THRESHOLD,
                    "map_maximum": float(explanation.heatmap.array.max()), "window": list(window)},
        "peak_voxel_ijk": list(explanation.peak_index), "peak_lps_mm": [round(float(v), 3) for v in explanation.peak_lps],
        "model": provenance.to_dict(), "model_sha256": provenance.sha256, "source": str(source_path),
        "source_series_uid": series.series_uid if series is not None else None,
        "threshold": threshold.to_dict(explanation.heatmap.array) if threshold is not None else None, "versions": _versions(),
    }
    request = {  # what shapes every object (its own parts are added per object below)
        "source": sidecar["source_series_uid"] or str(source_path),
        "model": explanation.model.weights_sha256() if deterministic_uids else None,
        "method": result.method, "layer": result.layer, "target": explanation.target, "medcam": __version__,
    }
    pm_uids = _uid_factory(deterministic_uids, request, "pm")
    seg_uids = _uid_factory(deterministic_uids, request, "seg", threshold=sidecar["threshold"])
    sc_uids = _uid_factory(deterministic_uids, request, "sc", colormap=colormap, opacity=opacity)
    outputs = CaseOutputs()
    heatmap = explanation.heatmap

    wants_nifti = "nifti" in formats or "nii" in formats
    nifti_path = out / (f"{name}.nii.gz" if "nifti" in formats else f"{name}.nii")
    if wants_nifti and nifti_path.exists() and not overwrite:  # refuse before anything is written
        raise ExportError(f"{nifti_path}: already exists; pass overwrite=True (--overwrite) to replace it")
    dicom_formats = [f for f in ("pm", "sc", "seg") if f in formats]
    if series is None and (dicom_formats or "sr" in formats):
        outputs.notes.append(f"{', '.join(dicom_formats + ['sr'] * ('sr' in formats))}: skipped, the source is not DICOM")
        dicom_formats = []
    # one writer after another in this thread, or side by side on the caller's executor
    jobs: dict[str, Callable[[], Any]] = {}
    if wants_nifti:
        jobs["nifti"] = lambda: list(write_heatmap_nifti(heatmap, nifti_path, sidecar=sidecar, overwrite=overwrite,
                                                         gzip_threads=gzip_threads))
    if series is not None:  # (dicom_formats is empty when it is None)
        for fmt in dicom_formats:
            if fmt == "pm":
                jobs["pm"] = lambda: _attempt(lambda: [write_parametric_map(
                    heatmap, series, out / f"{name}_pm.dcm", uids=pm_uids, overwrite=overwrite,
                    label=result.method, description=f"medcam {result.method} map (raw)")])
            elif fmt == "sc":
                jobs["sc"] = lambda: _attempt(lambda: write_secondary_capture(
                    heatmap, series, out / f"{name}_sc", uids=sc_uids, overwrite=overwrite,
                    description=f"medcam {result.method} overlay", colormap=colormap, opacity=opacity,
                    legend=legend_lines(explanation), window=window))
            elif fmt == "seg":
                jobs["seg"] = lambda: _attempt(lambda: [write_segmentation(
                    heatmap, series, out / f"{name}_seg.dcm", threshold=threshold, uids=seg_uids,
                    method=result.method, overwrite=overwrite)])
    if "png" in formats:
        label = map_label(result.method, explanation.target_name, heatmap.array)
        jobs["png"] = lambda: [write_figure(explanation.source, heatmap, out / f"{name}.png", window=window,
                                            title=figure_title(explanation), label=label, mask=study.mask_on_image_grid(),
                                            overwrite=overwrite)]
    written = _run_jobs(jobs, executor)
    if "nifti" in written:
        outputs.paths["nifti"] = written["nifti"]
    for fmt in dicom_formats:  # paths and notes in format order
        if isinstance(written[fmt], ExportError):
            outputs.notes.append(f"{fmt}: skipped, {written[fmt]}")
        else:
            outputs.paths[fmt] = written[fmt]
    if "sr" in formats and series is not None:  # after the objects it references
        referenced = [p for fmt in ("pm", "seg") for p in outputs.paths.get(fmt, [])]
        references = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in referenced]
        sr_uids = _uid_factory(deterministic_uids, request, "sr", references=references)
        report = _attempt(lambda: [write_structured_report(explanation, out / f"{name}_sr.dcm", uids=sr_uids,
                                                           referenced_objects=referenced, overwrite=overwrite)])
        if isinstance(report, ExportError):
            outputs.notes.append(f"sr: skipped, {report}")
        else:
            outputs.paths["sr"] = report
    if "png" in written:
        outputs.paths["png"] = written["png"]
    return outputs


def legend_lines(explanation: Explanation) -> list[str]:
    """The text burnt into the Secondary Capture's legend panel."""
    lines = [f"medcam {explanation.method}", f"'{explanation.target_name}' p={explanation.probability:.3f}"]
    if explanation.predicted_name is not None and explanation.predicted != explanation.target:
        lines.append(f"predicted '{explanation.predicted_name}'")
    return lines + ["raw map units", "not for diagnosis"]


def figure_title(explanation: Explanation) -> str:
    """The prediction, and which class the map explains with its probability."""
    explained = f"{explanation.method} map of '{explanation.target_name}' (p={explanation.probability:.3f})"
    if explanation.predicted_name is None or explanation.predicted == explanation.target:
        return f"{explanation.study.case_id}: {explained}"
    return f"{explanation.study.case_id}: predicted '{explanation.predicted_name}'; {explained}"


def _run_jobs(jobs: dict[str, Callable[[], Any]], executor: Executor | None) -> dict[str, Any]:
    """Each job's result: in this thread, or on ``executor`` (every job is waited for, and the
    first error raised, before anything is returned: no writer is left running)."""
    if executor is None:
        return {key: job() for key, job in jobs.items()}
    futures = {key: executor.submit(job) for key, job in jobs.items()}
    wait(futures.values())
    return {key: future.result() for key, future in futures.items()}


def request_seed(request: dict[str, Any], kind: str, **extra: Any) -> str:
    """The seed of one DICOM object's UIDs: the request (source series, model SHA-256, method,
    layer, target, medcam version), the object's kind and what only it depends on (the SEG's
    threshold, the overlay's colour map and opacity)."""
    key = json.dumps({**request, "object": kind, **extra}, sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()


def _uid_factory(deterministic: bool, request: dict[str, Any], kind: str, **extra: Any) -> UidFactory:
    return UidFactory(request_seed(request, kind, **extra) if deterministic else None)


def _attempt(write: Callable[[], list[Path]]) -> list[Path] | ExportError:
    """The paths a writer wrote, or the ExportError saying why it could not (a note, not a failure)."""
    try:
        return write()
    except ExportError as exc:
        return exc
