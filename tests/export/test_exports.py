"""Every exporter on real files: written, read back, aligned with the source, and valid DICOM."""

import json
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medcam.errors import ExportError
from medcam.explanation import explain
from medcam.export.atomic import atomic_output, check_output_dir
from medcam.export.identity import UidFactory
from medcam.export.nifti import write_heatmap_nifti
from medcam.export.overlay import legend_width
from medcam.export.parametric_map import write_parametric_map
from medcam.export.secondary_capture import write_secondary_capture
from medcam.export.seg import write_segmentation
from medcam.geometry import ImageGeometry, Volume, lps_to_ras
from medcam.io import read_dicom_series, read_nifti
from medcam.models import (
    ClassifierConfig,
    GapClassifier,
    load_checkpoint,
    save_checkpoint,
)
from medcam.synthetic import axial_geometry, ct_abdomen_scene, make_study, write_dicom_series
from medcam.transforms import PreprocessConfig
from tests.conftest import _tool, tree_hash


def _blob_heatmap(series, centre_ras, sigma_mm=8.0) -> Volume:
    geometry = series.volume.geometry
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in geometry.shape], indexing="ij"), axis=-1)
    distance2 = ((geometry.voxel_to_world(ijk.astype(float)) - centre_ras) ** 2).sum(axis=-1)
    return Volume((np.exp(-distance2 / (2 * sigma_mm**2)) - 0.1).astype(np.float32), geometry)


@pytest.fixture
def oblique_series(tmp_path):
    """An oblique, reversed, shuffled CT series and a heatmap peaking at a known patient point."""
    geometry = axial_geometry((40, 36, 14), (8.0, 8.5, 7.0), rotation_deg=(12.0, -8.0, 20.0))
    study = make_study(ct_abdomen_scene(np.random.default_rng(2)), geometry, seed=2)
    write_dicom_series(study.volume, tmp_path / "src", reverse_instance_numbers=True, shuffle_file_names=True)
    series = read_dicom_series(tmp_path / "src")
    centre = geometry.voxel_to_world(np.array([17.0, 21.0, 6.0]))
    return series, _blob_heatmap(series, centre), centre


def test_nifti_heatmap_has_the_source_affine_and_a_sidecar(tmp_path, oblique_series):
    series, heatmap, centre = oblique_series
    nifti, sidecar = write_heatmap_nifti(heatmap, tmp_path / "out" / "map.nii.gz", sidecar={"method": "cam", "threshold": None})
    image = nib.load(str(nifti))
    assert image.get_data_dtype() == np.float32
    assert np.allclose(image.get_qform(), image.get_sform(), atol=1e-4)
    assert np.allclose(image.affine, series.volume.geometry.affine_ras, atol=1e-4)
    volume = read_nifti(nifti)
    peak = volume.geometry.voxel_to_world(np.array(np.unravel_index(volume.array.argmax(), volume.shape), float))
    assert np.all(np.abs(volume.geometry.world_to_voxel(peak) - volume.geometry.world_to_voxel(centre)) <= 0.5)
    assert json.loads(sidecar.read_text())["method"] == "cam"
    with pytest.raises(ExportError, match="already exists; pass overwrite=True"):
        write_heatmap_nifti(heatmap, nifti, sidecar={})


@pytest.mark.parametrize("layout", ["fortran-float32", "c-float32", "fortran-float64"])
@pytest.mark.parametrize("name", ["map.nii.gz", "map.nii"])
def test_nifti_voxels_are_the_maps_in_any_memory_layout(tmp_path, oblique_series, layout, name):
    """The voxels are streamed in blocks of about 8 MiB (views of a Fortran-ordered float32 map,
    copies of anything else) and read back exactly: a 20 MB map spans three blocks."""
    _, heatmap, _ = oblique_series
    order, dtype = layout.split("-")
    values = np.random.default_rng(0).normal(size=(128, 160, 250))
    array = np.asarray(values, dtype=dtype, order="F" if order == "fortran" else "C")
    assert array.size * 4 > 2 * (8 << 20)
    path, _ = write_heatmap_nifti(Volume(array, ImageGeometry(array.shape, heatmap.geometry.affine_ras)), tmp_path / name, sidecar={})
    image = nib.load(str(path))
    assert np.array_equal(np.asanyarray(image.dataobj), values.astype(np.float32))
    assert np.allclose(image.affine, heatmap.geometry.affine_ras, atol=1e-5)


