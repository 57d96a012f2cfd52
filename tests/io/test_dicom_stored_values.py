"""The reader's stored pixel values, on files written and read back: the bits above Bits Stored
cleared or sign-extended (PS3.5 8.1.1, computed here by hand), other encodings through pydicom,
and pixel data that cannot be used refused with one line."""

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, generate_uid

from medcam.errors import ImageReadError
from medcam.io.dicom import _stored_frames as decode_frames


def _by_hand(raw: np.ndarray, stored: int, signed: bool) -> np.ndarray:
    """PS3.5 8.1.1: the low ``stored`` bits of each word, as a two's-complement number if signed."""
    words = raw.view(np.dtype(f"u{raw.dtype.itemsize}")).astype(np.int64) & ((1 << stored) - 1)
    if signed:
        words = np.where(words >= 1 << (stored - 1), words - (1 << stored), words)
    return words


def _write(path, raw: np.ndarray, *, allocated, stored, signed, syntax=ExplicitVRLittleEndian, frames=1, samples=1):
    """A file whose pixel data holds ``raw``'s bytes as they are, unused high bits included."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns = raw.shape[-2 if samples == 1 else -3], raw.shape[-1 if samples == 1 else -2]
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = "MONOCHROME2" if samples == 1 else "RGB"
    if samples == 3:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = allocated, stored, stored - 1, int(signed)
    big_endian = syntax == ExplicitVRBigEndian
    ds.PixelData = raw.astype(raw.dtype.newbyteorder(">" if big_endian else "<")).tobytes()
    ds.save_as(path, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=not big_endian, enforce_file_format=True)
    return pydicom.dcmread(path, defer_size=1024)  # as the scan reads them: pixel data left on disk


CASES = {
    # name: (allocated, stored, signed, dtype) -- the raw words include set bits above Bits Stored
    "ct-12-of-16-unsigned": (16, 12, False, np.uint16),
    "ct-12-of-16-signed": (16, 12, True, np.uint16),
    "16-of-16-signed": (16, 16, True, np.int16),
    "16-of-16-unsigned": (16, 16, False, np.uint16),
    "8-bit": (8, 8, False, np.uint8),
    "7-of-8-signed": (8, 7, True, np.uint8),
    "32-bit-signed": (32, 32, True, np.int32),
}


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian], ids=["explicit", "implicit"])
@pytest.mark.parametrize("case", CASES)
def test_stored_values_equal_the_standard_by_hand(tmp_path, case, syntax):
    allocated, stored, signed, dtype = CASES[case]
    info = np.iinfo(dtype)
    raw = np.random.default_rng(0).integers(info.min, info.max, (3, 5, 7), endpoint=True).astype(dtype)
    ds = _write(tmp_path / "x.dcm", raw, allocated=allocated, stored=stored, signed=signed, syntax=syntax, frames=3)
    ours = decode_frames(ds, tmp_path / "x.dcm", 3)
    assert ours.shape == (3, 5, 7)
    assert np.array_equal(ours.astype(np.int64), _by_hand(raw, stored, signed))
    if stored < allocated:  # the unused bits did hold something, and were removed
        assert not np.array_equal(ours.view(raw.dtype), raw)


def test_other_pixel_data_goes_through_pydicom(tmp_path):
    raw = np.arange(5 * 7, dtype=np.uint16).reshape(1, 5, 7) * 97
    big = _write(tmp_path / "big.dcm", raw, allocated=16, stored=16, signed=False, syntax=ExplicitVRBigEndian)
    assert np.array_equal(decode_frames(big, tmp_path / "big.dcm", 1)[0], raw[0])
    rgb = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    colour = _write(tmp_path / "rgb.dcm", rgb, allocated=8, stored=8, signed=False, samples=3)
    assert np.array_equal(np.asarray(colour.pixel_array), rgb)


@pytest.mark.filterwarnings("ignore:The number of bytes of compressed pixel data")
def test_short_or_undecodable_pixel_data_is_a_clear_error(tmp_path):
    raw = np.zeros((1, 5, 7), dtype=np.uint16)
    ds = _write(tmp_path / "short.dcm", raw, allocated=16, stored=12, signed=False)
    ds.PixelData = ds.PixelData[:20]
    with pytest.raises(ImageReadError, match="short.dcm: the pixel data holds 20 bytes but the header declares 70"):
        decode_frames(ds, tmp_path / "short.dcm", 1)
    rle = _write(tmp_path / "rle.dcm", raw, allocated=16, stored=12, signed=False)
    rle.file_meta.TransferSyntaxUID = RLELossless  # claims a compression its bytes do not hold
    with pytest.raises(ImageReadError, match="rle.dcm: cannot decode the pixel data"):
        decode_frames(rle, tmp_path / "rle.dcm", 1)
