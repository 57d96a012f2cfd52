"""The heatmap NIfTI's qform and sform, read back by nibabel and by ITK (what 3D Slicer and ITK-SNAP run)."""

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medcam.export.nifti import write_heatmap_nifti
from medcam.geometry import Volume, ras_to_lps
from medcam.io import write_nifti
from medcam.synthetic import axial_geometry


def _map(geometry):
    return Volume(np.random.default_rng(0).random(geometry.shape, dtype=np.float32), geometry)


@pytest.mark.parametrize("writer", ["heatmap", "volume"])
def test_an_orthogonal_grid_has_qform_equal_to_sform_and_itk_reads_it_exactly(tmp_path, writer):
    geometry = axial_geometry((20, 18, 10), (4.0, 4.5, 5.0), rotation_deg=(10.0, -5.0, 25.0))
    path = (write_heatmap_nifti(_map(geometry), tmp_path / "m.nii.gz", sidecar={})[0] if writer == "heatmap"
            else write_nifti(_map(geometry), tmp_path / "m.nii.gz"))
    header = nib.load(str(path)).header
    assert (int(header["qform_code"]), int(header["sform_code"])) == (1, 1)
    assert np.allclose(header.get_qform(), geometry.affine_ras, atol=1e-4)
    image = sitk.ReadImage(str(path))
    corner = [19.0, 17.0, 9.0]
    itk_lps = np.array(image.TransformContinuousIndexToPhysicalPoint(corner))
    assert np.abs(itk_lps - ras_to_lps(geometry.voxel_to_world(np.array(corner)))).max() < 1e-3


@pytest.mark.parametrize("writer", ["heatmap", "volume"])
def test_a_sheared_grid_has_no_qform_so_no_reader_takes_a_shear_stripped_one(tmp_path, writer):
    """A gantry-tilted grid: the sform holds it exactly; a qform cannot (rotation and spacing only),
    so its code is 0. ITK, which supports only orthonormal grids, then refuses the file instead of
    reading the shear-stripped qform, 1 mm and more off at the far corner."""
    geometry = axial_geometry((40, 36, 20), (4.0, 4.5, 5.0), tilt_deg=15.0)
    path = (write_heatmap_nifti(_map(geometry), tmp_path / "m.nii.gz", sidecar={})[0] if writer == "heatmap"
            else write_nifti(_map(geometry), tmp_path / "m.nii.gz"))
    loaded = nib.load(str(path))
    assert (int(loaded.header["qform_code"]), int(loaded.header["sform_code"])) == (0, 1)
    assert np.abs(loaded.affine - geometry.affine_ras).max() < 1e-4
    with pytest.raises(RuntimeError, match="orthonormal"):
        sitk.ReadImage(str(path))
