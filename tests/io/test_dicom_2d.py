"""Single 2D images (CR without patient position) as one-slice volumes; MONOCHROME1."""

import numpy as np
import pydicom
import pytest

from medcam.geometry import lps_to_ras
from medcam.io import read_dicom_series
from medcam.synthetic import chest_radiograph_scene, make_study, radiograph_geometry, write_dicom_image


@pytest.fixture
def radiograph():
    geometry = radiograph_geometry((150, 160), 2.5)
    scene = chest_radiograph_scene(np.random.default_rng(2), center_ras=tuple(geometry.center_ras))
    return make_study(scene, geometry, seed=2)


def test_radiograph_is_a_one_slice_volume_in_the_drawn_frame(tmp_path, radiograph):
    path = write_dicom_image(radiograph.volume, tmp_path / "cr.dcm")
    ds = pydicom.dcmread(path)
    assert "ImagePositionPatient" not in ds and "ImageOrientationPatient" not in ds
    assert (ds.Rows, ds.Columns) == (160, 150)
    series = read_dicom_series(path)
    assert series.volume.shape == (150, 160, 1)
    assert series.volume.geometry.is_close(radiograph.volume.geometry)
    assert series.volume.spacing == pytest.approx((2.5, 2.5, 1.0))
    # pixel (column 10, row 20) is 25 mm along rows and 50 mm down columns from pixel (0, 0)
    assert np.allclose(series.volume.geometry.voxel_to_world([10, 20, 0]), lps_to_ras(np.array([25.0, 50.0, 0.0])))
    lesion = radiograph.lesions[0]
    ijk = np.rint(series.volume.geometry.world_to_voxel(lesion.center_ras)).astype(int)
    assert radiograph.mask.array[tuple(ijk)] == 1


def test_monochrome1_is_inverted_to_match_monochrome2(tmp_path, radiograph):
    mono2 = read_dicom_series(write_dicom_image(radiograph.volume, tmp_path / "m2.dcm")).volume.array
    path = write_dicom_image(radiograph.volume, tmp_path / "m1.dcm", monochrome1=True)
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    assert not np.array_equal(ds.pixel_array.T, mono2[:, :, 0])  # stored values really are inverted
    assert np.array_equal(read_dicom_series(path).volume.array, mono2)


def test_imager_pixel_spacing_used_when_pixel_spacing_is_absent(tmp_path, radiograph):
    path = write_dicom_image(radiograph.volume, tmp_path / "dx.dcm")
    ds = pydicom.dcmread(path)
    del ds.PixelSpacing
    ds.ImagerPixelSpacing = ["0.5", "0.25"]
    ds.save_as(path, enforce_file_format=True)
    assert read_dicom_series(path).volume.spacing == pytest.approx((0.25, 0.5, 1.0))


def test_radiograph_without_any_spacing_warns(tmp_path, radiograph):
    from medcam.errors import MedcamWarning

    path = write_dicom_image(radiograph.volume, tmp_path / "sc.dcm")
    ds = pydicom.dcmread(path)
    del ds.PixelSpacing, ds.ImagerPixelSpacing
    ds.save_as(path, enforce_file_format=True)
    with pytest.warns(MedcamWarning, match="no PixelSpacing or ImagerPixelSpacing; 1 mm pixels assumed"):
        volume = read_dicom_series(path).volume
    assert volume.spacing == pytest.approx((1.0, 1.0, 1.0))
