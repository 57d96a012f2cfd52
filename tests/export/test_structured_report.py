"""The AI-result SR: dciodvfy-clean, and highdicom reads back the device, the class, the
probability, the map's peak as a 3D point and the references to the source, the PM and the SEG."""

import numpy as np
import pydicom
import pytest

from medcam.explanation import explain
from medcam.models import load_model
from medcam.study import read_study
from tests.test_cli import SAMPLE


def _content(ds, name):
    """Every content item below ``ds`` whose concept name's meaning is ``name``."""
    found = []
    for item in ds.get("ContentSequence", []):
        if "ConceptNameCodeSequence" in item and item.ConceptNameCodeSequence[0].CodeMeaning == name:
            found.append(item)
        found.extend(_content(item, name))
    return found


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    explanation = explain(load_model(SAMPLE / "models" / "ct3d.pt"), read_study(SAMPLE / "ct_lesion_dicom"), method="gradcam++")
    out = tmp_path_factory.mktemp("sr")
    outputs = explanation.save(out, formats=("pm", "seg", "sr"), threshold="50%", deterministic_uids=True)
    return explanation, outputs


def test_the_sr_says_who_what_how_likely_and_where(written, dciodvfy):
    import highdicom as hd

    explanation, outputs = written
    path = outputs.paths["sr"][0]
    assert dciodvfy(path) == []
    sr = hd.sr.srread(path)
    assert isinstance(sr, hd.sr.Comprehensive3DSR) and sr.CompletionFlag == "COMPLETE"
    (device,) = _content(sr, "Device Observer Name")
    assert device.TextValue == "medcam"
    (finding,) = _content(sr, "Finding")
    assert finding.ConceptCodeSequence[0].CodeMeaning == explanation.target_name
    (probability,) = _content(sr, "Probability")
    assert float(probability.MeasuredValueSequence[0].NumericValue) == pytest.approx(explanation.probability, abs=1e-6)
    (point,) = [item for item in _content(sr, "Source") if item.ValueType == "SCOORD3D"]
    assert point.GraphicType == "POINT" and point.ReferencedFrameOfReferenceUID == explanation.study.series.datasets[0].FrameOfReferenceUID
    assert np.allclose([float(v) for v in point.GraphicData], explanation.peak_lps, atol=1e-3)
    parameters = [item.TextValue for item in _content(sr, "Algorithm Parameters")]
    assert f"model sha256 {explanation.model.weights_sha256()}"[:64] in parameters and "layer features" in parameters
    evidence = {str(ref.ReferencedSOPInstanceUID) for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for ref in series.ReferencedSOPSequence}
    for fmt in ("pm", "seg"):
        assert str(pydicom.dcmread(outputs.paths[fmt][0], stop_before_pixels=True).SOPInstanceUID) in evidence
    assert {str(ds.SOPInstanceUID) for ds in explanation.study.series.datasets} <= evidence
    assert sr.StudyInstanceUID == explanation.study.series.datasets[0].StudyInstanceUID


def test_a_nifti_study_gets_no_sr_but_a_note(tmp_path):
    explanation = explain(load_model(SAMPLE / "models" / "ct3d.pt"), read_study(SAMPLE / "ct_lesion.nii.gz"))
    outputs = explanation.save(tmp_path, formats=("nifti", "sr"))
    assert "sr" not in outputs.paths and outputs.notes == ["sr: skipped, the source is not DICOM"]
