"""A cohort run with one corrupted study among good ones, then a resume, through the CLI and the library."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from medcam.cli import main
from medcam.cohort import find_cases, run_cohort
from medcam.data import StudyInfo, axial_geometry, ct_abdomen_scene, make_study, write_dicom_series
from medcam.io import write_nifti
from medcam.models import ClassifierConfig, GapClassifier, load_checkpoint, save_checkpoint
from medcam.transforms import PreprocessConfig


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    config = PreprocessConfig(3, (12.0, 12.0, 16.0), (32, 24, 12))
    save_checkpoint(path, GapClassifier(ClassifierConfig(3, channels=(4, 8), convs_per_stage=(1, 1))), config, ("no", "yes"))
    return path


@pytest.fixture
def cohort(tmp_path):
    root = tmp_path / "cohort"
    geometry = axial_geometry((32, 24, 12), (12.0, 12.0, 16.0))
    for index in range(3):
        study = make_study(ct_abdomen_scene(np.random.default_rng(index)), geometry, seed=index)
        write_dicom_series(study.volume, root / f"patient{index}" / "ct", study=StudyInfo(patient_id=f"P{index}"))
    write_nifti(make_study(ct_abdomen_scene(np.random.default_rng(9)), geometry, seed=9).volume, root / "extra.nii.gz")
    broken = root / "patient1" / "ct" / "IM0005.dcm"
    broken.write_bytes(broken.read_bytes()[:300])  # corrupt one study
    return root


def _manifest(out):
    with open(out / "manifest.csv", newline="") as handle:
        return {row["case_id"]: row for row in csv.DictReader(handle)}


def test_find_cases(cohort):
    cases = find_cases(cohort)
    ids = [case.case_id for case in cases]
    assert "extra.nii.gz" in ids and "patient0_ct" in ids and "patient2_ct" in ids
    assert any(case.case_id.startswith("patient1") for case in cases)


def test_cohort_with_a_corrupted_study_then_resume(cohort, model_path, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["explain", str(cohort), "--model", str(model_path), "--out", str(out), "--formats", "nifti,pm", "--quiet"]
    assert main(args) == 1  # one case failed
    rows = _manifest(out)
    failed = [row for row in rows.values() if row["status"] == "failed"]
    assert len(failed) == 1 and "patient1" in failed[0]["case_id"] and "truncated" in failed[0]["error"]
    good = [row for row in rows.values() if row["status"] == "ok"]
    assert len(good) == 3
    for row in good:
        assert row["prediction"] in ("no", "yes") and len(row["peak_lps_mm"].split()) == 3
        assert all(Path(p).is_file() for p in row["outputs"].split(";"))
    assert "3 explained, 0 already done, 1 failed" in capsys.readouterr().out

    # resume: completed cases are skipped, the failed one is retried (and fails again)
    assert main([*args, "--allow-failures"]) == 0
    assert "0 explained, 3 already done, 1 failed" in capsys.readouterr().out
    # an output that disappeared makes its case run again
    Path(good[0]["outputs"].split(";")[0]).unlink()
    assert main([*args, "--allow-failures"]) == 0
    assert "1 explained, 2 already done, 1 failed" in capsys.readouterr().out
    assert main([*args, "--allow-failures", "--force"]) == 0
    assert "3 explained, 0 already done, 1 failed" in capsys.readouterr().out


def test_cohort_from_csv_and_outputs_outside_input(cohort, model_path, tmp_path):
    listing = tmp_path / "list.csv"
    listing.write_text(f"image,case_id\n{cohort / 'extra.nii.gz'},extra\n{cohort / 'patient0' / 'ct'},p0\n")
    from medcam.cohort import cases_from_csv

    summary = run_cohort(cases_from_csv(listing), load_checkpoint(model_path), tmp_path / "out", formats=("nifti",), log=lambda _: None)
    assert (summary.done, summary.failed) == (2, 0)
    assert set(_manifest(tmp_path / "out")) == {"extra", "p0"}
    from medcam.errors import ExportError

    with pytest.raises(ExportError, match="inside the input folder"):
        run_cohort(find_cases(cohort), load_checkpoint(model_path), cohort / "out", input_roots=[cohort], log=lambda _: None)


def test_cohort_with_a_monai_bundle_and_masks_from_the_csv(cohort, tmp_path):
    from medcam.cohort import cases_from_csv
    from medcam.models import load_model
    from tests.bundles import write_bundle

    listing = tmp_path / "list.csv"
    listing.write_text(f"image,case_id,mask\n{cohort / 'extra.nii.gz'},extra,{cohort / 'extra.nii.gz'}\n{cohort / 'patient0' / 'ct'},p0,\n")
    cases = cases_from_csv(listing)
    assert [c.mask_source is not None for c in cases] == [True, False]
    model = load_model(write_bundle(tmp_path / "bundle", "resnet"))
    summary = run_cohort(cases, model, tmp_path / "out", method="gradcam", formats=("nifti", "pm"), log=lambda _: None)
    rows = _manifest(tmp_path / "out")
    assert (summary.done, summary.failed) == (2, 0), rows
    assert rows["p0"]["modality"] == "CT" and rows["p0"]["outputs"].count("gradcam") == 3  # nifti, sidecar, pm
    assert rows["extra"]["prediction"] in ("no lesion", "lesion")
