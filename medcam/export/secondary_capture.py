"""RGB Secondary Capture overlay series: one file per source slice, viewable in every viewer.

Each file is the windowed source slice with the colour heatmap alpha-blended in and a colour
legend; new SeriesInstanceUID, the source's StudyInstanceUID and FrameOfReferenceUID, patient
and study attributes copied, ImagePositionPatient / ImageOrientationPatient / PixelSpacing
copied as strings from its source slice, InstanceNumber in spatial order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import SecondaryCaptureImageStorage

from medcam import __version__
from medcam.errors import ExportError
from medcam.export.atomic import atomic_output
from medcam.export.identity import SERIES_NUMBERS, UidFactory
from medcam.export.overlay import blend, legend_panel, source_window, window_to_levels
from medcam.export.part10 import set_file_meta
from medcam.export.source_planes import SourcePlane, source_planes, source_reference
from medcam.geometry import Volume
from medcam.io.dicom import DicomSeries

__all__ = ["write_secondary_capture"]

#: Attributes of the source's series and frame of reference that the overlay series shares. Laterality
#: (Type 2C) is copied even when empty: an empty value is what satisfies its condition.
_SERIES_AND_FRAME = ("SpecificCharacterSet", "FrameOfReferenceUID", "PositionReferenceIndicator", "BodyPartExamined", "Laterality")


def patient_and_study_attributes(source: Dataset) -> Dataset:
    """The source's Patient, Clinical Trial Subject, General Study, Patient Study and Clinical
    Trial Study modules, as highdicom copies them into the Parametric Map and the SEG (its own
    tables of the standard, through its public copy method), so the overlay series says what the
    other objects say (de-identification, clinical trial, weight and size included)."""
    import highdicom as hd

    holder = hd.SOPClass.__new__(hd.SOPClass)  # only its copying method is used: no object is built
    Dataset.__init__(holder)
    holder.copy_patient_and_study_information(source)
    copied = Dataset()
    for element in holder:
        copied.add(element)
    return copied


def write_secondary_capture(
    heatmap: Volume,
    series: DicomSeries,
    folder: str | Path,
    *,
    uids: UidFactory | None = None,
    series_number: int = SERIES_NUMBERS["sc"],
    description: str = "medcam CAM overlay",
    colormap: str = "jet",
    opacity: float = 0.5,
    legend: Sequence[str] = (),
    window: tuple[float, float] | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write one RGB Secondary Capture image per slice of ``heatmap`` into ``folder``.

    Each image is the source slice (``window``: its gray-scale range, default the source's own
    window, else percentiles) with the map blended in, and to its right a legend panel: the
    ``legend`` lines (method, class, probability, "not for diagnosis") and the colour bar in raw
    map units. The panel adds columns after the source's last one, so every source pixel keeps
    its place (ImagePositionPatient and PixelSpacing hold for the image as a whole), and the
    legend stays off the anatomy. A source without patient geometry (a radiograph) gets the same
    overlay without the position attributes.
    """
    if not heatmap.geometry.is_close(series.volume.geometry, atol=1e-4):
        raise ExportError("Secondary Capture: the heatmap is not on the source series' grid")
    if series.resampled:
        raise ExportError(f"Secondary Capture: series {series.series_uid} was resampled; its slices are not source slices")
    if not 0.0 <= opacity <= 1.0:
        raise ExportError(f"Secondary Capture: opacity must be within 0..1, found {opacity}")
    try:
        planes = source_planes(series, heatmap, "Secondary Capture")
    except ExportError:
        planes = None  # no patient geometry: overlay without position attributes
    uids = uids or UidFactory()
    low, high = window or source_window(series.datasets, series.volume.array)
    top = float(np.max(heatmap.array))  # the map's maximum is full heat; negative evidence none
    shared = _series_template(series.datasets[0], uids.uid("sc-series"), series_number, description)
    panel = legend_panel(heatmap.shape[1], colormap=colormap, vmax=top, lines=legend)  # the same beside every slice
    shared.Columns, shared.Rows = heatmap.shape[0] + panel.shape[1], heatmap.shape[1]
    folder = Path(folder)
    paths = []
    for k in range(heatmap.shape[2]):
        gray = window_to_levels(series.volume.array[:, :, k].T, low, high)  # (rows, cols)
        heat = window_to_levels(heatmap.array[:, :, k].T, 0.0, top) if top > 0 else np.zeros_like(gray)  # 8-bit levels
        rgb = np.concatenate([blend(gray, heat, colormap=colormap, opacity=opacity), panel], axis=1)
        path = folder / f"SC{k + 1:04d}.dcm"
        ds = Dataset()  # its own element table, holding the shared elements (never changed) and its own
        ds.update(shared)
        ds.update(slice_attributes(uids, k, planes[k] if planes is not None else None))
        ds.PixelData = np.ascontiguousarray(rgb).tobytes()
        set_file_meta(ds)
        with atomic_output(path, overwrite=overwrite) as temporary:
            ds.save_as(temporary, enforce_file_format=True)
        paths.append(path)
    return paths


def slice_attributes(uids: UidFactory, k: int, plane: SourcePlane | None) -> Dataset:
    """The attributes of slice ``k``'s file that differ from file to file, but for its pixels."""
    ds = Dataset()
    ds.SOPInstanceUID = uids.uid("sc-instance", k)
    ds.InstanceNumber = k + 1
    if plane is not None:
        ds.ImagePositionPatient = list(plane.position)
        ds.ImageOrientationPatient = list(plane.orientation)
        ds.PixelSpacing = list(plane.pixel_spacing)
        ds.SliceThickness = plane.thickness or ""
        ds.SourceImageSequence = [source_reference(plane.dataset, plane.frame_index)]
    return ds


def _series_template(source_header: Dataset, series_uid: str, series_number: int, description: str) -> Dataset:
    """The attributes every image of the series shares."""
    ds = patient_and_study_attributes(source_header)
    for keyword in _SERIES_AND_FRAME:
        if keyword in source_header:
            ds[keyword] = source_header[keyword]
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.Modality = str(source_header.get("Modality", "OT"))
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description[:64]
    ds.ConversionType = "WSD"
    ds.Manufacturer = "medcam"
    ds.SoftwareVersions = __version__
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.BurnedInAnnotation = "NO"
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    return ds
