"""PNG figures for reports and case review: the source with the heatmap overlaid, in anatomical
orientation, with a labelled colour bar and the lesion mask's contour when one is known.

3D: axial, coronal and sagittal planes through the map's peak in radiological convention, whatever
the voxel order: the patient's right on the image's left, anterior up in the axial view, superior
up in the coronal and sagittal views (anterior on the left of the sagittal view, as viewers show
it), each with R/L/A/P/S/I markers, its position in LPS millimetres and its true aspect ratio.
The voxel axes are reordered and flipped onto the nearest patient axes, not resampled: every
pixel shown is a source voxel. An oblique grid is shown in its nearest anatomical planes and the
title says how oblique it is. 2D: the image as stored (row 0 at the top).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcam.export.atomic import atomic_output
from medcam.export.overlay import HEAT_THRESHOLD, heat_to_unit
from medcam.geometry import Volume, ras_to_lps, resample_to

__all__ = ["View", "anatomical_views", "draw_view", "overlay_figure", "write_figure", "map_label"]

# axis of the canonical (RAS-ordered) array shown left to right and top to bottom in each view,
# whether it is reversed (columns run from patient right to left, rows from anterior or superior
# down), and the markers on the left, right, top and bottom edges
_VIEWS = {
    "axial": (2, (0, True), (1, True), ("R", "L", "A", "P")),
    "coronal": (1, (0, True), (2, True), ("R", "L", "S", "I")),
    "sagittal": (0, (1, True), (2, True), ("A", "P", "S", "I")),
}
_LPS_AXIS = "xyz"


@dataclass(frozen=True)
class View:
    """One plane as it is drawn: ``gray``, ``heat`` (0..1) and ``mask`` are (rows, columns)."""

    name: str
    gray: np.ndarray
    heat: np.ndarray
    mask: np.ndarray | None
    aspect: float  # height / width of a pixel, in mm
    markers: tuple[str, str, str, str]  # left, right, top, bottom edge; empty for a 2D image
    position: str  # where the plane lies, e.g. "z = -32.5 mm (LPS)"


def _canonical(volume: Volume):
    """(array reordered to RAS axes, spacing per RAS axis, orientation (voxel axis -> RAS axis, flip))."""
    from nibabel.orientations import apply_orientation, io_orientation

    ornt = io_orientation(volume.geometry.affine_ras)
    spacing = np.empty(3)
    spacing[ornt[:, 0].astype(int)] = volume.spacing
    return apply_orientation(np.asarray(volume.array), ornt), spacing, ornt


def _canonical_index(index, shape, ornt) -> tuple[int, int, int]:
    out = [0, 0, 0]
    for axis, (target, flip) in enumerate(ornt):
        out[int(target)] = shape[axis] - 1 - index[axis] if flip < 0 else index[axis]
    return tuple(int(v) for v in out)  # type: ignore[return-value]


def _plane(array: np.ndarray, name: str, at) -> np.ndarray:
    through, (column_axis, column_flip), (row_axis, row_flip), _ = _VIEWS[name]
    plane = np.take(array, at[through], axis=through)  # the two remaining axes keep their order
    remaining = [a for a in range(3) if a != through]
    plane = plane.transpose(remaining.index(row_axis), remaining.index(column_axis))
    return plane[::-1 if row_flip else 1, ::-1 if column_flip else 1]


def anatomical_views(source: Volume, heatmap: Volume, *, at=None, mask: Volume | None = None) -> list[View]:
    """The views of :func:`write_figure` through source voxel ``at`` (default: the map's peak).

    ``heatmap`` lies on ``source``'s grid; ``mask`` (a lesion mask on any grid) is brought onto
    it through world coordinates (nearest neighbour).
    """
    at = tuple(int(v) for v in (at if at is not None else np.unravel_index(int(np.argmax(heatmap.array)), heatmap.shape)))
    heat = Volume.adopt(heat_to_unit(heatmap.array), heatmap.geometry)
    if mask is not None and not mask.geometry.is_close(source.geometry, atol=1e-4):
        mask = resample_to(mask, source.geometry, order=0)
    point_lps = ras_to_lps(source.geometry.voxel_to_world(np.asarray(at, dtype=float)))
    if source.shape[2] == 1:  # a single image: as stored
        return [View("image", source.array[:, :, 0].T, heat.array[:, :, 0].T,
                     None if mask is None else np.asarray(mask.array[:, :, 0].T > 0),
                     source.spacing[1] / source.spacing[0], ("", "", "", ""), "")]
    gray, spacing, ornt = _canonical(source)
    hot = _canonical(heat)[0]
    region = _canonical(mask)[0] > 0 if mask is not None else None
    index = _canonical_index(at, source.shape, ornt)
    views = []
    for name, (through, (column_axis, _), (row_axis, _), markers) in _VIEWS.items():
        views.append(View(
            name, _plane(gray, name, index), _plane(hot, name, index),
            None if region is None else _plane(region, name, index),
            float(spacing[row_axis] / spacing[column_axis]), markers,
            f"{_LPS_AXIS[through]} = {point_lps[through]:.1f} mm (LPS)",
        ))
    return views


def map_label(method: str, target_name: str, heatmap: np.ndarray) -> str:
    """What the colour bar shows: the method, the class, and how raw units became 0..1."""
    top = float(np.max(heatmap))
    return (f"{method} evidence for '{target_name}', shown as value / maximum ({top:.3g} raw units); "
            f"below {HEAT_THRESHOLD:.0%} not drawn")


def write_figure(
    source: Volume,
    heatmap: Volume,
    path: str | Path,
    *,
    window: tuple[float, float] | None = None,
    title: str = "",
    label: str | None = None,
    mask: Volume | None = None,
    colormap: str = "jet",
    opacity: float = 0.45,
    overwrite: bool = False,
) -> Path:
    """Write a PNG of ``source`` with ``heatmap`` (same grid) overlaid through the map's peak.

    ``window`` is the gray-scale display range (default: percentiles 1..99); ``label`` says what
    the colour bar shows (default: value / map maximum); ``mask`` is drawn as a contour.
    The figure is drawn without pyplot (no global figure registry, no display backend), so
    writers may run side by side in threads, and nothing appears in a caller's notebook."""
    from matplotlib.figure import Figure

    figure = _draw_overlay(Figure, source, heatmap, window=window, title=title, label=label, mask=mask,
                           colormap=colormap, opacity=opacity, at=None)
    path = Path(path)
    with atomic_output(path, overwrite=overwrite) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    return path


def overlay_figure(
    source: Volume,
    heatmap: Volume,
    *,
    window: tuple[float, float] | None = None,
    title: str = "",
    label: str | None = None,
    mask: Volume | None = None,
    colormap: str = "jet",
    opacity: float = 0.45,
    at: tuple[int, int, int] | None = None,
):
    """A pyplot Figure of the planes through source voxel ``at`` (default: the map's peak), for display."""
    import matplotlib.pyplot as plt

    return _draw_overlay(plt.figure, source, heatmap, window=window, title=title, label=label, mask=mask,
                         colormap=colormap, opacity=opacity, at=at)


def draw_view(axis, view: View, *, window: tuple[float, float], colormap="jet", opacity: float = 0.45):
    """Draw ``view`` on a matplotlib ``axis``: the source in ``window``, the heat above the
    transparency threshold, the mask's contour; axes off. Returns the heat image (for a colour bar)."""
    axis.imshow(view.gray, cmap="gray", vmin=window[0], vmax=window[1], aspect=view.aspect, interpolation="nearest")
    alpha = np.where(view.heat >= HEAT_THRESHOLD, opacity * view.heat, 0.0)
    image = axis.imshow(view.heat, cmap=colormap, vmin=0.0, vmax=1.0, alpha=alpha, aspect=view.aspect, interpolation="nearest")
    if view.mask is not None and view.mask.any():
        axis.contour(view.mask.astype(np.float32), levels=[0.5], colors="lime", linewidths=1.2)
    axis.axis("off")
    return image


def _obliquity_degrees(source: Volume) -> float:
    """The largest angle between a voxel axis and the patient axis it is shown along."""
    direction = source.geometry.direction_ras
    return float(np.degrees(np.arccos(np.clip(np.abs(direction).max(axis=0), -1.0, 1.0))).max())


def _draw_overlay(make_figure, source: Volume, heatmap: Volume, *, window, title, label, mask, colormap, opacity, at):
    from matplotlib import colormaps, patheffects

    low, high = window or tuple(float(v) for v in np.percentile(source.array, [1, 99]))
    outline = [patheffects.withStroke(linewidth=2.5, foreground="black")]
    views = anatomical_views(source, heatmap, at=at, mask=mask)
    figure = make_figure(figsize=(4.2 * len(views) + 0.8, 4.9 if len(views) > 1 else 5.6))
    axes = figure.subplots(1, len(views), squeeze=False)
    cmap = colormaps[colormap]
    for axis, view in zip(axes[0], views):
        image = draw_view(axis, view, window=(low, high), colormap=cmap, opacity=opacity)
        for text, (x, y, ha, va) in zip(view.markers, ((0.02, 0.5, "left", "center"), (0.98, 0.5, "right", "center"),
                                                        (0.5, 0.98, "center", "top"), (0.5, 0.02, "center", "bottom"))):
            if text:
                axis.text(x, y, text, transform=axis.transAxes, ha=ha, va=va, color="white", fontsize=11,
                          fontweight="bold", path_effects=outline)
        if view.position:
            axis.set_title(f"{view.name}, {view.position}", fontsize=9)
    figure.colorbar(image, ax=axes[0].tolist(), fraction=0.025, pad=0.02)
    label = label or f"map as value / maximum ({float(np.max(heatmap.array)):.3g} raw units)"
    figure.text(0.5, 0.015, "\n".join(textwrap.wrap(label, 60 * len(views) + 10)), ha="center", va="bottom", fontsize=8)
    peak = at or np.unravel_index(int(np.argmax(heatmap.array)), heatmap.shape)
    point_lps = ras_to_lps(heatmap.geometry.voxel_to_world(np.asarray(peak, dtype=float)))
    where = "peak" if at is None else "cursor"
    oblique = _obliquity_degrees(source) if len(views) > 1 else 0.0
    note = f"; grid {oblique:.0f}° oblique, shown in its nearest planes" if oblique >= 1.0 else ""
    figure.suptitle(f"{title}\n{where} at LPS ({', '.join(f'{v:.1f}' for v in point_lps)}) mm, "
                    f"voxel {tuple(int(v) for v in peak)}{note}", fontsize=10)
    return figure
