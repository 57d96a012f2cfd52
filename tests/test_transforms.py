"""Preprocessing: the model-grid MetaTensor affine maps model voxels to the source's world coordinates."""

from pathlib import Path

import numpy as np
import pytest

from medcam.errors import GeometryError
from medcam.geometry import Volume
from medcam.io import read_volume
from medcam.synthetic import axial_geometry, radiograph_geometry
from medcam.transforms import PreprocessConfig, build_transform, model_geometry, preprocess

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
CT = PreprocessConfig(3, (4.0, 4.0, 5.0), (80, 64, 40))


def _point_volume(geometry, index, value=1000.0, background=-1000.0):
    data = np.full(geometry.shape, background, dtype=np.float32)
    data[tuple(index)] = value
    return Volume(data, geometry)


@pytest.mark.parametrize(
    ("geometry", "index"),
    [
        (axial_geometry((60, 50, 30), (5.0, 5.0, 5.0)), (17, 33, 12)),
        (axial_geometry((60, 50, 30), (5.0, 5.0, 5.0), rotation_deg=(0.0, 0.0, 90.0)), (40, 10, 20)),
        (axial_geometry((64, 48, 24), (4.0, 4.0, 5.0), rotation_deg=(0.0, 0.0, 180.0)), (20, 30, 5)),
    ],
    ids=["axial-lps", "rotated-90", "flipped-xy"],
)
def test_known_point_lands_at_the_expected_model_voxel(geometry, index):
    config = PreprocessConfig(3, (5.0, 5.0, 5.0), (64, 64, 32))
    volume = _point_volume(geometry, index)
    tensor = preprocess(volume, config)
    assert tuple(tensor.shape) == (1, 64, 64, 32)
    world = geometry.voxel_to_world(np.array(index, float))
    expected = model_geometry(tensor).world_to_voxel(world)
    found = np.unravel_index(int(tensor[0].argmax()), tensor.shape[1:])
    assert np.allclose(found, expected, atol=0.51), (found, expected)
    assert model_geometry(tensor).orientation == "RAS"


def test_oblique_point_lands_within_a_voxel():
    geometry = axial_geometry((50, 50, 30), (4.0, 4.0, 4.0), rotation_deg=(20.0, 10.0, 30.0))
    volume = _point_volume(geometry, (30, 20, 14))
    # background (-1000) and padding both map to 0, so only the trilinear blur of the point weighs
    tensor = preprocess(volume, PreprocessConfig(3, (4.0, 4.0, 4.0), (64, 64, 48), window=(1000.0, 2000.0)))
    expected = model_geometry(tensor).world_to_voxel(geometry.voxel_to_world(np.array([30.0, 20.0, 14.0])))
    weights = tensor[0].numpy() - float(tensor[0].min())
    coords = np.argwhere(weights > 0)
    values = weights[weights > 0]
    centroid = (coords * values[:, None]).sum(axis=0) / values.sum()
    assert np.allclose(centroid, expected, atol=0.25)


def test_2d_point_and_geometry():
    geometry = radiograph_geometry((200, 180), 1.4)
    config = PreprocessConfig(2, (2.8, 2.8), (128, 128), window=(0.0, 4000.0), orientation=None)
    tensor = preprocess(_point_volume(geometry, (100, 56, 0)), config)
    assert tuple(tensor.shape) == (1, 128, 128)
    grid = model_geometry(tensor)
    assert grid.shape == (128, 128, 1)
    expected = grid.world_to_voxel(geometry.voxel_to_world(np.array([100.0, 56.0, 0.0])))
    found = np.unravel_index(int(tensor[0].argmax()), tensor.shape[1:])
    assert np.allclose(found, expected[:2], atol=0.51) and abs(expected[2]) < 1e-6


def test_window_scales_to_unit_range_and_path_equals_volume():
    tensor = preprocess(SAMPLE / "ct_lesion.nii.gz", CT)
    assert float(tensor.min()) == 0.0 and float(tensor.max()) == 1.0
    again = preprocess(read_volume(SAMPLE / "ct_lesion.nii.gz"), CT)
    assert np.array_equal(tensor.numpy(), again.numpy())
    dicom = preprocess(SAMPLE / "ct_lesion_dicom", CT)
    assert np.allclose(dicom.affine.numpy(), tensor.affine.numpy())


def test_robust_zscore_centres_the_foreground():
    config = PreprocessConfig(3, (4.0, 4.0, 4.0), (56, 64, 56), intensity="robust_zscore", window=None)
    tensor = preprocess(SAMPLE / "mr_oblique_dicom", config)
    values = tensor[0].numpy()
    foreground = values[values > values.min() + 1.0]
    assert abs(float(np.median(foreground))) < 0.5
    assert values.min() >= -5.0 and values.max() <= 5.0


