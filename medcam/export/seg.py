"""Optional DICOM Segmentation (BINARY) of the heatmap thresholded at a recorded value (highdicom)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.sr.codedict import codes

from medcam import __version__
from medcam.errors import ExportError
from medcam.export.atomic import atomic_output
from medcam.export.identity import SERIES_NUMBERS, UidFactory, derived_object_identity, set_dimension_organization_uid
from medcam.export.source_planes import (
    frame_source_indices,
    highdicom_geometry,
    source_planes,
)
from medcam.export.threshold import Threshold, parse_threshold
from medcam.geometry import Volume
from medcam.io.dicom import DicomSeries

__all__ = ["write_segmentation"]


def write_segmentation(
    heatmap: Volume,
    series: DicomSeries,
    path: str | Path,
    *,
    threshold: float | str | Threshold | None,
    uids: UidFactory | None = None,
    series_number: int = SERIES_NUMBERS["seg"],
    method: str = "cam",
    overwrite: bool = False,
) -> Path:
    """Write ``heatmap >= threshold`` as a BINARY Segmentation aligned with the source slices.

    The threshold is a raw value, a share of the map's maximum ("50%") or a percentile ("p99")
    (:func:`medcam.export.threshold.parse_threshold`); the object records it as given and in
    raw units (segment label, algorithm parameters, ContentDescription). Empty frames are kept
    so frames match source slices one to one.
    """
    import highdicom as hd

    planes = source_planes(series, heatmap, "Segmentation")
    given = parse_threshold(threshold)
    if given is None:
        raise ExportError("Segmentation: a threshold is needed (a raw value, a share of the maximum such as 50%, or p99)")
    raw = given.raw(np.asarray(heatmap.array))
    stated = f"{raw:.4g}" if given.unit == "raw" else f"{given.describe()} = {raw:.4g}"
    mask = np.ascontiguousarray((np.asarray(heatmap.array) >= raw).transpose(2, 1, 0)).astype(np.uint8)
    if not mask.any():
        raise ExportError(f"Segmentation: no voxel reaches the threshold {stated} (map maximum {float(heatmap.array.max()):g})")
    algorithm = hd.AlgorithmIdentificationSequence(
        name="medcam", version=__version__, family=codes.cid7162.ArtificialIntelligence,
        parameters={"method": method, "threshold": f"{raw:g}", "threshold_as_given": given.describe()},
    )
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=f"{method} >= {stated}"[:64],
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    uids = uids or UidFactory()
    seg = hd.seg.Segmentation(
        source_images=list(series.datasets),
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        **derived_object_identity(uids, "seg", series_number),
        content_description=f"{method} map >= {stated} (raw units)"[:64],
        **highdicom_geometry(planes, heatmap),
        omit_empty_frames=False,
    )
    frame_source_indices(seg, planes)  # each frame at a source slice's position, referencing it (raises if not)
    set_dimension_organization_uid(seg, uids.uid("seg-dimension-organization"))  # highdicom's is random
    path = Path(path)
    with atomic_output(path, overwrite=overwrite) as temporary:
        seg.save_as(temporary, enforce_file_format=True)
    return path
