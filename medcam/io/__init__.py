"""Readers: DICOM series (single-frame, enhanced multi-frame, 2D) and NIfTI, into RAS volumes."""

from medcam.io.dicom import DicomSeries, SourceFrame, read_dicom_series
from medcam.io.dicom_scan import SeriesInfo, SeriesScan, SkippedFile, find_series
from medcam.io.nifti import read_nifti, write_nifti
from medcam.io.volume import read_volume


def __getattr__(name: str):
    if name == "MedcamReader":  # needs MONAI: imported on first use
        from medcam.io.monai_reader import MedcamReader

        return MedcamReader
    raise AttributeError(f"module 'medcam.io' has no attribute {name!r}")


__all__ = [
    "DicomSeries",
    "MedcamReader",
    "SeriesInfo",
    "SeriesScan",
    "SkippedFile",
    "SourceFrame",
    "find_series",
    "read_dicom_series",
    "read_nifti",
    "read_volume",
    "write_nifti",
]
