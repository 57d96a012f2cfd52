"""Every kind of DICOM object the synthetic writer makes passes dciodvfy."""

import numpy as np
import pydicom
import pytest

from medcam.synthetic import (
    StudyInfo,
    axial_geometry,
    chest_radiograph_scene,
    ct_abdomen_scene,
    make_study,
    radiograph_geometry,
    write_dicom_image,
    write_dicom_series,
)

KINDS = {
    "ct": dict(modality="CT"),
    "mr": dict(modality="MR"),
    "ct-rle": dict(modality="CT", rle=True),
    "ct-reversed-shuffled": dict(modality="CT", reverse_instance_numbers=True, shuffle_file_names=True),
    "ct-gap": dict(modality="CT", drop_slices=[3]),
    "ct-multiframe": dict(modality="CT", multiframe=True),
    "mr-multiframe": dict(modality="MR", multiframe=True),
}


@pytest.mark.parametrize("kind", list(KINDS), ids=list(KINDS))
def test_series_kinds_pass_dciodvfy(tmp_path, ct_study, mr_study, dciodvfy, kind):
    options = KINDS[kind]
    study = ct_study if options["modality"] == "CT" else mr_study
    files = write_dicom_series(study.volume, tmp_path / kind, **options)
    for path in files[:2]:
        assert dciodvfy(path) == [], path


def test_tilted_and_oblique_series_pass_dciodvfy(tmp_path, dciodvfy):
    scene = ct_abdomen_scene(np.random.default_rng(1))
    for name, geometry in {
        "tilt": axial_geometry((24, 24, 6), (12.0, 12.0, 5.0), tilt_deg=20.0),
        "oblique": axial_geometry((24, 24, 6), (12.0, 12.0, 5.0), rotation_deg=(30.0, 20.0, 10.0)),
    }.items():
        files = write_dicom_series(make_study(scene, geometry, seed=1).volume, tmp_path / name)
        assert dciodvfy(files[0]) == [], name


@pytest.mark.parametrize("monochrome1", [False, True], ids=["monochrome2", "monochrome1"])
def test_radiograph_passes_dciodvfy(tmp_path, dciodvfy, monochrome1):
    geometry = radiograph_geometry((64, 80), 5.0)
    study = make_study(chest_radiograph_scene(np.random.default_rng(0), center_ras=tuple(geometry.center_ras)), geometry, seed=0)
    assert dciodvfy(write_dicom_image(study.volume, tmp_path / "cr.dcm", monochrome1=monochrome1)) == []


def test_dciodvfy_really_reports_errors(tmp_path, ct_study, dciodvfy):
    path = write_dicom_series(ct_study.volume, tmp_path / "ct")[0]
    ds = pydicom.dcmread(path)
    del ds.Rows
    ds.save_as(path, enforce_file_format=True)
    assert any("Rows" in line for line in dciodvfy(path))


def test_uids_are_consistent_within_a_study_and_deterministic_with_a_seed(tmp_path, ct_study, mr_study):
    study = StudyInfo(uid_seed="fixed")
    a = pydicom.dcmread(write_dicom_series(ct_study.volume, tmp_path / "a", study=study, series_number=1)[0])
    b = pydicom.dcmread(write_dicom_series(mr_study.volume, tmp_path / "b", modality="MR", study=study, series_number=2)[0])
    assert a.StudyInstanceUID == b.StudyInstanceUID and a.FrameOfReferenceUID == b.FrameOfReferenceUID
    assert a.SeriesInstanceUID != b.SeriesInstanceUID
    again = pydicom.dcmread(write_dicom_series(ct_study.volume, tmp_path / "c", study=StudyInfo(uid_seed="fixed"))[0])
    assert again.SOPInstanceUID == a.SOPInstanceUID
    fresh = pydicom.dcmread(write_dicom_series(ct_study.volume, tmp_path / "d")[0])
    assert fresh.StudyInstanceUID != a.StudyInstanceUID


def test_writer_geometry_attributes_follow_the_affine(tmp_path):
    geometry = axial_geometry((10, 12, 4), (0.7, 1.3, 2.5), tilt_deg=10.0)
    study = make_study(ct_abdomen_scene(np.random.default_rng(0)), geometry, seed=0)
    files = write_dicom_series(study.volume, tmp_path / "g")
    ds = pydicom.dcmread(files[2])
    assert [float(v) for v in ds.PixelSpacing] == pytest.approx([1.3, 0.7])
    assert float(ds.GantryDetectorTilt) == pytest.approx(10.0)
    expected_lps = geometry.affine_lps @ np.array([0.0, 0.0, 2.0, 1.0])
    assert np.allclose([float(v) for v in ds.ImagePositionPatient], expected_lps[:3], atol=1e-6)
    assert all(len(str(v)) <= 16 for v in (*ds.ImagePositionPatient, *ds.ImageOrientationPatient, *ds.PixelSpacing))
