"""The brain MR cohort from nilearn's MNI152 template: seeded, varied like real scanners, exact masks."""

import numpy as np
import pytest

from medcam.synthetic.anatomy import brain_mr_case, template

pytest.importorskip("nilearn", reason="the anatomy cohort needs nilearn, in the test extra")


def test_cases_are_seeded_and_varied_like_real_acquisitions():
    a, b = brain_mr_case(3, seed=1), brain_mr_case(3, seed=1)
    assert np.array_equal(a.volume.array, b.volume.array) and np.array_equal(a.volume.geometry.affine_ras, b.volume.geometry.affine_ras)
    cases = [brain_mr_case(i, seed=1) for i in range(8)]
    assert len({case.volume.geometry.orientation for case in cases}) >= 5  # axis orders and directions vary
    for case in cases:
        spacing = sorted(case.volume.spacing)
        assert 0.9 <= spacing[0] <= 2.2 and 2.9 <= spacing[2] <= 5.1
        assert case.volume.array.min() >= 0 and np.isfinite(case.volume.array).all()
    assert 2 <= sum(case.label for case in cases) <= 6
    assert not np.array_equal(brain_mr_case(3, seed=2).volume.geometry.affine_ras, a.volume.geometry.affine_ras)


def test_lesions_lie_in_the_brain_their_masks_are_exact_and_they_change_the_image():
    case = next(c for c in (brain_mr_case(i, seed=5, positive_fraction=1.0) for i in range(4)) if len(c.lesions) == 1)
    (lesion,) = case.lesions
    geometry = case.mask.geometry
    assert 3.0 <= lesion.radius_mm <= 10.0 and 0.35 <= abs(lesion.contrast) <= 0.8
    centre_voxel = np.rint(geometry.world_to_voxel(lesion.center_ras)).astype(int)
    assert case.mask.array[tuple(centre_voxel)] == 1
    ball = 4 / 3 * np.pi * lesion.radius_mm**3
    assert case.mask.array.sum() * np.prod(geometry.spacing) == pytest.approx(ball, rel=0.35)
    # the lesion is in the brain: its centre, taken back through the subject's pose, is in the template's brain mask
    _, brain = template()
    in_template = np.linalg.solve(np.array(case.acquisition["pose"]), np.append(lesion.center_ras, 1.0))[:3]
    assert brain.array[tuple(np.rint(brain.geometry.world_to_voxel(in_template)).astype(int))] == 1
    # and it changes the image as its contrast says: brighter or darker than the tissue around it
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in geometry.shape], indexing="ij"), axis=-1)
    distance = np.linalg.norm(geometry.voxel_to_world(ijk.astype(float)) - lesion.center_ras, axis=-1)
    inside = case.volume.array[distance <= 0.6 * lesion.radius_mm].mean()
    around = case.volume.array[(distance > lesion.radius_mm + 2) & (distance < lesion.radius_mm + 6)].mean()
    assert np.sign(inside / around - 1) == np.sign(lesion.contrast) and abs(inside / around - 1) > 0.15


def test_a_mask_can_come_on_a_grid_of_its_own():
    case = brain_mr_case(1, seed=1, positive_fraction=1.0, mask_grid="template")
    assert case.mask.geometry.spacing == (1.5, 1.5, 1.5) and case.mask.shape != case.volume.shape
    for lesion in case.lesions:
        assert case.mask.array[tuple(np.rint(case.mask.geometry.world_to_voxel(lesion.center_ras)).astype(int))] == 1
