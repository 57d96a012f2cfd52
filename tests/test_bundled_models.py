"""The bundled checkpoints: they load, they detect the bundled lesions, and CAM points at them."""

from pathlib import Path

import numpy as np
import pytest

from medcam.explanation import explain
from medcam.io import read_nifti
from medcam.models import load_checkpoint

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


@pytest.fixture(scope="module")
def ct3d():
    return load_checkpoint(SAMPLE / "models" / "ct3d.pt")


@pytest.fixture(scope="module")
def cr2d():
    return load_checkpoint(SAMPLE / "models" / "cr2d.pt")


def test_checkpoints_are_small_and_documented(ct3d, cr2d):
    for checkpoint in (ct3d, cr2d):
        assert checkpoint.path.stat().st_size < 5 * 2**20
        training = checkpoint.metadata["training"]
        assert training["recipe"] == "crops then whole volumes" and training["train"]["source"].startswith("synthetic:")
        assert checkpoint.metadata["metrics"]["validation"]["auc"] >= 0.9
    assert ct3d.spatial_dims == 3 and cr2d.spatial_dims == 2


@pytest.mark.parametrize(("study", "mask"), [("ct_lesion_dicom", "ct_lesion_dicom_mask.nii.gz"), ("ct_lesion.nii.gz", "ct_lesion_mask.nii.gz")])
def test_3d_model_detects_the_bundled_lesions_and_cam_points_at_them(ct3d, study, mask):
    explanation = explain(ct3d, SAMPLE / study, method="cam", target=1)
    assert explanation.probability > 0.5 and explanation.target_name == "lesion"
    lesion = read_nifti(SAMPLE / mask)
    assert lesion.geometry.is_close(explanation.heatmap.geometry, atol=1e-4)
    # the pointing game on the source grid (RESULTS.md: hit rate over 100 held-out cases)
    assert lesion.array[explanation.peak_index] == 1


def test_3d_model_cam_peak_inside_a_large_synthetic_lesion(ct3d):
    """A large liver lesion (radius 15-16 mm, +-70-80 HU): the CAM peak lies inside its mask."""
    from medcam.synthetic import axial_geometry, ct_abdomen_scene, make_study

    scene = ct_abdomen_scene(np.random.default_rng(6), n_lesions=1, radius_range=(15.0, 16.0), contrast_range=(70.0, 80.0))
    study = make_study(scene, axial_geometry((96, 96, 40), (4.0, 4.0, 5.0)), seed=6)
    explanation = explain(ct3d, study.volume, method="cam", target=1)
    assert explanation.probability > 0.5
    assert study.mask.array[explanation.peak_index] == 1


def test_3d_model_on_the_normal_study(ct3d):
    explanation = explain(ct3d, SAMPLE / "ct_normal.nii.gz")
    # a two-class model's lesion map is explained, with the lesion's probability, negative study or not
    assert explanation.target_name == "lesion" and explanation.probability < 0.5 and explanation.predicted_name == "no lesion"


def test_2d_model_detects_the_nodule(cr2d):
    explanation = explain(cr2d, SAMPLE / "cr_chest.dcm", method="cam", target=1)
    assert explanation.probability > 0.5
    mask = read_nifti(SAMPLE / "cr_chest_mask.nii.gz")
    # within 2 pixels of the nodule (the map is 16x coarser than the image)
    hits = np.argwhere(mask.array[:, :, 0])
    distance = np.min(np.linalg.norm(hits - np.asarray(explanation.peak_index[:2]), axis=1))
    assert distance <= 2.0


def test_3d_model_cam_points_at_held_out_lesions(ct3d):
    """The pointing game on 10 held-out synthetic studies (the seed of RESULTS.md's 100-case run):
    the CAM peak lies inside the lesion mask in at least 8 (the 100-case rate is in RESULTS.md)."""
    from medcam.cases import synthetic_cases
    from medcam.metrics.localisation import pointing_game

    hits = [pointing_game(explain(ct3d, case.volume, method="cam", target=1).heatmap, case.mask)
            for case in synthetic_cases("ct3d", 10, 4242)]
    assert sum(hits) >= 8
