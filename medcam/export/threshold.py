"""The SEG threshold, as a user can give it without knowing the map's raw units.

Raw maps of one study range from 0.017 (Grad-CAM) to 437 (CAM), so a threshold may be given as
a raw value (``"2.5"``), a fraction of the map's maximum (``"50%"``: half the maximum) or a
percentile of the map (``"p99"``: the value 1% of the voxels reach). Whatever the form, the
object records it and the raw value it came to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from medcam.errors import ExportError

__all__ = ["Threshold", "parse_threshold"]


@dataclass(frozen=True)
class Threshold:
    """``value`` in ``unit``: "raw" (map units), "fraction" (of the maximum) or "percentile"."""

    value: float
    unit: str = "raw"

    def __post_init__(self) -> None:
        if self.unit not in ("raw", "fraction", "percentile"):
            raise ExportError(f"threshold unit must be raw, fraction or percentile, found {self.unit!r}")
        if not np.isfinite(self.value):
            raise ExportError(f"threshold {self.value!r} is not a finite number")
        if self.unit == "fraction" and not 0 < self.value <= 1:
            raise ExportError(f"a threshold as a fraction of the maximum must be within (0, 1], found {self.value:g}")
        if self.unit == "percentile" and not 0 <= self.value <= 100:
            raise ExportError(f"a percentile threshold must be within 0..100, found {self.value:g}")

    def raw(self, values: np.ndarray) -> float:
        """The threshold in the map's raw units, for the map ``values``."""
        if self.unit == "raw":
            return float(self.value)
        if self.unit == "fraction":
            top = float(np.max(values))
            if top <= 0:
                raise ExportError(f"a threshold of {self.describe()} needs a map with positive values (its maximum is {top:g})")
            return self.value * top
        return float(np.percentile(values, self.value))

    def describe(self) -> str:
        """The threshold as it was asked for: raw map units, a share of the maximum, or a percentile."""
        if self.unit == "raw":
            return f"{self.value:g}"
        if self.unit == "fraction":
            return f"{self.value * 100:g}% of the maximum"
        return f"percentile {self.value:g}"

    def to_dict(self, values: np.ndarray) -> dict:
        """The threshold as JSON-ready values (for the sidecar)."""
        return {"value": self.value, "unit": self.unit, "raw": self.raw(values)}


def parse_threshold(text: str | float | Threshold | None) -> Threshold | None:
    """``2.5`` (raw), ``"50%"`` (of the maximum) or ``"p99"`` (a percentile) as a Threshold."""
    if text is None or isinstance(text, Threshold):
        return text
    if isinstance(text, (int, float)):
        return Threshold(float(text))
    spelled = str(text).strip().lower()
    try:
        if spelled.endswith("%"):
            return Threshold(float(spelled[:-1]) / 100, "fraction")
        if re.fullmatch(r"p\d+(\.\d*)?", spelled):
            return Threshold(float(spelled[1:]), "percentile")
        return Threshold(float(spelled))
    except ValueError:
        raise ExportError(f"threshold {text!r}: expected a raw value (2.5), a share of the maximum (50%) or a percentile (p99)") from None
