"""Read one DICOM image series as a :class:`Volume` in RAS, with its source headers in spatial order."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medcam.errors import DicomSeriesError, ImageReadError, MedcamWarning
from medcam.geometry import ImageGeometry, Volume, affine_lps_to_ras
from medcam.io.dicom_planes import SlicePlane, planes_from_dataset
from medcam.io.dicom_scan import SeriesInfo, SeriesScan, find_series, scan_files
from medcam.io.dicom_stack import build_stack
from medcam.io.memory import check_volume_fits
from medcam.io.paths import checked_input

__all__ = ["DicomSeries", "SourceFrame", "read_dicom_series", "read_series_geometry"]

_NATIVE_LITTLE_ENDIAN = (ImplicitVRLittleEndian, ExplicitVRLittleEndian)


def _check_pixel_length(ds: pydicom.Dataset, path: Path, n_frames: int) -> None:
    """Uncompressed pixel data must hold what the header declares, no more and no less.

    Longer (BitsAllocated 8 over 16-bit pixels, say): pydicom would read the values from the wrong
    bytes with a warning. Shorter: a truncated file, or a header declaring far more pixels than
    the file holds (checked before the volume's memory is asked for).
    """
    meta = getattr(ds, "file_meta", None)
    data = ds.get("PixelData")
    if meta is None or meta.get("TransferSyntaxUID") not in _NATIVE_LITTLE_ENDIAN or not isinstance(data, (bytes, bytearray)):
        return
    rows, columns = int(ds.Rows), int(ds.Columns)
    samples, allocated = int(ds.get("SamplesPerPixel", 1)), int(ds.get("BitsAllocated", 0))
    declared = (n_frames * rows * columns * samples * allocated + 7) // 8
    if allocated and not declared <= len(data) <= declared + 1:  # one byte of padding to an even length is allowed
        cause = "the file is truncated or its header is wrong" if len(data) < declared else "refusing to guess which is wrong"
        raise ImageReadError(
            f"{path}: the pixel data holds {len(data)} bytes but the header declares {declared} "
            f"({n_frames * rows * columns} values of {allocated} bits: Rows, Columns, NumberOfFrames, BitsAllocated); {cause}"
        )


def _stored_frames(ds: pydicom.Dataset, path: Path, n_frames: int) -> np.ndarray:
    """The stored values of ``ds``'s frames, shaped (frames, rows, columns), decoded by pydicom.

    Raises ImageReadError for pixel data that cannot be decoded or whose length is not what the
    header declares (:func:`_check_pixel_length`).
    """
    rows, columns = int(ds.Rows), int(ds.Columns)
    _check_pixel_length(ds, path, n_frames)
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID", "?") if meta is not None else "?"
    try:
        pixels = np.asarray(ds.pixel_array)
    except Exception as exc:  # noqa: BLE001 - decoders raise many types
        compressed = isinstance(syntax, UID) and syntax.is_compressed
        hint = (f"; its transfer syntax {syntax} may need a decoder that is not installed (pip install 'medcam-toolkit[jpeg]')"
                if compressed else "; the file may be truncated or corrupt")
        raise ImageReadError(f"{path}: cannot decode the pixel data ({type(exc).__name__}: {exc}){hint}") from exc
    return pixels.reshape(n_frames, rows, columns)


@dataclass(frozen=True)
class SourceFrame:
    """Where one slice of the volume comes from: a file, and a frame (0-based) if multi-frame."""

    dataset_index: int
    frame_index: int | None
    path: Path


@dataclass(frozen=True, eq=False)
class DicomSeries:
    """A DICOM series read as a volume.

    Attributes
    ----------
    volume : Volume
        float32 values after the modality LUT (RescaleSlope / RescaleIntercept), MONOCHROME1
        inverted so that higher always means brighter; RAS geometry.
    datasets : tuple of pydicom Dataset
        The source headers (PixelData removed to save memory). For a single-frame series,
        ``datasets[k]`` is the file of slice ``k`` in spatial order.
    frames : tuple of SourceFrame
        The source plane of every slice of ``volume`` in spatial order (of every source plane
        when ``resampled``).
    series_uid, modality : str
    resampled : bool
        True when an irregular stack was resampled to a regular grid (``allow_irregular``);
        then volume slices no longer correspond one to one with source planes.
    note : str or None
        What was done to the data, if anything.
    """

    volume: Volume
    datasets: tuple[Dataset, ...]
    frames: tuple[SourceFrame, ...]
    series_uid: str
    modality: str
    resampled: bool = False
    note: str | None = None


def _select(scan: SeriesScan, name: str, series_uid: str | None):
    if scan.unreadable:
        bad = scan.unreadable[0]
        raise ImageReadError(f"{bad.path}: {bad.reason}" + (f" (and {len(scan.unreadable) - 1} more)" if len(scan.unreadable) > 1 else ""))
    if not scan.series:
        if all(s.reason == "not a DICOM file" for s in scan.skipped):
            raise DicomSeriesError(f"{name}: no DICOM files found ({scan.n_files} files looked at)")
        reasons = sorted({s.reason for s in scan.skipped})
        raise DicomSeriesError(f"{name}: no DICOM image series found; skipped {len(scan.skipped)} files: {'; '.join(reasons)}")
    if series_uid is not None:
        info = scan.get(series_uid)
        if info is None:
            found = "\n  ".join(s.summary() for s in scan.series)
            raise DicomSeriesError(f"{name}: no image series with SeriesInstanceUID {series_uid}; found:\n  {found}")
        return info
    if len(scan.series) > 1:
        found = "\n  ".join(s.summary() for s in scan.series)
        raise DicomSeriesError(
            f"{name}: {len(scan.series)} image series found; choose one with series_uid=...:\n  {found}"
        )
    return scan.series[0]


def _scan(source: str | Path | Sequence[str | Path]) -> tuple[SeriesScan, str]:
    if isinstance(source, (str, Path)):
        path = checked_input(source)
        if path.is_dir():
            return find_series(path, keep_headers=True), str(path)
        return scan_files([path], keep_headers=True), str(path)
    paths = [Path(p) for p in source]
    if not paths:
        raise DicomSeriesError("read_dicom_series: the list of files is empty")
    for path in paths:
        if checked_input(path).is_dir():
            raise ImageReadError(f"{path}: a folder in a list of DICOM files")
    return scan_files(paths, keep_headers=True), f"{len(paths)} files starting with {paths[0]}"


def _value_range(ds: Dataset, slope: float, intercept: float) -> tuple[float, float]:
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    else:
        low, high = 0, 2**bits - 1
    ends = sorted((low * slope + intercept, high * slope + intercept))
    return ends[0], ends[1]


def _plane_values(ds: Dataset, pixels: np.ndarray, plane: SlicePlane, out: np.ndarray) -> None:
    """Stored values of one plane (rows, columns) -> float32 real-world values, MONOCHROME1
    inverted, written into ``out`` (columns, rows) in place: no temporary plane."""
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        out[...] = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32).T
        low, high = float(out.min()), float(out.max())
    else:
        np.multiply(pixels.T, np.float32(plane.slope), out=out, dtype=np.float32)
        out += np.float32(plane.intercept)
        low, high = _value_range(ds, plane.slope, plane.intercept)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        np.subtract(np.float32(low + high), out, out=out)


def _read_planes(info: SeriesInfo, *, headers_only: bool) -> tuple[list[Dataset], list[SlicePlane]]:
    datasets: list[Dataset] = []
    planes: list[SlicePlane] = []
    for index, path in enumerate(info.files):
        # the scan's header when it kept one (its pixel data still on disk, read when decoded),
        # else the file read again, whole unless only headers are needed
        ds = info.headers[index] if info.headers is not None else None
        if ds is None or (not headers_only and "PixelData" not in ds):
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=headers_only)
            except Exception as exc:  # noqa: BLE001
                raise ImageReadError(f"{path}: damaged or truncated DICOM file ({type(exc).__name__}: {exc})") from exc
        datasets.append(ds)
        try:
            planes.extend(planes_from_dataset(ds, index, path.name))
        except DicomSeriesError as exc:  # the file's name alone does not say where it lies
            raise DicomSeriesError(f"{path.parent}: {exc}") from None
    return datasets, planes


def read_series_geometry(info: SeriesInfo, *, allow_irregular: bool = False) -> ImageGeometry:
    """The RAS geometry of a series found by :func:`find_series`, from its headers only."""
    _, planes = _read_planes(info, headers_only=True)
    layout = build_stack(planes, f"series {info.uid}", allow_irregular=allow_irregular)
    return ImageGeometry(layout.shape, affine_lps_to_ras(layout.affine_lps))


def read_dicom_series(
    source: str | Path | Sequence[str | Path],
    series_uid: str | None = None,
    *,
    allow_irregular: bool = False,
) -> DicomSeries:
    """Read one DICOM image series (single-frame files or enhanced multi-frame) as a volume.

    Slices are ordered by position along the image-plane normal. Gantry-tilted stacks keep
    their sheared geometry. A single 2D image without ImagePositionPatient (CR, DX, MG) is a
    one-slice volume whose origin is (0, 0, 0) and whose rows run along LPS +x.

    Parameters
    ----------
    source : folder, file, or list of files
    series_uid : str, optional
        SeriesInstanceUID to read when the folder holds several image series.
    allow_irregular : bool
        Resample a stack with a missing slice or uneven spacing to a regular grid (with a
        :class:`MedcamWarning`) instead of refusing it.

    Raises
    ------
    DicomSeriesError
        No image series, several without a choice, or a series that is not one regular grid.
    ImageReadError
        A missing, damaged or truncated file.
    """
    scan, name = _scan(source)
    info = _select(scan, name, series_uid)
    series_name = f"{name}: series {info.uid}"

    datasets, planes = _read_planes(info, headers_only=False)
    layout = build_stack(planes, series_name, allow_irregular=allow_irregular)
    if layout.note:
        warnings.warn(layout.note, MedcamWarning, stacklevel=2)
    if planes[0].pixel_spacing is None:
        warnings.warn(f"{series_name}: no PixelSpacing or ImagerPixelSpacing; 1 mm pixels assumed", MedcamWarning, stacklevel=2)

    # one float32 volume, filled plane by plane; each file's pixel data is dropped once decoded.
    # Fortran order (i fastest): each plane is one contiguous block, as in NIfTI and DICOM frames
    first = datasets[planes[layout.order[0]].dataset_index]
    for index in sorted({planes[i].dataset_index for i in layout.order}):  # before the volume's memory is asked for
        ds = datasets[index]
        _check_pixel_length(ds, info.files[index], int(getattr(ds, "NumberOfFrames", 1) or 1))
    check_volume_fits((int(first.Columns), int(first.Rows), len(layout.order)), series_name)
    array = np.empty((int(first.Columns), int(first.Rows), len(layout.order)), dtype=np.float32, order="F")
    decoded: dict[int, np.ndarray] = {}
    for k, plane_index in enumerate(layout.order):
        plane = planes[plane_index]
        ds = datasets[plane.dataset_index]
        if plane.dataset_index not in decoded:
            n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
            decoded[plane.dataset_index] = _stored_frames(ds, info.files[plane.dataset_index], n_frames)
            del ds.PixelData
        pixels = decoded[plane.dataset_index][plane.frame_index or 0]
        _plane_values(ds, pixels, plane, array[:, :, k])  # (rows, cols) -> (i = column, j = row)
        if plane.frame_index is None:  # a single-frame file: its one plane is done
            del decoded[plane.dataset_index]
    decoded.clear()

    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        slopes = sorted({plane.slope for plane in planes})[:3]
        raise ImageReadError(f"{series_name}: {bad} voxels are NaN or infinite after the modality LUT "
                             f"(RescaleSlope {slopes}); expected finite values everywhere")
    if layout.resampling is not None:
        array = np.stack([(1 - w) * array[..., a] + w * array[..., b] for a, b, w in layout.resampling], axis=-1)
        array = np.asfortranarray(array, dtype=np.float32)
    volume = Volume.adopt(array, ImageGeometry(array.shape, affine_lps_to_ras(layout.affine_lps)))

    frames = tuple(
        SourceFrame(planes[i].dataset_index, planes[i].frame_index, info.files[planes[i].dataset_index])
        for i in layout.order
    )
    if len(datasets) > 1 and all(f.frame_index is None for f in frames):  # single-frame files: spatial order
        order = [frame.dataset_index for frame in frames]
        datasets = [datasets[i] for i in order]
        frames = tuple(SourceFrame(k, None, f.path) for k, f in enumerate(frames))
    return DicomSeries(
        volume=volume,
        datasets=tuple(datasets),
        frames=frames,
        series_uid=info.uid,
        modality=info.modality,
        resampled=layout.resampling is not None,
        note=layout.note,
    )