def test_parametric_map_is_pixel_aligned_and_valid(tmp_path, oblique_series, dciodvfy):
    series, heatmap, centre = oblique_series
    path = write_parametric_map(heatmap, series, tmp_path / "pm.dcm")
    assert dciodvfy(path) == []
    pm = pydicom.dcmread(path)
    assert pm.PhotometricInterpretation == "MONOCHROME2" and pm.BitsAllocated == 32
    assert "FloatPixelData" in pm and "PaletteColorLookupTableSequence" not in pm
    assert (pm.Rows, pm.Columns, int(pm.NumberOfFrames)) == (36, 40, 14)
    assert "RealWorldValueMappingSequence" in pm.SharedFunctionalGroupsSequence[0]
    assert pm.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient == series.datasets[0].ImageOrientationPatient
    assert pm.StudyInstanceUID == series.datasets[0].StudyInstanceUID and pm.PatientID == series.datasets[0].PatientID
    assert pm.BodyPartExamined == series.datasets[0].BodyPartExamined
    frames = pm.pixel_array
    by_uid = {ds.SOPInstanceUID: k for k, ds in enumerate(series.datasets)}
    seen = set()
    for frame, item in enumerate(pm.PerFrameFunctionalGroupsSequence):
        # each frame names its source slice, carries that slice's position string, and holds its values
        k = by_uid[item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        seen.add(k)
        source = series.datasets[k]
        assert [str(v) for v in item.PlanePositionSequence[0].ImagePositionPatient] == [str(v) for v in source.ImagePositionPatient]
        assert np.allclose(frames[frame], heatmap.array[:, :, k].T)
    assert seen == set(range(14))
    # the peak frame and pixel map to the blob centre within half a voxel
    k, row, col = np.unravel_index(frames.argmax(), frames.shape)
    ipp = np.array([float(v) for v in pm.PerFrameFunctionalGroupsSequence[k].PlanePositionSequence[0].ImagePositionPatient])
    iop = np.array([float(v) for v in series.datasets[0].ImageOrientationPatient])
    row_spacing, col_spacing = (float(v) for v in series.datasets[0].PixelSpacing)
    peak = lps_to_ras(ipp + iop[:3] * col_spacing * col + iop[3:] * row_spacing * row)
    offset = series.volume.geometry.world_to_voxel(peak) - series.volume.geometry.world_to_voxel(centre)
    assert np.all(np.abs(offset) <= 0.5)


def test_parametric_map_and_seg_of_an_enhanced_multiframe_source_reference_its_frames(tmp_path, dciodvfy):
    """From one enhanced multi-frame object, each PM frame references its source frame, carries
    that frame's position string and holds that slice of the map; the SEG's frames reference
    theirs; frames ascend along the normal (dcmqi's order)."""
    geometry = axial_geometry((40, 36, 14), (8.0, 8.5, 7.0), rotation_deg=(12.0, -8.0, 20.0))
    study = make_study(ct_abdomen_scene(np.random.default_rng(2)), geometry, seed=2)
    write_dicom_series(study.volume, tmp_path / "multi", multiframe=True)
    series = read_dicom_series(tmp_path / "multi")
    heatmap = Volume(np.random.default_rng(0).random(series.volume.shape, dtype=np.float32), series.volume.geometry)
    path = write_parametric_map(heatmap, series, tmp_path / "pm.dcm")
    assert dciodvfy(path) == []
    pm, source = pydicom.dcmread(path), series.datasets[0]
    slice_of_frame = {frame.frame_index + 1: k for k, frame in enumerate(series.frames)}
    normal = np.cross(*np.reshape([float(v) for v in source.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
                                   .ImageOrientationPatient], (2, 3)))
    along = []
    for frame, item in enumerate(pm.PerFrameFunctionalGroupsSequence):
        (reference,) = item.DerivationImageSequence[0].SourceImageSequence
        assert reference.ReferencedSOPInstanceUID == source.SOPInstanceUID
        number = int(reference.ReferencedFrameNumber)
        position = item.PlanePositionSequence[0].ImagePositionPatient
        assert [str(v) for v in position] == [str(v) for v in source.PerFrameFunctionalGroupsSequence[number - 1]
                                              .PlanePositionSequence[0].ImagePositionPatient]
        assert np.array_equal(pm.pixel_array[frame], heatmap.array[:, :, slice_of_frame[number]].T)
        along.append(float(np.dot([float(v) for v in position], normal)))
    assert sorted(slice_of_frame) == sorted(int(i.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber)
                                            for i in pm.PerFrameFunctionalGroupsSequence) and np.all(np.diff(along) > 0)
    seg = pydicom.dcmread(write_segmentation(heatmap, series, tmp_path / "seg.dcm", threshold="50%"))
    numbers = [int(i.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber) for i in seg.PerFrameFunctionalGroupsSequence]
    assert sorted(numbers) == sorted(slice_of_frame)


def test_frames_are_matched_to_their_source_slices_by_position_and_reference(tmp_path, oblique_series):
    """What highdicom builds is checked, not trusted: a frame at no source slice's position, or one
    that references another image than the slice there, is an error."""
    from medcam.export.source_planes import frame_source_indices, source_planes

    series, heatmap, _ = oblique_series
    planes = source_planes(series, heatmap, "Parametric Map")
    pm = pydicom.dcmread(write_parametric_map(heatmap, series, tmp_path / "pm.dcm"), stop_before_pixels=True)
    order = frame_source_indices(pm, planes)
    assert sorted(order) == list(range(14))
    along = [float(np.dot([float(v) for v in planes[k].position], np.cross(*np.reshape([float(v) for v in planes[0].orientation], (2, 3)))))
             for k in order]
    assert np.all(np.diff(along) > 0)  # the file's frames ascend along the normal
    reference = pm.PerFrameFunctionalGroupsSequence[3].DerivationImageSequence[0].SourceImageSequence[0]
    reference.ReferencedSOPInstanceUID = planes[order[4]].dataset.SOPInstanceUID
    with pytest.raises(ExportError, match="frame 4 does not reference its source slice"):
        frame_source_indices(pm, planes)
    pm.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient = [0.0, 0.0, 1e4]
    with pytest.raises(ExportError, match=r"frame 1 at \[0.0, 0.0, 10000.0\] matches no source slice"):
        frame_source_indices(pm, planes)


def test_a_segmentation_needs_a_threshold(tmp_path, oblique_series):
    series, heatmap, _ = oblique_series
    with pytest.raises(ExportError, match="Segmentation: a threshold is needed"):
        write_segmentation(heatmap, series, tmp_path / "seg.dcm", threshold=None)


def test_secondary_capture_series_copies_geometry_strings(tmp_path, oblique_series, dciodvfy):
    series, heatmap, centre = oblique_series
    from matplotlib import colormaps

    paths = write_secondary_capture(heatmap, series, tmp_path / "sc", colormap="jet", opacity=1.0)
    assert len(paths) == 14 and dciodvfy(paths[0]) == [] and dciodvfy(paths[-1]) == []
    top_colour = np.rint(np.array(colormaps["jet"](1.0)[:3]) * 255)  # at opacity 1 the peak pixel is exactly this
    reddest = []
    for k, (path, source) in enumerate(zip(paths, series.datasets)):
        sc = pydicom.dcmread(path)
        assert sc.SeriesInstanceUID != source.SeriesInstanceUID and sc.StudyInstanceUID == source.StudyInstanceUID
        assert sc.FrameOfReferenceUID == source.FrameOfReferenceUID and int(sc.InstanceNumber) == k + 1
        for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            assert [str(v) for v in sc[keyword].value] == [str(v) for v in source[keyword].value]
        rgb = sc.pixel_array.astype(float)
        closeness = -np.linalg.norm(rgb - top_colour, axis=-1)
        assert rgb.shape[:2] == (source.Rows, source.Columns + legend_width(source.Rows))  # the legend beside the image
        closeness[:, source.Columns :] = -np.inf  # ignore the colour legend
        reddest.append((closeness.max(), k, *np.unravel_index(closeness.argmax(), closeness.shape)))
    _, k, row, col = max(reddest)
    # pixel (row, col) of file k is voxel (i = col, j = row, k): compare with the blob centre
    expected = series.volume.geometry.world_to_voxel(centre)
    assert np.all(np.abs(np.array([col, row, k]) - expected) <= 0.5 + 1e-6)


def test_segmentation_is_binary_thresholded_and_valid(tmp_path, oblique_series, dciodvfy):
    series, heatmap, _ = oblique_series
    path = write_segmentation(heatmap, series, tmp_path / "seg.dcm", threshold=0.5)
    assert dciodvfy(path) == []
    seg = pydicom.dcmread(path)
    assert seg.SegmentationType == "BINARY" and int(seg.NumberOfFrames) == 14
    assert "0.5" in seg.SegmentSequence[0].SegmentLabel
    assert seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == "medcam"
    assert int(seg.pixel_array.sum()) == int((heatmap.array >= 0.5).sum())
    with pytest.raises(ExportError, match="no voxel reaches the threshold"):
        write_segmentation(heatmap, series, tmp_path / "none.dcm", threshold=5.0)


def test_dcentvfy_finds_no_inconsistency_between_source_and_outputs(tmp_path, oblique_series):
    series, heatmap, _ = oblique_series
    files = [frame.path for frame in series.frames]
    files.append(write_parametric_map(heatmap, series, tmp_path / "pm.dcm"))
    files.extend(write_secondary_capture(heatmap, series, tmp_path / "sc")[:3])
    files.append(write_segmentation(heatmap, series, tmp_path / "seg.dcm", threshold=0.5))
    result = subprocess.run([_tool("dcentvfy"), *map(str, files)], capture_output=True, text=True, timeout=120)
    report = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith(("Error", "Warning"))]
    assert report == []


