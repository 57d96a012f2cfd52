"""Colour overlays: the windowed source with the heatmap alpha-blended in, and a colour legend."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

__all__ = ["HEAT_THRESHOLD", "MODALITY_WINDOWS", "window_to_unit", "window_to_levels", "to_levels", "source_window", "heat_to_unit", "blend", "LEGEND_MIN_FONT_PX", "legend_width", "legend_text", "legend_panel"]


#: Heat (as a share of the map's maximum) below which the overlay is transparent.
HEAT_THRESHOLD = 0.2
#: The usual soft-tissue window of a modality without a window of its own: (centre, width).
MODALITY_WINDOWS = {"CT": (40.0, 400.0)}


def source_window(datasets, volume_array: np.ndarray, *, model_window: tuple[float, float] | None = None,
                  modality: str | None = None) -> tuple[float, float]:
    """(low, high) display range: the source's first WindowCenter/WindowWidth, else the model's
    intensity window (centre, width), else the modality's usual window, else percentiles 1..99."""
    ds = datasets[0] if datasets else None
    centre = ds.get("WindowCenter") if ds is not None else None
    width = ds.get("WindowWidth") if ds is not None else None
    if centre is not None and width is not None:
        try:
            centre, width = _first(centre), _first(width)
        except (TypeError, ValueError, IndexError):  # a window that is not a number: the display falls back
            centre = width = float("nan")
        if np.isfinite(centre) and np.isfinite(width) and width > 0:
            return centre - width / 2, centre + width / 2
    fallback = model_window or MODALITY_WINDOWS.get(str(modality or "").upper())
    if fallback is not None:
        return fallback[0] - fallback[1] / 2, fallback[0] + fallback[1] / 2
    low, high = np.percentile(volume_array, [1, 99])
    return float(low), float(max(high, low + 1e-6))


def _first(value) -> float:
    """The first of a possibly multi-valued DICOM number (WindowCenter may hold several)."""
    from pydicom.multival import MultiValue

    return float(value[0]) if isinstance(value, (MultiValue, list, tuple)) else float(value)


def window_to_unit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``values`` windowed to 0..1 between ``low`` and ``high`` (clipped)."""
    return np.clip((np.asarray(values, dtype=np.float32) - low) / (high - low), 0.0, 1.0)


def window_to_levels(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Source values -> 8-bit display levels of the window ``low..high``, rounded to nearest."""
    scale = np.float32(255.0 / (high - low))
    levels = (np.asarray(values, dtype=np.float32) - np.float32(low)) * scale
    return np.rint(np.clip(levels, 0.0, 255.0, out=levels), out=levels).astype(np.uint8)


def to_levels(unit: np.ndarray) -> np.ndarray:
    """Values in 0..1 -> 8-bit levels 0..255 (uint8)."""
    return window_to_levels(unit, 0.0, 1.0)


def heat_to_unit(heatmap: np.ndarray, *, vmax: float | None = None) -> np.ndarray:
    """Raw map -> [0, 1]: negative evidence 0, the volume's maximum (or ``vmax``) 1. Never inverted."""
    top = float(np.max(heatmap)) if vmax is None else float(vmax)
    if top <= 0:
        return np.zeros_like(heatmap, dtype=np.float32)
    return np.clip(np.asarray(heatmap, dtype=np.float32) / top, 0.0, 1.0)


@lru_cache(maxsize=8)
def _lut(colormap: str) -> np.ndarray:
    """The colour map as a 256 x 3 float32 table (what matplotlib itself samples)."""
    from matplotlib import colormaps

    return colormaps[colormap](np.linspace(0.0, 1.0, 256))[:, :3].astype(np.float32)


@lru_cache(maxsize=8)
def _blend_table(colormap: str, opacity: float, threshold: float) -> np.ndarray:
    """Every blend of an 8-bit gray level ``g`` with an 8-bit heat level ``h``, as RGB uint8 at
    row ``256 g + h`` of a (65536, 3) table."""
    levels = np.arange(256, dtype=np.float64) / 255.0
    alpha = np.where(levels >= threshold, opacity * levels, 0.0)[None, :, None]  # per heat level
    rgb = (1.0 - alpha) * levels[:, None, None] + alpha * _lut(colormap)[None, :, :].astype(np.float64)
    table = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8).reshape(256 * 256, 3)
    table.flags.writeable = False
    return table


