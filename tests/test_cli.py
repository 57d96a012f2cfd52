import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medcam import __version__
from medcam.cli import main
from medcam.synthetic import StudyInfo, axial_geometry, ct_abdomen_scene, make_study, write_dicom_series

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"medcam {__version__}"


def test_console_entry_point_runs_without_heavy_imports():
    code = "import sys, medcam.cli; print('torch' in sys.modules or 'monai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    help_text = subprocess.run([sys.executable, "-m", "medcam.cli", "--help"], capture_output=True, text=True, check=True).stdout
    assert "examples:" in help_text and "info" in help_text


def test_info_on_a_dicom_folder(capsys):
    assert main(["info", str(SAMPLE / "ct_lesion_dicom")]) == 0
    out = capsys.readouterr().out
    assert "1 image series" in out and "CT #1 'CT abdomen' (40 files, 40 frames)" in out
    assert "96 x 96 x 40" in out and "4 x 4 x 5 mm" in out and "orientation  LPS" in out


def test_info_on_nifti_and_radiograph(capsys):
    assert main(["info", str(SAMPLE / "ct_lesion.nii.gz")]) == 0
    assert "NIfTI" in capsys.readouterr().out
    assert main(["info", str(SAMPLE / "cr_chest.dcm")]) == 0
    out = capsys.readouterr().out
    assert "CR #1" in out and "256 x 256 x 1" in out


