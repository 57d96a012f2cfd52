"""Voxel grids in world space: :class:`ImageGeometry`, :class:`Volume` and world-space resampling.

Conventions
-----------
* Inside medcam the world frame is **RAS millimetres**: +x points to the patient's Right,
  +y to Anterior, +z to Superior (nibabel, MONAI). LPS, the DICOM patient frame (+x Left,
  +y Posterior, +z Superior), appears only where DICOM is read or written; variables name
  their frame.
* A voxel index is ``(i, j, k)`` into ``Volume.array``. ``affine_ras @ (i, j, k, 1)`` is the RAS
  position of the voxel *centre*. For a DICOM series, ``i`` runs along a row (the first vector
  of ImageOrientationPatient, column index of the pixel matrix), ``j`` runs down the columns
  (second vector, row index of the pixel matrix) and ``k`` runs through the slices in spatial
  order -- the same axis order as nibabel, SimpleITK and MONAI.
* A voxel covers ``[-0.5, n - 0.5]`` in index units along each axis; points inside that extent
  are inside the image.

Changing the world frame of a voxel-to-world affine is a left multiplication
(``affine_ras = RAS_FROM_LPS @ affine_lps``); a point is converted by flipping x and y.

>>> lps_to_ras(np.array([-10.0, -11.0, 12.0]))
array([10., 11., 12.])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nibabel.orientations import aff2axcodes

from medcam.errors import ConfigError, GeometryError

__all__ = [
    "RAS_FROM_LPS",
    "LPS_FROM_RAS",
    "ImageGeometry",
    "Volume",
    "apply_affine",
    "lps_to_ras",
    "ras_to_lps",
    "affine_lps_to_ras",
    "affine_ras_to_lps",
    "orientation_codes",
    "axis_cosine",
    "orthogonal_axes",
    "resample_to",
    "model_geometry",
]

#: Voxels interpolated per chunk when resampling: bounds the temporary arrays to about 100 MB.
_CHUNK_VOXELS = 4_000_000

#: Flip of x and y: takes LPS coordinates (or an LPS-valued affine, by left multiplication) to RAS.
RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: The same flip, named for the other direction (it is its own inverse).
LPS_FROM_RAS = RAS_FROM_LPS

_FLIP_XY = np.array([-1.0, -1.0, 1.0])


def lps_to_ras(points_lps: np.ndarray) -> np.ndarray:
    """Convert points ``(..., 3)`` from LPS to RAS millimetres.

    >>> lps_to_ras(np.array([1.0, 2.0, 3.0]))
    array([-1., -2.,  3.])
    """
    return np.asarray(points_lps, dtype=float) * _FLIP_XY


def ras_to_lps(points_ras: np.ndarray) -> np.ndarray:
    """Convert points ``(..., 3)`` from RAS to LPS millimetres.

    >>> ras_to_lps(np.array([10.0, 11.0, 12.0]))
    array([-10., -11.,  12.])
    """
    return np.asarray(points_ras, dtype=float) * _FLIP_XY


def affine_lps_to_ras(affine_lps: np.ndarray) -> np.ndarray:
    """Voxel->LPS affine to voxel->RAS affine (left multiplication by :data:`RAS_FROM_LPS`)."""
    return RAS_FROM_LPS @ np.asarray(affine_lps, dtype=float)


def affine_ras_to_lps(affine_ras: np.ndarray) -> np.ndarray:
    """Voxel->RAS affine to voxel->LPS affine."""
    return LPS_FROM_RAS @ np.asarray(affine_ras, dtype=float)


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 affine to points ``(..., 3)``.

    >>> apply_affine(np.diag([2.0, 3.0, 4.0, 1.0]), np.array([1.0, 1.0, 1.0]))
    array([2., 3., 4.])
    """
    affine = np.asarray(affine, dtype=float)
    points = np.asarray(points, dtype=float)
    return points @ affine[:3, :3].T + affine[:3, 3]


