"""Colour overlays: the windowed source with the heatmap alpha-blended in, and a colour legend."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["window_to_unit", "source_window", "heat_to_unit", "blend", "add_legend"]


def source_window(datasets, volume_array: np.ndarray) -> tuple[float, float]:
    """(low, high) display range: the source's first WindowCenter/WindowWidth, else percentiles 1..99."""
    ds = datasets[0] if datasets else None
    centre = ds.get("WindowCenter") if ds is not None else None
    width = ds.get("WindowWidth") if ds is not None else None
    if centre is not None and width is not None:
        centre, width = _first(centre), _first(width)
        if width > 0:
            return centre - width / 2, centre + width / 2
    low, high = np.percentile(volume_array, [1, 99])
    return float(low), float(max(high, low + 1e-6))


def _first(value) -> float:
    """The first of a possibly multi-valued DICOM number (WindowCenter may hold several)."""
    from pydicom.multival import MultiValue

    return float(value[0]) if isinstance(value, (MultiValue, list, tuple)) else float(value)


def window_to_unit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.clip((np.asarray(values, dtype=np.float32) - low) / (high - low), 0.0, 1.0)


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


def blend(gray: np.ndarray, heat: np.ndarray, *, colormap: str = "jet", opacity: float = 0.5, threshold: float = 0.2) -> np.ndarray:
    """RGB uint8 of ``gray`` (0..1) with ``heat`` (0..1) coloured by ``colormap``.

    Each pixel's alpha is ``opacity`` times its heat, and 0 below ``threshold``, so the
    anatomy stays visible where the map is low.
    """
    heat = np.asarray(heat, dtype=np.float32)
    colours = _lut(colormap)[np.rint(heat * 255).astype(np.uint8)]
    alpha = np.where(heat >= threshold, np.float32(opacity) * heat, np.float32(0.0))[..., None]
    rgb = (1.0 - alpha) * np.asarray(gray, dtype=np.float32)[..., None] + alpha * colours
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def add_legend(rgb: np.ndarray, *, colormap: str = "jet") -> np.ndarray:
    """A vertical colour bar (high at the top) in the right margin of an (rows, cols, 3) image."""
    rows, cols = rgb.shape[:2]
    height, width = max(8, rows // 3), max(2, cols // 40)
    top, left = rows // 20, cols - width - max(1, cols // 40)
    ramp = np.linspace(1.0, 0.0, height)[:, None].repeat(width, axis=1)
    out = rgb.copy()
    out[top : top + height, left : left + width] = np.rint(_lut(colormap)[np.rint(ramp * 255).astype(np.uint8)] * 255).astype(np.uint8)
    return out
