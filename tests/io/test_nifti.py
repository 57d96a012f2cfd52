import nibabel as nib
import numpy as np
import pytest

from medcam.errors import GeometryError, ImageReadError
from medcam.geometry import Volume
from medcam.io import read_nifti, read_volume, write_nifti
from tests.conftest import tree_hash


def _save(path, data, affine):
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def test_non_diagonal_affine_kept_exactly(tmp_path):
    angle = np.radians(25.0)
    affine = np.array(
        [[0.9 * np.cos(angle), -1.1 * np.sin(angle), 0.0, -40.0], [0.9 * np.sin(angle), 1.1 * np.cos(angle), 0.0, 12.5],
         [0.0, 0.0, 2.5, 30.0], [0, 0, 0, 1]]
    )
    data = np.random.default_rng(0).normal(size=(7, 8, 9)).astype(np.float32)
    path = _save(tmp_path / "oblique.nii.gz", data, affine)
    volume = read_nifti(path)
    assert np.array_equal(volume.geometry.affine_ras, nib.load(str(path)).affine)
    assert np.allclose(volume.geometry.affine_ras, affine, atol=1e-5)  # stored as float32 in the header
    assert np.array_equal(volume.array, data)


def test_lps_flipped_affine_kept(tmp_path):
    affine = np.diag([-0.8, -0.8, 3.0, 1.0])
    affine[:3, 3] = [100.0, 120.0, -50.0]
    path = _save(tmp_path / "lps.nii", np.zeros((4, 5, 6), np.int16), affine)
    volume = read_nifti(path)
    assert volume.geometry.orientation == "LPS"
    assert np.array_equal(volume.geometry.affine_ras, nib.load(str(path)).affine)
    # voxel (1, 2, 3) is at RAS (99.2, 118.4, -41)
    assert np.allclose(volume.geometry.voxel_to_world([1, 2, 3]), [99.2, 118.4, -41.0])


def test_scaling_applied_and_dimensionality(tmp_path):
    image = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4))
    image.header.set_slope_inter(0.5, -10.0)
    nib.save(image, str(tmp_path / "scaled.nii"))
    assert read_nifti(tmp_path / "scaled.nii").array[1, 2, 3] == pytest.approx(23 * 0.5 - 10.0)
    assert read_nifti(_save(tmp_path / "flat.nii", np.ones((5, 6), np.float32), np.eye(4))).shape == (5, 6, 1)
    assert read_nifti(_save(tmp_path / "one.nii", np.ones((2, 3, 4, 1), np.float32), np.eye(4))).shape == (2, 3, 4)
    with pytest.raises(ImageReadError, match=r"expected a 2D or 3D image .* found shape \(2, 3, 4, 3\)"):
        read_nifti(_save(tmp_path / "four.nii", np.ones((2, 3, 4, 3), np.float32), np.eye(4)))


def test_bad_nifti_files(tmp_path):
    data = np.ones((3, 3, 3), np.float32)
    data[1, 1, 1] = np.nan
    with pytest.raises(ImageReadError, match="1 voxels are NaN or infinite"):
        read_nifti(_save(tmp_path / "nan.nii", data, np.eye(4)))
    singular = np.diag([1.0, 1.0, 0.0, 1.0])
    image = nib.Nifti1Image(np.ones((3, 3, 3), np.float32), None)
    image.set_sform(singular, code=1)
    nib.save(image, str(tmp_path / "singular.nii"))
    with pytest.raises(GeometryError, match=r"singular.nii: ImageGeometry: the affine is singular"):
        read_nifti(tmp_path / "singular.nii")
    (tmp_path / "junk.nii.gz").write_bytes(b"not a nifti file at all")
    with pytest.raises(ImageReadError, match="junk.nii.gz: not a readable NIfTI file"):
        read_nifti(tmp_path / "junk.nii.gz")
    with pytest.raises(ImageReadError, match="no such file"):
        read_nifti(tmp_path / "missing.nii")


def test_write_nifti_sets_qform_and_sform_and_round_trips(tmp_path, mr_study):
    path = write_nifti(mr_study.volume, tmp_path / "out" / "mr.nii.gz")
    image = nib.load(str(path))
    assert int(image.header["qform_code"]) == 1 and int(image.header["sform_code"]) == 1
    assert np.allclose(image.get_qform(), image.get_sform(), atol=1e-5)
    assert np.allclose(image.get_sform(), mr_study.volume.geometry.affine_ras, atol=1e-4)
    volume = read_nifti(path)
    assert volume.geometry.is_close(mr_study.volume.geometry, atol=1e-4)
    assert np.array_equal(volume.array, mr_study.volume.array)
    assert not list((tmp_path / "out").glob("*partial*"))
    mask = read_nifti(write_nifti(mr_study.mask, tmp_path / "mask.nii.gz", dtype=np.uint8))
    assert np.array_equal(mask.array, mr_study.mask.array)


def test_integer_output_is_rounded(tmp_path):
    volume = Volume.from_array(np.array([[[1.6, -2.6, 40000.0]]], np.float32), np.eye(4))
    assert read_nifti(write_nifti(volume, tmp_path / "i.nii", dtype=np.int16)).array.ravel().tolist() == [2, -3, 32767]


def test_read_volume_dispatches_and_leaves_inputs_alone(tmp_path, ct_study):
    from medcam.synthetic import write_dicom_series

    write_dicom_series(ct_study.volume, tmp_path / "in" / "dicom")
    write_nifti(ct_study.volume, tmp_path / "in" / "ct.nii.gz")
    before = tree_hash(tmp_path / "in")
    from_dicom = read_volume(tmp_path / "in" / "dicom")
    from_nifti = read_volume(tmp_path / "in" / "ct.nii.gz")
    assert from_dicom.geometry.is_close(from_nifti.geometry, atol=1e-4)
    stored = from_nifti.array > -1020  # 12-bit DICOM storage rounds, and clips air below -1024 HU
    assert np.abs(from_dicom.array - from_nifti.array)[stored].max() <= 0.5
    with pytest.raises(ImageReadError, match="no such file or folder"):
        read_volume(tmp_path / "nothing.nii")
    assert tree_hash(tmp_path / "in") == before
