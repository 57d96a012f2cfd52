import numpy as np
import pytest

from medcam.errors import GeometryError
from medcam.geometry import (
    RAS_FROM_LPS,
    ImageGeometry,
    Volume,
    affine_lps_to_ras,
    affine_ras_to_lps,
    apply_affine,
    lps_to_ras,
    ras_to_lps,
    resample_to,
)


def test_ras_and_lps_points_hand_computed():
    assert np.array_equal(ras_to_lps(np.array([10.0, 11.0, 12.0])), [-10.0, -11.0, 12.0])
    assert np.array_equal(lps_to_ras(np.array([-10.0, -11.0, 12.0])), [10.0, 11.0, 12.0])
    points = np.array([[1.0, 2.0, 3.0], [-4.0, 5.0, -6.0]])
    assert np.array_equal(lps_to_ras(ras_to_lps(points)), points)


def test_affine_frame_change_is_left_multiplication():
    affine_lps = np.array([[0.5, 0, 0, -100.0], [0, 0.7, 0, -120.0], [0, 0, 2.0, 30.0], [0, 0, 0, 1]])
    affine_ras = affine_lps_to_ras(affine_lps)
    # voxel (2, 3, 4): LPS (-99, -117.9, 38) -> RAS (99, 117.9, 38)
    assert np.allclose(apply_affine(affine_ras, [2, 3, 4]), [99.0, 117.9, 38.0])
    assert np.allclose(apply_affine(affine_lps, [2, 3, 4]), [-99.0, -117.9, 38.0])
    assert np.array_equal(affine_ras_to_lps(affine_ras), affine_lps)
    assert np.array_equal(RAS_FROM_LPS @ RAS_FROM_LPS, np.eye(4))


def test_geometry_properties_and_mapping():
    affine = np.array([[-2.0, 0, 0, 10.0], [0, -3.0, 0, 20.0], [0, 0, 4.0, -5.0], [0, 0, 0, 1]])
    geometry = ImageGeometry((5, 6, 7), affine)
    assert geometry.spacing == (2.0, 3.0, 4.0)
    assert geometry.orientation == "LPS"
    assert np.allclose(geometry.voxel_to_world([1, 2, 3]), [8.0, 14.0, 7.0])
    assert np.allclose(geometry.world_to_voxel([8.0, 14.0, 7.0]), [1, 2, 3])
    assert np.allclose(geometry.affine_lps, affine_ras_to_lps(affine))
    assert np.allclose(geometry.center_ras, geometry.voxel_to_world([2, 2.5, 3]))
    assert geometry.shear_degrees == pytest.approx(0.0)
    assert geometry.contains_voxel([-0.5, 5.5, 6.4]) and not geometry.contains_voxel([0, 0, 6.6])
    text = repr(geometry)
    assert "(5, 6, 7)" in text and "spacing=(2, 3, 4) mm" in text and "orientation=LPS" in text


def test_sheared_geometry_reports_tilt():
    tilt = np.radians(20.0)
    affine = np.eye(4)
    affine[:3, 1] = [0.0, np.cos(tilt), np.sin(tilt)]  # tilted column direction
    affine[:3, 2] = [0.0, 0.0, 2.0]  # slices advance along z
    geometry = ImageGeometry((4, 4, 4), affine)
    assert geometry.shear_degrees == pytest.approx(20.0)
    assert "shear=20 deg" in repr(geometry)


def test_geometry_is_close_and_readonly():
    a = ImageGeometry((2, 2, 2), np.eye(4))
    shifted = np.eye(4)
    shifted[:3, 3] = 5e-5  # origin 0.05 micrometre away
    b = ImageGeometry((2, 2, 2), shifted)
    assert a.is_close(b) and not a.is_close(b, atol=1e-5)
    assert not a.is_close(ImageGeometry((2, 2, 3), np.eye(4)))
    with pytest.raises(ValueError):
        a.affine_ras[0, 0] = 2.0


