"""Deterministic UIDs: each DICOM object's UIDs are a function of everything that shapes it."""

import inspect

import pydicom
import pytest
import torch

from medcam.cohort import run_cohort
from medcam.explanation import Explanation, explain
from medcam.export.case import request_seed, write_case_outputs
from medcam.models import ClassifierConfig, GapClassifier, from_module
from medcam.synthetic import write_dicom_series
from medcam.transforms import PreprocessConfig, build_transform

REQUEST = {"source": "1.2.3", "model": "ab" * 32, "method": "cam", "layer": "features", "target": 1, "medcam": "0.1.0"}


@pytest.mark.parametrize("key", list(REQUEST))
def test_every_part_of_the_request_changes_the_seed(key):
    changed = {**REQUEST, key: "other"}
    for kind, extra in (("pm", {}), ("seg", {"threshold": 0.5}), ("sc", {"colormap": "jet", "opacity": 0.5})):
        assert request_seed(REQUEST, kind, **extra) == request_seed(dict(REQUEST), kind, **extra)
        assert request_seed(changed, kind, **extra) != request_seed(REQUEST, kind, **extra)


def test_object_specific_parts_change_only_that_object():
    assert request_seed(REQUEST, "seg", threshold=0.5) != request_seed(REQUEST, "seg", threshold=2.0)
    assert request_seed(REQUEST, "sc", colormap="jet", opacity=0.5) != request_seed(REQUEST, "sc", colormap="hot", opacity=0.5)
    assert request_seed(REQUEST, "sc", colormap="jet", opacity=0.5) != request_seed(REQUEST, "sc", colormap="jet", opacity=0.6)
    assert len({request_seed(REQUEST, kind) for kind in ("pm", "seg", "sc")}) == 3


@pytest.fixture
def explained(tmp_path, ct_study):
    write_dicom_series(ct_study.volume, tmp_path / "in" / "ct")
    torch.manual_seed(0)
    net = GapClassifier(ClassifierConfig(3, channels=(4, 8), convs_per_stage=(1, 1)))
    transform = build_transform(PreprocessConfig(3, (8.0, 8.0, 8.0), (48, 48, 24)))
    model = from_module(net, transform, ["no", "yes"], layer="features", fc_layer="classifier")
    return model, tmp_path / "in" / "ct"


def _uid(path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def test_two_segs_of_one_study_at_different_thresholds_get_different_uids(tmp_path, explained):
    model, source = explained
    explanation = explain(model, source, method="cam", target=1)
    top = float(explanation.heatmap.array.max())
    runs = {}
    for name, threshold in (("a", top / 4), ("b", top / 2), ("c", top / 4)):
        runs[name] = explanation.save(tmp_path / name, formats=("pm", "seg"), threshold=threshold, deterministic_uids=True).paths
    assert _uid(runs["a"]["seg"][0]) != _uid(runs["b"]["seg"][0])  # a PACS keeps both
    assert _uid(runs["a"]["seg"][0]) == _uid(runs["c"]["seg"][0])  # the same request: the same object
    assert _uid(runs["a"]["pm"][0]) == _uid(runs["b"]["pm"][0])  # the threshold does not shape the map


def test_method_target_and_overlay_options_change_their_objects_uids(tmp_path, explained):
    model, source = explained
    cam = explain(model, source, method="cam", target=1)
    paths = {
        "cam": cam.save(tmp_path / "cam", formats=("pm", "sc"), deterministic_uids=True).paths,
        "gradcam": explain(model, source, method="gradcam", target=1).save(tmp_path / "g", formats=("pm",), deterministic_uids=True).paths,
        "target0": explain(model, source, method="cam", target=0).save(tmp_path / "t", formats=("pm",), deterministic_uids=True).paths,
        "hot": write_case_outputs(cam, tmp_path / "hot", formats=("pm", "sc"), deterministic_uids=True, colormap="hot").paths,
    }
    assert len({_uid(p["pm"][0]) for p in paths.values()}) == 3  # cam and hot share the map
    assert _uid(paths["cam"]["pm"][0]) == _uid(paths["hot"]["pm"][0])
    assert _uid(paths["cam"]["sc"][0]) != _uid(paths["hot"]["sc"][0])
    with torch.no_grad():
        model.module.classifier.bias[1] += 0.5  # other weights: another model
    retrained = explain(model, source, method="cam", target=1).save(tmp_path / "w", formats=("pm",), deterministic_uids=True)
    assert _uid(retrained.paths["pm"][0]) != _uid(paths["cam"]["pm"][0])


def test_fresh_uids_are_the_one_default_everywhere():
    for function in (write_case_outputs, Explanation.save, run_cohort):
        assert inspect.signature(function).parameters["deterministic_uids"].default is False, function


@pytest.mark.parametrize("method", ["cam", "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "scorecam"])
def test_every_method_name_gives_valid_dicom(tmp_path, explained, method, dciodvfy):
    """A method name goes into Code String attributes (the Parametric Map's ContentLabel), where
    '+' is not allowed: every name is made valid for its VR."""
    model, source = explained
    explanation = explain(model, source, method=method, target=1)
    outputs = explanation.save(tmp_path / "out", formats=("pm", "seg"), threshold=float(explanation.heatmap.array.max()) / 2)
    assert outputs.notes == []
    pm = pydicom.dcmread(outputs.paths["pm"][0], stop_before_pixels=True)
    assert pm.ContentLabel == method.upper().replace("+", "P")
    for path in (outputs.paths["pm"][0], outputs.paths["seg"][0]):
        assert dciodvfy(path) == [], path


def test_writers_on_a_callers_thread_pool_write_what_the_sequential_writers_write(tmp_path, explained, dciodvfy):
    from concurrent.futures import ThreadPoolExecutor

    import nibabel as nib
    import numpy as np

    model, source = explained
    explanation = explain(model, source, method="cam", target=1)
    formats = ("nifti", "pm", "sc", "seg", "sr", "png")
    alone = explanation.save(tmp_path / "alone", formats=formats, threshold="50%", deterministic_uids=True)
    with ThreadPoolExecutor(3) as pool:
        pooled = write_case_outputs(explanation, tmp_path / "pooled", formats=formats, threshold="50%",
                                    deterministic_uids=True, executor=pool, gzip_threads=2)
    assert list(pooled.paths) == list(alone.paths) and pooled.notes == alone.notes
    for fmt, paths in alone.paths.items():
        assert [p.name for p in paths] == [p.name for p in pooled.paths[fmt]]
    assert np.array_equal(nib.load(alone.paths["nifti"][0]).get_fdata(), nib.load(pooled.paths["nifti"][0]).get_fdata())
    for fmt in ("pm", "sc", "seg"):
        for a, b in zip(alone.paths[fmt], pooled.paths[fmt]):
            first, second = pydicom.dcmread(a), pydicom.dcmread(b)
            assert first.SOPInstanceUID == second.SOPInstanceUID
            assert np.array_equal(first.pixel_array, second.pixel_array)
    for path in [*pooled.paths["pm"], pooled.paths["sc"][0], *pooled.paths["seg"], *pooled.paths["sr"]]:
        assert [line for line in dciodvfy(path) if line.startswith("Error")] == []
    assert (tmp_path / "pooled" / ".cam.complete.json").is_file()
