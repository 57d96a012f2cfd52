"""The bundled sample data is what `python -m medcam.synthetic.sample` makes, and reads back correctly."""

import csv
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medcam.geometry import lps_to_ras
from medcam.io import find_series, read_dicom_series, read_nifti, read_volume
from medcam.synthetic.sample import make_sample_data

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    make_sample_data(out)
    return out


def _rows(folder):
    with open(folder / "labels.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_bundled_labels_match_regeneration(regenerated):
    assert _rows(SAMPLE) == _rows(regenerated)
    assert {row["label"] for row in _rows(SAMPLE)} == {"0", "1"}


def test_bundled_files_match_regeneration(regenerated):
    for row in _rows(SAMPLE):
        bundled, fresh = read_volume(SAMPLE / row["path"]), read_volume(regenerated / row["path"])
        assert bundled.geometry.is_close(fresh.geometry, atol=1e-6), row["case"]
        assert np.abs(bundled.array - fresh.array).max() <= 1.0, row["case"]  # platform float rounding at most
    for path in sorted((SAMPLE / "ct_lesion_dicom").glob("*.dcm"))[:3]:
        a, b = pydicom.dcmread(path), pydicom.dcmread(regenerated / "ct_lesion_dicom" / path.name)
        assert (a.SOPInstanceUID, a.StudyInstanceUID, a.ImagePositionPatient) == (b.SOPInstanceUID, b.StudyInstanceUID, b.ImagePositionPatient)


def test_bundled_lesions_are_where_the_labels_say(regenerated):
    for row in _rows(SAMPLE):
        if row["label"] != "1":
            continue
        volume, mask = read_volume(SAMPLE / row["path"]), read_nifti(SAMPLE / row["mask"])
        assert mask.geometry.is_close(volume.geometry, atol=1e-4), row["case"]
        centre_ras = lps_to_ras(np.array([float(v) for v in row["lesion_centers_lps_mm"].split()]))
        ijk = np.rint(volume.geometry.world_to_voxel(centre_ras)).astype(int)
        assert mask.array[tuple(ijk)] == 1, row["case"]


def test_bundled_studies_cover_the_promised_kinds():
    assert find_series(SAMPLE / "ct_lesion_dicom").series[0].modality == "CT"
    mr = read_dicom_series(SAMPLE / "mr_oblique_dicom").volume.geometry
    assert not np.allclose(np.abs(mr.direction_ras), np.eye(3), atol=0.05)  # oblique
    assert read_volume(SAMPLE / "cr_chest.dcm").shape[2] == 1
    assert read_nifti(SAMPLE / "ct_lesion.nii.gz").shape == (96, 96, 40)
    total = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert total < 5 * 2**20
