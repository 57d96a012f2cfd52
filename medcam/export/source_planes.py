"""The source slice behind each slice of a heatmap: its position, orientation and spacing as the
source's own decimal strings, for exporters that must align with the source pixel for pixel."""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset

from medcam.errors import ExportError
from medcam.geometry import Volume
from medcam.io.dicom import DicomSeries

__all__ = [
    "SourcePlane", "source_planes", "source_reference", "frame_source_indices", "highdicom_geometry", "order_frames_along_normal",
]


@dataclass(frozen=True)
class SourcePlane:
    """Attributes of one source slice, as strings copied from the source header."""

    dataset: Dataset
    frame_index: int | None
    position: tuple[str, ...]
    orientation: tuple[str, ...]
    pixel_spacing: tuple[str, ...]
    thickness: str | None  # SliceThickness as written in the source, if any


def _item(ds: Dataset, frame: int | None, sequence: str) -> Dataset | None:
    if frame is None:
        return ds
    per_frame = ds.PerFrameFunctionalGroupsSequence[frame]
    for container in (per_frame, ds.get("SharedFunctionalGroupsSequence", [None])[0]):
        if container is not None and sequence in container:
            return container[sequence][0]
    return None


def source_planes(series: DicomSeries, heatmap: Volume, what: str) -> list[SourcePlane]:
    """One :class:`SourcePlane` per heatmap slice, or an ExportError saying why ``what`` can't align."""
    if not heatmap.geometry.is_close(series.volume.geometry, atol=1e-4):
        raise ExportError(f"{what}: the heatmap is not on the source series' grid ({heatmap.geometry} vs {series.volume.geometry})")
    if series.resampled:
        raise ExportError(
            f"{what}: series {series.series_uid} was resampled to a regular grid (a missing slice), so its slices "
            "are not source slices; a pixel-aligned object cannot be written (NIfTI and PNG outputs still can)"
        )
    planes = []
    for frame in series.frames:
        ds = series.datasets[frame.dataset_index]
        position = _item(ds, frame.frame_index, "PlanePositionSequence")
        orientation = _item(ds, frame.frame_index, "PlaneOrientationSequence")
        measures = _item(ds, frame.frame_index, "PixelMeasuresSequence")
        if (position is None or "ImagePositionPatient" not in position or orientation is None
                or "ImageOrientationPatient" not in orientation or measures is None or "PixelSpacing" not in measures):
            raise ExportError(
                f"{what}: the source ({ds.get('Modality', '?')}) has no ImagePositionPatient/ImageOrientationPatient/PixelSpacing; "
                "it cannot be placed in patient space (the Secondary Capture, NIfTI and PNG outputs can)"
            )
        thickness = measures.get("SliceThickness")
        planes.append(
            SourcePlane(
                dataset=ds,
                frame_index=frame.frame_index,
                position=tuple(str(v) for v in position.ImagePositionPatient),
                orientation=tuple(str(v) for v in orientation.ImageOrientationPatient),
                pixel_spacing=tuple(str(v) for v in measures.PixelSpacing),
                thickness=str(thickness) if thickness not in (None, "") else None,
            )
        )
    return planes


def source_reference(source: Dataset, frame_index: int | None = None) -> Dataset:
    """A reference item to a source instance (and frame, for a multi-frame source)."""
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if frame_index is not None:
        item.ReferencedFrameNumber = frame_index + 1
    return item


def frame_source_indices(instance: Dataset, planes: list[SourcePlane]) -> list[int]:
    """The index in ``planes`` of each frame of a highdicom object, in the object's frame order.

    highdicom stores the frames in an order of its own, copies each frame's position from the
    source image at that position and references that image (or frame) in the frame's
    derivation; frames are matched to planes by that position, never by index, and the reference
    is checked against the plane's source.

    Raises
    ------
    ExportError
        A frame at a position where no source slice lies, or one that references another image
        than the slice there (a highdicom that builds frames otherwise than the one tested).
    """
    import numpy as np

    positions = np.array([[float(v) for v in plane.position] for plane in planes])
    order = []
    for number, item in enumerate(instance.PerFrameFunctionalGroupsSequence, start=1):
        frame_position = np.array([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
        distances = np.linalg.norm(positions - frame_position, axis=1)
        index = int(distances.argmin())
        if distances[index] > 1e-3:
            raise ExportError(f"frame {number} at {frame_position.tolist()} matches no source slice (nearest {distances[index]:.4f} mm)")
        plane = planes[index]
        references = [ref for derivation in item.get("DerivationImageSequence", []) for ref in derivation.get("SourceImageSequence", [])]
        expected = (plane.dataset.SOPInstanceUID, None if plane.frame_index is None else plane.frame_index + 1)
        if [(ref.ReferencedSOPInstanceUID, ref.get("ReferencedFrameNumber")) for ref in references] != [expected]:
            raise ExportError(f"frame {number} does not reference its source slice {plane.dataset.SOPInstanceUID} alone")
        order.append(index)
    return order


def order_frames_along_normal(instance: Dataset) -> None:
    """Store a highdicom object's frames in ascending order along the normal of the image plane
    (row direction x column direction), renumbering their position index to match.

    highdicom stores them the other way round, and 3D Slicer's loader (dcmqi) stacks frames in
    file order whatever their positions: it would show the map mirrored through the volume. Only
    the frame order changes; each frame keeps its position and references, and
    :func:`frame_source_indices` then says which slice's pixels each frame holds.
    """
    import numpy as np

    orientation = np.array([float(v) for v in instance.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient])
    normal = np.cross(orientation[:3], orientation[3:])
    frames = list(instance.PerFrameFunctionalGroupsSequence)
    distance = [float(np.array([float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]) @ normal) for f in frames]
    ordered = [frames[i] for i in np.argsort(distance, kind="stable")]
    for number, frame in enumerate(ordered, start=1):
        content = frame.FrameContentSequence[0]
        if "DimensionIndexValues" not in content:
            continue
        if isinstance(content.DimensionIndexValues, int):  # the position is the one dimension
            content.DimensionIndexValues = number
        else:  # the position is the last dimension (a SEG's first is its segment)
            content.DimensionIndexValues = [*list(content.DimensionIndexValues)[:-1], number]
    instance.PerFrameFunctionalGroupsSequence = ordered


def highdicom_geometry(planes: list[SourcePlane], heatmap: Volume) -> dict:
    """The plane orientation, per-frame positions and pixel measures highdicom needs, from the source."""
    import highdicom as hd

    first = planes[0]
    return {
        "plane_orientation": hd.PlaneOrientationSequence("PATIENT", [float(v) for v in first.orientation]),
        "plane_positions": [hd.PlanePositionSequence("PATIENT", [float(v) for v in plane.position]) for plane in planes],
        "pixel_measures": hd.PixelMeasuresSequence(
            pixel_spacing=[float(v) for v in first.pixel_spacing],
            slice_thickness=float(first.thickness) if first.thickness else None,
            spacing_between_slices=float(heatmap.spacing[2]) if heatmap.shape[2] > 1 else None,
        ),
    }