def orthogonal_axes(affine: np.ndarray, *, tolerance: float = 1e-5) -> np.ndarray:
    """``affine`` with its voxel axes made exactly orthogonal when they are orthogonal up to
    ``tolerance`` (the cosine between two axes): the rounding of a float32 NIfTI sform or of
    DICOM's decimal strings. Column lengths (spacings) and the origin are kept; a sheared grid
    (a gantry tilt), an exactly orthogonal one and a 2D one are returned as they are.

    MONAI's ``Spacing`` aligns its output grid on the input's corner when the axes are
    orthogonal to 1e-8 and on its centre otherwise, so the same study read from DICOM and from
    NIfTI would get model grids half a voxel apart without this.

    >>> noisy = np.array([[2.0, 1e-7, 0, 5], [0, 3.0, 0, 6], [0, 0, 4.0, 7], [0, 0, 0, 1]])
    >>> snapped = orthogonal_axes(noisy)
    >>> bool(abs(snapped[:3, 0] @ snapped[:3, 1]) < 1e-15), snapped[:3, 3].tolist()
    (True, [5.0, 6.0, 7.0])
    """
    affine = np.array(affine, dtype=float, copy=True)
    worst = axis_cosine(affine)
    if worst == 0.0 or worst > tolerance:
        return affine
    lengths = np.linalg.norm(affine[:3, :3], axis=0)
    u, _, vt = np.linalg.svd(affine[:3, :3] / lengths)
    affine[:3, :3] = (u @ vt) * lengths
    return affine


def axis_cosine(affine: np.ndarray) -> float:
    """The largest cosine between two voxel axes of ``affine``: 0 for an orthogonal grid; a
    gantry-tilted (sheared) grid has the sine of its tilt here.

    >>> axis_cosine(np.diag([2.0, 3.0, 4.0, 1.0]))
    0.0
    """
    linear = np.asarray(affine, dtype=float)[:3, :3]
    directions = linear / np.linalg.norm(linear, axis=0)
    return float(np.abs(directions.T @ directions - np.eye(3)).max())


def orientation_codes(affine_ras: np.ndarray) -> str:
    """Three letters naming where each voxel axis points, e.g. ``"RAS"`` or ``"LPS"``.

    >>> orientation_codes(np.diag([-1.0, -1.0, 1.0, 1.0]))
    'LPS'
    """
    return "".join(aff2axcodes(np.asarray(affine_ras, dtype=float)))


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class ImageGeometry:
    """A voxel grid in world space.

    Parameters
    ----------
    shape : tuple of 3 ints
        Number of voxels along i, j, k. A 2D image is a grid of one slice.
    affine_ras : (4, 4) array
        Voxel index ``(i, j, k, 1)`` -> RAS millimetres of the voxel centre. Columns may be
        oblique and, for a gantry-tilted CT stack, the slice column may be sheared (not
        orthogonal to the in-plane columns).

    Raises
    ------
    GeometryError
        If the shape is not three positive integers or the affine is not a finite,
        invertible 4x4 affine.
    """

    shape: tuple[int, int, int]
    affine_ras: np.ndarray

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 3 or any(n < 1 for n in shape):
            raise GeometryError(f"ImageGeometry: expected a shape of 3 positive sizes, found {self.shape}")
        affine = np.asarray(self.affine_ras, dtype=float)
        if affine.shape != (4, 4):
            raise GeometryError(f"ImageGeometry: expected a 4x4 affine, found shape {affine.shape}")
        if not np.all(np.isfinite(affine)):
            raise GeometryError("ImageGeometry: the affine holds NaN or infinite values")
        if not np.allclose(affine[3], [0.0, 0.0, 0.0, 1.0]):
            raise GeometryError(f"ImageGeometry: the affine's last row must be [0 0 0 1], found {affine[3]}")
        norms = np.linalg.norm(affine[:3, :3], axis=0)
        if np.any(norms == 0) or abs(np.linalg.det(affine[:3, :3] / norms)) < 1e-6:
            raise GeometryError(
                f"ImageGeometry: the affine is singular (column lengths {np.round(norms, 6).tolist()}); "
                "its voxel axes do not span 3D space"
            )
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "affine_ras", _readonly(affine))

    # -- derived properties -------------------------------------------------------------
    @property
    def affine_lps(self) -> np.ndarray:
        """Voxel index -> LPS millimetres."""
        return affine_ras_to_lps(self.affine_ras)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Distance in mm between neighbouring voxel centres along i, j and k."""
        return tuple(float(s) for s in np.linalg.norm(self.affine_ras[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def direction_ras(self) -> np.ndarray:
        """Unit vectors of the three voxel axes in RAS, as columns of a 3x3 matrix."""
        return self.affine_ras[:3, :3] / np.asarray(self.spacing)

    @property
    def origin_ras(self) -> np.ndarray:
        """RAS position of the centre of voxel (0, 0, 0)."""
        return self.affine_ras[:3, 3].copy()

    @property
    def orientation(self) -> str:
        """Orientation codes of the voxel axes, e.g. ``"LPS"`` for a typical axial DICOM series."""
        return orientation_codes(self.affine_ras)

    @property
    def shear_degrees(self) -> float:
        """Angle between the slice axis and the normal of the i-j plane (gantry tilt), in degrees."""
        d = self.direction_ras
        normal = np.cross(d[:, 0], d[:, 1])
        normal /= np.linalg.norm(normal)
        cos = abs(float(np.dot(normal, d[:, 2])))
        return float(np.degrees(np.arccos(min(1.0, cos))))

    @property
    def center_ras(self) -> np.ndarray:
        """RAS position of the centre of the grid."""
        return self.voxel_to_world((np.asarray(self.shape, dtype=float) - 1.0) / 2.0)

    # -- mapping ----------------------------------------------------------------------
    def voxel_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """Voxel indices ``(..., 3)`` (fractional allowed) -> RAS millimetres."""
        return apply_affine(self.affine_ras, ijk)

    def world_to_voxel(self, xyz_ras: np.ndarray) -> np.ndarray:
        """RAS millimetres ``(..., 3)`` -> fractional voxel indices."""
        return apply_affine(np.linalg.inv(self.affine_ras), xyz_ras)

    def contains_voxel(self, ijk: np.ndarray) -> np.ndarray:
        """Whether fractional indices ``(..., 3)`` fall inside the grid's voxels."""
        ijk = np.asarray(ijk, dtype=float)
        upper = np.asarray(self.shape, dtype=float) - 0.5
        return np.all((ijk >= -0.5) & (ijk <= upper), axis=-1)

    def is_close(self, other: ImageGeometry, *, atol: float = 1e-4) -> bool:
        """Same shape and affines equal within ``atol`` (mm for the origin)."""
        return self.shape == other.shape and bool(np.allclose(self.affine_ras, other.affine_ras, rtol=0.0, atol=atol))

    def __repr__(self) -> str:
        spacing = ", ".join(f"{s:.4g}" for s in self.spacing)
        origin = ", ".join(f"{v:.4g}" for v in self.origin_ras)
        extra = f", shear={self.shear_degrees:.3g} deg" if self.shear_degrees > 1e-3 else ""
        return (
            f"ImageGeometry(shape={self.shape}, spacing=({spacing}) mm, "
            f"orientation={self.orientation}, origin_ras=({origin}){extra})"
        )


