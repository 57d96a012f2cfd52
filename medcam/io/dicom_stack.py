"""Stack DICOM image planes into one voxel grid: spatial order, consistency checks, the affine.

Slices are ordered by their position along the image-plane normal (never by InstanceNumber or
file name). The slice axis of the affine is the step between consecutive ImagePositionPatient
values, which for a gantry-tilted CT is *not* parallel to the normal: the grid is kept sheared,
exactly as acquired, instead of being silently orthogonalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medcam.errors import DicomSeriesError
from medcam.io.dicom_planes import SlicePlane

__all__ = ["StackLayout", "build_stack"]

_ORIENTATION_TOL = 1e-3  # direction cosines
_SPACING_REL_TOL = 1e-3  # pixel spacing, relative
_SAME_POSITION_MM = 1e-3  # two slices closer than this along the normal are at one position
_STEP_TOL_MM, _STEP_TOL_REL = 0.01, 0.01  # a slice step differs from the median by more: uneven (or missing slices)
_LINE_TOL_MM, _LINE_TOL_REL = 0.05, 0.02  # a slice position farther from the stack's line: not one straight stack
_DEFAULT_ROW = np.array([1.0, 0.0, 0.0])
_DEFAULT_COL = np.array([0.0, 1.0, 0.0])


@dataclass(frozen=True, eq=False)
class StackLayout:
    """How planes become a volume.

    ``order`` lists plane indices in spatial order. ``affine_lps`` maps ``(i, j, k)`` of the
    output volume (i along rows, j along columns, k slices) to LPS mm. ``resampling`` is
    ``None`` when output slice ``k`` is plane ``order[k]``; otherwise, for each output slice,
    ``(a, b, w)``: the output is ``(1 - w) * slice order[a] + w * slice order[b]``.
    """

    order: tuple[int, ...]
    affine_lps: np.ndarray
    shape: tuple[int, int, int]
    resampling: tuple[tuple[int, int, float], ...] | None
    note: str | None


def _cosines(plane: SlicePlane) -> np.ndarray | None:
    """The row and column cosines of ``plane`` as one 6-vector, None without an orientation."""
    if plane.row_cosine is None or plane.column_cosine is None:
        return None
    return np.concatenate([plane.row_cosine, plane.column_cosine])


def _check_same(planes: list[SlicePlane], name: str) -> None:
    first = planes[0]
    for plane in planes[1:]:
        if (plane.rows, plane.columns) != (first.rows, first.columns):
            raise DicomSeriesError(
                f"{name}: mixed Rows/Columns: {first.rows}x{first.columns} in {first.label}, "
                f"{plane.rows}x{plane.columns} in {plane.label}; expected one matrix size per series"
            )
        if (plane.row_cosine is None) != (first.row_cosine is None):
            raise DicomSeriesError(f"{name}: ImageOrientationPatient present in some slices only ({plane.label})")
        cosines, first_cosines = _cosines(plane), _cosines(first)
        if cosines is not None and first_cosines is not None and np.abs(cosines - first_cosines).max() > _ORIENTATION_TOL:
            raise DicomSeriesError(
                f"{name}: mixed orientations: {plane.label} is not parallel to {first.label} "
                "(a localizer or a multi-plane series?); expected one ImageOrientationPatient per series"
            )
        if (plane.pixel_spacing is None) != (first.pixel_spacing is None) or (
            first.pixel_spacing is not None
            and plane.pixel_spacing is not None
            and not np.allclose(plane.pixel_spacing, first.pixel_spacing, rtol=_SPACING_REL_TOL, atol=0)
        ):
            raise DicomSeriesError(
                f"{name}: mixed PixelSpacing: {first.pixel_spacing} in {first.label}, "
                f"{plane.pixel_spacing} in {plane.label}"
            )


def _in_plane_axes(plane: SlicePlane) -> tuple[np.ndarray, np.ndarray]:
    row_spacing, column_spacing = plane.pixel_spacing or (1.0, 1.0)
    row = plane.row_cosine if plane.row_cosine is not None else _DEFAULT_ROW
    col = plane.column_cosine if plane.column_cosine is not None else _DEFAULT_COL
    # i runs along a row (next column): column spacing; j runs down a column: row spacing
    return row * column_spacing, col * row_spacing


def _affine(axis_i: np.ndarray, axis_j: np.ndarray, axis_k: np.ndarray, origin: np.ndarray) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2], affine[:3, 3] = axis_i, axis_j, axis_k, origin
    return affine


def build_stack(planes: list[SlicePlane], name: str, *, allow_irregular: bool = False) -> StackLayout:
    """Order ``planes`` spatially, check they form one grid, and compute its affine (LPS).

    Parameters
    ----------
    planes : list of SlicePlane
        Every plane of one series.
    name : str
        The input (folder and series UID) named in error messages.
    allow_irregular : bool
        Resample a stack with uneven slice spacing (a missing slice) to a regular grid instead
        of refusing it.

    Raises
    ------
    DicomSeriesError
        Mixed matrix sizes, orientations or pixel spacings; a 3D series without
        ImagePositionPatient; two slices at one position; positions that do not lie on one
        line; uneven spacing without ``allow_irregular``.
    """
    _check_same(planes, name)
    first = planes[0]
    shape_ij = (first.columns, first.rows)
    axis_i, axis_j = _in_plane_axes(first)

    if len(planes) == 1:
        normal = np.cross(axis_i, axis_j)
        normal /= np.linalg.norm(normal)
        origin = first.position_lps if first.position_lps is not None else np.zeros(3)
        axis_k = normal * (first.thickness or 1.0)
        return StackLayout((0,), _affine(axis_i, axis_j, axis_k, origin), (*shape_ij, 1), None, None)

    known = [p.position_lps for p in planes if p.position_lps is not None]
    missing = [p.label for p in planes if p.position_lps is None]
    if missing:
        raise DicomSeriesError(
            f"{name}: missing ImagePositionPatient in {len(missing)} of {len(planes)} slices "
            f"(first: {missing[0]}); a 3D series needs a position for every slice"
        )
    if first.row_cosine is None:
        raise DicomSeriesError(f"{name}: missing ImageOrientationPatient in a {len(planes)}-slice series")

    normal = first.normal
    distances = np.array([float(np.dot(position, normal)) for position in known])
    order = np.argsort(distances, kind="stable")
    d = distances[order]
    positions = np.array([planes[i].position_lps for i in order])
    steps = np.diff(d)
    duplicate = np.flatnonzero(steps < _SAME_POSITION_MM)
    if duplicate.size:
        a, b = planes[order[duplicate[0]]], planes[order[duplicate[0] + 1]]
        raise DicomSeriesError(
            f"{name}: two slices at the same position ({a.label} and {b.label}, {d[duplicate[0]]:.4f} mm along the "
            "normal): several acquisitions, echoes or time points in one series? Select one subset of files"
        )

    # positions must lie on one line: p(d) = p0 + (d - d0) * v (v has unit normal component)
    v = (positions[-1] - positions[0]) / (d[-1] - d[0])
    predicted = positions[0] + np.outer(d - d[0], v)
    nominal = float(np.median(steps))
    tolerance = max(_STEP_TOL_MM, _STEP_TOL_REL * nominal)
    off_line = np.linalg.norm(positions - predicted, axis=1)
    if off_line.max() > max(_LINE_TOL_MM, _LINE_TOL_REL * nominal):
        worst = int(off_line.argmax())
        raise DicomSeriesError(
            f"{name}: slice positions do not lie on one line ({planes[order[worst]].label} is "
            f"{off_line[worst]:.3f} mm off); expected a straight stack"
        )

    uneven = np.flatnonzero(np.abs(steps - nominal) > tolerance)
    if uneven.size == 0:
        axis_k = v * (d[-1] - d[0]) / (len(planes) - 1)
        affine = _affine(axis_i, axis_j, axis_k, positions[0])
        return StackLayout(tuple(int(i) for i in order), affine, (*shape_ij, len(planes)), None, None)

    k = int(uneven[0])
    a, b = planes[order[k]], planes[order[k + 1]]
    if not allow_irregular:
        raise DicomSeriesError(
            f"{name}: gap between slices {k + 1} and {k + 2} in spatial order ({a.label} and {b.label}): "
            f"spacing {steps[k]:.4g} mm, expected {nominal:.4g} mm; a slice is missing or the spacing is "
            "uneven. Pass allow_irregular=True to resample it to a regular grid"
        )
    n_out = int(round((d[-1] - d[0]) / nominal)) + 1
    spacing = (d[-1] - d[0]) / (n_out - 1)
    plan = []
    for m in range(n_out):
        t = d[0] + m * spacing
        lo = int(np.clip(np.searchsorted(d, t, side="right") - 1, 0, len(d) - 2))
        w = float(np.clip((t - d[lo]) / (d[lo + 1] - d[lo]), 0.0, 1.0))
        plan.append((lo, lo + 1, w))
    note = (
        f"{name}: uneven slice spacing (largest step {steps.max():.4g} mm, expected {nominal:.4g} mm): "
        f"resampled {len(planes)} slices to {n_out} at {spacing:.4g} mm by linear interpolation"
    )
    affine = _affine(axis_i, axis_j, v * spacing, positions[0])
    return StackLayout(tuple(int(i) for i in order), affine, (*shape_ij, n_out), tuple(plan), note)
