"""Real scanner files shipped inside pydicom's wheel, cross-checked against SimpleITK."""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file

from medcam.errors import DicomSeriesError
from medcam.geometry import affine_lps_to_ras
from medcam.io import find_series, read_dicom_series
from tests.conftest import tree_hash

DICOMDIR_TESTS = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests"


def sitk_affine(info):
    """SimpleITK's reading of one series, files ordered by GDCM's own sorter."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(info.files[0].parent), info.uid))
    image = reader.Execute()
    affine = np.eye(4)
    affine[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return affine_lps_to_ras(affine), sitk.GetArrayFromImage(image).transpose(2, 1, 0)


@pytest.fixture(scope="module")
def scan():
    return find_series(DICOMDIR_TESTS)


def _series(scan, folder, description):
    return next(s for s in scan.series if s.files[0].parent.name == folder and s.description == description)


def test_real_ct_series_matches_simpleitk(scan):
    info = _series(scan, "CT5N", "SmartScore - Gated 0.5 sec")
    series = read_dicom_series(info.files)
    assert series.volume.shape == (16, 16, 5)
    affine, array = sitk_affine(info)
    assert np.abs(affine - series.volume.geometry.affine_ras).max() < 1e-4
    assert np.allclose(array, series.volume.array)


def test_real_mr_slice_matches_simpleitk(scan):
    info = _series(scan, "MR1", "FAST LOCALIZER")
    series = read_dicom_series(info.files)
    affine, array = sitk_affine(info)
    # a single slice: SimpleITK takes SliceThickness or 1 for the third axis; compare in-plane and origin
    assert np.abs(affine[:, [0, 1, 3]] - series.volume.geometry.affine_ras[:, [0, 1, 3]]).max() < 1e-4
    assert np.allclose(array, series.volume.array)
    assert series.volume.geometry.orientation == "PIR"


def test_real_folder_is_scanned_and_hard_series_refused(scan):
    reasons = {s.reason for s in scan.skipped}
    assert "DICOMDIR media index" in reasons
    assert len(scan.series) >= 10
    angio = _series(scan, "MR700", "ANGIO Projected from   C")
    with pytest.raises(DicomSeriesError, match="mixed orientations"):
        read_dicom_series(angio.files)
    partial = next(s for s in scan.series if s.files[0].parent.name == "CT2")
    with pytest.raises(DicomSeriesError, match="gap between slices"):
        read_dicom_series(partial.files)


def test_real_files_are_not_modified():
    before = tree_hash(DICOMDIR_TESTS)
    scan = find_series(DICOMDIR_TESTS)
    read_dicom_series(_series(scan, "CT5N", "SmartScore - Gated 0.5 sec").files)
    assert tree_hash(DICOMDIR_TESTS) == before
