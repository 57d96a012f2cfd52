"""Localisation of a heatmap against a ground-truth lesion mask, in 2D and 3D, in millimetres.

All functions take the heatmap and the mask as :class:`Volume` on the same grid (the source's),
so tolerances and distances use the real voxel spacing. Maps are raw: negative values are
evidence against the class and count as zero where a mass is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medcam.errors import GeometryError, MetricError
from medcam.geometry import Volume

__all__ = [
    "LocalisationScores",
    "dilate_mm",
    "pointing_game",
    "energy_inside",
    "otsu_threshold",
    "overlap",
    "peak_distance_mm",
    "localisation_scores",
]


def _check(heatmap: Volume, mask: Volume) -> np.ndarray:
    if not heatmap.geometry.is_close(mask.geometry, atol=1e-3):
        raise GeometryError(f"heatmap {heatmap.geometry} and mask {mask.geometry} are not on the same grid")
    region = np.asarray(mask.array) > 0
    if not region.any():
        raise MetricError("the lesion mask is empty: localisation needs a lesion-positive case")
    return region


def dilate_mm(mask: np.ndarray, spacing: tuple[float, float, float], tolerance_mm: float) -> np.ndarray:
    """Voxels within ``tolerance_mm`` (Euclidean, in mm) of the mask."""
    from scipy.ndimage import distance_transform_edt

    mask = np.asarray(mask) > 0
    if tolerance_mm <= 0:
        return mask
    return distance_transform_edt(~mask, sampling=spacing) <= tolerance_mm


def pointing_game(heatmap: Volume, mask: Volume, *, tolerance_mm: float = 0.0) -> bool:
    """Hit when the map's maximum lies in the mask dilated by ``tolerance_mm`` (Zhang et al. 2018)."""
    region = dilate_mm(_check(heatmap, mask), heatmap.spacing, tolerance_mm)
    return bool(region[np.unravel_index(int(np.argmax(heatmap.array)), heatmap.shape)])


def energy_inside(heatmap: Volume, mask: Volume, *, tolerance_mm: float = 0.0) -> float:
    """Share of the positive map mass inside the (dilated) mask: ``sum_M relu(m) / sum relu(m)``.

    (The "energy-based pointing game" of Score-CAM, Wang et al. 2020.) 0 when the map has no
    positive mass.
    """
    region = dilate_mm(_check(heatmap, mask), heatmap.spacing, tolerance_mm)
    positive = np.clip(np.asarray(heatmap.array, dtype=np.float64), 0, None)
    total = positive.sum()
    return float(positive[region].sum() / total) if total > 0 else 0.0


def otsu_threshold(values: np.ndarray, *, bins: int = 256) -> float:
    """Otsu's threshold (maximum between-class variance) of ``values``.

    >>> float(otsu_threshold(np.array([0.0] * 50 + [10.0] * 50))) < 10.0
    True
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return high
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    mean_low = np.cumsum(counts * centres) / np.maximum(weight_low, 1)
    mean_high = ((counts * centres).sum() - np.cumsum(counts * centres)) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def overlap(heatmap: Volume, mask: Volume, threshold: float) -> tuple[float, float]:
    """(IoU, Dice) of ``heatmap >= threshold`` against the mask."""
    region = _check(heatmap, mask)
    predicted = np.asarray(heatmap.array) >= threshold
    intersection = np.logical_and(predicted, region).sum()
    union = np.logical_or(predicted, region).sum()
    total = predicted.sum() + region.sum()
    return float(intersection / union) if union else 0.0, float(2 * intersection / total) if total else 0.0


def peak_distance_mm(heatmap: Volume, centres_ras: np.ndarray) -> float:
    """Distance (mm) from the map's maximum to the nearest lesion centre."""
    peak = heatmap.geometry.voxel_to_world(np.asarray(np.unravel_index(int(np.argmax(heatmap.array)), heatmap.shape), float))
    centres = np.atleast_2d(np.asarray(centres_ras, dtype=float))
    return float(np.min(np.linalg.norm(centres - peak, axis=1)))


@dataclass(frozen=True)
class LocalisationScores:
    """How well one map finds one lesion mask: hits, energy shares, IoU and peak distance."""
    hit: bool
    hit_tolerant: bool
    energy: float
    energy_dilated: float
    iou_otsu: float
    dice_otsu: float
    peak_distance_mm: float


def localisation_scores(heatmap: Volume, mask: Volume, centres_ras: np.ndarray, *, tolerance_mm: float = 10.0,
                        energy_tolerance_mm: float | None = None) -> LocalisationScores:
    """Every localisation score of one case (Otsu threshold on the positive part of the map).

    ``tolerance_mm`` dilates the mask for the tolerant hit, ``energy_tolerance_mm`` (default: the
    same) for the energy in the dilated mask.
    """
    energy_tolerance_mm = tolerance_mm if energy_tolerance_mm is None else energy_tolerance_mm
    positive = np.clip(np.asarray(heatmap.array), 0, None)
    iou, dice = overlap(heatmap, mask, otsu_threshold(positive)) if positive.max() > 0 else (0.0, 0.0)
    return LocalisationScores(
        hit=pointing_game(heatmap, mask),
        hit_tolerant=pointing_game(heatmap, mask, tolerance_mm=tolerance_mm),
        energy=energy_inside(heatmap, mask),
        energy_dilated=energy_inside(heatmap, mask, tolerance_mm=energy_tolerance_mm),
        iou_otsu=iou,
        dice_otsu=dice,
        peak_distance_mm=peak_distance_mm(heatmap, centres_ras),
    )
