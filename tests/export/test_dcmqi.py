"""The Parametric Map and SEG read back by dcmqi, what 3D Slicer runs to load them
(``paramap2itkimage``, ``segimage2itkimage``), on oblique, reversed, sagittal and real scanner
series: the same grid as medcam's NIfTI within 0.01 mm and the same values."""

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medcam.export.nifti import write_heatmap_nifti
from medcam.export.parametric_map import write_parametric_map
from medcam.export.seg import write_segmentation
from medcam.geometry import Volume
from medcam.io import read_dicom_series
from medcam.synthetic import write_dicom_series
from tests.conftest import gaussian_blob
from tests.export.test_geometry_acceptance import CASES


def _dcmqi(tool: str) -> str:
    found = shutil.which(tool) or shutil.which(tool, path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError(f"{tool} not found: install the test extra (pip install -e '.[test]'), which ships dcmqi")
    return found


def _series(tmp_path, case):
    if case in CASES:
        geometry, options = CASES[case]
        centre = geometry.voxel_to_world(np.array([26.0, 19.0, 13.0]))
        write_dicom_series(gaussian_blob(geometry, centre, sigma_mm=12.0), tmp_path / "src", modality="MR", **options)
        return read_dicom_series(tmp_path / "src")
    shutil.copy(get_testdata_file(case), tmp_path / case)
    return read_dicom_series(tmp_path / case)


def _read_back(tool: str, dicom: Path, out: Path) -> nib.Nifti1Image:
    out.mkdir()
    result = subprocess.run([_dcmqi(tool), "--inputDICOM", str(dicom), "--outputDirectory", str(out), "-t", "nii"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (image,) = [p for p in out.iterdir() if p.name.endswith(".nii.gz")]
    return nib.load(str(image))


@pytest.mark.parametrize("case", ["oblique", "reversed-shuffled", "sagittal", "CT_small.dcm", "MR_small.dcm"])
def test_dcmqi_reads_the_parametric_map_and_seg_on_medcams_grid(tmp_path, case):
    series = _series(tmp_path, case)
    rng = np.random.default_rng(0)
    heatmap = Volume(rng.random(series.volume.shape, dtype=np.float32), series.volume.geometry)
    ours = nib.load(str(write_heatmap_nifti(heatmap, tmp_path / "map.nii.gz", sidecar={})[0]))
    pm_path = write_parametric_map(heatmap, series, tmp_path / "pm.dcm")
    pm = pydicom.dcmread(pm_path, stop_before_pixels=True)
    assert pm.SharedFunctionalGroupsSequence[0].FrameAnatomySequence[0].FrameLaterality in ("R", "L", "B", "U")
    theirs = _read_back("paramap2itkimage", pm_path, tmp_path / "pm")
    assert theirs.shape == ours.shape
    # a single slice has no slice spacing: ITK takes 1 mm, medcam the SliceThickness; the rest agrees
    columns = [0, 1, 3] if ours.shape[2] == 1 else [0, 1, 2, 3]
    assert np.abs(theirs.affine - ours.affine)[:, columns].max() <= 0.01
    assert np.array_equal(np.asarray(theirs.dataobj, dtype=np.float32), np.asarray(ours.dataobj, dtype=np.float32))
    seg = _read_back("segimage2itkimage", write_segmentation(heatmap, series, tmp_path / "seg.dcm", threshold=0.5), tmp_path / "seg")
    assert seg.shape == ours.shape and np.abs(seg.affine - ours.affine)[:, columns].max() <= 0.01
    assert np.array_equal(np.asarray(seg.dataobj) > 0, np.asarray(ours.dataobj) >= 0.5)


def test_parametric_map_frames_ascend_along_the_normal(tmp_path):
    series = _series(tmp_path, "reversed-shuffled")
    heatmap = Volume(np.zeros(series.volume.shape, np.float32) + np.arange(series.volume.shape[2], dtype=np.float32),
                     series.volume.geometry)
    pm = pydicom.dcmread(write_parametric_map(heatmap, series, tmp_path / "pm.dcm"))
    orientation = np.array([float(v) for v in pm.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient])
    normal = np.cross(orientation[:3], orientation[3:])
    frames = pm.PerFrameFunctionalGroupsSequence
    distances = [np.array([float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]) @ normal for f in frames]
    assert np.all(np.diff(distances) > 0)
    assert [int(f.FrameContentSequence[0].DimensionIndexValues) for f in frames] == list(range(1, len(frames) + 1))
    # each frame still holds its own slice's values: slice k of the map is k everywhere
    slice_of_frame = [int(round(series.volume.geometry.world_to_voxel(
        np.array([-1, -1, 1]) * np.array([float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]))[2])) for f in frames]
    assert [float(pm.pixel_array[i].mean()) for i in range(len(frames))] == [float(k) for k in slice_of_frame]
