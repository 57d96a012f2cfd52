"""Read any supported input -- DICOM folder, DICOM file or NIfTI file -- as a :class:`Volume`."""

from __future__ import annotations

from pathlib import Path

from medcam.geometry import Volume
from medcam.io.dicom import read_dicom_series
from medcam.io.nifti import NIFTI_SUFFIXES, read_nifti
from medcam.io.paths import checked_input

__all__ = ["read_volume", "is_nifti_path"]


def is_nifti_path(path: str | Path) -> bool:
    """Whether ``path`` names a NIfTI file (``.nii`` or ``.nii.gz``)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def read_volume(path: str | Path, *, series_uid: str | None = None, allow_irregular: bool = False) -> Volume:
    """Read a folder or file as a volume: NIfTI by suffix, otherwise DICOM.

    For the DICOM headers as well, use :func:`medcam.io.read_dicom_series`.
    """
    path = checked_input(path)
    if path.is_file() and is_nifti_path(path):
        return read_nifti(path)
    return read_dicom_series(path, series_uid, allow_irregular=allow_irregular).volume
