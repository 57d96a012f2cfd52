"""Training on a tiny cohort from real anatomy (the MNI152 brain cohort) with lesion masks, as a
user's manifest gives it: after the crop stage and the calibration, the CAM's peak lies on the
held-out lesions, where the untrained network's lay anywhere in the head."""

import csv

import numpy as np
import pytest
import torch

pytest.importorskip("nilearn", reason="the anatomy cohort needs nilearn, in the test extra")

from medcam.explanation import explain  # noqa: E402
from medcam.io import write_nifti  # noqa: E402
from medcam.metrics.localisation import localisation_scores  # noqa: E402
from medcam.models import ClassifierConfig, GapClassifier, load_checkpoint, load_model  # noqa: E402
from medcam.models.checkpoint import save_checkpoint  # noqa: E402
from medcam.models.recipes import train_manifest  # noqa: E402
from medcam.synthetic.anatomy import brain_mr_case  # noqa: E402
from medcam.transforms import PreprocessConfig  # noqa: E402

LESIONS = dict(diameter_range=(16.0, 20.0), contrast_range=(0.6, 0.8), resolution=2)
PREPROCESS = PreprocessConfig(3, (6.0, 6.0, 6.0), (32, 40, 32), intensity="robust_zscore", window=None)
MODEL = ClassifierConfig(3, channels=(8, 16, 32), convs_per_stage=(1, 1, 1), stem_stride=1, pool_after=(True, True, False))


def _peak_distances(model, n: int = 8) -> list[float]:
    distances = []
    for index in range(n):
        case = brain_mr_case(100 + index, 7, positive_fraction=1.0, **LESIONS)
        explanation = explain(model, case.to_study(f"held-out{index}"), method="cam", target=1)
        centres = np.array([lesion.center_ras for lesion in case.lesions])
        distances.append(localisation_scores(explanation.heatmap, case.mask, centres).peak_distance_mm)
    return distances


@pytest.mark.slow
def test_a_tiny_brain_cohort_with_masks_moves_the_cam_peak_onto_the_lesions(tmp_path):
    rows = []
    for index in range(24):
        case = brain_mr_case(index, 7, mask_grid="template" if index % 4 == 3 else "scanner", **LESIONS)
        image = write_nifti(case.volume, tmp_path / f"case{index}.nii.gz").name
        mask = write_nifti(case.mask, tmp_path / f"case{index}_mask.nii.gz").name if case.label else ""
        rows.append({"image": image, "label": case.label, "mask": mask})
    with open(tmp_path / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "label", "mask"])
        writer.writeheader()
        writer.writerows(rows)

    result = train_manifest(tmp_path / "manifest.csv", tmp_path / "brain.pt", preprocess_config=PREPROCESS,
                            model_config=MODEL, class_names=("no lesion", "lesion"), seed=0, crop_epochs=6,
                            modalities=("MR",), log=lambda line: None)
    checkpoint = load_checkpoint(result.checkpoint)
    training = checkpoint.metadata["training"]
    assert training["recipe"] == "crops, then the logit calibrated on whole volumes"
    assert training["stage1"]["crop_size"] == [8, 8, 8]  # 48 mm at 6 mm
    assert training["calibration"]["scale"] > 0 and "localisation" in checkpoint.metadata["metrics"]
    trained = _peak_distances(load_model(result.checkpoint))

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "untrained.pt", GapClassifier(MODEL).eval(), PREPROCESS, ("no lesion", "lesion"),
                    modalities=("MR",))
    untrained = _peak_distances(load_model(tmp_path / "untrained.pt"))
    # lesions of 8-10 mm radius: a peak within 20 mm of the centre is on or beside the lesion
    assert np.median(trained) < 20.0 and np.median(trained) < np.median(untrained) / 3, (trained, untrained)
