"""A "perfect map" (the preprocessed image of a Gaussian lesion) put back on the source grid peaks
where the lesion is, within half a source voxel per axis, on hard geometries and through files."""

import numpy as np
import pytest
import torch

from medcam.backproject import to_source_grid
from medcam.errors import GeometryError
from medcam.geometry import ImageGeometry, Volume, affine_lps_to_ras
from medcam.io import read_dicom_series, read_nifti, write_nifti
from medcam.synthetic import axial_geometry, radiograph_geometry, write_dicom_series
from medcam.transforms import PreprocessConfig, preprocess
from tests.conftest import gaussian_blob

CONFIG_3D = PreprocessConfig(3, (3.0, 3.0, 3.0), (64, 64, 48), window=(500.0, 1000.0))
CONFIG_2D = PreprocessConfig(2, (2.0, 2.0), (96, 96), window=(500.0, 1000.0), orientation=None)


def _blob(geometry: ImageGeometry, centre_ras) -> Volume:
    return gaussian_blob(geometry, centre_ras, sigma_mm=6.0)


def _check(volume: Volume, centre_ras, config=CONFIG_3D):
    model_input = preprocess(volume, config)
    heatmap = to_source_grid(model_input[0], model_input, volume.geometry)
    assert heatmap.geometry.is_close(volume.geometry)
    # sub-voxel peak: centroid of the voxels within 10% of the maximum (an argmax alone can sit a
    # voxel off when the true centre falls between voxels)
    top = heatmap.array >= 0.9 * heatmap.array.max()
    peak = (np.argwhere(top) * heatmap.array[top][:, None]).sum(axis=0) / heatmap.array[top].sum()
    expected = volume.geometry.world_to_voxel(np.asarray(centre_ras, float))
    assert np.all(np.abs(peak - expected) <= 0.5), (peak, expected)
    assert heatmap.array.max() > 0.5  # high stays high: no inversion


def _sagittal():
    affine_lps = np.eye(4)
    affine_lps[:3, :3] = np.column_stack([[0, 2.5, 0], [0, 0, -3.0], [-4.0, 0, 0]])
    affine_lps[:3, 3] = [60.0, -80.0, 70.0]
    return ImageGeometry((64, 48, 30), affine_lps_to_ras(affine_lps))


GEOMETRIES = {
    "axial": axial_geometry((60, 56, 40), (3.5, 3.5, 4.0)),
    "oblique": axial_geometry((60, 56, 40), (3.5, 3.5, 4.0), rotation_deg=(20.0, -10.0, 30.0)),
    "non-square": axial_geometry((80, 50, 30), (2.2, 3.9, 5.0)),
    "sagittal": _sagittal(),
    "tilted": axial_geometry((60, 56, 40), (3.5, 3.5, 4.0), tilt_deg=18.0),
}


@pytest.mark.parametrize("name", list(GEOMETRIES), ids=list(GEOMETRIES))
def test_perfect_map_peaks_at_the_lesion(name):
    geometry = GEOMETRIES[name]
    centre = geometry.voxel_to_world(np.array([23.3, 17.6, 11.2]))
    _check(_blob(geometry, centre), centre)


def test_through_dicom_files_reversed_and_shuffled(tmp_path):
    geometry = GEOMETRIES["oblique"]
    centre = geometry.voxel_to_world(np.array([31.0, 22.4, 15.7]))
    blob = _blob(geometry, centre)
    write_dicom_series(blob, tmp_path / "mr", modality="MR", reverse_instance_numbers=True, shuffle_file_names=True)
    _check(read_dicom_series(tmp_path / "mr").volume, centre)


def test_through_nifti_with_non_diagonal_lps_flipped_affine(tmp_path):
    angle = np.radians(20.0)
    affine = np.array(
        [[-3.0 * np.cos(angle), 3.2 * np.sin(angle), 0.0, 90.0], [-3.0 * np.sin(angle), -3.2 * np.cos(angle), 0.0, 100.0],
         [0.0, 0.0, 4.0, -60.0], [0, 0, 0, 1]]
    )
    geometry = ImageGeometry((56, 60, 36), affine)
    centre = geometry.voxel_to_world(np.array([20.4, 33.1, 18.0]))
    volume = read_nifti(write_nifti(_blob(geometry, centre), tmp_path / "lps.nii.gz"))
    _check(volume, centre)


def test_2d_image_in_pixel_indices():
    geometry = radiograph_geometry((150, 130), 1.4)
    centre = geometry.voxel_to_world(np.array([61.0, 88.0, 0.0]))
    _check(_blob(geometry, centre), centre, CONFIG_2D)


def test_plain_tensor_is_refused_and_shapes_checked():
    geometry = GEOMETRIES["axial"]
    model_input = preprocess(_blob(geometry, geometry.center_ras), CONFIG_3D)
    with pytest.raises(GeometryError, match="plain tensor without an affine"):
        to_source_grid(model_input[0], torch.zeros(1, 64, 64, 48), geometry)
    with pytest.raises(GeometryError, match="does not match the model grid"):
        to_source_grid(np.zeros((10, 10, 10)), model_input, geometry)


def test_world_space_path_agrees_with_monai_invertd():
    """MONAI's own inverse, on the map wrapped in the input's MetaTensor, agrees within half a voxel."""
    from monai.data import MetaTensor
    from monai.transforms import Invertd

    from medcam.transforms import build_transform, to_meta_tensor

    geometry = GEOMETRIES["axial"]
    centre = geometry.voxel_to_world(np.array([20.0, 30.0, 12.0]))
    volume = _blob(geometry, centre)
    transform = build_transform(CONFIG_3D)
    model_input = transform({"image": to_meta_tensor(volume, 3)})["image"]
    cam_map = MetaTensor(model_input.as_tensor().clone(), meta=model_input.meta, applied_operations=model_input.applied_operations)
    inverted = Invertd(keys="cam", transform=transform, orig_keys="image", nearest_interp=False)(
        {"cam": cam_map, "image": model_input}
    )["cam"]
    ours = to_source_grid(model_input[0], model_input, geometry)
    assert tuple(inverted.shape[1:]) == geometry.shape
    theirs = inverted[0].numpy()
    peak_ours = np.array(np.unravel_index(ours.array.argmax(), geometry.shape))
    peak_theirs = np.array(np.unravel_index(theirs.argmax(), geometry.shape))
    assert np.abs(peak_ours - peak_theirs).max() <= 1
    inside = ours.array > 0.2
    assert np.abs(ours.array - theirs)[inside].max() < 0.1
