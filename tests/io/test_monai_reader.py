"""MedcamReader: MONAI's LoadImage with medcam's geometry, where MONAI's own DICOM reader goes wrong."""

import numpy as np
import pydicom
import pytest
from monai.transforms import Compose, EnsureChannelFirstd, LoadImage, LoadImaged

from medcam.io import MedcamReader, write_nifti
from medcam.study import read_study
from medcam.synthetic import axial_geometry, write_dicom_series
from tests.conftest import gaussian_blob


@pytest.fixture
def shuffled_series(tmp_path):
    """An oblique series whose InstanceNumbers are shuffled (slice order comes from positions)."""
    geometry = axial_geometry((40, 36, 14), (4.0, 4.5, 5.0), rotation_deg=(10.0, 0.0, 20.0))
    folder = tmp_path / "ct"
    files = write_dicom_series(gaussian_blob(geometry, geometry.voxel_to_world(np.array([12.0, 20.0, 4.0]))), folder)
    for path, number in zip(files, np.random.default_rng(3).permutation(len(files)) + 1):
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = int(number)
        ds.save_as(path)
    return folder


def test_medcam_reader_gets_the_shuffled_series_right_where_pydicom_reader_scrambles_it(shuffled_series):
    truth = read_study(shuffled_series).volume
    ours = LoadImage(reader=MedcamReader(), ensure_channel_first=True)(str(shuffled_series))
    assert ours.shape == (1, *truth.shape) and np.array_equal(ours[0].numpy(), truth.array)
    assert np.allclose(ours.affine.numpy(), truth.geometry.affine_ras) and ours.meta["space"] == "RAS"
    theirs = LoadImage(reader="PydicomReader", ensure_channel_first=True)(str(shuffled_series))
    # MONAI's reader orders slices by InstanceNumber: the same voxels, in the wrong order
    assert theirs.shape == ours.shape and not np.array_equal(theirs[0].numpy(), truth.array)
    assert np.isclose(np.sort(theirs[0].numpy().ravel()), np.sort(truth.array.ravel())).all()


def test_medcam_reader_in_a_dictionary_pipeline_and_on_nifti(tmp_path, mr_study):
    path = write_nifti(mr_study.volume, tmp_path / "mr.nii.gz")
    data = Compose([LoadImaged("image", reader=MedcamReader()), EnsureChannelFirstd("image")])({"image": str(path)})
    image = data["image"]
    assert image.shape == (1, *mr_study.volume.shape)
    assert np.allclose(image.affine.numpy(), read_study(path).volume.geometry.affine_ras)
    assert np.allclose(image[0].numpy(), read_study(path).volume.array)
    assert MedcamReader().verify_suffix([str(path), str(tmp_path)]) and not MedcamReader().verify_suffix("x.png")
