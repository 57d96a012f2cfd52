"""Per-slice geometry and value mapping read from DICOM headers, single-frame and enhanced multi-frame.

Each image plane (a single-frame file, or one frame of a multi-frame object) becomes a
:class:`SlicePlane` holding its own ImagePositionPatient, ImageOrientationPatient, PixelSpacing
and rescale, read from the top level for single-frame objects and from the per-frame or shared
functional groups for enhanced multi-frame objects. Stacking them is :mod:`dicom_stack`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from medcam.errors import DicomSeriesError

__all__ = ["SlicePlane", "planes_from_dataset", "is_multiframe"]


@dataclass(frozen=True, eq=False)
class SlicePlane:
    """Geometry and value mapping of one image plane, in LPS millimetres (DICOM's frame).

    ``pixel_spacing`` is DICOM PixelSpacing: (row spacing, column spacing), i.e. the distance
    between rows first. ``position_lps`` and the cosines are ``None`` when the object has no
    Image Plane information (radiographs).
    """

    position_lps: np.ndarray | None
    row_cosine: np.ndarray | None
    column_cosine: np.ndarray | None
    pixel_spacing: tuple[float, float] | None
    thickness: float | None
    rows: int
    columns: int
    slope: float
    intercept: float
    dataset_index: int
    frame_index: int | None
    label: str

    @property
    def normal(self) -> np.ndarray:
        """The slice normal, row x column direction cosines (LPS).

        Raises
        ------
        DicomSeriesError
            The slice has no ImageOrientationPatient (a radiograph).
        """
        if self.row_cosine is None or self.column_cosine is None:
            raise DicomSeriesError(f"{self.label}: no ImageOrientationPatient, so no slice normal")
        return np.cross(self.row_cosine, self.column_cosine)


def is_multiframe(ds: Dataset) -> bool:
    """Whether ``ds`` holds several frames (an enhanced multi-frame image)."""
    return "PerFrameFunctionalGroupsSequence" in ds or int(getattr(ds, "NumberOfFrames", 1) or 1) > 1


def _floats(value, n: int, what: str, label: str) -> np.ndarray:
    try:
        array = np.array([float(v) for v in value], dtype=float)
    except (TypeError, ValueError) as exc:
        raise DicomSeriesError(f"{label}: {what} is not numeric ({value!r})") from exc
    if array.shape != (n,) or not np.all(np.isfinite(array)):
        raise DicomSeriesError(f"{label}: expected {n} finite numbers in {what}, found {value!r}")
    return array


def _orientation(value, label: str) -> tuple[np.ndarray, np.ndarray]:
    iop = _floats(value, 6, "ImageOrientationPatient", label)
    row, col = iop[:3], iop[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(np.dot(row, col)) > 1e-3:
        raise DicomSeriesError(
            f"{label}: ImageOrientationPatient {iop.tolist()} is not two orthogonal unit vectors"
        )
    return row / np.linalg.norm(row), col / np.linalg.norm(col)


def _spacing(ds: Dataset, label: str) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value:
            spacing = _floats(value, 2, keyword, label)
            if np.any(spacing <= 0):
                raise DicomSeriesError(f"{label}: {keyword} must be positive, found {spacing.tolist()}")
            return float(spacing[0]), float(spacing[1])
    return None


def _thickness(ds: Dataset) -> float | None:
    value = ds.get("SliceThickness")
    try:
        thickness = float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return thickness if thickness and thickness > 0 else None


def _rescale(ds: Dataset) -> tuple[float, float]:
    """(slope, intercept) of the modality LUT. A value that is not a number is NaN here, so the
    geometry stays readable (``medcam info``) and the voxels it would make are refused when the
    volume is read (:func:`medcam.io.dicom.read_dicom_series`: NaN after the modality LUT)."""
    values = []
    for keyword, default in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)):
        value = ds.get(keyword)
        try:
            values.append(float(value) if value not in (None, "") else default)
        except (TypeError, ValueError):
            values.append(float("nan"))
    return values[0], values[1]


def _single_frame_plane(ds: Dataset, index: int, label: str) -> SlicePlane:
    position = ds.get("ImagePositionPatient")
    orientation = ds.get("ImageOrientationPatient")
    row = col = None
    if orientation:
        row, col = _orientation(orientation, label)
    slope, intercept = _rescale(ds)
    return SlicePlane(
        position_lps=_floats(position, 3, "ImagePositionPatient", label) if position else None,
        row_cosine=row,
        column_cosine=col,
        pixel_spacing=_spacing(ds, label),
        thickness=_thickness(ds),
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        slope=slope,
        intercept=intercept,
        dataset_index=index,
        frame_index=None,
        label=label,
    )


def _group_item(ds: Dataset, frame_item: Dataset | None, sequence: str) -> Dataset | None:
    """A functional group macro's item for one frame: per-frame first, then shared."""
    for container in (frame_item, (ds.get("SharedFunctionalGroupsSequence") or [None])[0]):
        if container is not None and sequence in container and len(container[sequence].value) > 0:
            return container[sequence].value[0]
    return None


def _multiframe_planes(ds: Dataset, index: int, label: str) -> list[SlicePlane]:
    n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence") or [])
    if per_frame and len(per_frame) != n_frames:
        raise DicomSeriesError(
            f"{label}: NumberOfFrames is {n_frames} but PerFrameFunctionalGroupsSequence has {len(per_frame)} items"
        )
    planes = []
    for f in range(n_frames):
        frame_label = f"{label} frame {f + 1}"
        item = per_frame[f] if per_frame else None
        position_item = _group_item(ds, item, "PlanePositionSequence")
        orientation_item = _group_item(ds, item, "PlaneOrientationSequence")
        measures = _group_item(ds, item, "PixelMeasuresSequence")
        transform = _group_item(ds, item, "PixelValueTransformationSequence")
        if position_item is None or orientation_item is None:
            raise DicomSeriesError(
                f"{frame_label}: multi-frame object without PlanePositionSequence / PlaneOrientationSequence "
                "(a multi-frame object without patient geometry, e.g. cine, is not a volume)"
            )
        row, col = _orientation(orientation_item.ImageOrientationPatient, frame_label)
        slope, intercept = _rescale(transform) if transform is not None else _rescale(ds)
        planes.append(
            SlicePlane(
                position_lps=_floats(position_item.ImagePositionPatient, 3, "ImagePositionPatient", frame_label),
                row_cosine=row,
                column_cosine=col,
                pixel_spacing=_spacing(measures, frame_label) if measures is not None else _spacing(ds, frame_label),
                thickness=_thickness(measures) if measures is not None else _thickness(ds),
                rows=int(ds.Rows),
                columns=int(ds.Columns),
                slope=slope,
                intercept=intercept,
                dataset_index=index,
                frame_index=f,
                label=frame_label,
            )
        )
    return planes


def planes_from_dataset(ds: Dataset, index: int, label: str) -> list[SlicePlane]:
    """The image planes of one DICOM object (one for single-frame, one per frame otherwise)."""
    if int(getattr(ds, "SamplesPerPixel", 1) or 1) != 1:
        raise DicomSeriesError(
            f"{label}: colour images (SamplesPerPixel {ds.SamplesPerPixel}, {ds.get('PhotometricInterpretation')}) "
            "are not supported; expected a greyscale image"
        )
    if is_multiframe(ds):
        return _multiframe_planes(ds, index, label)
    return [_single_frame_plane(ds, index, label)]