def test_info_lists_several_series_and_tilt(tmp_path, capsys):
    scene = ct_abdomen_scene(np.random.default_rng(0))
    study = StudyInfo()
    tilted = make_study(scene, axial_geometry((16, 16, 5), (20.0, 20.0, 5.0), tilt_deg=12.0), seed=0)
    write_dicom_series(tilted.volume, tmp_path / "a", study=study, series_number=1)
    write_dicom_series(tilted.volume, tmp_path / "b", study=study, series_number=2, drop_slices=[2])
    (tmp_path / "readme.txt").write_text("x")
    assert main(["info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 image series" in out and "gantry tilt  12 deg" in out
    assert "not readable as one volume" in out and "gap between slices" in out
    assert "skipped readme.txt: not a DICOM file" in out


def test_a_study_of_another_modality_is_refused_unless_allowed(tmp_path, capsys):
    args = ["explain", str(SAMPLE / "mr_oblique_dicom"), "--model", str(SAMPLE / "models" / "ct3d.pt"), "--formats", "nifti"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "the study is MR but the model ct3d.pt was trained on CT" in err and "--allow-modality-mismatch" in err
    assert not (tmp_path / "a" / "cam.nii.gz").exists()
    assert main([*args, "--out", str(tmp_path / "b"), "--allow-modality-mismatch"]) == 0
    assert (tmp_path / "b" / "cam.nii.gz").is_file()


def test_user_errors_are_one_line_without_traceback(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medcam: error:") and "no such file or folder" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    assert main(["info", str(tmp_path / "empty")]) == 2
    assert "the folder is empty" in capsys.readouterr().err
    with pytest.raises(Exception, match="the folder is empty"):
        main(["--debug", "info", str(tmp_path / "empty")])


def test_train_from_a_manifest(manifest, tmp_path, capsys):
    from medcam.models import load_checkpoint

    out = tmp_path / "model.pt"
    code = main([
        "train", "--manifest", str(manifest), "--spatial-dims", "3", "--spacing", "12", "12", "16",
        "--size", "32", "24", "12", "--channels", "4", "8", "--epochs", "2", "--batch-size", "2",
        "--val-fraction", "0.25", "--out", str(out),
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "training on 6 cases [3, 3], validating on 2 [1, 1]" in printed and "best epoch" in printed
    checkpoint = load_checkpoint(out)
    assert checkpoint.class_names == ("no lesion", "lesion")
    assert checkpoint.preprocess_config.spacing == (12.0, 12.0, 16.0)


def test_train_user_errors(manifest, tmp_path, capsys):
    assert main(["train", "--manifest", str(manifest), "--out", str(tmp_path / "m.pt")]) == 2
    assert "--manifest needs --spatial-dims, --spacing and --size" in capsys.readouterr().err
    args = ["train", "--manifest", str(manifest), "--spatial-dims", "3", "--spacing", "12", "12", "--size", "32", "24", "12"]
    assert main([*args, "--out", str(tmp_path / "m.pt")]) == 2
    assert "spacing needs 3 positive values" in capsys.readouterr().err
    missing = tmp_path / "none.csv"
    assert main(["train", "--manifest", str(missing), "--spatial-dims", "2", "--spacing", "1", "1", "--size", "8", "8",
                 "--out", str(tmp_path / "m.pt")]) == 2
    assert "none.csv: no such file or folder" in capsys.readouterr().err


def test_explain_a_dicom_study(tmp_path, capsys):
    import pydicom

    out = tmp_path / "out"
    code = main(["explain", str(SAMPLE / "ct_lesion_dicom"), "--model", str(SAMPLE / "models" / "ct3d.pt"),
                 "--out", str(out), "--formats", "nifti,pm,sc,png", "--class", "lesion", "--deterministic-uids"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "map of 'lesion' (p=" in printed and "predicted '" in printed and "peak at LPS" in printed
    assert (out / "cam.nii.gz").is_file() and (out / "cam.json").is_file() and (out / "cam.png").is_file()
    assert pydicom.dcmread(out / "cam_pm.dcm").SOPClassUID == pydicom.uid.ParametricMapStorage
    assert len(list((out / "cam_sc").glob("*.dcm"))) == 40


def test_explain_user_errors(tmp_path, capsys):
    model = str(SAMPLE / "models" / "ct3d.pt")
    source = str(SAMPLE / "ct_lesion.nii.gz")
    assert main(["explain", source, "--model", model, "--out", str(tmp_path), "--method", "magic"]) == 2
    assert "unknown CAM method 'magic'" in capsys.readouterr().err
    assert main(["explain", source, "--model", model, "--out", str(tmp_path), "--formats", "nifti,jpeg"]) == 2
    assert "--formats: unknown ['jpeg']" in capsys.readouterr().err
    assert main(["explain", source, "--model", model, "--out", str(tmp_path), "--class", "tumour"]) == 2
    assert "class 'tumour': expected one of ['no lesion', 'lesion']" in capsys.readouterr().err
    assert main(["explain", source, "--model", str(tmp_path / "none.pt"), "--out", str(tmp_path)]) == 2
    assert "no such model file or bundle folder" in capsys.readouterr().err
    assert main(["explain", str(SAMPLE / "cr_chest.dcm"), "--model", model, "--out", str(tmp_path)]) == 2
    assert "the study is CR but the model ct3d.pt was trained on CT" in capsys.readouterr().err
    assert main(["explain", str(SAMPLE / "cr_chest.dcm"), "--model", model, "--out", str(tmp_path), "--allow-modality-mismatch"]) == 2
    assert "a 3D model expects a volume, found a single image" in capsys.readouterr().err
    assert main(["explain", source, "--model", model, "--out", str(tmp_path / "o"), "--formats", "seg"]) == 2
    assert "needs a threshold" in capsys.readouterr().err


def test_demo(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    printed = capsys.readouterr().out
    for case in ("ct_lesion_dicom", "ct_lesion_nifti", "ct_normal_nifti", "cr_chest"):
        assert case in printed
    assert "mr_oblique_dicom" not in printed  # no bundled MR model: the study is not part of the demo
    # the whole time since the process started, of which the part spent on the studies
    total, loop = (float(v) for v in re.search(r"done in ([\d.]+) s from the command's start \(([\d.]+) s loading the models, explaining", printed).groups())
    assert total > loop > 0
    rows = {line.split()[0]: line.split() for line in printed.splitlines()[1:5]}
    # the normal study: predicted negative, its lesion map shown with the lesion's (low) probability
    assert rows["ct_normal_nifti"][1:4] == ["none", "no", "lesion"] and float(rows["ct_normal_nifti"][4]) < 0.5
    assert rows["ct_lesion_dicom"][2] == "lesion" and float(rows["ct_lesion_dicom"][3]) >= 0.5
    sidecar = json.loads((tmp_path / "demo" / "ct_normal_nifti" / "cam.json").read_text())
    assert sidecar["target_name"] == "lesion" and sidecar["predicted_name"] == "no lesion"
    assert sidecar["display"]["map_maximum"] == sidecar["map_range"][1] and sidecar["display"]["window"] == [-160.0, 240.0]
    assert (tmp_path / "demo" / "ct_lesion_dicom" / "cam_pm.dcm").is_file()


def test_evaluate_small(tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["evaluate", "--model", str(SAMPLE / "models" / "ct3d.pt"), "--synthetic", "ct3d", "--n", "2",
                 "--seed", "777", "--methods", "cam,gradcam", "--steps", "4", "--randomisation-cases", "1",
                 "--out", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| cam | 2 |" in printed and "| gradcam | 2 |" in printed
    for name in ("per_case.csv", "randomisation.csv", "summary.csv", "summary.md", "summary.png"):
        assert (out / name).is_file()
    assert main(["evaluate", "--model", str(SAMPLE / "models" / "ct3d.pt"), "--synthetic", "ct3d", "--methods", "magic",
                 "--out", str(out)]) == 2
    assert "unknown CAM method 'magic'" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_a_monai_bundle_on_a_manifest_with_masks(tmp_path, capsys):
    from tests.bundles import write_bundle

    bundle = write_bundle(tmp_path / "bundle", "resnet")
    manifest = tmp_path / "cases.csv"
    manifest.write_text("image,mask\n"
                        f"{SAMPLE / 'ct_lesion_dicom'},{SAMPLE / 'ct_lesion_dicom_mask.nii.gz'}\n"
                        f"{SAMPLE / 'ct_lesion.nii.gz'},{SAMPLE / 'ct_lesion_mask.nii.gz'}\n")
    out = tmp_path / "eval"
    code = main(["evaluate", "--model", str(bundle), "--manifest", str(manifest), "--methods", "cam,gradcam", "--steps", "3",
                 "--randomisation-cases", "1", "--class", "lesion", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert "| cam | 2 |" in capsys.readouterr().out
    rows = (out / "randomisation.csv").read_text().splitlines()
    assert any(",fc," in row for row in rows) and any(",layer4" in row for row in rows)  # layers re-initialised in turn


def test_evaluate_a_cohort_with_negatives_errors_and_maps_on_file(tmp_path, capsys):
    """Negatives and positives (AUC), a mask on another grid, an empty mask and a missing file
    (recorded, the rest goes on), and maps written earlier scored as they are."""
    import csv

    from medcam.cases import cases_from_csv
    from medcam.errors import CamError
    from medcam.explanation import explain
    from medcam.io import read_nifti, write_nifti
    from medcam.metrics.evaluation import evaluate
    from medcam.models import load_model

    mask = read_nifti(SAMPLE / "ct_lesion_dicom_mask.nii.gz")
    write_nifti(type(mask)(np.zeros(mask.shape, np.float32), mask.geometry), tmp_path / "empty.nii.gz")
    model = load_model(SAMPLE / "models" / "ct3d.pt")
    explain(model, SAMPLE / "ct_lesion.nii.gz", method="cam", target=1).save(tmp_path / "written", formats=("nifti",))
    rows = [
        {"case_id": "dicom", "image": SAMPLE / "ct_lesion_dicom", "mask": SAMPLE / "ct_lesion_dicom_mask.nii.gz", "label": ""},
        {"case_id": "nifti", "image": SAMPLE / "ct_lesion.nii.gz", "mask": SAMPLE / "ct_lesion_mask.nii.gz", "label": "lesion",
         "map": tmp_path / "written" / "cam.nii.gz"},
        {"case_id": "normal", "image": SAMPLE / "ct_normal.nii.gz", "mask": "", "label": "no lesion"},
        {"case_id": "empty", "image": SAMPLE / "ct_lesion_dicom", "mask": tmp_path / "empty.nii.gz", "label": "1"},
        {"case_id": "missing", "image": tmp_path / "nope.nii.gz", "mask": "", "label": "0"},
    ]
    manifest = tmp_path / "cases.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["case_id", "image", "mask", "label", "map"])
        writer.writeheader()
        writer.writerows(rows)
    result = evaluate(model, cases_from_csv(manifest), ["cam"], steps=3, randomisation_cases=0)
    assert sorted(row["case_id"] for row in result.rows) == ["dicom", "nifti"]  # the positives with a lesion mask
    assert sorted({row["case_id"] for row in result.predictions}) == ["dicom", "nifti", "normal"]
    errors = {row["case_id"]: row["error"] for row in result.errors}
    assert "is empty on the image's grid" in errors["empty"] and "nope.nii.gz" in errors["missing"]
    classification = result.classification()
    assert classification["cases"] == 3 and classification["positives"] == 2 and 0 <= classification["auc"] <= 1
    # the NIfTI case's mask is on its own grid there; the DICOM case's mask on the DICOM grid
    computed = {row["case_id"]: row for row in result.rows}
    on_file = evaluate(None, cases_from_csv(manifest), [], maps_on_file=True, class_names=model.class_names)
    scored = {row["case_id"]: row for row in on_file.rows}
    assert set(scored) == {"nifti"} and scored["nifti"]["hit"] == computed["nifti"]["hit"]
    assert scored["nifti"]["energy"] == pytest.approx(computed["nifti"]["energy"], abs=1e-4)
    assert "no 'map' in the manifest" in {r["case_id"]: r["error"] for r in on_file.errors}["dicom"]
    # the class scored, by name, without a model too: for "no lesion" the case labelled "lesion" is a negative
    other = evaluate(None, cases_from_csv(manifest), [], maps_on_file=True, class_names=model.class_names, target="no lesion")
    assert other.rows == [] and [(r["case_id"], r["positive"]) for r in other.predictions] == [("nifti", False)]
    with pytest.raises(CamError, match="class 'tumour': expected one of"):
        evaluate(None, cases_from_csv(manifest), [], maps_on_file=True, class_names=model.class_names, target="tumour")
    out = tmp_path / "report"
    assert main(["evaluate", "--model", str(SAMPLE / "models" / "ct3d.pt"), "--manifest", str(manifest), "--methods", "cam",
                 "--steps", "3", "--randomisation-cases", "0", "--out", str(out), "--quiet"]) == 0
    summary = capsys.readouterr().out
    assert "Classification: ROC AUC" in summary and "2 case(s) could not be scored" in summary
    assert (out / "errors.csv").is_file() and (out / "predictions.csv").is_file()


def test_evaluate_draws_the_mask_contour_of_the_first_positives_and_reports_case_i_of_n_with_an_eta(tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "eval"
    code = main(["evaluate", "--model", str(SAMPLE / "models" / "ct3d.pt"), "--manifest", str(SAMPLE / "ct_cohort.csv"),
                 "--methods", "cam", "--steps", "3", "--randomisation-cases", "0", "--figures", "1", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "case 1 of 3 (ct_lesion_dicom)" in printed and "s left" in printed and "case 3 of 3 (ct_normal_nifti)" in printed
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["ct_lesion_dicom_cam.png"]  # the first positive only
    rgb = np.asarray(Image.open(out / "figures" / "ct_lesion_dicom_cam.png").convert("RGB")).astype(int)
    lime = (rgb[..., 1] > 200) & (rgb[..., 0] < 80) & (rgb[..., 2] < 80)
    assert lime.sum() > 20  # the lesion mask's contour
