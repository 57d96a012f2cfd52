import numpy as np
import pytest

from medcam.errors import GeometryError
from medcam.geometry import ImageGeometry, Volume
from medcam.metrics.localisation import (
    dilate_mm,
    energy_inside,
    localisation_scores,
    otsu_threshold,
    overlap,
    peak_distance_mm,
    pointing_game,
)

GRID = ImageGeometry((10, 10, 10), np.diag([2.0, 2.0, 3.0, 1.0]))


def _volume(array):
    return Volume(np.asarray(array, dtype=np.float32), GRID)


@pytest.fixture
def mask():
    m = np.zeros(GRID.shape, np.uint8)
    m[4:6, 4:6, 4:6] = 1  # 8 voxels
    return _volume(m)


def test_pointing_game_with_a_tolerance_in_mm(mask):
    heat = np.zeros(GRID.shape)
    heat[5, 5, 5] = 1.0
    assert pointing_game(_volume(heat), mask)
    heat = np.zeros(GRID.shape)
    heat[7, 5, 5] = 1.0  # two voxels (4 mm) along i from the mask's edge voxel i = 5
    assert not pointing_game(_volume(heat), mask)
    assert not pointing_game(_volume(heat), mask, tolerance_mm=3.9)
    assert pointing_game(_volume(heat), mask, tolerance_mm=4.0)
    heat = np.zeros(GRID.shape)
    heat[5, 5, 7] = 1.0  # two voxels along k: 6 mm
    assert not pointing_game(_volume(heat), mask, tolerance_mm=5.0) and pointing_game(_volume(heat), mask, tolerance_mm=6.0)


def test_energy_counts_positive_mass_only(mask):
    heat = np.zeros(GRID.shape)
    heat[4:6, 4:6, 4:6] = 1.0  # 8 units inside
    heat[0, 0, 0] = 8.0  # 8 units outside
    heat[9, 9, 9] = -100.0  # negative evidence does not count
    assert energy_inside(_volume(heat), mask) == pytest.approx(0.5)
    assert energy_inside(_volume(-np.ones(GRID.shape)), mask) == 0.0


def test_otsu_and_overlap_hand_computed(mask):
    values = np.array([0.0] * 90 + [1.0] * 10)
    threshold = otsu_threshold(values)
    assert 0.0 < threshold <= 1.0
    heat = np.zeros(GRID.shape)
    heat[4:6, 4:6, 4:7] = 1.0  # 12 predicted voxels, 8 of them in the mask
    iou, dice = overlap(_volume(heat), mask, 0.5)
    assert iou == pytest.approx(8 / 12) and dice == pytest.approx(2 * 8 / (12 + 8))


def test_peak_distance_and_summary(mask):
    heat = np.zeros(GRID.shape)
    heat[2, 3, 4] = 1.0
    centre = GRID.voxel_to_world(np.array([4.5, 4.5, 4.5]))
    expected = np.linalg.norm(GRID.voxel_to_world(np.array([2.0, 3.0, 4.0])) - centre)
    assert peak_distance_mm(_volume(heat), centre) == pytest.approx(expected)
    scores = localisation_scores(_volume(heat), mask, centre, tolerance_mm=10.0)
    assert not scores.hit and scores.hit_tolerant and scores.peak_distance_mm == pytest.approx(expected)


def test_2d_and_errors(mask):
    grid2d = ImageGeometry((8, 8, 1), np.diag([0.5, 0.5, 1.0, 1.0]))
    m = np.zeros((8, 8, 1))
    m[2, 2, 0] = 1
    heat = np.zeros((8, 8, 1))
    heat[3, 2, 0] = 1.0  # 0.5 mm away
    assert pointing_game(Volume(heat, grid2d), Volume(m, grid2d), tolerance_mm=0.5)
    assert dilate_mm(m, (0.5, 0.5, 1.0), 0.0).sum() == 1
    with pytest.raises(GeometryError, match="not on the same grid"):
        pointing_game(Volume(heat, grid2d), mask)
    with pytest.raises(ValueError, match="the lesion mask is empty"):
        pointing_game(_volume(np.ones(GRID.shape)), _volume(np.zeros(GRID.shape)))
