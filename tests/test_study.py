"""Study: one type for a study to explain, read lazily, with its DICOM headers and mask."""

from pathlib import Path

import numpy as np
import pytest

from medcam.errors import ImageReadError
from medcam.io import read_dicom_series, write_nifti
from medcam.study import Study, read_study, safe_case_id
from medcam.synthetic import write_dicom_series

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def test_a_dicom_study_is_read_on_first_use_with_its_headers(tmp_path, ct_study, monkeypatch):
    import medcam.study as study_module

    write_dicom_series(ct_study.volume, tmp_path / "ct", modality="CT")
    calls = []
    real = study_module.read_dicom_series
    monkeypatch.setattr(study_module, "read_dicom_series", lambda *a, **k: calls.append(a) or real(*a, **k))
    study = read_study(tmp_path / "ct", mask=SAMPLE / "ct_lesion_mask.nii.gz")
    assert calls == [] and study.case_id == "ct"
    assert study.volume.shape == ct_study.volume.shape and study.modality == "CT"
    assert study.series.series_uid == study.source_series_uid and len(study.series.datasets) == ct_study.volume.shape[2]
    assert len(calls) == 1  # read once, for the volume and the headers
    study.release()
    assert study.volume.shape == ct_study.volume.shape and len(calls) == 2


def test_a_nifti_study_has_no_series_and_its_mask_centres_in_mm(tmp_path, ct_study):
    image = write_nifti(ct_study.volume, tmp_path / "ct.nii.gz")
    mask = write_nifti(ct_study.mask, tmp_path / "mask.nii.gz")
    study = read_study(image, mask=mask)
    assert study.case_id == "ct" and study.series is None and study.modality is None
    assert study.mask.shape == ct_study.mask.shape
    (centre,) = study.lesion_centres_ras
    inside = np.argwhere(np.asarray(ct_study.mask.array) > 0).mean(axis=0)  # the mask's centroid, by hand
    assert np.allclose(centre, ct_study.mask.geometry.voxel_to_world(inside), atol=1e-6)


def test_in_memory_studies_and_synthetic_ones_keep_their_true_lesion_centres(ct_study):
    study = ct_study.to_study("case-7")
    assert study.volume is ct_study.volume and study.mask is ct_study.mask and study.source is None
    assert np.allclose(study.lesion_centres_ras, [lesion.center_ras for lesion in ct_study.lesions])
    study.release()  # nothing to read again: the volume stays
    assert study.volume is ct_study.volume
    assert Study.from_volume(ct_study.volume).lesion_centres_ras.shape == (0, 3)


def test_from_series_keeps_the_headers_and_the_folder(tmp_path, ct_study):
    write_dicom_series(ct_study.volume, tmp_path / "ct")
    series = read_dicom_series(tmp_path / "ct")
    study = Study.from_series(series)
    assert study.series is series and study.source == tmp_path / "ct" and study.series_uid == series.series_uid


def test_missing_inputs_and_unsafe_names():
    with pytest.raises(ImageReadError, match="no such file or folder"):
        read_study("/nonexistent/ct")
    with pytest.raises(ImageReadError, match="lesion mask of case ct_lesion_dicom: no such file"):
        read_study(SAMPLE / "ct_lesion_dicom", mask="/nonexistent/mask.nii.gz").mask
    assert safe_case_id("../../etc/passwd") == "etc_passwd"
    assert safe_case_id("patient 1/ct.nii.gz") == "patient_1_ct.nii.gz"
    assert safe_case_id("..") == "case"