@pytest.mark.parametrize(
    ("shape", "affine", "match"),
    [
        ((2, 2), np.eye(4), "3 positive sizes"),
        ((2, 0, 2), np.eye(4), "3 positive sizes"),
        ((2, 2, 2), np.eye(3), "4x4"),
        ((2, 2, 2), np.diag([1.0, 1.0, np.nan, 1.0]), "NaN"),
        ((2, 2, 2), np.diag([1.0, 0.0, 1.0, 1.0]), "singular"),
        ((2, 2, 2), np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]), "singular"),
        ((2, 2, 2), np.vstack([np.eye(4)[:3], [0, 0, 1, 1]]), "last row"),
    ],
    ids=["2d-shape", "zero-size", "3x3", "nan", "zero-column", "parallel-columns", "bad-last-row"],
)
def test_geometry_refuses_bad_input(shape, affine, match):
    with pytest.raises(GeometryError, match=match):
        ImageGeometry(shape, affine)


def test_volume_copies_and_protects_its_array():
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    volume = Volume.from_array(data, np.eye(4))
    data[0, 0, 0] = 99.0
    assert volume.array[0, 0, 0] == 0.0
    with pytest.raises(ValueError):
        volume.array[0, 0, 0] = 1.0
    assert "shape=(2, 3, 4)" in repr(volume) and "orientation=RAS" in repr(volume)
    assert Volume.from_array(np.zeros((3, 5)), np.eye(4)).shape == (3, 5, 1)
    with pytest.raises(GeometryError, match="does not match"):
        Volume(np.zeros((2, 2, 2)), ImageGeometry((2, 2, 3), np.eye(4)))


def _random_volume(shape=(5, 6, 7), affine=None, seed=0) -> Volume:
    data = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    return Volume.from_array(data, np.eye(4) if affine is None else affine)


def test_resample_identity_is_exact():
    volume = _random_volume(affine=np.diag([0.7, -1.3, 2.0, 1.0]))
    out = resample_to(volume, volume.geometry)
    assert np.array_equal(out.array, volume.array)
    assert np.array_equal(resample_to(volume, volume.geometry, order=0).array, volume.array)


def test_resample_flipped_axis_reverses_values():
    volume = _random_volume(shape=(4, 3, 2))
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])
    flipped[0, 3] = 3.0  # voxel i of the target sits where voxel 3 - i of the source is
    out = resample_to(volume, ImageGeometry((4, 3, 2), flipped))
    assert np.allclose(out.array, volume.array[::-1])


def test_resample_permuted_axes_hand_computed():
    # target axes: i' = source k, j' = source i, k' = source j (a 90-degree re-slicing)
    volume = _random_volume(shape=(4, 3, 2))
    permuted = np.zeros((4, 4))
    permuted[2, 0] = permuted[0, 1] = permuted[1, 2] = permuted[3, 3] = 1.0
    out = resample_to(volume, ImageGeometry((2, 4, 3), permuted))
    assert np.allclose(out.array, volume.array.transpose(2, 0, 1))