def test_pixel_aligned_outputs_refuse_what_they_cannot_align(tmp_path, ct_study):
    import warnings

    from medcam.errors import MedcamWarning

    write_dicom_series(ct_study.volume, tmp_path / "gap", drop_slices=[3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedcamWarning)
        series = read_dicom_series(tmp_path / "gap", allow_irregular=True)
    heatmap = Volume(np.zeros(series.volume.shape, np.float32), series.volume.geometry)
    with pytest.raises(ExportError, match="was resampled to a regular grid"):
        write_parametric_map(heatmap, series, tmp_path / "pm.dcm")
    other = Volume(np.zeros((2, 2, 2), np.float32), axial_geometry((2, 2, 2), (1.0, 1.0, 1.0)))
    with pytest.raises(ExportError, match="not on the source series' grid"):
        write_secondary_capture(other, series, tmp_path / "sc")


def test_output_rules(tmp_path):
    (tmp_path / "input").mkdir()
    with pytest.raises(ExportError, match="lies inside the input folder"):
        check_output_dir(tmp_path / "input" / "out", [tmp_path / "input"])
    assert check_output_dir(tmp_path / "out", [tmp_path / "input"]).is_dir()
    (tmp_path / "input" / "ct.nii.gz").write_bytes(b"")
    with pytest.raises(ExportError, match="is the one that holds the input ct.nii.gz"):
        check_output_dir(tmp_path / "input", [tmp_path / "input" / "ct.nii.gz"])
    assert check_output_dir(tmp_path / "input" / "medcam", [tmp_path / "input" / "ct.nii.gz"]).is_dir()
    target = tmp_path / "out" / "file.bin"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert list((tmp_path / "out").iterdir()) == []
    assert UidFactory("seed").uid("a") == UidFactory("seed").uid("a") != UidFactory("seed").uid("b")
    assert UidFactory().uid("a") != UidFactory().uid("a")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    config = PreprocessConfig(3, (8.0, 8.0, 8.0), (48, 48, 24), window=(40.0, 400.0))
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, GapClassifier(ClassifierConfig(3, channels=(4, 8), convs_per_stage=(1, 1))), config, ("no", "yes"))
    return load_checkpoint(path)


