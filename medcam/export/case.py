"""Write every output of one explained study: NIfTI + sidecar, Parametric Map, Secondary Capture
series, optional SEG, PNG. Outputs that the source cannot support are skipped with a note."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from medcam import __version__
from medcam.errors import ExportError
from medcam.explain import Explanation
from medcam.export.figures import write_figure
from medcam.export.forked import ForkedCall
from medcam.export.nifti import write_heatmap_nifti
from medcam.export.outputs import UidFactory, check_output_dir
from medcam.export.overlay import source_window
from medcam.export.parametric_map import load_highdicom_tables, write_parametric_map
from medcam.export.secondary_capture import write_secondary_capture
from medcam.export.seg import write_segmentation
from medcam.gc_pause import pauses_gc
from medcam.io.dicom import DicomSeries

__all__ = ["FORMATS", "CaseOutputs", "write_case_outputs"]

#: "nifti" writes ``<name>.nii.gz`` (ISA-L gzip level 1, all CPUs); "nii" the same map uncompressed
#: (``<name>.nii``, about 4 bytes a voxel, written at disk speed).
FORMATS = ("nifti", "nii", "pm", "sc", "seg", "png")
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


@pauses_gc
def write_case_outputs(
    explanation: Explanation,
    out_dir: str | Path,
    *,
    source_path: str | Path,
    series: DicomSeries | None = None,
    checkpoint_sha256: str | None = None,
    formats: Sequence[str] = DEFAULT_FORMATS,
    threshold: float | None = None,
    deterministic_uids: bool = False,
    overwrite: bool = False,
    name: str = "cam",
) -> CaseOutputs:
    """Write the asked-for ``formats`` of ``explanation`` into ``out_dir``.

    ``series`` (the DICOM source read with :func:`read_dicom_series`) is needed for the DICOM
    outputs. ``threshold`` (raw map units) is needed for ``seg``. With ``deterministic_uids``
    the same source, model, method and target give the same UIDs (and identical pixel data).
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ExportError(f"unknown output formats {unknown}; valid: {', '.join(FORMATS)}")
    if "seg" in formats and threshold is None:
        raise ExportError("the 'seg' output needs a threshold (in raw map units)")
    if "nifti" in formats and "nii" in formats:
        raise ExportError("choose one NIfTI output: 'nifti' (.nii.gz) or 'nii' (uncompressed .nii)")
    out = check_output_dir(out_dir, [source_path])
    result = explanation.result
    sidecar: dict[str, Any] = {
        "method": result.method, "layer": result.layer, "target_class": explanation.target,
        "target_name": explanation.target_name, "score": explanation.score, "probability": explanation.probability,
        "map_units": "raw (not normalised; higher = more evidence for the target class)",
        "map_range": [float(explanation.heatmap.array.min()), float(explanation.heatmap.array.max())],
        "peak_voxel_ijk": list(explanation.peak_index), "peak_lps_mm": [round(float(v), 3) for v in explanation.peak_lps],
        "model_checkpoint_sha256": checkpoint_sha256, "source": str(source_path),
        "source_series_uid": series.series_uid if series is not None else None,
        "threshold": threshold, "versions": _versions(),
    }
    seed = None
    if deterministic_uids:
        key = f"{sidecar['source_series_uid'] or source_path}|{checkpoint_sha256}|{result.method}|{result.layer}|{explanation.target}"
        seed = hashlib.sha256(key.encode()).hexdigest()
    uids = UidFactory(seed)
    outputs = CaseOutputs()
    heatmap = explanation.heatmap

    wants_nifti = "nifti" in formats or "nii" in formats
    nifti_path = out / (f"{name}.nii.gz" if "nifti" in formats else f"{name}.nii")
    if wants_nifti and nifti_path.exists() and not overwrite:  # refuse before anything is written
        raise ExportError(f"{nifti_path}: already exists; pass overwrite=True (--overwrite) to replace it")
    dicom_formats = [f for f in ("pm", "sc", "seg") if f in formats]
    if dicom_formats and series is None:
        outputs.notes.append(f"{', '.join(dicom_formats)}: skipped, the source is not DICOM")
        dicom_formats = []
    # highdicom's Parametric Map, the slowest writer and mostly Python, runs in a forked child
    # while the rest is written here. It is forked first, before the NIfTI thread starts, so no
    # thread of this process is in the middle of anything when the child is made.
    if "pm" in dicom_formats:
        load_highdicom_tables()  # once, here: every case's child inherits them
    parametric_map = ForkedCall(
        write_parametric_map, heatmap, series, out / f"{name}_pm.dcm", uids=uids, overwrite=overwrite,
        label=result.method, description=f"medcam {result.method} map (raw)",
    ) if "pm" in dicom_formats else None
    with ThreadPoolExecutor(max_workers=1) as background:
        # the NIfTI's compression runs in threads outside the GIL, while the DICOM writers
        # (mostly Python) run here
        nifti = background.submit(write_heatmap_nifti, heatmap, nifti_path, sidecar=sidecar,
                                  overwrite=overwrite) if wants_nifti else None
        first_note = len(outputs.notes)
        _write_dicom_outputs(explanation, series, out, dicom_formats, threshold, uids, overwrite, name, outputs)
        if parametric_map is not None:
            try:
                outputs.paths["pm"] = [parametric_map.result()]
            except ExportError as exc:
                outputs.notes.insert(first_note, f"pm: skipped, {exc}")  # in format order, as the others
        if nifti is not None:
            outputs.paths["nifti"] = list(nifti.result())
    if "png" in formats:
        window = source_window(series.datasets, explanation.source.array) if series is not None else None
        title = f"{result.method}: {explanation.target_name} p={explanation.probability:.3f}"
        outputs.paths["png"] = [write_figure(explanation.source, heatmap, out / f"{name}.png", window=window, title=title, overwrite=overwrite)]
    return outputs


def _write_dicom_outputs(explanation: Explanation, series: DicomSeries, out: Path, formats: Sequence[str],
                         threshold: float | None, uids: UidFactory, overwrite: bool, name: str, outputs: CaseOutputs) -> None:
    """The Secondary Capture series and the SEG, here (the Parametric Map is written by a child)."""
    result, heatmap = explanation.result, explanation.heatmap
    for fmt in (f for f in formats if f in ("sc", "seg")):
        try:
            if fmt == "sc":
                outputs.paths["sc"] = write_secondary_capture(heatmap, series, out / f"{name}_sc", uids=uids, overwrite=overwrite,
                                                              description=f"medcam {result.method} overlay")
            else:
                outputs.paths["seg"] = [write_segmentation(heatmap, series, out / f"{name}_seg.dcm", threshold=float(threshold),
                                                           uids=uids, method=result.method, overwrite=overwrite)]
        except ExportError as exc:
            outputs.notes.append(f"{fmt}: skipped, {exc}")
