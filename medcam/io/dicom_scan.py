"""Find the DICOM image series in a folder: group files by SeriesInstanceUID, set the rest aside."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from medcam.errors import DicomSeriesError

__all__ = ["SeriesInfo", "SkippedFile", "SeriesScan", "find_series", "scan_files"]

# Modalities of DICOM objects that are not images of the patient (reports, plans, derived
# objects, presentation states): never read as a source series.
NON_IMAGE_MODALITIES = frozenset(
    {"SR", "PR", "KO", "DOC", "RTSTRUCT", "RTPLAN", "RTRECORD", "RTDOSE", "RTIMAGE", "SEG", "REG", "FID", "PLAN"}
)


@dataclass(frozen=True)
class SeriesInfo:
    """One image series found in a folder."""

    uid: str
    modality: str
    number: int | None
    description: str
    files: tuple[Path, ...]
    frames: int
    #: With ``keep_headers``: each file's header (same order as ``files``), its pixel data left
    #: on disk (read when accessed) or dropped when it was read with the header (encapsulated).
    headers: tuple[pydicom.Dataset, ...] | None = field(default=None, compare=False, repr=False)

    def summary(self) -> str:
        """One line about the series: modality, number, description, files, frames and UID."""
        number = "" if self.number is None else f" #{self.number}"
        description = f" '{self.description}'" if self.description else ""
        return f"{self.modality}{number}{description} ({len(self.files)} files, {self.frames} frames) uid={self.uid}"


@dataclass(frozen=True)
class SkippedFile:
    """A file passed over, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class SeriesScan:
    """Result of :func:`find_series`: image series, files set aside, files that look broken."""

    series: tuple[SeriesInfo, ...]
    skipped: tuple[SkippedFile, ...]
    unreadable: tuple[SkippedFile, ...]
    n_files: int

    def get(self, uid: str) -> SeriesInfo | None:
        """The series of UID ``uid``, or None."""
        return next((s for s in self.series if s.uid == uid), None)


def _is_image(ds: pydicom.Dataset) -> tuple[bool, str]:
    modality = str(getattr(ds, "Modality", "") or "")
    sop_class = UID(str(getattr(ds, "SOPClassUID", "") or ""))
    name = sop_class.name if sop_class else ""
    if modality in NON_IMAGE_MODALITIES:
        return False, f"non-image object (Modality {modality}, {name or 'unknown SOP class'})"
    if sop_class.is_valid and name != str(sop_class) and "Image Storage" not in name:
        return False, f"non-image object ({name})"
    if "Rows" not in ds or "Columns" not in ds:
        return False, f"no pixel matrix (Modality {modality or 'missing'})"
    return True, ""


# Values longer than this are left on disk by a scan that keeps headers (pixel data, mostly).
_DEFER_BYTES = 1024


def _is_encapsulated(element) -> bool:
    """An undefined-length (encapsulated, compressed) value: a raw element or a converted one."""
    if hasattr(element, "is_undefined_length"):
        return bool(element.is_undefined_length)
    return element.length == 0xFFFFFFFF


def scan_files(paths: Iterable[Path], *, keep_headers: bool = False) -> SeriesScan:
    """Read the headers of ``paths`` and group the image objects by series.

    With ``keep_headers`` each series keeps its files' headers, so that a reader does not parse
    them a second time: their pixel data stays on disk until accessed (pydicom's deferred
    reading; only values of at most 1 KiB are read with the header), or is dropped when the
    file stores it encapsulated (it is then read again with the file), so a scan never holds
    the folder's pixel data in memory.
    """
    groups: dict[str, list[tuple[Path, pydicom.Dataset]]] = defaultdict(list)
    skipped: list[SkippedFile] = []
    unreadable: list[SkippedFile] = []
    n_files = 0
    for path in paths:
        n_files += 1
        try:
            ds = pydicom.dcmread(path, defer_size=_DEFER_BYTES) if keep_headers else pydicom.dcmread(path, stop_before_pixels=True)
        except InvalidDicomError:
            skipped.append(SkippedFile(path, "not a DICOM file"))
            continue
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on damaged files
            unreadable.append(SkippedFile(path, f"damaged or truncated DICOM file ({type(exc).__name__}: {exc})"))
            continue
        if getattr(ds.file_meta, "MediaStorageSOPClassUID", None) == "1.2.840.10008.1.3.10":
            skipped.append(SkippedFile(path, "DICOMDIR media index"))
            continue
        media_class = UID(str(getattr(ds.file_meta, "MediaStorageSOPClassUID", "") or ""))
        lacking = [key for key in ("Rows", "SeriesInstanceUID") if key not in ds]
        if "Image Storage" in media_class.name and lacking:
            reason = (f"{media_class.name} without SeriesInstanceUID" if lacking == ["SeriesInstanceUID"]
                      else f"damaged or truncated DICOM file ({media_class.name} without {' or '.join(lacking)})")
            unreadable.append(SkippedFile(path, reason))
            continue
        is_image, reason = _is_image(ds)
        if not is_image:
            skipped.append(SkippedFile(path, reason))
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "") or "")
        if not uid:
            unreadable.append(SkippedFile(path, "image without SeriesInstanceUID"))
            continue
        if keep_headers and "PixelData" in ds and _is_encapsulated(ds.get_item("PixelData", keep_deferred=True)):
            del ds.PixelData  # read with the header (its length is not known ahead): not kept
        groups[uid].append((path, ds))

    series = []
    for uid, members in groups.items():
        members.sort(key=lambda member: member[0])  # by path
        first = members[0][1]
        number = getattr(first, "SeriesNumber", None)
        series.append(
            SeriesInfo(
                uid=uid,
                modality=str(getattr(first, "Modality", "") or "OT"),
                number=int(number) if number not in (None, "") else None,
                description=str(getattr(first, "SeriesDescription", "") or ""),
                files=tuple(p for p, _ in members),
                frames=sum(int(getattr(ds, "NumberOfFrames", 1) or 1) for _, ds in members),
                headers=tuple(ds for _, ds in members) if keep_headers else None,
            )
        )
    series.sort(key=lambda s: (s.number is None, s.number or 0, s.uid))
    return SeriesScan(tuple(series), tuple(skipped), tuple(unreadable), n_files)


def find_series(folder: str | Path, *, keep_headers: bool = False) -> SeriesScan:
    """Find every DICOM image series below ``folder`` (recursively).

    Files are grouped by SeriesInstanceUID. Non-DICOM files, DICOMDIR indexes and non-image
    objects (structured reports, RT objects, presentation states, segmentations...) are set
    aside in ``skipped`` with the reason; DICOM files that cannot be parsed are listed in
    ``unreadable``. ``keep_headers``: as in :func:`scan_files`.

    Raises
    ------
    DicomSeriesError
        If ``folder`` does not exist, is not a folder, or holds no file at all.
    """
    folder = Path(folder)
    if not folder.exists():
        raise DicomSeriesError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise DicomSeriesError(f"{folder}: expected a folder of DICOM files, found a file")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not paths:
        raise DicomSeriesError(f"{folder}: the folder is empty (expected DICOM files)")
    return scan_files(paths, keep_headers=keep_headers)