def _uids(ds, path=""):
    found = {}
    for element in ds:
        if element.VR == "SQ":
            for i, item in enumerate(element.value):
                found.update(_uids(item, f"{path}/{element.keyword}[{i}]"))
        elif element.VR == "UI":
            found[f"{path}/{element.keyword}"] = str(element.value)
    return found


def test_case_outputs_end_to_end_deterministic_and_input_untouched(tmp_path, ct_study, tiny_checkpoint, dciodvfy):
    write_dicom_series(ct_study.volume, tmp_path / "in" / "ct")
    before = tree_hash(tmp_path / "in")
    series = read_dicom_series(tmp_path / "in" / "ct")
    explanation = explain(tiny_checkpoint, series, method="gradcam", target=1)
    runs = []
    for name in ("a", "b"):
        outputs = explanation.save(tmp_path / name, formats=("nifti", "pm", "sc", "seg", "png"),
            threshold=float(explanation.heatmap.array.max()) / 2, deterministic_uids=True,
        )
        assert set(outputs.paths) == {"nifti", "pm", "sc", "seg", "png"} and outputs.notes == []
        runs.append(outputs)
    for fmt in ("pm", "seg"):
        a, b = (pydicom.dcmread(run.paths[fmt][0]) for run in runs)
        assert a.SOPInstanceUID == b.SOPInstanceUID
        assert a.DimensionOrganizationSequence[0].DimensionOrganizationUID == b.DimensionIndexSequence[0].DimensionOrganizationUID
        assert _uids(a) == _uids(b)  # every UID in the object, nested ones included
        assert a.get("PixelData") == b.get("PixelData") and a.get("FloatPixelData") == b.get("FloatPixelData")
        assert dciodvfy(runs[0].paths[fmt][0]) == []
    sidecar = json.loads(runs[0].paths["nifti"][1].read_text())
    assert sidecar["method"] == "gradcam" and sidecar["model_sha256"] == tiny_checkpoint.sha256 and sidecar["model"]["format"] == "medcam-checkpoint"
    assert sidecar["source_series_uid"] == series.series_uid and "torch" in sidecar["versions"]
    assert tree_hash(tmp_path / "in") == before
    fresh = explanation.save(tmp_path / "c", formats=("pm",))
    assert pydicom.dcmread(fresh.paths["pm"][0]).SOPInstanceUID != pydicom.dcmread(runs[0].paths["pm"][0]).SOPInstanceUID
    with pytest.raises(ExportError, match="lies inside the input folder"):
        explanation.save(tmp_path / "in" / "ct" / "out")


