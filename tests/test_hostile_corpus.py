"""A corpus of hostile inputs, each written here with pydicom, nibabel, numpy or raw bytes, run
through the command line as a user would: ``medcam info`` and ``medcam explain`` exit 2 with one
line naming the file and the reason, never a traceback and never a hang; the input tree is left
byte for byte as it was; no output set is left that looks complete."""

from __future__ import annotations

import copy
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from medcam.cli import main
from medcam.errors import ImageReadError
from medcam.geometry import Volume
from medcam.synthetic import axial_geometry, write_dicom_series
from tests.conftest import tree_hash

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "sample_data" / "ct_lesion.nii.gz"
MODEL = ROOT / "sample_data" / "models" / "ct3d.pt"


def _nifti_declaring(path: Path, shape: tuple[int, ...], *, compress: bool) -> Path:
    """A NIfTI header declaring ``shape`` float32 voxels, followed by 64 voxels only."""
    image = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4))
    image.header.set_data_shape(shape)
    image.header["vox_offset"] = 352
    raw = image.header.binaryblock + b"\0" * 4 + np.zeros(64, np.float32).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def _series(folder: Path, edit=None) -> Path:
    geometry = axial_geometry((16, 12, 4), (4.0, 4.0, 5.0))
    write_dicom_series(Volume(np.full(geometry.shape, 40.0, np.float32), geometry), folder)
    if edit is not None:
        for path in sorted(folder.iterdir()):
            ds = pydicom.dcmread(path)
            edit(ds)
            ds.save_as(path)
    return folder


def _huge_header(ds):
    ds.Rows, ds.Columns = 65535, 65535  # 8 GiB a slice declared; 384 bytes held


def _zero_pixel_spacing(ds):
    ds.PixelSpacing = [0, 4]


def _study_inputs(root: Path) -> dict[str, tuple[Path, str]]:
    """name -> (input path, a phrase the message must hold)."""
    os.mkfifo(root / "pipe.nii.gz")
    series = root / "truncated"
    _series(series)
    last = sorted(series.iterdir())[-1]
    last.write_bytes(last.read_bytes()[:-100])  # the pixel data cut short, as by an interrupted copy
    return {
        "named pipe": (root / "pipe.nii.gz", "is a named pipe"),
        "NIfTI declaring 4000^3 voxels": (_nifti_declaring(root / "huge.nii", (4000, 4000, 4000), compress=False),
                                          "the header declares 4000 x 4000 x 4000 voxels"),
        "gzipped NIfTI declaring 4000^3 voxels": (_nifti_declaring(root / "huge.nii.gz", (4000, 4000, 4000), compress=True),
                                                  "238.4 GiB as float32, more than this machine's"),
        "DICOM declaring 65535^2 pixels a slice": (_series(root / "huge", _huge_header), "the pixel data holds 384 bytes but the header declares 8589672450"),
        "DICOM cut short": (series, "the file is truncated or its header is wrong"),
        # the values as a user wrote them, not as numpy's repr (np.float64(0.0))
        "DICOM with a zero PixelSpacing": (_series(root / "flat", _zero_pixel_spacing), "PixelSpacing must be positive, found [0.0, 4.0]"),
    }


