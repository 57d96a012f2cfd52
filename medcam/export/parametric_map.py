"""DICOM Parametric Map of a heatmap, pixel-aligned with the source series (built with highdicom).

float32 frames, MONOCHROME2, no palette, a Real World Value Mapping; same Rows/Columns and
ImageOrientationPatient as the source, one frame per source slice in ascending order along the
plane normal, each frame's ImagePositionPatient copied (as the source's decimal strings) from its
source slice; a shared Frame Anatomy group from the source's anatomy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.sr.coding import Code

from medcam.errors import ExportError
from medcam.export.atomic import atomic_output
from medcam.export.frame_anatomy import set_frame_anatomy
from medcam.export.identity import (
    SERIES_NUMBERS,
    UidFactory,
    code_string,
    derived_object_identity,
    set_dimension_organization_uid,
)
from medcam.export.part10 import long_element_header
from medcam.export.source_planes import (
    frame_source_indices,
    highdicom_geometry,
    order_frames_along_normal,
    source_planes,
)
from medcam.geometry import Volume
from medcam.io.dicom import DicomSeries

__all__ = ["write_parametric_map"]

_FLOAT_PIXEL_DATA = 0x7FE00008


def write_parametric_map(
    heatmap: Volume,
    series: DicomSeries,
    path: str | Path,
    *,
    uids: UidFactory | None = None,
    series_number: int = SERIES_NUMBERS["pm"],
    label: str = "CAM",
    description: str = "medcam class activation map (raw)",
    overwrite: bool = False,
) -> Path:
    """Write ``heatmap`` (on ``series.volume``'s grid) as a Parametric Map.

    Raises
    ------
    ExportError
        The heatmap is not on the series' grid, the series was resampled (its slices are no
        longer source slices), or the source has no patient geometry (a radiograph: use the
        Secondary Capture, NIfTI or PNG outputs).
    """
    import highdicom as hd

    uids = uids or UidFactory()
    planes = source_planes(series, heatmap, "Parametric Map")
    pixels = np.ascontiguousarray(np.asarray(heatmap.array, dtype=np.float32).transpose(2, 1, 0))  # (k, rows, cols)
    low, high = float(pixels.min()), float(pixels.max())
    if not np.isfinite([low, high]).all():
        raise ExportError("the heatmap holds NaN or infinite values")
    mapping = hd.pm.RealWorldValueMapping(
        lut_label=label[:16],
        lut_explanation=description[:64],
        unit=Code("1", "UCUM", "no units"),
        value_range=(low, high if high > low else low + 1.0),
        slope=1.0,
        intercept=0.0,
    )
    # every source file: highdicom references them all (its checks cost about 2 ms a file)
    pm = hd.pm.ParametricMap(
        source_images=list(series.datasets),
        pixel_array=pixels,
        **derived_object_identity(uids, "pm", series_number),
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        # raw maps often span less than 1: LINEAR_EXACT allows a window narrower than 1
        voi_lut_transformations=[
            hd.VOILUTTransformation(
                window_center=(low + high) / 2, window_width=max(high - low, 1e-6), voi_lut_function="LINEAR_EXACT"
            )
        ],
        content_label=code_string(label),
        content_description=description[:64],
        **highdicom_geometry(planes, heatmap),
    )
    # highdicom copies each frame's position, the orientation and the pixel spacing from the
    # source images (their decimal strings) and references each frame's source slice; what it
    # has no argument for is done here:
    order_frames_along_normal(pm)  # ascending: the order 3D Slicer (dcmqi) stacks them in (highdicom: descending)
    set_frame_anatomy(pm, series.datasets[0])  # dcmqi reads it without checking it is there
    set_dimension_organization_uid(pm, uids.uid("pm-dimension-organization"))  # highdicom's is random
    frame_slices = frame_source_indices(pm, planes)
    source = series.datasets[0]
    # (no series Laterality: the Frame Anatomy group's FrameLaterality says it, and then it must be absent)
    for keyword in ("BodyPartExamined", "PatientAge", "PatientWeight", "PatientSize"):
        if keyword in source and keyword not in pm:
            setattr(pm, keyword, source[keyword].value)
    path = Path(path)
    with atomic_output(path, overwrite=overwrite) as temporary:
        _save(pm, pixels, frame_slices, temporary)
    return path


def _save(pm, pixels: np.ndarray, frame_slices: list[int], path: Path) -> None:
    """``pm.save_as(path)``, with the float pixel data written from ``pixels`` (frame ``f`` is
    ``pixels[frame_slices[f]]``: the frames may have been reordered since highdicom made its
    copy) rather than from highdicom's bytes: without pydicom's copy of all of them on the way to
    the file (tested against ``save_as``). FloatPixelData is the last element of the object, so
    it is appended last."""
    frames = np.asarray(pixels, dtype="<f4")
    if max(pm.keys()) != _FLOAT_PIXEL_DATA:  # not the last element: pydicom writes it all
        pm.FloatPixelData = np.ascontiguousarray(frames[frame_slices]).tobytes()  # in the frames' (reordered) order
        pm.save_as(path, enforce_file_format=True)
        return
    del pm[_FLOAT_PIXEL_DATA]  # highdicom's copy, freed before writing
    pm.save_as(path, enforce_file_format=True)
    with open(path, "ab") as handle:
        handle.write(long_element_header(_FLOAT_PIXEL_DATA, "OF", frames[0].nbytes * len(frame_slices)))
        for k in frame_slices:
            handle.write(frames[k].data)  # (rows, columns), contiguous