def test_resample_oblique_reproduces_a_linear_field():
    # trilinear interpolation is exact for a linear function of position
    source_affine = np.diag([1.5, 1.0, 2.0, 1.0])
    geometry = ImageGeometry((20, 24, 16), source_affine)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in geometry.shape], indexing="ij"), axis=-1)
    world = geometry.voxel_to_world(ijk)
    coefficients = np.array([0.3, -0.2, 0.5])
    volume = Volume((world @ coefficients + 7.0).astype(np.float32), geometry)

    angle = np.radians(30.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    target_affine = np.eye(4)
    target_affine[:3, :3] = rotation @ np.diag([1.2, 1.1, 1.7])
    target_affine[:3, 3] = [12.0, 4.0, 6.0]
    target = ImageGeometry((6, 7, 5), target_affine)
    out = resample_to(volume, target)
    target_world = target.voxel_to_world(
        np.stack(np.meshgrid(*[np.arange(n) for n in target.shape], indexing="ij"), axis=-1)
    )
    assert np.all(target.contains_voxel(target.world_to_voxel(target_world)))
    assert np.all(geometry.contains_voxel(geometry.world_to_voxel(target_world)))
    assert np.allclose(out.array, target_world @ coefficients + 7.0, atol=1e-4)


def test_resample_half_voxel_shift_averages_neighbours():
    volume = Volume.from_array(np.array([0.0, 10.0, 20.0, 30.0]).reshape(4, 1, 1), np.eye(4))
    shifted = np.eye(4)
    shifted[0, 3] = 0.5
    out = resample_to(volume, ImageGeometry((3, 1, 1), shifted))
    assert np.allclose(out.array.ravel(), [5.0, 15.0, 25.0])


def test_resample_outside_gets_fill_and_edges_are_clamped():
    volume = Volume.from_array(np.array([1.0, 2.0, 3.0]).reshape(3, 1, 1), np.eye(4))
    shifted = np.eye(4)
    shifted[0, 3] = -0.4  # first target voxel 0.4 voxel before the first source centre: inside
    out = resample_to(volume, ImageGeometry((5, 1, 1), shifted), fill=-7.0)
    # targets at source i = -0.4, 0.6, 1.6, 2.6 (beyond 2.5: outside), 3.6
    assert np.allclose(out.array.ravel(), [1.0, 1.6, 2.6, -7.0, -7.0])


def test_resample_nearest_keeps_labels_and_dtype():
    labels = Volume.from_array(np.array([0, 1, 2, 3], dtype=np.uint8).reshape(4, 1, 1), np.eye(4))
    half = np.diag([0.5, 1.0, 1.0, 1.0])
    out = resample_to(labels, ImageGeometry((7, 1, 1), half), order=0)
    assert out.array.dtype == np.uint8
    assert set(np.unique(out.array)) <= {0, 1, 2, 3}
    assert out.array.ravel()[0] == 0 and out.array.ravel()[-1] == 3
    with pytest.raises(ValueError, match="order must be"):
        resample_to(labels, labels.geometry, order=3)


def _reference_resample(volume: Volume, target: ImageGeometry, *, order: int, fill: float) -> np.ndarray:
    """resample_to's definition computed directly, for every target voxel at once: the source
    index of each voxel centre through the two affines, scipy's interpolation there, ``fill``
    outside the source's voxels."""
    from scipy.ndimage import map_coordinates

    ijk = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in target.shape], indexing="ij"), axis=-1).reshape(-1, 3)
    index = apply_affine(np.linalg.inv(volume.geometry.affine_ras) @ target.affine_ras, ijk).T
    data = volume.array if order == 0 else volume.array.astype(np.float32)
    values = map_coordinates(data, index, order=order, mode="nearest")
    inside = np.all((index >= -0.5) & (index <= np.array(volume.shape)[:, None] - 0.5), axis=0)
    values[~inside] = fill
    return values.reshape(target.shape)


@pytest.mark.parametrize("oblique", [False, True], ids=["axis-aligned", "oblique"])
def test_a_target_of_several_chunks_is_sampled_exactly_across_them(oblique):
    """A target of 5.1 million voxels is resampled a slab of about 4 million voxels at a time
    (the chunk that bounds the working memory): a linear ramp in world coordinates, which linear
    interpolation reproduces exactly, comes out right on both sides of every slab boundary."""
    from scipy.spatial.transform import Rotation

    source_affine = np.diag([2.0, 2.0, 3.0, 1.0])
    source_affine[:3, 3] = [-40.0, -30.0, -60.0]
    shape = (41, 31, 41)
    world = apply_affine(source_affine, np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij"), -1))
    ramp = np.array([0.5, -0.25, 0.125])
    volume = Volume.from_array((world @ ramp + 3.0).astype(np.float32), source_affine)
    linear = np.diag([0.45, 0.4, 0.55])
    if oblique:
        linear = Rotation.from_euler("xyz", [8, -5, 12], degrees=True).as_matrix() @ linear
    target_affine = np.eye(4)
    target_affine[:3, :3], target_affine[:3, 3] = linear, [-35.0, -26.0, -55.0]
    target = ImageGeometry((160, 160, 200), target_affine)
    out = resample_to(volume, target).array
    target_world = apply_affine(target_affine, np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in target.shape],
                                                                     indexing="ij"), -1))
    index = apply_affine(np.linalg.inv(source_affine), target_world)
    interior = np.all((index >= 0) & (index <= np.array(shape) - 1), axis=-1)  # between the outermost voxel centres
    assert interior.mean() > 0.75  # most of the target, so every slab, whichever axis it is cut along
    assert np.abs(out[interior] - (target_world[interior] @ ramp + 3.0)).max() < 1e-4


