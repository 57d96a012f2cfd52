"""read_dicom_series on hard series written by the synthetic writer, checked in millimetres."""

import warnings

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medcam.errors import DicomSeriesError, MedcamWarning
from medcam.geometry import ImageGeometry, Volume, affine_lps_to_ras, lps_to_ras, ras_to_lps
from medcam.io import read_dicom_series
from medcam.synthetic import axial_geometry, make_study, write_dicom_series
from tests.conftest import tree_hash


def sitk_series(folder):
    """SimpleITK's series reader: RAS affine and array indexed [i, j, k]."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    affine_lps = np.eye(4)
    affine_lps[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    affine_lps[:3, 3] = image.GetOrigin()
    return affine_lps_to_ras(affine_lps), sitk.GetArrayFromImage(image).transpose(2, 1, 0)


def expected_values(study, modality="CT"):
    """What the writer stores, back in real-world units (12-bit stored values, HU for CT)."""
    offset = -1024.0 if modality == "CT" else 0.0
    return np.clip(np.rint(study.volume.array - offset), 0, 4095) + offset


def assert_positions_match_files(series):
    """Every slice's voxel (0, 0, k) lies at its own file's ImagePositionPatient (LPS mm)."""
    geometry = series.volume.geometry
    for k, ds in enumerate(series.datasets):
        voxel_origin_lps = ras_to_lps(geometry.voxel_to_world([0.0, 0.0, float(k)]))
        assert np.allclose(voxel_origin_lps, [float(v) for v in ds.ImagePositionPatient], atol=1e-4)


def test_axial_ct_matches_written_geometry_and_simpleitk(tmp_path, ct_study):
    folder = tmp_path / "ct"
    write_dicom_series(ct_study.volume, folder)
    series = read_dicom_series(folder)
    assert series.volume.geometry.is_close(ct_study.volume.geometry, atol=1e-4)
    assert series.volume.array.dtype == np.float32
    assert np.array_equal(series.volume.array, expected_values(ct_study))
    assert series.modality == "CT" and len(series.datasets) == 12 and "PixelData" not in series.datasets[0]
    sitk_affine, sitk_array = sitk_series(folder)
    assert np.abs(sitk_affine - series.volume.geometry.affine_ras).max() < 1e-4
    assert np.array_equal(sitk_array, series.volume.array)
    assert_positions_match_files(series)


def test_rows_differ_from_columns_and_pixels_are_non_square(tmp_path, ct_study):
    write_dicom_series(ct_study.volume, tmp_path / "ct")
    series = read_dicom_series(tmp_path / "ct")
    ds = series.datasets[0]
    # i has 40 voxels of 9 mm (columns), j has 36 of 8 mm (rows); PixelSpacing = (row, column) spacing
    assert (ds.Rows, ds.Columns) == (36, 40)
    assert [float(v) for v in ds.PixelSpacing] == [8.0, 9.0]
    assert series.volume.shape == (40, 36, 12)
    assert series.volume.spacing == pytest.approx((9.0, 8.0, 6.0))


def test_lesion_lands_where_ground_truth_says(tmp_path, ct_study):
    write_dicom_series(ct_study.volume, tmp_path / "ct")
    volume = read_dicom_series(tmp_path / "ct").volume
    lesion = ct_study.lesions[0]
    ijk = np.rint(volume.geometry.world_to_voxel(lesion.center_ras)).astype(int)
    assert ct_study.mask.array[tuple(ijk)] == 1
    # mask centroid in world mm, through the geometry read from the files
    centroid = volume.geometry.voxel_to_world(np.argwhere(ct_study.mask.array).mean(axis=0))
    assert np.linalg.norm(centroid - lesion.center_ras) < max(volume.spacing)


def test_oblique_mr_reversed_numbers_shuffled_names(tmp_path, mr_study):
    plain, hard = tmp_path / "plain", tmp_path / "hard"
    write_dicom_series(mr_study.volume, plain, modality="MR")
    write_dicom_series(mr_study.volume, hard, modality="MR", reverse_instance_numbers=True, shuffle_file_names=True)
    a, b = read_dicom_series(plain), read_dicom_series(hard)
    assert b.volume.geometry.is_close(mr_study.volume.geometry, atol=1e-4)
    assert np.array_equal(a.volume.array, b.volume.array)
    assert np.array_equal(b.volume.array, expected_values(mr_study, "MR"))
    numbers = [int(ds.InstanceNumber) for ds in b.datasets]
    assert numbers == sorted(numbers, reverse=True)
    names = [frame.path.name for frame in b.frames]
    assert names != sorted(names)  # file order says nothing; spatial order was recovered anyway
    assert_positions_match_files(b)
    sitk_affine, _ = sitk_series(hard)
    assert np.abs(sitk_affine - b.volume.geometry.affine_ras).max() < 1e-4


def _lps_grid(axes_lps, spacing, shape, origin_lps):
    affine_lps = np.eye(4)
    affine_lps[:3, :3] = np.column_stack(axes_lps) * np.asarray(spacing)
    affine_lps[:3, 3] = origin_lps
    return ImageGeometry(shape, affine_lps_to_ras(affine_lps))


@pytest.mark.parametrize(
    ("axes_lps", "orientation"),
    [
        (([0, 1, 0], [0, 0, -1], [-1, 0, 0]), "PIR"),  # sagittal: rows posterior, columns feet, slices right
        (([1, 0, 0], [0, 0, -1], [0, 1, 0]), "LIP"),  # coronal: rows left, columns feet, slices posterior
    ],
    ids=["sagittal", "coronal"],
)
def test_sagittal_and_coronal_stacks(tmp_path, axes_lps, orientation):
    from medcam.synthetic import mr_head_scene

    geometry = _lps_grid(axes_lps, (6.0, 5.0, 7.0), (30, 36, 9), [-90.0, -100.0, 90.0])
    study = make_study(mr_head_scene(np.random.default_rng(3)), geometry, seed=3)
    write_dicom_series(study.volume, tmp_path / "s", modality="MR", shuffle_file_names=True)
    series = read_dicom_series(tmp_path / "s")
    assert series.volume.geometry.is_close(geometry, atol=1e-4)
    assert series.volume.geometry.orientation == orientation  # RAS codes
    assert np.array_equal(series.volume.array, expected_values(study, "MR"))
    sitk_affine, sitk_array = sitk_series(tmp_path / "s")
    assert np.abs(sitk_affine - series.volume.geometry.affine_ras).max() < 1e-4
    assert np.array_equal(sitk_array, series.volume.array)


def test_stack_advancing_against_the_normal_is_read_in_normal_order(tmp_path):
    """Slices written along -normal come back with k reversed: same voxels, same places."""
    from medcam.synthetic import mr_head_scene

    written = _lps_grid(([0, 1, 0], [0, 0, -1], [1, 0, 0]), (6.0, 5.0, 7.0), (30, 36, 9), [-30.0, -100.0, 90.0])
    study = make_study(mr_head_scene(np.random.default_rng(5)), written, seed=5)
    write_dicom_series(study.volume, tmp_path / "s", modality="MR")
    volume = read_dicom_series(tmp_path / "s").volume
    assert np.allclose(volume.geometry.voxel_to_world([0, 0, 0]), written.voxel_to_world([0, 0, 8]), atol=1e-4)
    assert np.allclose(volume.geometry.voxel_to_world([29, 35, 8]), written.voxel_to_world([29, 35, 0]), atol=1e-4)
    assert np.array_equal(volume.array, expected_values(study, "MR")[:, :, ::-1])
    from medcam.geometry import resample_to

    assert np.array_equal(resample_to(volume, written, order=0).array, expected_values(study, "MR"))


def test_gantry_tilt_keeps_the_sheared_geometry(tmp_path):
    from medcam.synthetic import ct_abdomen_scene

    geometry = axial_geometry((32, 32, 14), (8.0, 8.0, 5.0), tilt_deg=15.0)
    study = make_study(ct_abdomen_scene(np.random.default_rng(4)), geometry, seed=4)
    files = write_dicom_series(study.volume, tmp_path / "tilt")
    assert float(pydicom.dcmread(files[0]).GantryDetectorTilt) == pytest.approx(15.0)
    series = read_dicom_series(tmp_path / "tilt")
    assert series.volume.geometry.is_close(geometry, atol=1e-4)
    assert series.volume.geometry.shear_degrees == pytest.approx(15.0, abs=1e-6)
    assert_positions_match_files(series)
    # the trap: SimpleITK's series reader orthogonalises the stack; its far slice is mm off
    sitk_affine, _ = sitk_series(tmp_path / "tilt")
    far_corner = np.array([31.0, 31.0, 13.0])
    ours = series.volume.geometry.voxel_to_world(far_corner)
    theirs = sitk_affine[:3, :3] @ far_corner + sitk_affine[:3, 3]
    assert np.linalg.norm(ours - theirs) > 5.0


def test_missing_slice_is_refused_with_the_gap_named(tmp_path, ct_study):
    write_dicom_series(ct_study.volume, tmp_path / "gap", drop_slices=[4])
    with pytest.raises(DicomSeriesError, match=r"gap between slices 4 and 5 .* spacing 12 mm, expected 6 mm"):
        read_dicom_series(tmp_path / "gap")


def test_missing_slice_resampled_when_allowed(tmp_path, ct_study):
    write_dicom_series(ct_study.volume, tmp_path / "gap", drop_slices=[4])
    with pytest.warns(MedcamWarning, match="resampled 11 slices to 12"):
        series = read_dicom_series(tmp_path / "gap", allow_irregular=True)
    assert series.resampled and len(series.frames) == 11
    assert series.volume.geometry.is_close(ct_study.volume.geometry, atol=1e-4)
    full = expected_values(ct_study)
    assert np.array_equal(series.volume.array[..., 3], full[..., 3])
    assert np.array_equal(series.volume.array[..., 5], full[..., 5])
    assert np.allclose(series.volume.array[..., 4], (full[..., 3] + full[..., 5]) / 2)


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_enhanced_multiframe_matches_single_frame(tmp_path, ct_study, mr_study, modality):
    study = ct_study if modality == "CT" else mr_study
    write_dicom_series(study.volume, tmp_path / "single", modality=modality)
    write_dicom_series(study.volume, tmp_path / "multi", modality=modality, multiframe=True)
    single, multi = read_dicom_series(tmp_path / "single"), read_dicom_series(tmp_path / "multi")
    assert len(multi.datasets) == 1 and "PerFrameFunctionalGroupsSequence" in multi.datasets[0]
    assert multi.volume.geometry.is_close(single.volume.geometry, atol=1e-4)
    assert np.array_equal(multi.volume.array, single.volume.array)
    # each slice knows its frame, and that frame's own position is the slice's position
    per_frame = multi.datasets[0].PerFrameFunctionalGroupsSequence
    for k, frame in enumerate(multi.frames):
        position = per_frame[frame.frame_index].PlanePositionSequence[0].ImagePositionPatient
        expected = ras_to_lps(multi.volume.geometry.voxel_to_world([0.0, 0.0, float(k)]))
        assert np.allclose([float(v) for v in position], expected, atol=1e-4)


def test_rle_and_jpegls_compressed_series_read_like_uncompressed(tmp_path, ct_study):
    from pydicom.uid import JPEGLSLossless

    write_dicom_series(ct_study.volume, tmp_path / "plain")
    write_dicom_series(ct_study.volume, tmp_path / "rle", rle=True)
    files = write_dicom_series(ct_study.volume, tmp_path / "jls")
    for path in files:
        ds = pydicom.dcmread(path)
        ds.compress(JPEGLSLossless, encoding_plugin="pyjpegls")
        ds.save_as(path, enforce_file_format=True)
    plain = read_dicom_series(tmp_path / "plain").volume.array
    assert np.array_equal(read_dicom_series(tmp_path / "rle").volume.array, plain)
    assert np.array_equal(read_dicom_series(tmp_path / "jls").volume.array, plain)


def test_each_file_is_parsed_once_and_a_scan_never_holds_pixel_data(tmp_path, ct_study, monkeypatch):
    """The reader decodes from the scan's own headers (pixel data read from disk when decoded);
    an encapsulated file's pixel data, which comes with its header, is dropped by the scan and the
    file is read again whole."""
    import os

    from pydicom.uid import JPEGLSLossless

    import medcam.io.dicom as dicom_module
    import medcam.io.dicom_scan as scan_module
    from medcam.io import find_series

    files = write_dicom_series(ct_study.volume, tmp_path / "plain")
    compressed = write_dicom_series(ct_study.volume, tmp_path / "jls")
    for path in compressed:
        ds = pydicom.dcmread(path)
        ds.compress(JPEGLSLossless, encoding_plugin="pyjpegls")
        ds.save_as(path, enforce_file_format=True)
    for folder, deferred in (("plain", True), ("jls", False)):
        header = find_series(tmp_path / folder, keep_headers=True).series[0].headers[0]
        assert ("PixelData" in header) == deferred
        if deferred:
            assert header.get_item("PixelData", keep_deferred=True).value is None  # on disk, not in memory
    assert find_series(tmp_path / "plain").series[0].headers is None  # kept only when asked for

    parsed = []
    original = pydicom.dcmread

    def counting(path, *args, **kwargs):
        parsed.append(os.path.basename(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(scan_module.pydicom, "dcmread", counting)
    assert dicom_module.pydicom is scan_module.pydicom  # the same module: both readers counted
    plain = read_dicom_series(tmp_path / "plain").volume.array
    assert sorted(parsed) == sorted(p.name for p in files)  # once each
    parsed.clear()
    assert np.array_equal(read_dicom_series(tmp_path / "jls").volume.array, plain)
    assert sorted(parsed) == sorted(2 * [p.name for p in compressed])  # header scan, then whole


def test_modality_lut_slope_and_intercept(tmp_path, ct_study):
    files = write_dicom_series(ct_study.volume, tmp_path / "ct")
    stored = []
    for path in files:
        ds = pydicom.dcmread(path)
        ds.RescaleSlope, ds.RescaleIntercept = "2.5", "-1000"
        ds.save_as(path, enforce_file_format=True)
        stored.append(ds.pixel_array.T.astype(np.float64))
    series = read_dicom_series(tmp_path / "ct")
    order = [files.index(frame.path) for frame in series.frames]
    expected = np.stack([stored[i] for i in order], axis=-1) * 2.5 - 1000.0
    assert np.allclose(series.volume.array, expected)


def test_single_file_and_list_of_files(tmp_path, ct_study):
    files = write_dicom_series(ct_study.volume, tmp_path / "ct")
    one = read_dicom_series(files[3])
    assert one.volume.shape == (40, 36, 1)
    assert np.allclose(one.volume.geometry.origin_ras, ct_study.volume.geometry.voxel_to_world([0, 0, 3]), atol=1e-4)
    assert one.volume.spacing[2] == pytest.approx(6.0)  # SliceThickness
    subset = read_dicom_series(files[2:6][::-1])
    assert subset.volume.shape == (40, 36, 4)
    assert np.array_equal(subset.volume.array, read_dicom_series(tmp_path / "ct").volume.array[..., 2:6])


def test_reading_never_modifies_the_input(tmp_path, ct_study, mr_study):
    write_dicom_series(ct_study.volume, tmp_path / "in" / "ct", drop_slices=[2])
    write_dicom_series(mr_study.volume, tmp_path / "in" / "mr", modality="MR", multiframe=True)
    before = tree_hash(tmp_path / "in")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedcamWarning)
        read_dicom_series(tmp_path / "in" / "ct", allow_irregular=True)
    read_dicom_series(tmp_path / "in" / "mr")
    with pytest.raises(DicomSeriesError):
        read_dicom_series(tmp_path / "in")
    assert tree_hash(tmp_path / "in") == before


def test_volume_round_trip_positions_in_mm(tmp_path):
    """A point at known LPS coordinates lands at the voxel the files say it is at."""
    geometry = axial_geometry((20, 22, 8), (3.0, 4.0, 5.0), rotation_deg=(0.0, 30.0, 0.0))
    values = np.zeros(geometry.shape, dtype=np.float32)
    values[13, 7, 5] = 500.0
    write_dicom_series(Volume(values, geometry), tmp_path / "pt", reverse_instance_numbers=True)
    series = read_dicom_series(tmp_path / "pt")
    hot = np.argwhere(series.volume.array > 0)
    assert hot.tolist() == [[13, 7, 5]]
    ds = series.datasets[5]
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    # DICOM PS3.3 C.7.6.2.1.1: P = S + col * dc_row + row * dr_col (column index 13, row index 7)
    point_lps = ipp + iop[:3] * col_spacing * 13 + iop[3:] * row_spacing * 7
    assert np.allclose(series.volume.geometry.voxel_to_world([13, 7, 5]), lps_to_ras(point_lps), atol=1e-4)
