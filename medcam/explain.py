"""Explain one study: preprocess, predict, compute a CAM, and put it back on the scanner grid."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medcam.backproject import to_source_grid
from medcam.cam import CamResult, create_extractor
from medcam.geometry import Volume, ras_to_lps
from medcam.models.checkpoint import Checkpoint
from medcam.transforms import preprocess

__all__ = ["Explanation", "explain"]


@dataclass(frozen=True, eq=False)
class Explanation:
    """The prediction and map of one study; ``heatmap`` lies on the source's own voxel grid."""

    source: Volume
    model_input: object  # MetaTensor (1, *model_spatial)
    result: CamResult  # batch of one, on the model grid
    heatmap: Volume
    class_names: tuple[str, ...]

    @property
    def target(self) -> int:
        return int(self.result.target[0])

    @property
    def target_name(self) -> str:
        return self.class_names[self.target]

    @property
    def probability(self) -> float:
        return float(self.result.probability[0])

    @property
    def score(self) -> float:
        return float(self.result.score[0])

    @property
    def peak_index(self) -> tuple[int, int, int]:
        """Source voxel ``(i, j, k)`` of the map's maximum."""
        return tuple(int(v) for v in np.unravel_index(int(np.argmax(self.heatmap.array)), self.heatmap.shape))  # type: ignore[return-value]

    @property
    def peak_ras(self) -> np.ndarray:
        return self.heatmap.geometry.voxel_to_world(np.asarray(self.peak_index, dtype=float))

    @property
    def peak_lps(self) -> np.ndarray:
        """Where the map peaks, in DICOM patient coordinates (mm)."""
        return ras_to_lps(self.peak_ras)


def explain(
    checkpoint: Checkpoint,
    source: Volume | str | Path,
    *,
    method: str = "cam",
    target: int | None = None,
    layer: str | None = None,
    model_input=None,
) -> Explanation:
    """Predict and explain one study with ``checkpoint``'s model and preprocessing.

    ``target`` None explains the predicted class. The map is raw (not normalised).
    ``model_input`` may pass ``preprocess(source, checkpoint.preprocess_config)`` computed once
    when the same study is explained by several methods.
    """
    if not isinstance(source, Volume):
        from medcam.io import read_volume

        source = read_volume(source)
    if model_input is None:
        model_input = preprocess(source, checkpoint.preprocess_config)
    device = next(checkpoint.model.parameters()).device
    x = model_input.as_tensor().unsqueeze(0).to(device)
    with create_extractor(method, checkpoint.model, layer) as extractor:
        result = extractor(x, target=target)
    heatmap = to_source_grid(result.map[0], model_input, source.geometry)
    return Explanation(source, model_input, result, heatmap, checkpoint.class_names)
