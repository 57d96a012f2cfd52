"""A cohort run with one corrupted study among good ones, then a resume, through the CLI and the library."""

import csv
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medcam.cases import find_cases
from medcam.cli import main
from medcam.cohort import run_cohort
from medcam.io import write_nifti
from medcam.models import load_checkpoint
from medcam.synthetic import StudyInfo, axial_geometry, ct_abdomen_scene, make_study, write_dicom_series


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
    """Every DICOM series folder and NIfTI file below the root is one case, named by its path
    (the corrupted series too: it fails when read, not when found), in a stable order."""
    cases = find_cases(cohort)
    found = [(case.case_id, case.source.relative_to(cohort).as_posix()) for case in cases]
    assert found == [("extra.nii.gz", "extra.nii.gz"), ("patient0_ct", "patient0/ct"), ("patient1_ct", "patient1/ct"),
                     ("patient2_ct", "patient2/ct")]


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
        # a two-class model maps its finding class; the probability is that class's
        assert row["mapped_class"] == "yes" and (row["prediction"] == "yes") == (float(row["probability"]) >= 0.5)
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
    from medcam.cases import cases_from_csv

    reports = []
    summary = run_cohort(cases_from_csv(listing), load_checkpoint(model_path), tmp_path / "out", formats=("nifti",),
                         log=lambda _: None, progress=reports.append)
    assert (summary.done, summary.failed) == (2, 0)
    # one report per case, as its manifest row is written, in the order the cases finished
    assert [(p.task, p.done, p.total, p.unit) for p in reports] == [("explaining", 1, 2, "case"), ("explaining", 2, 2, "case")]
    assert sorted(p.item for p in reports) == ["extra", "p0"]
    assert set(_manifest(tmp_path / "out")) == {"extra", "p0"}
    from medcam.errors import ExportError

    with pytest.raises(ExportError, match="inside the input folder"):
        run_cohort(find_cases(cohort), load_checkpoint(model_path), cohort / "out", input_roots=[cohort], log=lambda _: None)


def test_cohort_with_a_monai_bundle_and_masks_from_the_csv(cohort, tmp_path):
    from medcam.cases import cases_from_csv
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


def test_case_ids_are_unique_and_never_leave_the_output_folder(tmp_path):
    """Two series in one folder with the same SeriesNumber, and CSV rows that share a file name,
    get one case each (one folder each); a repeated case_id is refused; ids are folder names."""
    from medcam.cases import cases_from_csv
    from medcam.errors import MedcamError

    root = tmp_path / "cohort"
    geometry = axial_geometry((16, 12, 6), (12.0, 12.0, 16.0))
    study = StudyInfo(patient_id="P")
    (root / "mixed").mkdir(parents=True)
    for seed in (0, 1):  # two series, both SeriesNumber 1, in one folder
        volume = make_study(ct_abdomen_scene(np.random.default_rng(seed)), geometry, seed=seed).volume
        series_uid = pydicom.uid.generate_uid()  # the writer derives UIDs from the study and SeriesNumber
        for path in write_dicom_series(volume, tmp_path / f"series{seed}", study=study, series_number=1):
            ds = pydicom.dcmread(path)
            ds.SeriesInstanceUID = series_uid
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
            ds.save_as(root / "mixed" / f"S{seed}_{path.name}")
    cases = find_cases(root)
    assert len(cases) == 2 and len({c.case_id for c in cases}) == 2 and len({c.series_uid for c in cases}) == 2
    for name in ("patient1", "patient2"):
        write_nifti(make_study(ct_abdomen_scene(np.random.default_rng(3)), geometry, seed=3).volume, tmp_path / name / "ct.nii.gz")
    listing = tmp_path / "list.csv"
    listing.write_text("image\npatient1/ct.nii.gz\npatient2/ct.nii.gz\n")
    ids = [case.case_id for case in cases_from_csv(listing)]
    assert ids == ["patient1_ct.nii.gz", "patient2_ct.nii.gz"]
    listing.write_text("image,case_id\npatient1/ct.nii.gz,a\npatient2/ct.nii.gz,a\n")
    with pytest.raises(MedcamError, match="rows 2 and 3: both are case 'a'"):
        cases_from_csv(listing)
    listing.write_text("image,case_id\npatient1/ct.nii.gz,../../escape\n")
    (case,) = cases_from_csv(listing)
    assert "/" not in case.case_id and ".." not in case.case_id


def test_cohort_mode_takes_the_class_and_the_seg_threshold(cohort, model_path, tmp_path, capsys):
    args = ["explain", str(cohort), "--model", str(model_path), "--out", str(tmp_path / "out"), "--allow-failures"]
    assert main([*args, "--class", "tumour"]) == 2
    assert "class 'tumour': expected one of ['no', 'yes']" in capsys.readouterr().err
    assert main([*args, "--formats", "nifti,seg"]) == 2
    assert "the 'seg' output needs --threshold" in capsys.readouterr().err
    assert main([*args, "--formats", "nifti,seg", "--threshold", "50%", "--class", "yes"]) == 0
    rows = _manifest(tmp_path / "out")
    good = [row for row in rows.values() if row["status"] == "ok"]
    assert len(good) == 3 and all(row["prediction"] == "yes" for row in good)  # the class asked for, not the predicted
    dicom = [row for row in good if row["modality"] == "CT"]
    assert len(dicom) == 2 and all(any(p.endswith("cam_seg.dcm") for p in row["outputs"].split(";")) for row in dicom)
    assert "seg: skipped, the source is not DICOM" in rows["extra.nii.gz"]["error"]