@dataclass(frozen=True, eq=False)
class Volume:
    """Voxel values on an :class:`ImageGeometry`.

    The array is copied and made read-only, so a Volume never changes under its owner.

    Parameters
    ----------
    array : (I, J, K) array
        Voxel values indexed ``[i, j, k]``; a 2D array is taken as one slice ``(I, J, 1)``.
    geometry : ImageGeometry
        The grid; its shape must equal the array's.
    """

    array: np.ndarray
    geometry: ImageGeometry

    def __post_init__(self) -> None:
        array = np.asarray(self.array)
        if array.ndim == 2:
            array = array[:, :, np.newaxis]
        if array.shape != self.geometry.shape:
            raise GeometryError(
                f"Volume: array shape {array.shape} does not match geometry shape {self.geometry.shape}"
            )
        object.__setattr__(self, "array", _readonly(array))

    @classmethod
    def adopt(cls, array: np.ndarray, geometry: ImageGeometry) -> Volume:
        """A Volume that takes over ``array`` without copying it (large arrays a function has just
        made and holds no other reference to); the array is made read-only in place."""
        if array.shape != geometry.shape:
            raise GeometryError(f"Volume: array shape {array.shape} does not match geometry shape {geometry.shape}")
        array.setflags(write=False)
        volume = cls.__new__(cls)
        object.__setattr__(volume, "array", array)
        object.__setattr__(volume, "geometry", geometry)
        return volume

    @classmethod
    def from_array(cls, array: np.ndarray, affine_ras: np.ndarray) -> Volume:
        """Build a Volume from an array and a voxel->RAS affine."""
        array = np.asarray(array)
        if array.ndim == 2:
            array = array[:, :, np.newaxis]
        return cls(array, ImageGeometry(array.shape, affine_ras))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Voxels along i, j, k."""
        return self.geometry.shape

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along i, j, k in mm."""
        return self.geometry.spacing

    def __repr__(self) -> str:
        spacing = ", ".join(f"{s:.4g}" for s in self.spacing)
        return (
            f"Volume(shape={self.shape}, spacing=({spacing}) mm, orientation={self.geometry.orientation}, "
            f"dtype={self.array.dtype})"
        )


