"""Output sets that look complete only when they are: a lock against a second run in the same
folder, a completion marker written last, and a re-run that completes an interrupted set."""

import subprocess
import sys

import pydicom
import pytest

from medcam.errors import ExportError
from medcam.explanation import explain
from medcam.models import load_model
from medcam.study import read_study
from tests.test_cli import SAMPLE


@pytest.fixture(scope="module")
def explanation():
    return explain(load_model(SAMPLE / "models" / "ct3d.pt"), read_study(SAMPLE / "ct_lesion_dicom"))


def test_a_second_run_into_a_folder_being_written_is_refused(tmp_path, explanation):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(  # another process holds the folder's lock, as a run writing there does
        [sys.executable, "-c", "import fcntl, sys, time; h = open(sys.argv[1], 'a+'); fcntl.flock(h, fcntl.LOCK_EX); "
         "print('locked', flush=True); time.sleep(60)", str(out / ".medcam.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ExportError, match=r"another medcam run is writing its outputs here"):
            explanation.save(out, formats=("nifti",))
        assert not (out / "cam.nii.gz").exists()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert explanation.save(out, formats=("nifti",)).paths["nifti"][0].is_file()  # the lock dies with its holder


def test_an_interrupted_set_is_completed_by_a_rerun_and_a_complete_one_is_kept(tmp_path, explanation):
    out = tmp_path / "out"
    explanation.save(out, formats=("nifti", "pm"))
    marker = out / ".cam.complete.json"
    assert marker.is_file()
    with pytest.raises(ExportError, match="already exists"):  # complete: replaced only with overwrite
        explanation.save(out, formats=("nifti", "pm"))
    # as a run killed mid-write leaves it: no marker, a truncated Parametric Map
    marker.unlink()
    pm = out / "cam_pm.dcm"
    pm.write_bytes(pm.read_bytes()[:1000])
    outputs = explanation.save(out, formats=("nifti", "pm"))  # no overwrite needed
    assert marker.is_file() and int(pydicom.dcmread(outputs.paths["pm"][0]).NumberOfFrames) == 40
    assert not list(out.glob("*.partial")) and not list(out.glob(".*.partial"))


def test_a_cohort_rerun_redoes_what_was_asked_differently_or_left_half_written(tmp_path, capsys):
    from medcam.cli import main

    cohort = tmp_path / "cohort"
    cohort.mkdir()
    for name in ("ct_lesion.nii.gz", "ct_normal.nii.gz"):
        (cohort / name).write_bytes((SAMPLE / name).read_bytes())
    args = ["explain", str(cohort), "--model", str(SAMPLE / "models" / "ct3d.pt"), "--out", str(tmp_path / "out"), "--formats", "nifti"]
    assert main(args) == 0 and "2 explained, 0 already done" in capsys.readouterr().out
    assert main(args) == 0 and "0 explained, 2 already done" in capsys.readouterr().out
    assert main([*args, "--method", "gradcam"]) == 0 and "2 explained, 0 already done" in capsys.readouterr().out
    # the default class of a two-class model is its finding class: asking for it by name is the same request
    assert main([*args, "--method", "gradcam", "--class", "lesion"]) == 0 and "0 explained, 2 already done" in capsys.readouterr().out
    assert main([*args, "--method", "gradcam", "--class", "no lesion"]) == 0 and "2 explained" in capsys.readouterr().out
    (tmp_path / "out" / "ct_lesion.nii.gz" / ".gradcam.complete.json").unlink()  # that case's set was cut short
    assert main([*args, "--method", "gradcam", "--class", "no lesion"]) == 0
    assert "1 explained, 1 already done" in capsys.readouterr().out
