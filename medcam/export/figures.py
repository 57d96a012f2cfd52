"""PNG figures for reports and case review: the source with the heatmap overlaid and a colour bar.

3D: three orthogonal planes of the voxel grid through the map's peak; 2D: the image. Planes are
shown with their true millimetre aspect ratio.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medcam.export.outputs import atomic_output
from medcam.export.overlay import heat_to_unit
from medcam.geometry import Volume, ras_to_lps

__all__ = ["overlay_figure", "write_figure"]


def write_figure(
    source: Volume,
    heatmap: Volume,
    path: str | Path,
    *,
    window: tuple[float, float] | None = None,
    title: str = "",
    colormap: str = "jet",
    opacity: float = 0.45,
    overwrite: bool = False,
) -> Path:
    """Write a PNG of ``source`` with ``heatmap`` (same grid) overlaid through the map's peak.

    The figure is drawn without pyplot (no global figure registry, no display backend), so
    writers may run side by side in threads, and nothing appears in a caller's notebook."""
    from matplotlib.figure import Figure

    figure = _draw_overlay(Figure, source, heatmap, window=window, title=title, colormap=colormap, opacity=opacity, at=None)
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
    colormap: str = "jet",
    opacity: float = 0.45,
    at: tuple[int, int, int] | None = None,
):
    """A pyplot Figure of the planes through voxel ``at`` (default: the map's peak), for display."""
    import matplotlib.pyplot as plt

    return _draw_overlay(plt.figure, source, heatmap, window=window, title=title, colormap=colormap, opacity=opacity, at=at)


def _draw_overlay(make_figure, source: Volume, heatmap: Volume, *, window, title, colormap, opacity, at):
    from matplotlib import colormaps

    low, high = window or tuple(float(v) for v in np.percentile(source.array, [1, 99]))
    heat = heat_to_unit(heatmap.array)
    peak = at or np.unravel_index(int(np.argmax(heatmap.array)), heatmap.shape)
    si, sj, sk = source.spacing
    views = [("i-j plane (k = %d)" % peak[2], source.array[:, :, peak[2]].T, heat[:, :, peak[2]].T, sj / si)]
    if source.shape[2] > 1:
        views.append(("i-k plane (j = %d)" % peak[1], source.array[:, peak[1], :].T[::-1], heat[:, peak[1], :].T[::-1], sk / si))
        views.append(("j-k plane (i = %d)" % peak[0], source.array[peak[0], :, :].T[::-1], heat[peak[0], :, :].T[::-1], sk / sj))
    figure = make_figure(figsize=(4.2 * len(views) + 0.8, 4.6))
    axes = figure.subplots(1, len(views), squeeze=False)
    cmap = colormaps[colormap]
    for axis, (name, gray, hot, aspect) in zip(axes[0], views):
        axis.imshow(gray, cmap="gray", vmin=low, vmax=high, aspect=aspect, interpolation="nearest")
        alpha = np.where(hot >= 0.2, opacity * hot, 0.0)
        image = axis.imshow(hot, cmap=cmap, vmin=0.0, vmax=1.0, alpha=alpha, aspect=aspect, interpolation="nearest")
        axis.set_title(name, fontsize=9)
        axis.axis("off")
    figure.colorbar(image, ax=axes[0].tolist(), fraction=0.025, pad=0.02, label="map / map maximum")
    point_lps = ras_to_lps(heatmap.geometry.voxel_to_world(np.asarray(peak, dtype=float)))
    where = "peak" if at is None else "cursor"
    figure.suptitle(f"{title}\n{where} at voxel {tuple(int(v) for v in peak)}, LPS ({', '.join(f'{v:.1f}' for v in point_lps)}) mm", fontsize=10)
    return figure
