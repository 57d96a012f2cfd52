"""Colour overlays: the windowed source with the heatmap alpha-blended in, and a colour legend."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["window_to_unit", "window_to_levels", "to_levels", "source_window", "heat_to_unit", "blend", "draw_legend"]


def source_window(datasets, volume_array: np.ndarray) -> tuple[float, float]:
    """(low, high) display range: the source's first WindowCenter/WindowWidth, else percentiles 1..99."""
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
    low, high = np.percentile(volume_array, [1, 99])
    return float(low), float(max(high, low + 1e-6))


def _first(value) -> float:
    """The first of a possibly multi-valued DICOM number (WindowCenter may hold several)."""
    from pydicom.multival import MultiValue

    return float(value[0]) if isinstance(value, (MultiValue, list, tuple)) else float(value)


def window_to_unit(values: np.ndarray, low: float, high: float) -> np.ndarray:
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


def blend(gray: np.ndarray, heat: np.ndarray, *, colormap: str = "jet", opacity: float = 0.5, threshold: float = 0.2) -> np.ndarray:
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


def draw_legend(rgb: np.ndarray, *, colormap: str = "jet") -> np.ndarray:
    """Draw a vertical colour bar (high at the top) in the right margin of an (rows, cols, 3) uint8
    image, in place; returns ``rgb``."""
    rows, cols = rgb.shape[:2]
    height, width = max(8, rows // 3), max(2, cols // 40)
    top, left = rows // 20, cols - width - max(1, cols // 40)
    ramp = np.linspace(1.0, 0.0, height)[:, None].repeat(width, axis=1)
    rgb[top : top + height, left : left + width] = np.rint(_lut(colormap)[np.rint(ramp * 255).astype(np.uint8)] * 255).astype(np.uint8)
    return rgb