def _one_line(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("medcam: error: ") and "\n" not in err and "Traceback" not in err, err
    assert "np." not in err, err  # numbers as a user writes them
    return err


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    inputs = _study_inputs(root)
    return root, inputs, tree_hash(root)


def test_hostile_studies_get_one_line_from_explain(corpus, tmp_path, capsys):
    root, inputs, before = corpus
    for name, (path, phrase) in inputs.items():
        out = tmp_path / "out" / path.name
        err = _one_line(capsys, ["explain", str(path), "--model", str(MODEL), "--out", str(out)])
        assert phrase in err and path.name in err, (name, err)
        assert not list(out.glob("**/.*.complete.json")), name  # nothing that looks like a finished set
    assert tree_hash(root) == before


def test_hostile_studies_get_one_line_from_info(corpus, capsys):
    root, inputs, before = corpus
    for name in ("named pipe", "NIfTI declaring 4000^3 voxels", "gzipped NIfTI declaring 4000^3 voxels"):
        path, phrase = inputs[name]
        assert phrase in _one_line(capsys, ["info", str(path)]), name
    for name in ("DICOM declaring 65535^2 pixels a slice", "DICOM cut short"):  # the headers are described; no pixel is read
        assert main(["info", str(inputs[name][0])]) == 0, name
    assert tree_hash(root) == before


def test_a_named_pipe_does_not_hang_the_command():
    """In a real process: a reader that opened the pipe would wait forever for a writer."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        pipe = Path(folder) / "study.nii.gz"
        os.mkfifo(pipe)
        for command in (["info", str(pipe)], ["explain", str(pipe), "--model", str(MODEL), "--out", str(Path(folder) / "o")]):
            done = subprocess.run([sys.executable, "-m", "medcam.cli", *command], capture_output=True, text=True, timeout=120)
            assert done.returncode == 2 and "is a named pipe" in done.stderr and "Traceback" not in done.stderr


def test_a_series_larger_than_memory_is_refused_before_it_is_allocated(tmp_path, monkeypatch):
    import medcam.io.memory
    from medcam.io import read_dicom_series

    folder = _series(tmp_path / "ct")
    monkeypatch.setattr(medcam.io.memory, "physical_memory", lambda: 2048)  # a machine of 2 KiB; the volume is 3 KiB
    with pytest.raises(ImageReadError, match=r"16 x 12 x 4 voxels need 0.0 GiB as float32, more than this machine's"):
        read_dicom_series(folder)


@pytest.mark.parametrize("content, phrase", [
    (bytes(range(256)) * 8, "not a text cohort CSV (byte"),
    (b"image\n\x00\x00\n", "not a text cohort CSV (it holds NUL bytes)"),
    (b"\x00image\nx.nii.gz\n", "not a text cohort CSV (it holds NUL bytes)"),
    (b"path,label\nx.nii.gz,1\n", "with the column 'image'; found ['path', 'label']"),
    (b"image\n", "the cohort CSV has no rows"),
    (b'image,case_id\n"",a\n', "row 2: the image column is empty"),
])
def test_hostile_cohort_tables(tmp_path, capsys, content, phrase):
    table = tmp_path / "cohort.csv"
    table.write_bytes(content)
    err = _one_line(capsys, ["explain", str(table), "--model", str(MODEL), "--out", str(tmp_path / "out")])
    assert phrase in err and "cohort.csv" in err
    assert table.read_bytes() == content and not (tmp_path / "out" / "manifest.csv").exists()


def test_a_binary_training_manifest(tmp_path, capsys):
    table = tmp_path / "train.csv"
    table.write_bytes(bytes(range(256)) * 8)
    err = _one_line(capsys, ["train", "--manifest", str(table), "--out", str(tmp_path / "m.pt"), "--spatial-dims", "3",
                             "--spacing", "4", "4", "4", "--size", "16", "16", "16"])
    assert "train.csv: not a text manifest" in err and not (tmp_path / "m.pt").exists()


def _checkpoint_with(tmp_path: Path, name: str, edit) -> Path:
    payload = torch.load(MODEL, weights_only=True)
    metadata = edit(json.loads(payload["medcam"]))
    path = tmp_path / name
    torch.save({"medcam": json.dumps(metadata), "state_dict": payload["state_dict"]}, path)
    return path


@pytest.mark.parametrize("edit, phrase", [
    (lambda m: [m], "the medcam metadata is a JSON list, expected an object"),
    (lambda m: {**m, "model_config": "GapClassifier"}, "the metadata's model_config is a JSON str, expected an object"),
    (lambda m: {**m, "preprocess_config": [1, 2]}, "the metadata's preprocess_config is a JSON list, expected an object"),
    (lambda m: {**m, "preprocess_config": {**m["preprocess_config"], "spatial_size": [2048, 2048, 2048]}},
     "a model grid of 2048 x 2048 x 2048 voxels is more than the 134,217,728 (512^3) medcam allows"),
])
def test_hostile_checkpoints(tmp_path, capsys, edit, phrase):
    checkpoint = _checkpoint_with(tmp_path, "hostile.pt", edit)
    before = checkpoint.read_bytes()
    err = _one_line(capsys, ["explain", str(STUDY), "--model", str(checkpoint), "--out", str(tmp_path / "out")])
    assert phrase in err and "hostile.pt" in err and checkpoint.read_bytes() == before
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, phrase", [
    (b"[1, 2]", "configs/metadata.json is a JSON list, expected an object"),
    (bytes(range(128, 256)), "configs/metadata.json is not valid JSON"),
])
def test_hostile_bundle_metadata(tmp_path, capsys, content, phrase):
    from tests.bundles import write_bundle

    bundle = write_bundle(tmp_path / "bundle", "resnet")
    (bundle / "configs" / "metadata.json").write_bytes(content)
    err = _one_line(capsys, ["explain", str(STUDY), "--model", str(bundle), "--out", str(tmp_path / "out")])
    assert phrase in err


def test_bundle_metadata_sections_that_are_not_objects_are_ignored(tmp_path):
    from medcam.models import load_model
    from tests.bundles import write_bundle

    bundle = write_bundle(tmp_path / "bundle", "resnet", metadata={"name": "odd", "network_data_format": ["image"]})
    model = load_model(bundle, class_names=("no lesion", "lesion"))
    assert model.class_names == ("no lesion", "lesion") and model.modalities == ()


def test_copies_of_the_corpus_inputs_are_independent(tmp_path):
    """The corpus helpers write what they claim: the huge header is in the file as written."""
    folder = _series(tmp_path / "huge", _huge_header)
    ds = pydicom.dcmread(sorted(folder.iterdir())[0])
    assert (ds.Rows, ds.Columns) == (65535, 65535) and len(ds.PixelData) == 16 * 12 * 2
    header = nib.load(str(_nifti_declaring(tmp_path / "h.nii", (4000, 4000, 4000), compress=False))).header
    assert tuple(header.get_data_shape()) == (4000, 4000, 4000) and copy.copy(header) is not None


@pytest.fixture
def small_disk(tmp_path):
    """A real 300 KiB tmpfs (a full disk for one output set); the test is skipped, saying why, where
    this process may not mount one (the suite's CI runs as root and mounts it)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}): needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_names_the_file_and_a_re_run_completes(small_disk, tmp_path, capsys):
    out = small_disk / "out"
    err = _one_line(capsys, ["explain", str(STUDY), "--model", str(MODEL), "--out", str(out)])
    assert err.endswith("cam.nii.gz: cannot be written (No space left on device)"), err
    assert sorted(p.name for p in out.iterdir()) == [".medcam.lock"]  # no partial file, no half a set
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    assert main(["explain", str(STUDY), "--model", str(MODEL), "--out", str(out), "--formats", "nifti,png"]) == 0
    assert {p.name for p in out.iterdir()} >= {"cam.nii.gz", "cam.png", ".cam.complete.json"}


def test_a_full_disk_in_a_cohort_names_each_case_s_file(small_disk, tmp_path, capsys):
    import csv

    cohort = tmp_path / "cohort"
    cohort.mkdir()
    for name in ("a", "b"):
        (cohort / f"{name}.nii.gz").write_bytes(STUDY.read_bytes())
    assert main(["explain", str(cohort), "--model", str(MODEL), "--out", str(small_disk / "out")]) == 1  # cases failed
    rows = list(csv.DictReader((small_disk / "out" / "manifest.csv").read_text().splitlines()))
    assert [row["status"] for row in rows] == ["failed", "failed"]
    for row in rows:
        assert f"out/{row['case_id']}/cam.nii.gz: cannot be written (No space left on device)" in row["error"]


def test_a_read_only_location(small_disk, tmp_path, capsys):
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    err = _one_line(capsys, ["explain", str(STUDY), "--model", str(MODEL), "--out", str(small_disk / "out")])
    assert "out: cannot create the output folder (Read-only file system)" in err


def test_a_single_slice_for_a_3d_model_names_the_study(tmp_path, capsys):
    geometry = axial_geometry((16, 12, 1), (4.0, 4.0, 5.0))
    write_dicom_series(Volume(np.full(geometry.shape, 40.0, np.float32), geometry), tmp_path / "one")
    err = _one_line(capsys, ["explain", str(tmp_path / "one"), "--model", str(MODEL), "--out", str(tmp_path / "out")])
    assert err.endswith("one: a 3D model expects a volume, found a single image of shape (16, 12, 1)")


def test_an_image_without_series_uid_says_so(tmp_path, capsys):
    folder = _series(tmp_path / "ct", lambda ds: delattr(ds, "SeriesInstanceUID"))
    assert main(["info", str(folder)]) == 0  # info lists what it found, readable or not
    out = capsys.readouterr()
    assert "CT Image Storage without SeriesInstanceUID" in out.out + out.err and "without Rows" not in out.out + out.err


def test_a_closed_pipe_on_stdout_ends_the_command_quietly(tmp_path):
    """``medcam info ... | head -1``: the reader goes away; no BrokenPipeError traceback."""
    folder = _series(tmp_path / "ct")
    command = f"{sys.executable} -m medcam.cli info {folder} | head -c 1"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