def _axis_mapping(linear: np.ndarray) -> list[int] | None:
    """For each source axis the one target axis it depends on, when the map is axis-aligned
    (a permutation with flips and scalings); None for oblique or sheared maps."""
    scale = np.abs(linear).max()
    significant = np.abs(linear) > 1e-9 * max(scale, 1.0)
    if not (np.all(significant.sum(axis=0) == 1) and np.all(significant.sum(axis=1) == 1)):
        return None
    return [int(np.flatnonzero(row)[0]) for row in significant]


def _neighbours(coordinate: np.ndarray, n: int, ndim: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """For (clipped) fractional indices along an axis of ``n`` voxels: the lower neighbour of each
    (at most ``n - 2``, so the upper one exists) and the float32 weight of the upper one, shaped
    to broadcast along ``axis`` of an ``ndim``-dimensional array."""
    low = np.minimum(np.floor(coordinate).astype(np.intp), max(n - 2, 0))
    shape = [1] * ndim
    shape[axis] = len(coordinate)
    return low, (coordinate - low).astype(np.float32).reshape(shape)


def _interpolate_axis(data: np.ndarray, axis: int, coordinate: np.ndarray, order: int) -> np.ndarray:
    """``data`` sampled at (clipped) fractional indices ``coordinate`` along ``axis``."""
    n = data.shape[axis]
    if order == 0:
        return np.take(data, np.rint(coordinate).astype(np.intp), axis=axis)
    if n == 1:
        return np.take(data, np.zeros(len(coordinate), dtype=np.intp), axis=axis)
    low, weight = _neighbours(coordinate, n, data.ndim, axis)
    below = np.take(data, low, axis=axis)
    below *= 1 - weight
    above = np.take(data, low + 1, axis=axis)
    above *= weight
    below += above  # exact at weights 0 and 1
    return below


def _lerp_axis_into(data: np.ndarray, axis: int, coordinate: np.ndarray, out: np.ndarray, to_target: list[int]) -> None:
    """``out[...] = transpose(_interpolate_axis(data, axis, coordinate, 1), to_target)``: the
    same float32 arithmetic, so the same values, with torch's multi-threaded kernels."""
    import torch

    n = data.shape[axis]
    source = torch.from_numpy(data)
    low_index, weights = _neighbours(coordinate, n, data.ndim, axis)  # n == 1: every index 0, every weight 0
    low = torch.from_numpy(low_index.astype(np.int64))
    below = source.index_select(axis, low)
    if n > 1:
        above = source.index_select(axis, low + 1)
        weight = torch.from_numpy(weights)
        below.mul_(1 - weight).add_(above.mul_(weight))  # as _interpolate_axis: exact at weights 0 and 1
    torch.from_numpy(out).copy_(below.permute(*to_target))


def _resample_separable(array: np.ndarray, shape, src_from_tgt: np.ndarray, axes: list[int], order: int, fill: float) -> np.ndarray:
    """resample_to for axis-aligned maps: one 1D interpolation per axis (same values as the general
    path, a fraction of its cost on large grids). The last, largest pass is written slab by slab
    straight into the output, so memory stays near the output's own size. The output is in
    Fortran order, like the volumes the readers make."""
    data = array if order == 0 else array.astype(np.float32, copy=False)
    dtype = array.dtype if order == 0 else np.float32
    coordinates, outside, inside_run = {}, {}, {}
    for s in range(3):
        t, n = axes[s], array.shape[s]
        coordinate = src_from_tgt[s, t] * np.arange(shape[t], dtype=float) + src_from_tgt[s, 3]
        # linear in the target index, so the voxels outside are a run at either end: two slices
        inside = np.flatnonzero((coordinate >= -0.5) & (coordinate <= n - 0.5))
        start, stop = (int(inside[0]), int(inside[-1]) + 1) if inside.size else (0, 0)
        inside_run[t] = (start, stop)
        outside[t] = [part for part in (slice(0, start), slice(stop, shape[t])) if part.stop > part.start]
        coordinates[s] = np.clip(coordinate, 0.0, n - 1.0)
    # interpolate source axis s along its target axis t, smallest expansion first
    passes = sorted(range(3), key=lambda a: shape[axes[a]] / max(array.shape[a], 1))
    for s in passes[:2]:
        data = _interpolate_axis(data, s, coordinates[s], order)
    # data is indexed by source axes; the output by target axes
    last = passes[2]
    t = axes[last]
    to_target = list(np.argsort(axes))
    out = np.empty(shape, dtype=dtype, order="F")  # i fastest: slices [:, :, k] are contiguous (DICOM frames, NIfTI)
    step = max(1, _CHUNK_VOXELS // max(1, int(np.prod(data.shape)) // max(data.shape[last], 1)))
    begin, end = inside_run[t]  # target voxels outside the source along t are only filled, below
    for first in range(begin, end, step):
        index = [slice(None)] * 3
        index[t] = slice(first, min(first + step, end))
        chunk = coordinates[last][index[t]]
        if order == 1:  # the largest pass: torch's kernels use every CPU
            _lerp_axis_into(data, last, chunk, out[tuple(index)], to_target)
        else:
            out[tuple(index)] = np.transpose(_interpolate_axis(data, last, chunk, order), to_target)
    for axis, parts in outside.items():
        for part in parts:
            index = [slice(None)] * 3
            index[axis] = part
            out[tuple(index)] = fill
    return out


def resample_to(volume: Volume, target: ImageGeometry, *, order: int = 1, fill: float = 0.0) -> Volume:
    """Sample ``volume`` at every voxel centre of ``target``, through world space.

    For each target voxel ``t``: ``world = target.affine_ras @ t``, source index
    ``s = inv(volume.affine_ras) @ world``, value = interpolation of the source at ``s``. This
    one primitive handles flips, permutations, oblique and sheared grids and anisotropic
    spacing alike.

    Parameters
    ----------
    volume : Volume
        The values to sample.
    target : ImageGeometry
        The grid to sample on.
    order : {0, 1}
        0 for nearest neighbour (labels, masks; keeps the dtype), 1 for (tri)linear (float32).
    fill : float
        Value of target voxels whose centre lies outside the source's voxels (outside
        ``[-0.5, n - 0.5]`` in source index units). Points inside that extent but beyond the
        outermost voxel centres take the edge value.

    Returns
    -------
    Volume
        On ``target``.
    """
    if order not in (0, 1):
        raise ConfigError(f"resample_to: order must be 0 (nearest) or 1 (linear), found {order!r}")
    from scipy.ndimage import map_coordinates

    source = volume.geometry
    src_from_tgt = np.linalg.inv(source.affine_ras) @ target.affine_ras
    axes = _axis_mapping(src_from_tgt[:3, :3])
    if axes is not None:
        return Volume.adopt(_resample_separable(volume.array, target.shape, src_from_tgt, axes, order, fill), target)
    rotation, offset = src_from_tgt[:3, :3], src_from_tgt[:3, 3]
    ni, nj, nk = target.shape
    dtype = volume.array.dtype if order == 0 else np.float32
    out = np.empty(target.shape, dtype=dtype)
    data = volume.array if order == 0 else volume.array.astype(np.float32, copy=False)
    upper = np.asarray(source.shape, dtype=float) - 0.5

    ii, jj = np.meshgrid(np.arange(ni, dtype=float), np.arange(nj, dtype=float), indexing="ij")
    plane = np.stack([ii.ravel(), jj.ravel()])  # (2, ni*nj)
    slices_per_chunk = max(1, _CHUNK_VOXELS // max(1, ni * nj))
    for k0 in range(0, nk, slices_per_chunk):
        ks = np.arange(k0, min(nk, k0 + slices_per_chunk), dtype=float)
        # coordinates (3, n_slices, ni*nj) of every target voxel of the chunk in source indices
        coords = (rotation[:, :2] @ plane)[:, None, :] + (rotation[:, 2:3] * ks)[:, :, None] + offset[:, None, None]
        coords = coords.reshape(3, -1)
        inside = np.all((coords >= -0.5) & (coords <= upper[:, None]), axis=0)
        values = map_coordinates(data, coords, order=order, mode="nearest")
        values[~inside] = fill
        out[:, :, k0 : k0 + len(ks)] = values.reshape(len(ks), ni, nj).transpose(1, 2, 0)
    return Volume(out, target)


def model_geometry(tensor) -> ImageGeometry:
    """The model grid of a preprocessed ``MetaTensor`` ``(C, *spatial)`` (anything with ``shape`` and a
    RAS ``affine``) as an :class:`ImageGeometry`.

    A 2D grid becomes one slice whose third axis is the source's (slice thickness) axis.
    """
    spatial = tuple(int(n) for n in tensor.shape[1:])
    if len(spatial) == 2:
        spatial = (*spatial, 1)
    affine = np.asarray(tensor.affine.detach().cpu().numpy() if hasattr(tensor.affine, "detach") else tensor.affine, dtype=float)
    return ImageGeometry((int(spatial[0]), int(spatial[1]), int(spatial[2])), affine)
