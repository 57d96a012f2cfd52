"""Inputs whose values or geometry would be silently wrong are refused, each with one line."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medcam.cli import main
from medcam.errors import ImageReadError
from medcam.geometry import Volume
from medcam.io import read_dicom_series, read_nifti
from medcam.synthetic import axial_geometry, write_dicom_series


@pytest.fixture
def series_folder(tmp_path):
    geometry = axial_geometry((16, 12, 4), (4.0, 4.0, 5.0))
    write_dicom_series(Volume(np.full(geometry.shape, 40.0, np.float32), geometry), tmp_path / "ct")
    return tmp_path / "ct"


def _edit_first(folder, edit):
    path = sorted(folder.iterdir())[0]
    ds = pydicom.dcmread(path)
    edit(ds)
    ds.save_as(path)
    return path


def test_a_nan_rescale_slope_is_refused(series_folder, capsys):
    with pydicom.config.disable_value_validation():
        _edit_first(series_folder, lambda ds: setattr(ds, "RescaleSlope", "NaN"))
    with pytest.raises(ImageReadError, match=r"voxels are NaN or infinite after the modality LUT"):
        read_dicom_series(series_folder)
    assert main(["info", str(series_folder)]) == 0  # info still describes the series' geometry


def test_pixel_data_longer_than_the_header_declares_is_refused(series_folder):
    path = _edit_first(series_folder, lambda ds: (setattr(ds, "BitsAllocated", 8), setattr(ds, "BitsStored", 8),
                                                  setattr(ds, "HighBit", 7)))
    with pytest.raises(ImageReadError, match=r"the pixel data holds 384 bytes but the header declares 192"):
        read_dicom_series(series_folder)
    assert path.exists()


def test_a_nifti_with_zero_voxel_size_and_no_sform_is_refused(tmp_path):
    image = nib.Nifti1Image(np.zeros((4, 4, 3), np.float32), None)
    image.header.set_zooms((1.0, 3.0, 2.0))
    image.header.set_sform(None, code=0)
    image.header.set_qform(None, code=0)
    path = tmp_path / "zero.nii"
    nib.save(image, str(path))
    raw = bytearray(path.read_bytes())
    raw[84:88] = np.float32(0.0).tobytes()  # pixdim[2]: nibabel itself never writes a zero there
    path.write_bytes(bytes(raw))
    with pytest.raises(ImageReadError, match=r"voxel size \[1.0, 0.0, 2.0\] mm in the header \(pixdim\) and no sform"):
        read_nifti(path)


def test_a_complex_nifti_is_refused(tmp_path):
    nib.save(nib.Nifti1Image((np.ones((4, 4, 3)) * (1 + 2j)).astype(np.complex64), np.eye(4)), str(tmp_path / "c.nii.gz"))
    with pytest.raises(ImageReadError, match=r"complex voxels .*take the magnitude first"):
        read_nifti(tmp_path / "c.nii.gz")


def _set_text(keyword, text):
    def edit(ds):
        tag = pydicom.datadict.tag_for_keyword(keyword)
        if keyword in ds:
            del ds[keyword]
        ds.add_new(tag, "LO", text)  # a value no number parser takes, as some exporters write
    return edit


def test_a_rescale_slope_that_is_not_a_number_is_refused_in_one_line(series_folder, tmp_path, capsys):
    _edit_first(series_folder, _set_text("RescaleSlope", "abc"))
    with pytest.raises(ImageReadError, match=r"NaN or infinite after the modality LUT"):
        read_dicom_series(series_folder)
    assert main(["info", str(series_folder)]) == 0  # the geometry is still described
    capsys.readouterr()
    bundled = Path(__file__).resolve().parents[2] / "sample_data" / "models" / "ct3d.pt"
    assert main(["explain", str(series_folder), "--model", str(bundled), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medcam: error: ") and "modality LUT" in err and "nan" in err.split("RescaleSlope [", 1)[1]
    assert "\n" not in err and not (tmp_path / "o" / "cam.nii.gz").exists()


def test_a_window_that_is_not_a_number_falls_back_to_percentiles(series_folder):
    from medcam.export.overlay import source_window

    path = _edit_first(series_folder, _set_text("WindowCenter", "lung"))
    ds = pydicom.dcmread(path)
    ds.WindowWidth = "400"
    values = np.linspace(-100, 300, 1000, dtype=np.float32)
    assert source_window([ds], values) == pytest.approx(tuple(np.percentile(values, [1, 99])))