@pytest.mark.parametrize("order", [0, 1])
def test_axis_aligned_fast_path_equals_the_definition(order):
    rng = np.random.default_rng(3)
    source_affine = np.diag([-2.0, -2.5, 3.0, 1.0])
    source_affine[:3, 3] = [40.0, 30.0, -20.0]
    values = rng.normal(size=(13, 11, 9)).astype(np.float32) if order == 1 else rng.integers(0, 5, (13, 11, 9)).astype(np.uint8)
    volume = Volume.from_array(values, source_affine)
    permuted = np.zeros((4, 4))  # target axes: (source k, flipped source i, source j), finer and shifted past the edges
    permuted[2, 0], permuted[0, 1], permuted[1, 2], permuted[3, 3] = 1.3, 0.9, -1.1, 1.0
    permuted[:3, 3] = [45.0, 22.0, -25.0]
    target = ImageGeometry((30, 40, 25), permuted)
    fill = -1 if order == 1 else 255
    fast = resample_to(volume, target, order=order, fill=fill)
    general = _reference_resample(volume, target, order=order, fill=fill)
    assert fast.array.dtype == general.dtype
    assert (fast.array == fill).sum() > 0 and np.array_equal(fast.array == fill, general == fill)
    if order == 1:
        assert np.allclose(fast.array, general, atol=1e-5)
    else:
        assert np.mean(fast.array == general) > 0.999  # ties at exact half-voxels may round differently


def test_adopt_takes_the_array_without_copying_and_protects_it():
    array = np.zeros((4, 3, 2), dtype=np.float32, order="F")
    geometry = ImageGeometry((4, 3, 2), np.eye(4))
    volume = Volume.adopt(array, geometry)
    assert volume.array is array and not array.flags.writeable
    with pytest.raises(GeometryError, match="does not match geometry shape"):
        Volume.adopt(np.zeros((4, 3, 3), np.float32), geometry)


def test_separable_resampling_gives_fortran_ordered_output():
    source = Volume.from_array(np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6), np.diag([2.0, 2.0, 2.0, 1.0]))
    target = ImageGeometry((8, 10, 12), np.diag([1.0, 1.0, 1.0, 1.0]))
    out = resample_to(source, target)
    assert out.array.flags.f_contiguous and not out.array.flags.writeable


def test_separable_resampling_along_a_single_slice_axis_repeats_the_slice():
    """The largest expansion along a one-voxel axis (the last, multi-threaded pass): every
    target slice inside the source slab is that slice, as the definition has it."""
    plane = np.random.default_rng(3).normal(size=(6, 5, 1)).astype(np.float32)
    source = Volume.from_array(plane, np.diag([2.0, 2.0, 10.0, 1.0]))
    target = ImageGeometry((6, 5, 40), np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0.25, -4.875], [0, 0, 0, 1]]))
    fast = resample_to(source, target, fill=-7.0)
    assert np.array_equal(fast.array, np.repeat(plane, 40, axis=2))  # slices at -4.875 .. 4.875 mm: all in the 10 mm slab
    assert np.array_equal(fast.array, _reference_resample(source, target, order=1, fill=-7.0))


@pytest.mark.parametrize("shift_mm", [0.0, 500.0])
def test_separable_resampling_fills_exactly_the_voxels_outside_the_source(shift_mm):
    """Target voxels whose centre lies outside the source extent take the fill value (a run at
    either end of each axis, or everything when the grids do not overlap); the rest are sampled."""
    source = Volume.from_array(np.full((4, 5, 6), 7.0, dtype=np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    affine = np.diag([-1.0, 1.0, 1.0, 1.0])  # flipped along x: the inside run is found backwards too
    affine[:3, 3] = [6.0 + shift_mm, -3.0, -2.0]
    target = ImageGeometry((12, 16, 16), affine)
    out = resample_to(source, target, fill=-1.0).array
    world = target.voxel_to_world(np.stack(np.meshgrid(*[np.arange(n) for n in target.shape], indexing="ij"), axis=-1).astype(float))
    index = world / 2.0  # source voxel coordinates (diagonal 2 mm, origin 0)
    inside = np.all((index >= -0.5) & (index <= np.array(source.shape) - 0.5), axis=-1)
    assert np.array_equal(out == -1.0, ~inside) and np.all(out[inside] == 7.0)
    assert inside.any() == (shift_mm == 0.0)
