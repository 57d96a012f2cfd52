import numpy as np
import pytest

from medcam.geometry import ras_to_lps
from medcam.synthetic import (
    axial_geometry,
    chest_radiograph_scene,
    ct_abdomen_scene,
    make_study,
    mr_head_scene,
    radiograph_geometry,
)


def test_same_seed_same_study_different_seed_different_study():
    geometry = axial_geometry((24, 24, 8), (12.0, 12.0, 10.0))
    a = make_study(ct_abdomen_scene(np.random.default_rng(5)), geometry, seed=5)
    b = make_study(ct_abdomen_scene(np.random.default_rng(5)), geometry, seed=5)
    c = make_study(ct_abdomen_scene(np.random.default_rng(6)), geometry, seed=6)
    assert np.array_equal(a.volume.array, b.volume.array) and np.array_equal(a.mask.array, b.mask.array)
    assert not np.array_equal(a.volume.array, c.volume.array)


def test_ct_intensities_are_realistic(ct_study):
    values = ct_study.volume.array
    assert values.min() < -900  # air outside the body
    assert 500 < values.max() < 1000  # bone
    centre = np.asarray(ct_study.volume.shape) // 2
    assert -150 < np.median(values[centre[0] - 3 : centre[0] + 3, centre[1] - 3 : centre[1] + 3]) < 150  # soft tissue


@pytest.mark.parametrize("n_lesions", [0, 1, 3])
def test_lesions_are_in_the_mask_and_have_contrast(n_lesions):
    geometry = axial_geometry((48, 48, 24), (6.0, 6.0, 6.0))
    scene = ct_abdomen_scene(np.random.default_rng(11), n_lesions=n_lesions, radius_range=(10.0, 14.0), contrast_range=(60, 80))
    study = make_study(scene, geometry, seed=11)
    assert len(study.lesions) == n_lesions and study.has_lesion == (n_lesions > 0)
    for lesion in study.lesions:
        ijk = np.rint(geometry.world_to_voxel(lesion.center_ras)).astype(int)
        assert study.mask.array[tuple(ijk)] == 1
        assert lesion.host in {"liver", "spleen", "kidney_right", "kidney_left"}
        assert np.allclose(lesion.center_lps, ras_to_lps(lesion.center_ras))
    if n_lesions == 0:
        assert not study.mask.array.any()


def test_lesion_contrast_measurable_against_its_host():
    geometry = axial_geometry((64, 64, 32), (5.0, 5.0, 5.0))
    scene = ct_abdomen_scene(np.random.default_rng(3), n_lesions=1, radius_range=(15.0, 16.0), contrast_range=(70, 71))
    clean = scene.__class__(scene.modality, scene.background, scene.shapes, scene.lesions, noise_sigma=0.0, blur_mm=0.0)
    with_lesion = make_study(clean, geometry, seed=0)
    without = make_study(clean.__class__(clean.modality, clean.background, clean.shapes, (), 0.0, 0.0), geometry, seed=0)
    inside = with_lesion.mask.array.astype(bool)
    difference = (with_lesion.volume.array - without.volume.array)[inside]
    assert np.allclose(np.abs(difference), 70.0, atol=1.5)


def test_oblique_grid_draws_the_same_anatomy():
    scene = mr_head_scene(np.random.default_rng(4), n_lesions=1, radius_range=(12.0, 13.0))
    straight = make_study(scene, axial_geometry((40, 40, 40), (5.0, 5.0, 5.0)), seed=1)
    oblique = make_study(scene, axial_geometry((40, 40, 40), (5.0, 5.0, 5.0), rotation_deg=(20.0, 10.0, 30.0)), seed=1)
    lesion = scene.lesions[0]
    for study in (straight, oblique):
        ijk = np.argwhere(study.mask.array).mean(axis=0)
        assert np.linalg.norm(study.mask.geometry.voxel_to_world(ijk) - lesion.center_ras) < 3.0


def test_radiograph_nodules_are_in_the_lungs_and_brighter():
    geometry = radiograph_geometry((128, 128), 3.0)
    scene = chest_radiograph_scene(np.random.default_rng(9), n_lesions=2, center_ras=tuple(geometry.center_ras))
    study = make_study(scene, geometry, seed=9)
    assert study.volume.shape == (128, 128, 1)
    assert all(lesion.host.startswith("lung") and lesion.contrast > 0 for lesion in study.lesions)
    assert study.mask.array.sum() > 0
