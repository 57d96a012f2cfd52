"""SEG thresholds a user can give without knowing the map's raw units, recorded in the object."""

import json

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medcam.cli import main
from medcam.errors import ExportError
from medcam.export.threshold import Threshold, parse_threshold
from tests.test_cli import SAMPLE


def test_the_three_forms_and_their_raw_values():
    values = np.arange(101, dtype=np.float32)  # 0..100
    assert parse_threshold("2.5") == Threshold(2.5) and parse_threshold(2.5).raw(values) == 2.5
    assert parse_threshold("50%") == Threshold(0.5, "fraction") and parse_threshold("50%").raw(values) == 50.0
    assert parse_threshold("p99") == Threshold(99.0, "percentile") and parse_threshold("P90").raw(values) == pytest.approx(90.0)
    assert parse_threshold(None) is None
    for bad, message in (("half", "expected a raw value"), ("150%", r"within \(0, 1\]"), ("p120", "within 0..100"), ("nan", "finite")):
        with pytest.raises(ExportError, match=message):
            parse_threshold(bad)
    with pytest.raises(ExportError, match="needs a map with positive values"):
        parse_threshold("50%").raw(-values)


def test_a_seg_at_half_the_maximum_records_the_threshold_as_given_and_in_raw_units(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["explain", str(SAMPLE / "ct_lesion_dicom"), "--model", str(SAMPLE / "models" / "ct3d.pt"), "--out", str(out),
                 "--formats", "nifti,seg", "--threshold", "50%"]) == 0
    sidecar = json.loads((out / "cam.json").read_text())
    heatmap = np.asarray(nib.load(str(out / "cam.nii.gz")).dataobj)
    assert sidecar["threshold"]["unit"] == "fraction" and sidecar["threshold"]["raw"] == pytest.approx(0.5 * heatmap.max(), rel=1e-6)
    seg = pydicom.dcmread(out / "cam_seg.dcm")
    assert "50% of the maximum = " in seg.SegmentSequence[0].SegmentLabel and "raw units" in seg.ContentDescription
    segmented = seg.pixel_array.astype(bool)
    assert segmented.sum() == int((heatmap >= sidecar["threshold"]["raw"]).sum())
    assert main(["explain", str(SAMPLE / "ct_lesion_dicom"), "--model", str(SAMPLE / "models" / "ct3d.pt"),
                 "--out", str(tmp_path / "b"), "--formats", "seg", "--threshold", "lots"]) == 2
    assert "threshold 'lots': expected a raw value" in capsys.readouterr().err
