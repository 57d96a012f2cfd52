"""The series encoder writes exactly the bytes pydicom's save_as writes for the same attributes."""

import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import SecondaryCaptureImageStorage

from medcam.export.outputs import UidFactory
from medcam.export.secondary_capture import slice_attributes
from medcam.export.series_encoder import SeriesEncoder
from medcam.export.source_planes import SourcePlane
from medcam.io.dicom_meta import set_file_meta


def _shared(charset: str | None, name: str) -> Dataset:
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.PatientName = name
    ds.PatientID = "P-1"
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.Modality = "CT"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.Rows, ds.Columns = 3, 5
    return ds


def _source() -> Dataset:
    source = Dataset()
    source.SOPClassUID, source.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5.6"
    return source


@pytest.mark.parametrize("charset, name", [(None, "Doe^Jane"), ("ISO_IR 192", "Müller^Zoë"), ("ISO_IR 100", "Ångström^Åsa")])
@pytest.mark.parametrize("with_plane", [True, False], ids=["ct-slice", "radiograph"])
def test_bytes_equal_save_as(charset, name, with_plane):
    shared = _shared(charset, name)
    encoder = SeriesEncoder(shared)
    plane = SourcePlane(_source(), None, ("-12.5", "3", "100.25"), ("1", "0", "0", "0", "1", "0"), ("0.75", "0.8"), "2.5") if with_plane else None
    rgb = np.random.default_rng(1).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    for k in range(3):
        own = slice_attributes(UidFactory("seed"), k, plane)
        written = io.BytesIO()
        encoder.write(written, own, rgb)
        expected = Dataset()
        expected.update(shared)
        expected.update(own)
        expected.add_new(0x7FE00010, "OB", rgb.tobytes())  # 45 bytes: padded to 46
        set_file_meta(expected)
        buffer = io.BytesIO()
        expected.save_as(buffer, enforce_file_format=True)
        assert written.getvalue() == buffer.getvalue()
        back = pydicom.dcmread(io.BytesIO(written.getvalue()))
        assert back.InstanceNumber == k + 1 and str(back.PatientName) == name
        assert np.array_equal(back.pixel_array, rgb)


def test_required_uids_are_checked():
    with pytest.raises(ValueError, match="SOPClassUID"):
        SeriesEncoder(Dataset())
    pixels = np.zeros((3, 5, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="SOPInstanceUID"):
        SeriesEncoder(_shared(None, "A")).write(io.BytesIO(), Dataset(), pixels)
    own = Dataset()
    own.SOPInstanceUID = "1.2.3"
    with pytest.raises(ValueError, match="uint8 array, found uint16"):
        SeriesEncoder(_shared(None, "A")).write(io.BytesIO(), own, pixels.astype(np.uint16))
    for keyword in ("PixelData", "DataSetTrailingPadding"):
        setattr(own, keyword, b"\0\0")
        with pytest.raises(ValueError, match="no element may follow it"):
            SeriesEncoder(_shared(None, "A")).write(io.BytesIO(), own, pixels)


def test_long_element_header_is_pydicoms_and_refuses_odd_lengths():
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element

    from medcam.io.dicom_meta import long_element_header

    written = DicomBytesIO()
    written.is_little_endian, written.is_implicit_VR = True, False
    write_data_element(written, pydicom.DataElement(0x7FE00008, "OF", b"\1\2\3\4"))
    assert written.getvalue() == long_element_header(0x7FE00008, "OF", 4) + b"\1\2\3\4"
    with pytest.raises(ValueError, match=r"\(7FE0,0010\): odd value length 45"):
        long_element_header(0x7FE00010, "OB", 45)
