"""Geometry acceptance through files: a "perfect map" (the preprocessed image of a Gaussian lesion at a
known patient coordinate, run through the real preprocessing and back) peaks at that coordinate within
half a source voxel per axis in the exported NIfTI, Parametric Map and Secondary Capture. The 3D cases
run twice: with medcam's own preprocessing, and with a MONAI Bundle's (another orientation, spacing
and size), loaded as a user's bundle is."""

import numpy as np
import pydicom
import pytest
from matplotlib import colormaps

from medcam.backproject import to_source_grid
from medcam.export.nifti import write_heatmap_nifti
from medcam.export.parametric_map import write_parametric_map
from medcam.export.secondary_capture import write_secondary_capture
from medcam.geometry import ImageGeometry, Volume, affine_lps_to_ras, lps_to_ras
from medcam.io import read_dicom_series, read_nifti, write_nifti
from medcam.synthetic import axial_geometry, radiograph_geometry, write_dicom_image, write_dicom_series
from medcam.transforms import PreprocessConfig, preprocess
from tests.bundles import write_bundle
from tests.conftest import gaussian_blob

CONFIG_3D = PreprocessConfig(3, (3.0, 3.0, 3.0), (72, 72, 56), window=(500.0, 1000.0))
CONFIG_2D = PreprocessConfig(2, (2.0, 2.0), (112, 112), window=(500.0, 1000.0), orientation=None)


def _blob(geometry, centre_ras):
    return gaussian_blob(geometry, centre_ras, sigma_mm=7.0)


