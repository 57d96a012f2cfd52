"""Part 10 files of a series whose instances share most of their attributes, encoded by pydicom
once for what they share and once per file only for what changes.

The bytes are those ``Dataset.save_as(..., enforce_file_format=True)`` writes for the same
attributes (Explicit VR Little Endian; tested byte for byte): every element but the 8-bit Pixel
Data is still encoded by pydicom's own ``write_data_element``, and the elements are put in
ascending tag order as ``write_dataset`` does. What is saved is the encoding of some forty
shared elements for every one of a series' files (about three quarters of pydicom's time per
Secondary Capture slice), and of the file meta group, which differs from file to file only in
its SOP Instance UID and length.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info

from medcam.io.dicom_meta import file_meta, long_element_header

__all__ = ["SeriesEncoder"]

_PREAMBLE = b"\x00" * 128 + b"DICM"
_GROUP_LENGTH, _INSTANCE_UID, _PIXEL_DATA = 0x00020000, 0x00020003, 0x7FE00010
_PER_FILE_META = (_GROUP_LENGTH, _INSTANCE_UID)


class SeriesEncoder:
    """Writes ``shared`` plus each file's own elements as one Part 10 file.

    Parameters
    ----------
    shared : Dataset
        The attributes every file holds with the same value (SOPClassUID among them). It is
        encoded once; later changes to it are not seen.
    """

    def __init__(self, shared: Dataset) -> None:
        if "SOPClassUID" not in shared:
            raise ValueError("SeriesEncoder: the shared attributes must include SOPClassUID")
        self._sop_class = shared.SOPClassUID
        self._encodings = shared._character_set  # what write_dataset encodes text with
        self._shared = {element.tag: self._encode(element) for element in shared}
        # the file meta group as pydicom completes and writes it, but for the two elements that
        # depend on the file: its SOP Instance UID and the group's length
        meta = file_meta(self._sop_class, "1")
        write_file_meta_info(DicomBytesIO(), meta, enforce_standard=True)  # adds the group's defaults
        self._meta = {element.tag: self._encode(element) for element in meta if element.tag not in _PER_FILE_META}

    def _encode(self, element: DataElement) -> bytes:
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, False
        write_data_element(buffer, element, self._encodings)
        return buffer.getvalue()

    def write(self, handle: BinaryIO, own: Dataset, pixels: np.ndarray) -> None:
        """Write the file whose own elements (SOPInstanceUID among them) are ``own``'s, and whose
        8-bit Pixel Data (OB, the last element) is ``pixels``' bytes, written from the array
        itself (pydicom would copy them three times)."""
        if "SOPInstanceUID" not in own:
            raise ValueError("SeriesEncoder: each file's own attributes must include SOPInstanceUID")
        if pixels.dtype != np.uint8:
            raise ValueError(f"SeriesEncoder: the pixel data must be a uint8 array, found {pixels.dtype}")
        if max([*own.keys(), *self._shared]) >= _PIXEL_DATA:
            raise ValueError("SeriesEncoder: the Pixel Data is given as an array, and no element may follow it")
        meta = dict(self._meta)
        meta[_INSTANCE_UID] = self._encode(DataElement(_INSTANCE_UID, "UI", own.SOPInstanceUID))
        meta_body = b"".join(meta[tag] for tag in sorted(meta))
        group_length = self._encode(DataElement(_GROUP_LENGTH, "UL", len(meta_body)))
        encoded = dict(self._shared)
        for element in own:
            encoded[element.tag] = self._encode(element)
        data = np.ascontiguousarray(pixels).data.cast("B")
        padding = b"\0" * (len(data) % 2)  # values have an even length
        pixel_header = long_element_header(_PIXEL_DATA, "OB", len(data) + len(padding))
        handle.writelines([_PREAMBLE, group_length, meta_body, *(encoded[tag] for tag in sorted(encoded)), pixel_header, data, padding])