def blend(gray: np.ndarray, heat: np.ndarray, *, colormap: str = "jet", opacity: float = 0.5,
          threshold: float = HEAT_THRESHOLD) -> np.ndarray:
    """RGB uint8 of ``gray`` with ``heat`` coloured by ``colormap``; both in 0..1, or already 8-bit
    levels (uint8, as :func:`to_levels` makes them).

    Each pixel's alpha is ``opacity`` times its heat, and 0 below ``threshold``, so the
    anatomy stays visible where the map is low. Both inputs are taken at 8-bit precision (what an
    8-bit image can show), so the blend is one lookup in a table of all 65536 pairs.
    """
    gray = gray if np.asarray(gray).dtype == np.uint8 else to_levels(gray)
    heat = heat if np.asarray(heat).dtype == np.uint8 else to_levels(heat)
    index = (np.asarray(gray).astype(np.intp) << 8) | np.asarray(heat)
    return np.take(_blend_table(colormap, float(opacity), float(threshold)), index, axis=0)


#: The legend's smallest text height (em) in pixels: legible on the smallest images.
LEGEND_MIN_FONT_PX = 11.0


def _legend_font_px(rows: int) -> float:
    return max(LEGEND_MIN_FONT_PX, rows / 40.0)


def legend_width(rows: int) -> int:
    """Columns of the legend panel beside an image of ``rows`` rows: a text column of about 20
    characters and the colour bar with its tick labels, in the legend's font."""
    return max(256, round(23.5 * _legend_font_px(rows)))


def legend_text(lines: Sequence[str], rows: int) -> list[str]:
    """``lines`` wrapped to the legend's text column, and cut to the lines that fit in ``rows``."""
    import textwrap

    font = _legend_font_px(rows)
    columns = max(8, int(_legend_layout(rows)["text_width"] / (0.58 * font)))
    wrapped = [part for line in lines for part in (textwrap.wrap(line, columns, break_long_words=True) or [""])]
    return wrapped[: max(1, int((rows - font) / (1.2 * font)))]


def _legend_layout(rows: int) -> dict[str, float]:
    """Pixel layout of the legend: the text column at the left, the colour bar (one em wide) and
    its tick labels (eight em) at the right, a margin of half an em around."""
    font, width = _legend_font_px(rows), legend_width(rows)
    margin = 0.5 * font
    bar_x = width - margin - 8.0 * font - font
    return {"font": font, "width": width, "margin": margin, "bar_x": bar_x, "text_width": bar_x - 2 * margin}


def legend_panel(rows: int, *, colormap: str, vmax: float, lines: Sequence[str] = (),
                 threshold: float = HEAT_THRESHOLD) -> np.ndarray:
    """A (rows, :func:`legend_width`, 3) uint8 panel to put beside an overlay: ``lines`` of text at
    the left (wrapped by :func:`legend_text`, at least :data:`LEGEND_MIN_FONT_PX` pixels high), and at
    the right the colour bar from 0 to ``vmax`` raw map units over the panel's height, ticked at 0,
    the transparency threshold and the maximum. Drawn with matplotlib's Agg renderer (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    layout, dpi = _legend_layout(rows), 100.0
    width, font, margin = int(layout["width"]), layout["font"], layout["margin"]
    points = font * 72.0 / dpi
    figure = Figure(figsize=(width / dpi, rows / dpi), dpi=dpi, facecolor="black")
    canvas = FigureCanvasAgg(figure)
    figure.text(margin / width, 1.0 - margin / rows, "\n".join(legend_text(lines, rows)), color="white", fontsize=points,
                va="top", ha="left", linespacing=1.2, family="DejaVu Sans")
    bar_bottom = (margin + 0.5 * font) / rows  # room for the lowest tick label's lower half
    bar = figure.add_axes((layout["bar_x"] / width, bar_bottom, font / width, 1.0 - 2 * bar_bottom))
    bar.imshow(np.linspace(1.0, 0.0, 256)[:, None], cmap=colormap, aspect="auto", extent=(0.0, 1.0, 0.0, max(vmax, 1e-12)))
    bar.set_xticks([])
    bar.yaxis.tick_right()
    bar.set_yticks([0.0, threshold * vmax, vmax], ["0", f"{threshold * vmax:.3g} ({threshold:.0%})", f"{vmax:.3g} max"])
    bar.tick_params(colors="white", labelsize=points, length=0.3 * font, pad=0.2 * font)
    for spine in bar.spines.values():
        spine.set_color("white")
    canvas.draw()
    drawn = np.asarray(canvas.buffer_rgba())[:, :, :3]
    panel = np.zeros((rows, width, 3), np.uint8)  # the canvas may round its size by a pixel
    h, w = min(rows, drawn.shape[0]), min(width, drawn.shape[1])
    panel[:h, :w] = drawn[:h, :w]
    return panel