def test_nifti_source_gets_nifti_and_png_only(tmp_path, ct_study, tiny_checkpoint):
    from medcam.io import write_nifti

    source = write_nifti(ct_study.volume, tmp_path / "ct.nii.gz")
    explanation = explain(tiny_checkpoint, source)
    outputs = explanation.save(tmp_path / "out", formats=("nifti", "pm", "png"))
    assert set(outputs.paths) == {"nifti", "png"} and outputs.notes == ["pm: skipped, the source is not DICOM"]
    written = nib.load(str(outputs.paths["nifti"][0]))
    original = nib.load(str(source))
    assert written.shape == original.shape and np.array_equal(written.affine, original.affine)
    assert Path(outputs.paths["png"][0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_existing_nifti_is_refused_before_any_dicom_output_is_written(tmp_path, ct_study, tiny_checkpoint):
    write_dicom_series(ct_study.volume, tmp_path / "in" / "ct")
    series = read_dicom_series(tmp_path / "in" / "ct")
    explanation = explain(tiny_checkpoint, series)
    explanation.save(tmp_path / "out", formats=("nifti",))
    with pytest.raises(ExportError, match="cam.nii.gz: already exists"):
        explanation.save(tmp_path / "out", formats=("nifti", "pm", "sc"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".cam.complete.json", ".medcam.lock", "cam.json", "cam.nii.gz"]


def test_explain_reuses_a_given_model_input(ct_study, tiny_checkpoint):
    from medcam.transforms import preprocess

    model_input = preprocess(ct_study.volume, tiny_checkpoint.preprocess_config)
    reused = explain(tiny_checkpoint, ct_study.volume, method="cam", model_input=model_input)
    fresh = explain(tiny_checkpoint, ct_study.volume, method="cam")
    assert reused.model_input is model_input
    assert np.array_equal(reused.heatmap.array, fresh.heatmap.array)


def test_uncompressed_nifti_output(tmp_path, ct_study, tiny_checkpoint):
    from medcam.io import write_nifti

    source = write_nifti(ct_study.volume, tmp_path / "ct.nii.gz")
    explanation = explain(tiny_checkpoint, source)
    outputs = explanation.save(tmp_path / "out", formats=("nii",))
    path = outputs.paths["nifti"][0]
    assert path.name == "cam.nii" and path.read_bytes()[344:348] == b"n+1\x00"
    assert np.array_equal(read_nifti(path).array, explanation.heatmap.array)
    with pytest.raises(ExportError, match="choose one NIfTI output"):
        explanation.save(tmp_path / "both", formats=("nifti", "nii"))


def test_outputs_a_resampled_series_cannot_hold_are_skipped_with_notes_in_format_order(tmp_path, ct_study, tiny_checkpoint):
    """The Secondary Capture's refusal comes back as a note, after the Parametric Map's; the
    outputs that can be written are."""
    import warnings

    from medcam.errors import MedcamWarning

    write_dicom_series(ct_study.volume, tmp_path / "gap", drop_slices=[3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedcamWarning)
        series = read_dicom_series(tmp_path / "gap", allow_irregular=True)
    explanation = explain(tiny_checkpoint, series)
    outputs = explanation.save(tmp_path / "out", formats=("nifti", "pm", "sc"))
    assert set(outputs.paths) == {"nifti"}
    assert [note.split(":")[0] for note in outputs.notes] == ["pm", "sc"]
    assert all("resampled" in note for note in outputs.notes)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [".cam.complete.json", ".medcam.lock", "cam.json", "cam.nii.gz"]  # no temporary left



def test_parametric_map_references_every_source_file(tmp_path, oblique_series):
    """Every source file in the SourceImageSequence and in the source series' entry of the
    ReferencedSeriesSequence, each once; each frame's derivation names one of them."""
    series, heatmap, _ = oblique_series
    pm = pydicom.dcmread(write_parametric_map(heatmap, series, tmp_path / "pm.dcm"))
    sources = sorted(str(ds.SOPInstanceUID) for ds in series.datasets)
    assert len(sources) > 1
    assert sorted(str(item.ReferencedSOPInstanceUID) for item in pm.SourceImageSequence) == sources
    (entry,) = [item for item in pm.ReferencedSeriesSequence if item.SeriesInstanceUID == series.series_uid]
    assert sorted(str(item.ReferencedSOPInstanceUID) for item in entry.ReferencedInstanceSequence) == sources
    derived = [str(f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
               for f in pm.PerFrameFunctionalGroupsSequence]
    assert sorted(derived) == sources


def test_a_failing_writer_leaves_an_incomplete_set_that_a_rerun_completes(tmp_path, ct_study, tiny_checkpoint, monkeypatch):
    """When the Parametric Map fails unexpectedly, write_case_outputs raises, writes no completion
    marker and leaves no temporary file; the next run completes the set without --overwrite."""
    import medcam.export.case as case_module

    write_dicom_series(ct_study.volume, tmp_path / "in" / "ct")
    series = read_dicom_series(tmp_path / "in" / "ct")
    explanation = explain(tiny_checkpoint, series)
    writer = case_module.write_parametric_map

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in a writer")

    monkeypatch.setattr(case_module, "write_parametric_map", broken)
    with pytest.raises(RuntimeError, match="a bug in a writer"):
        explanation.save(tmp_path / "out", formats=("pm", "sc"))
    assert not (tmp_path / "out" / ".cam.complete.json").exists()
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".partial")]
    monkeypatch.setattr(case_module, "write_parametric_map", writer)
    outputs = explanation.save(tmp_path / "out", formats=("pm", "sc"))
    written = sorted((tmp_path / "out" / "cam_sc").iterdir())
    assert len(written) == series.volume.shape[2] and all(p.suffix == ".dcm" for p in written)  # complete, no temporaries
    assert outputs.paths["pm"][0].is_file() and (tmp_path / "out" / ".cam.complete.json").is_file()


def test_parametric_map_file_is_what_pydicom_writes_for_its_dataset(tmp_path, oblique_series):
    """The float pixel data is appended from the map itself, not written by pydicom from
    highdicom's copy of it; the file is still byte for byte what pydicom's save_as writes for the
    dataset it holds (read back, then written again)."""
    series, heatmap, _ = oblique_series
    path = write_parametric_map(heatmap, series, tmp_path / "pm.dcm")
    pydicom.dcmread(path).save_as(tmp_path / "pydicom.dcm", enforce_file_format=True)
    assert path.read_bytes() == (tmp_path / "pydicom.dcm").read_bytes()


@pytest.mark.parametrize("trailing_element", [False, True])
def test_parametric_map_frames_are_appended_in_the_objects_order(tmp_path, trailing_element):
    """Frame f of the file is pixels[frame_slices[f]]; an element after the pixel data (never
    made by highdicom) makes pydicom write the whole object."""
    from pydicom.dataset import Dataset
    from pydicom.uid import ParametricMapStorage

    from medcam.export.parametric_map import _save
    from medcam.export.part10 import set_file_meta

    pixels = np.arange(3 * 2 * 4, dtype=np.float32).reshape(3, 2, 4)
    frame_slices = [2, 0, 1]
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = ParametricMapStorage, "1.2.3.4"
    ds.NumberOfFrames, ds.Rows, ds.Columns = 3, 2, 4
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.BitsAllocated = 1, "MONOCHROME2", 32
    ds.FloatPixelData = pixels[frame_slices].tobytes()
    if trailing_element:
        ds.add_new(0xFFFCFFFC, "OB", b"\0\0")  # DataSetTrailingPadding
    set_file_meta(ds)
    expected = tmp_path / "expected.dcm"
    ds.save_as(expected, enforce_file_format=True)
    _save(ds, pixels, frame_slices, tmp_path / "pm.dcm")
    assert (tmp_path / "pm.dcm").read_bytes() == expected.read_bytes()
    assert np.array_equal(pydicom.dcmread(tmp_path / "pm.dcm").pixel_array, pixels[frame_slices])
