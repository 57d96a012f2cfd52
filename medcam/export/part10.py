"""DICOM Part 10 encoding for the objects medcam writes itself (the overlay series, the Parametric
Map's pixel data, the synthetic test series): file meta information and long element headers,
Explicit VR Little Endian. The readers are in :mod:`medcam.io`."""

from __future__ import annotations

import struct

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from medcam.errors import ExportError

__all__ = ["file_meta", "set_file_meta", "long_element_header"]


def file_meta(sop_class_uid: str, sop_instance_uid: str) -> FileMetaDataset:
    """The Part 10 file meta header of an Explicit VR Little Endian instance."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def set_file_meta(ds: Dataset) -> None:
    """Give ``ds`` a Part 10 file meta header matching its SOP Class and Instance UIDs."""
    ds.file_meta = file_meta(ds.SOPClassUID, ds.SOPInstanceUID)


def long_element_header(tag: int, vr: str, length: int) -> bytes:
    """The Explicit VR Little Endian header of an element whose VR has a 4-byte length field
    (OB, OF, OW, ...): tag, VR, two reserved bytes, length. ``length`` must be even."""
    if length % 2:
        raise ExportError(f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}): odd value length {length}")
    return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr.encode("ascii"), 0, length)
