"""dcm2niix, the converter research pipelines use, reads the Parametric Map and the Secondary
Capture series onto medcam's grid: voxel for voxel (its axes may be flipped, never shifted), with
the Parametric Map's values identical."""

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medcam.export.nifti import write_heatmap_nifti
from medcam.export.overlay import legend_width
from medcam.export.parametric_map import write_parametric_map
from medcam.export.secondary_capture import write_secondary_capture
from medcam.geometry import Volume
from tests.export.test_dcmqi import _series


def _dcm2niix(folder: Path, out: Path) -> nib.Nifti1Image:
    tool = shutil.which("dcm2niix") or shutil.which("dcm2niix", path=str(Path(sys.executable).parent))
    if tool is None:
        raise RuntimeError("dcm2niix not found: install the test extra (pip install -e '.[test]'), which ships it")
    out.mkdir()
    result = subprocess.run([tool, "-z", "n", "-o", str(out), "-f", "converted", str(folder)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (image,) = sorted(out.glob("converted*.nii"))
    return nib.load(str(image))


def _voxel_map(theirs: nib.Nifti1Image, ours: nib.Nifti1Image) -> np.ndarray:
    """Their voxel -> our voxel: a signed permutation with whole-voxel offsets, or the test fails."""
    mapping = np.linalg.inv(ours.affine) @ theirs.affine
    assert np.abs(mapping - np.rint(mapping)).max() < 1e-3, np.round(mapping, 4)
    assert set(np.abs(np.rint(mapping[:3, :3])).sum(axis=0)) == {1.0}
    return np.rint(mapping).astype(int)


@pytest.mark.parametrize("case", ["oblique", "reversed-shuffled", "sagittal", "CT_small.dcm", "MR_small.dcm"])
def test_dcm2niix_reads_the_parametric_map_and_the_overlay_series_on_medcams_grid(tmp_path, case):
    series = _series(tmp_path, case)
    heatmap = Volume(np.random.default_rng(1).random(series.volume.shape, dtype=np.float32), series.volume.geometry)
    ours = nib.load(str(write_heatmap_nifti(heatmap, tmp_path / "map.nii.gz", sidecar={})[0]))
    (tmp_path / "pm").mkdir()
    write_parametric_map(heatmap, series, tmp_path / "pm" / "pm.dcm")
    theirs = _dcm2niix(tmp_path / "pm", tmp_path / "pm_nii")
    if ours.shape[2] > 1:  # a single slice has no slice spacing to compare
        mapping = _voxel_map(theirs, ours)
        ijk = np.stack(np.meshgrid(*[np.arange(n) for n in theirs.shape[:3]], indexing="ij"), axis=-1).reshape(-1, 3)
        target = ijk @ mapping[:3, :3].T + mapping[:3, 3]
        values = np.asarray(theirs.dataobj, dtype=np.float32)[..., 0] if theirs.ndim == 4 else np.asarray(theirs.dataobj, np.float32)
        assert np.array_equal(values.reshape(-1), np.asarray(heatmap.array)[tuple(target.T)])
    else:  # in-plane axes and origin only: each tool gives one slice its own thickness
        mapping = np.linalg.inv(ours.affine) @ theirs.affine
        assert np.abs(mapping[:, [0, 1, 3]] - np.rint(mapping[:, [0, 1, 3]])).max() < 1e-3, np.round(mapping, 4)
    write_secondary_capture(heatmap, series, tmp_path / "sc")
    overlay = _dcm2niix(tmp_path / "sc", tmp_path / "sc_nii")
    # the legend panel adds columns after the source's last: the grid is the source's, extended along i
    rows = ours.shape[1]
    assert overlay.shape[:3] == (ours.shape[0] + legend_width(rows), rows, ours.shape[2])
    if ours.shape[2] > 1:
        _voxel_map(overlay, ours)
    else:
        mapping = np.linalg.inv(ours.affine) @ overlay.affine
        assert np.abs(mapping[:, [0, 1, 3]] - np.rint(mapping[:, [0, 1, 3]])).max() < 1e-3, np.round(mapping, 4)
