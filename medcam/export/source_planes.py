"""The source slice behind each slice of a heatmap: its position, orientation and spacing as the
source's own decimal strings, for exporters that must align with the source pixel for pixel."""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset

from medcam.errors import ExportError
from medcam.geometry import Volume
from medcam.io.dicom import DicomSeries

__all__ = [
    "SourcePlane", "source_planes", "source_reference", "set_source_reference",
    "align_frames_with_sources", "highdicom_geometry", "order_frames_along_normal",
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
        if position is None or "ImagePositionPatient" not in position or orientation is None or "ImageOrientationPatient" not in orientation:
            raise ExportError(
                f"{what}: the source ({ds.get('Modality', '?')}) has no ImagePositionPatient/ImageOrientationPatient; "
                "it cannot be placed in patient space (the Secondary Capture, NIfTI and PNG outputs can)"
            )
        thickness = measures.get("SliceThickness") if measures is not None else None
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


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item


def _derivation_item() -> Dataset:
    """A frame's derivation item as highdicom writes it for a frame with its own source slice."""
    source = Dataset()
    source.ReferencedSOPClassUID = source.ReferencedSOPInstanceUID = ""  # set by set_source_reference
    source.PurposeOfReferenceCodeSequence = [_code("121322", "Source image for image processing operation")]
    source.SpatialLocationsPreserved = "YES"
    item = Dataset()
    item.DerivationCodeSequence = [_code("112187", "Unspecified method of calculation")]
    item.SourceImageSequence = [source]
    return item


def source_reference(source: Dataset, frame_index: int | None = None) -> Dataset:
    """A reference item to a source instance (and frame, for a multi-frame source)."""
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if frame_index is not None:
        item.ReferencedFrameNumber = frame_index + 1
    return item


def set_source_reference(frame_item: Dataset, plane: SourcePlane) -> None:
    """Point a per-frame functional group item's derivation reference at ``plane``'s source,
    making the derivation item highdicom makes when the frame has none yet."""
    if "DerivationImageSequence" in frame_item and len(frame_item.DerivationImageSequence) == 0:
        frame_item.DerivationImageSequence = [_derivation_item()]
    derivation = frame_item.get("DerivationImageSequence")
    if not derivation or "SourceImageSequence" not in derivation[0]:
        return
    reference = derivation[0].SourceImageSequence[0]
    reference.ReferencedSOPClassUID = plane.dataset.SOPClassUID
    reference.ReferencedSOPInstanceUID = plane.dataset.SOPInstanceUID
    if plane.frame_index is not None:
        reference.ReferencedFrameNumber = plane.frame_index + 1
    elif "ReferencedFrameNumber" in reference:
        del reference.ReferencedFrameNumber
    del derivation[0].SourceImageSequence[1:]


def align_frames_with_sources(instance: Dataset, planes: list[SourcePlane]) -> list[int]:
    """Give each frame of a highdicom object its own source slice's strings and reference, and
    return the index in ``planes`` of each frame's slice.

    highdicom may store the frames in an order of its own (it sorts them along the stack), so
    frames are matched to source planes by position, never by index. Each frame then gets the
    source's ImagePositionPatient string and a derivation reference to that slice.
    """
    import numpy as np

    positions = np.array([[float(v) for v in plane.position] for plane in planes])
    order = []
    for item in instance.PerFrameFunctionalGroupsSequence:
        frame_position = np.array([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
        distances = np.linalg.norm(positions - frame_position, axis=1)
        index = int(distances.argmin())
        if distances[index] > 1e-3:
            raise ExportError(f"a frame at {frame_position.tolist()} matches no source slice (nearest {distances[index]:.4f} mm)")
        item.PlanePositionSequence[0].ImagePositionPatient = list(planes[index].position)
        set_source_reference(item, planes[index])
        order.append(index)
    return order


def order_frames_along_normal(instance: Dataset) -> None:
    """Store a highdicom object's frames in ascending order along the normal of the image plane
    (row direction x column direction), renumbering their position index to match.

    highdicom stores them the other way round, and 3D Slicer's loader (dcmqi) stacks frames in
    file order whatever their positions: it would show the map mirrored through the volume. Only
    the frame order changes; each frame keeps its position, and :func:`align_frames_with_sources`
    then gives each its slice's pixels.
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
