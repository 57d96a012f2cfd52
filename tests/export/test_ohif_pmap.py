"""The Parametric Map against the profile of OHIF's loader (extension ``cornerstone-dicom-pmap``,
which hands the file to ``@cornerstonejs/adapters`` ``ParametricMap.generateToolState``).

What that loader needs, each checked below on the bundled CT, a reversed and shuffled series, an
oblique one and pydicom's real scanner files:

- SOP Class Parametric Map, a ReferencedSeriesSequence whose first item names the source series
  (without it the display set is dropped);
- float32 ``FloatPixelData`` (or 16/32-bit ``PixelData``), uncompressed: dcmjs reads the raw bytes;
- a shared (or first per-frame) PlaneOrientationSequence equal to the source's orientation within
  1e-3, or it refuses the map as "orthogonal"/"oblique to the acquisition plane";
- Rows and Columns equal to the source image's;
- per frame, DerivationImageSequence > SourceImageSequence > ReferencedSOPInstanceUID of a source
  image (without ReferencedFrameNumber for single-frame sources), else a PlanePosition equal to
  a source slice's ImagePositionPatient; each frame is copied into the slice of the source volume
  it names, so the map must come back equal to medcam's map, slice for slice.
"""

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import UID

from medcam.export.parametric_map import write_parametric_map
from medcam.geometry import Volume
from medcam.io import read_dicom_series
from medcam.synthetic import write_dicom_series
from tests.conftest import gaussian_blob
from tests.export.test_geometry_acceptance import CASES

PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"
TOLERANCE = 1e-3  # generateToolState's default
SAMPLE_CT = Path(__file__).resolve().parents[2] / "sample_data" / "ct_lesion_dicom"


def _source_folder(tmp_path: Path, case: str) -> Path:
    if case == "sample":
        return SAMPLE_CT
    if case in CASES:
        geometry, options = CASES[case]
        centre = geometry.voxel_to_world(np.array([26.0, 19.0, 13.0]))
        write_dicom_series(gaussian_blob(geometry, centre, sigma_mm=12.0), tmp_path / "src", modality="MR", **options)
        return tmp_path / "src"
    (tmp_path / "src").mkdir()
    shutil.copy(get_testdata_file(case), tmp_path / "src" / case)
    return tmp_path / "src"


def _cornerstone_stack(folder: Path) -> list[pydicom.Dataset]:
    """The source images as a cornerstone volume orders them: by distance along the normal,
    farthest first (``sortImageIdsAndGetSpacing``), independent of file names and numbers."""
    images = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.rglob("*")) if p.is_file()]
    orientation = np.array(images[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    reference = np.array(images[0].ImagePositionPatient, dtype=float)
    return sorted(images, key=lambda ds: -float((np.array(ds.ImagePositionPatient, dtype=float) - reference) @ normal))


def _ohif_load(pm: pydicom.Dataset, stack: list[pydicom.Dataset]) -> np.ndarray:
    """The map as the loader places it in the source volume: (slice of ``stack``, row, column)."""
    assert pm.SOPClassUID == PARAMETRIC_MAP
    referenced = pm.get("ReferencedSeriesSequence")
    assert referenced, "without ReferencedSeriesSequence OHIF drops the display set"
    assert referenced[0].SeriesInstanceUID == stack[0].SeriesInstanceUID

    assert not UID(pm.file_meta.TransferSyntaxUID).is_compressed
    assert "PixelData" not in pm and pm.BitsAllocated == 32
    frames = np.frombuffer(pm.FloatPixelData, dtype="<f4")
    assert frames.size == int(pm.NumberOfFrames) * pm.Rows * pm.Columns
    frames = frames.reshape(int(pm.NumberOfFrames), pm.Rows, pm.Columns)

    shared = pm.SharedFunctionalGroupsSequence[0]
    per_frame = pm.PerFrameFunctionalGroupsSequence
    plane = shared.get("PlaneOrientationSequence") or per_frame[0].PlaneOrientationSequence
    source_orientation = np.array(stack[0].ImageOrientationPatient, dtype=float)
    assert np.allclose(np.array(plane[0].ImageOrientationPatient, dtype=float), source_orientation, atol=TOLERANCE)
    measures = shared.PixelMeasuresSequence[0]  # the profile's PixelMeasures in the shared group
    assert np.allclose(np.array(measures.PixelSpacing, dtype=float), np.array(stack[0].PixelSpacing, dtype=float))

    index_of = {ds.SOPInstanceUID: k for k, ds in enumerate(stack)}
    volume = np.full((len(stack), stack[0].Rows, stack[0].Columns), np.nan, np.float32)
    for frame, groups in zip(frames, per_frame):
        source = groups.DerivationImageSequence[0].SourceImageSequence[0]
        assert "ReferencedFrameNumber" not in source, "a frame number on a single-frame source loses the frame in OHIF"
        k = index_of[source.ReferencedSOPInstanceUID]
        position = np.array(groups.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        assert np.allclose(position, np.array(stack[k].ImagePositionPatient, dtype=float), atol=TOLERANCE)
        assert (pm.Rows, pm.Columns) == (stack[k].Rows, stack[k].Columns)
        assert np.isnan(volume[k]).all(), "two frames name the same source image"
        volume[k] = frame
    assert not np.isnan(volume).any(), "a source image without a frame"
    return volume


@pytest.mark.parametrize("case", ["sample", "reversed-shuffled", "oblique", "CT_small.dcm", "MR_small.dcm"])
def test_the_parametric_map_loads_in_ohif_onto_the_source_slices(tmp_path, case):
    folder = _source_folder(tmp_path, case)
    series = read_dicom_series(folder)
    rng = np.random.default_rng(1)
    heatmap = Volume(rng.random(series.volume.shape, dtype=np.float32), series.volume.geometry)
    pm = pydicom.dcmread(write_parametric_map(heatmap, series, tmp_path / "pm.dcm"))

    stack = _cornerstone_stack(folder)
    loaded = _ohif_load(pm, stack)
    # medcam's map on the same source images: slice k of the series is file series.datasets[k]
    expected = {series.datasets[f.dataset_index].SOPInstanceUID: heatmap.array[:, :, k].T for k, f in enumerate(series.frames)}
    for k, ds in enumerate(stack):
        assert np.array_equal(loaded[k], expected[ds.SOPInstanceUID])
