"""File meta information for DICOM objects medcam writes itself (Explicit VR Little Endian)."""

from __future__ import annotations

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

__all__ = ["file_meta", "set_file_meta"]


def file_meta(sop_class_uid: str, sop_instance_uid: str) -> FileMetaDataset:
    """The Part 10 file meta header of an Explicit VR Little Endian instance."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def set_file_meta(ds: Dataset) -> None:
    """Give ``ds`` a Part 10 file meta header matching its SOP Class and Instance UIDs."""
    ds.file_meta = file_meta(ds.SOPClassUID, ds.SOPInstanceUID)