def test_dimension_mismatch_and_bad_configs():
    with pytest.raises(GeometryError, match="a 3D model expects a volume, found a single image"):
        preprocess(SAMPLE / "cr_chest.dcm", CT)
    with pytest.raises(GeometryError, match="a 2D model expects a single image"):
        preprocess(SAMPLE / "ct_lesion.nii.gz", PreprocessConfig(2, (1.0, 1.0), (64, 64)))
    with pytest.raises(ValueError, match="spacing needs 3 positive values"):
        PreprocessConfig(3, (1.0, 1.0), (8, 8, 8))
    with pytest.raises(ValueError, match="intensity must be one of"):
        PreprocessConfig(3, (1.0, 1.0, 1.0), (8, 8, 8), intensity="magic")
    with pytest.raises(ValueError, match="needs window"):
        PreprocessConfig(3, (1.0, 1.0, 1.0), (8, 8, 8), window=None)
    assert PreprocessConfig.from_dict(CT.to_dict()) == CT


@pytest.mark.parametrize("shape", [(20, 18, 37), (20, 18, 16), (33, 7, 1)], ids=["slabs-and-a-rest", "one-slab", "2d"])
def test_meta_tensor_of_a_fortran_volume_is_its_contiguous_copy(shape):
    """The readers' Fortran-ordered volumes are copied slab by slab; the tensor is the C-ordered
    copy of the same values, and the volume is not touched."""
    from medcam.transforms import to_meta_tensor

    dims = 2 if shape[2] == 1 else 3
    data = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    fortran = Volume(np.asfortranarray(data), axial_geometry(shape, (1.0, 1.0, 2.0)))
    before = fortran.array.copy()
    tensor = to_meta_tensor(fortran, dims).as_tensor()
    expected = data if dims == 3 else data[:, :, 0]
    assert tensor.is_contiguous() and tuple(tensor.shape) == (1, *expected.shape)
    assert np.array_equal(tensor[0].numpy(), expected)
    assert np.array_equal(fortran.array, before)


def test_one_study_one_answer_as_dicom_and_as_its_nifti_twin(tmp_path):
    """The same oblique study read from DICOM and from a float32 NIfTI gets the same model grid
    (MONAI's Spacing would align one on its corner and the other on its centre) and the same map."""
    import torch

    from medcam.explanation import explain
    from medcam.io import read_dicom_series, read_nifti, write_nifti
    from medcam.models import ClassifierConfig, GapClassifier, from_module
    from medcam.synthetic import axial_geometry, write_dicom_series
    from tests.conftest import gaussian_blob

    geometry = axial_geometry((40, 36, 20), (4.0, 4.5, 5.0), rotation_deg=(12.0, -7.0, 20.0))
    volume = gaussian_blob(geometry, geometry.voxel_to_world(np.array([12.0, 20.0, 8.0])), sigma_mm=10)
    write_dicom_series(volume, tmp_path / "dcm")
    write_nifti(volume, tmp_path / "twin.nii.gz")
    dicom, nifti = read_dicom_series(tmp_path / "dcm").volume, read_nifti(tmp_path / "twin.nii.gz")
    assert 0 < np.abs(dicom.geometry.affine_ras - nifti.geometry.affine_ras).max() < 1e-4  # float32 rounding only
    config = PreprocessConfig(3, (4.0, 4.0, 4.0), (48, 48, 32), window=(500.0, 1000.0))
    a, b = preprocess(dicom, config), preprocess(nifti, config)
    assert np.abs(a.affine.numpy() - b.affine.numpy()).max() < 1e-4
    assert float((a - b).abs().max()) < 1e-2
    torch.manual_seed(0)
    model = from_module(GapClassifier(ClassifierConfig(3, channels=(4, 8), convs_per_stage=(1, 1))), build_transform(config),
                        ["no", "yes"], layer="features", fc_layer="classifier")
    maps = [explain(model, v, method="cam", target=1) for v in (dicom, nifti)]
    assert abs(maps[0].probability - maps[1].probability) < 1e-4
    assert maps[0].peak_index == maps[1].peak_index


def test_axes_orthogonal_but_for_rounding_are_made_exactly_orthogonal():
    from medcam.geometry import orthogonal_axes

    angle = np.radians(20.0)
    exact = np.array([[4 * np.cos(angle), -4.5 * np.sin(angle), 0, 10], [4 * np.sin(angle), 4.5 * np.cos(angle), 0, -20],
                      [0, 0, 5.0, 30], [0, 0, 0, 1]])
    noisy = exact.astype(np.float32).astype(float)  # a float32 sform
    snapped = orthogonal_axes(noisy)
    directions = snapped[:3, :3] / np.linalg.norm(snapped[:3, :3], axis=0)
    assert np.abs(directions.T @ directions - np.eye(3)).max() < 1e-15
    assert np.allclose(np.linalg.norm(snapped[:3, :3], axis=0), [4.0, 4.5, 5.0], atol=1e-6)
    assert np.array_equal(snapped[:3, 3], noisy[:3, 3]) and np.abs(snapped - exact).max() < 1e-5
    tilted = exact.copy()
    tilted[:3, 1] = [0, 4.5 * np.cos(0.2), -4.5 * np.sin(0.2)]  # a gantry tilt: sheared on purpose
    assert np.array_equal(orthogonal_axes(tilted), tilted)
    assert np.array_equal(orthogonal_axes(np.diag([2.0, 3.0, 4.0, 1.0])), np.diag([2.0, 3.0, 4.0, 1.0]))