#: A bundle's own preprocessing, unlike medcam's: to LPI, 3.5 x 2.5 x 3 mm, another field of view.
BUNDLE_PREPROCESSING = [
    {"_target_": "LoadImaged", "keys": "image"},
    {"_target_": "EnsureChannelFirstd", "keys": "image"},
    {"_target_": "Orientationd", "keys": "image", "axcodes": "LPI"},
    {"_target_": "Spacingd", "keys": "image", "pixdim": [3.5, 2.5, 3.0], "mode": "bilinear"},
    {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": 0.0, "a_max": 1000.0, "b_min": 0.0, "b_max": 1.0, "clip": True},
    {"_target_": "ResizeWithPadOrCropd", "keys": "image", "spatial_size": [64, 88, 60]},
]


@pytest.fixture(scope="module", params=["medcam", "bundle"])
def preprocessing(request, tmp_path_factory):
    """``volume -> model-grid MetaTensor``: medcam's CONFIG_3D, or a MONAI Bundle's preprocessing."""
    if request.param == "medcam":
        return lambda volume: preprocess(volume, CONFIG_3D)
    from medcam.models import load_model

    bundle = write_bundle(tmp_path_factory.mktemp("bundle") / "net", "resnet", preprocessing=BUNDLE_PREPROCESSING)
    return load_model(bundle).prepare


def _perfect_map(source: Volume, config) -> Volume:
    model_input = preprocess(source, config) if isinstance(config, PreprocessConfig) else config(source)
    return to_source_grid(model_input[0], model_input, source.geometry)


def _within_half_voxel(geometry, index, centre_ras):
    offset = np.asarray(index, float) - geometry.world_to_voxel(centre_ras)
    assert np.all(np.abs(offset) <= 0.5 + 1e-6), offset


def _sagittal():
    affine_lps = np.eye(4)
    affine_lps[:3, :3] = np.column_stack([[0, 3.0, 0], [0, 0, -3.5], [-4.0, 0, 0]])
    affine_lps[:3, 3] = [50.0, -90.0, 80.0]
    return ImageGeometry((56, 48, 24), affine_lps_to_ras(affine_lps))


CASES = {
    "axial": (axial_geometry((56, 52, 30), (4.0, 4.0, 5.0)), {}),
    "oblique": (axial_geometry((56, 52, 30), (4.0, 4.0, 5.0), rotation_deg=(15.0, 10.0, 25.0)), {}),
    "reversed-shuffled": (axial_geometry((56, 52, 30), (4.0, 4.0, 5.0)), dict(reverse_instance_numbers=True, shuffle_file_names=True)),
    "non-square": (axial_geometry((70, 44, 30), (3.1, 4.7, 5.0)), {}),
    "sagittal": (_sagittal(), {}),
    "tilted": (axial_geometry((56, 52, 30), (4.0, 4.0, 5.0), tilt_deg=15.0), {}),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_dicom_exports_peak_at_the_lesion(tmp_path, case, preprocessing):
    geometry, options = CASES[case]
    centre = geometry.voxel_to_world(np.array([26.0, 19.0, 13.0]) + np.array([0.2, -0.3, 0.1]))
    write_dicom_series(_blob(geometry, centre), tmp_path / "src", modality="MR", **options)
    series = read_dicom_series(tmp_path / "src")
    heatmap = _perfect_map(series.volume, preprocessing)

    nifti = read_nifti(write_heatmap_nifti(heatmap, tmp_path / "map.nii.gz", sidecar={})[0])
    _within_half_voxel(nifti.geometry, np.unravel_index(nifti.array.argmax(), nifti.shape), centre)

    pm = pydicom.dcmread(write_parametric_map(heatmap, series, tmp_path / "pm.dcm"))
    frame, row, col = np.unravel_index(pm.pixel_array.argmax(), pm.pixel_array.shape)
    item = pm.PerFrameFunctionalGroupsSequence[frame]
    ipp = np.array([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
    shared = pm.SharedFunctionalGroupsSequence[0]
    iop = np.array([float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient])
    row_spacing, col_spacing = (float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing)
    peak_lps = ipp + iop[:3] * col_spacing * col + iop[3:] * row_spacing * row  # PS3.3 C.7.6.2.1.1
    _within_half_voxel(series.volume.geometry, series.volume.geometry.world_to_voxel(lps_to_ras(peak_lps)), centre)

    top = np.rint(np.array(colormaps["jet"](1.0)[:3]) * 255)
    best = None
    for path in write_secondary_capture(heatmap, series, tmp_path / "sc", opacity=1.0):
        sc = pydicom.dcmread(path)
        rgb = sc.pixel_array.astype(float)
        closeness = -np.linalg.norm(rgb - top, axis=-1)
        closeness[:, -2 * max(2, rgb.shape[1] // 40) - 1 :] = -np.inf  # the legend
        r, c = np.unravel_index(closeness.argmax(), closeness.shape)
        ipp = np.array([float(v) for v in sc.ImagePositionPatient])
        iop = np.array([float(v) for v in sc.ImageOrientationPatient])
        row_spacing, col_spacing = (float(v) for v in sc.PixelSpacing)
        point = ipp + iop[:3] * col_spacing * c + iop[3:] * row_spacing * r
        if best is None or closeness.max() > best[0]:
            best = (closeness.max(), point)
    _within_half_voxel(series.volume.geometry, series.volume.geometry.world_to_voxel(lps_to_ras(best[1])), centre)


def test_nifti_source_non_diagonal_lps_flipped(tmp_path, preprocessing):
    angle = np.radians(25.0)
    affine = np.array(
        [[-3.0 * np.cos(angle), 3.5 * np.sin(angle), 0.0, 110.0], [-3.0 * np.sin(angle), -3.5 * np.cos(angle), 0.0, 90.0],
         [0.0, 0.0, 4.5, -70.0], [0, 0, 0, 1]]
    )
    geometry = ImageGeometry((60, 56, 34), affine)
    centre = geometry.voxel_to_world(np.array([28.3, 24.6, 15.2]))
    source_path = write_nifti(_blob(geometry, centre), tmp_path / "src.nii.gz")
    source = read_nifti(source_path)
    out = read_nifti(write_heatmap_nifti(_perfect_map(source, preprocessing), tmp_path / "map.nii.gz", sidecar={})[0])
    assert out.shape == source.shape and np.array_equal(out.geometry.affine_ras, source.geometry.affine_ras)
    _within_half_voxel(out.geometry, np.unravel_index(out.array.argmax(), out.shape), centre)


def test_radiograph_in_pixel_indices(tmp_path):
    geometry = radiograph_geometry((180, 160), 1.4)
    centre = geometry.voxel_to_world(np.array([77.0, 101.0, 0.0]))
    series = read_dicom_series(write_dicom_image(_blob(geometry, centre), tmp_path / "cr.dcm"))
    heatmap = _perfect_map(series.volume, CONFIG_2D)
    nifti = read_nifti(write_heatmap_nifti(heatmap, tmp_path / "map.nii.gz", sidecar={})[0])
    _within_half_voxel(nifti.geometry, np.unravel_index(nifti.array.argmax(), nifti.shape), centre)
    sc = pydicom.dcmread(write_secondary_capture(heatmap, series, tmp_path / "sc", opacity=1.0)[0])
    assert "ImagePositionPatient" not in sc  # no patient geometry to copy
    top = np.rint(np.array(colormaps["jet"](1.0)[:3]) * 255)
    closeness = -np.linalg.norm(sc.pixel_array.astype(float) - top, axis=-1)
    closeness[:, -2 * max(2, closeness.shape[1] // 40) - 1 :] = -np.inf
    row, col = np.unravel_index(closeness.argmax(), closeness.shape)
    _within_half_voxel(series.volume.geometry, (col, row, 0), centre)
    from medcam.errors import ExportError

    with pytest.raises(ExportError, match="no ImagePositionPatient"):
        write_parametric_map(heatmap, series, tmp_path / "pm.dcm")
