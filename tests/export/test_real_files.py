"""Outputs for real scanner files (shipped inside pydicom): dciodvfy finds no error, dcentvfy no
inconsistency, and the overlay series says what the Parametric Map and SEG say about the patient
and study (de-identification and clinical trial attributes included)."""

import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medcam.export.parametric_map import write_parametric_map
from medcam.export.secondary_capture import write_secondary_capture
from medcam.export.seg import write_segmentation
from medcam.geometry import Volume
from medcam.io import read_dicom_series
from tests.conftest import _tool

REAL = ["CT_small.dcm", "MR_small.dcm"]


def _heatmap(series):
    values = np.random.default_rng(0).random(series.volume.shape, dtype=np.float32)
    return Volume(values, series.volume.geometry)


@pytest.mark.parametrize("name", REAL)
def test_outputs_of_real_files_pass_dciodvfy_and_dcentvfy(tmp_path, name, dciodvfy):
    source = tmp_path / name
    shutil.copy(get_testdata_file(name), source)
    series = read_dicom_series(source)
    heatmap = _heatmap(series)
    written = [write_parametric_map(heatmap, series, tmp_path / "pm.dcm"), write_secondary_capture(heatmap, series, tmp_path / "sc")[0],
               write_segmentation(heatmap, series, tmp_path / "seg.dcm", threshold=0.5)]
    for path in written:
        assert dciodvfy(path) == [], path
    result = subprocess.run([_tool("dcentvfy"), str(source), *map(str, written)], capture_output=True, text=True, timeout=120)
    assert [line for line in (result.stdout + result.stderr).splitlines() if line.startswith(("Error", "Warning"))] == []
    sc = pydicom.dcmread(written[1], stop_before_pixels=True)
    assert "Laterality" in sc and sc.Laterality == pydicom.dcmread(source).Laterality  # Type 2C, copied even empty


def test_the_overlay_series_keeps_de_identification_and_clinical_trial_attributes(tmp_path):
    source = tmp_path / "ct.dcm"
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "medcam test: names replaced"
    ds.ClinicalTrialSponsorName = "Sponsor"
    ds.ClinicalTrialProtocolID = "P-1"
    ds.ClinicalTrialSubjectID = "S-7"
    ds.ClinicalTrialSiteID = "site 3"
    ds.ClinicalTrialSiteName = "Site"
    ds.PatientWeight = 71.5
    ds.PatientSize = 1.8
    ds.save_as(source)
    series = read_dicom_series(source)
    heatmap = _heatmap(series)
    pm = pydicom.dcmread(write_parametric_map(heatmap, series, tmp_path / "pm.dcm"), stop_before_pixels=True)
    sc = pydicom.dcmread(write_secondary_capture(heatmap, series, tmp_path / "sc")[0], stop_before_pixels=True)
    for keyword in ("PatientIdentityRemoved", "DeidentificationMethod", "ClinicalTrialSponsorName", "ClinicalTrialSubjectID",
                    "PatientWeight", "PatientSize", "PatientName", "PatientID", "StudyInstanceUID", "AccessionNumber"):
        assert keyword in sc and sc[keyword].value == pm[keyword].value == ds[keyword].value, keyword
