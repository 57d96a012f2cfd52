"""Faithfulness: deletion and insertion curves (Petsiuk et al., RISE, BMVC 2018), N-D and memory bounded.

Voxels of the model input are ranked by the map (on the model grid), highest first. *Deletion*
replaces the top fraction ``f`` of voxels by a baseline and records the target probability;
*insertion* starts from the baseline and restores the top fraction. The curves are sampled at
``steps + 1`` fractions from 0 to 1 and their areas computed with the trapezoid rule. A faithful
map gives a low deletion area and a high insertion area. Perturbed inputs are built and scored
``batch_size`` at a time, never all at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from medcam.errors import ConfigError, MetricError

__all__ = ["Curves", "baseline_image", "deletion_insertion"]


def baseline_image(x: torch.Tensor, kind: str = "blur", *, sigma_voxels: float = 4.0, value: float = 0.0) -> torch.Tensor:
    """The stated baseline: a Gaussian blur of the input (``"blur"``) or a constant (``"constant"``)."""
    if kind == "constant":
        return torch.full_like(x, value)
    if kind != "blur":
        raise ConfigError(f"baseline must be 'blur' or 'constant', found {kind!r}")
    from scipy.ndimage import gaussian_filter

    array = x.detach().cpu().numpy()
    sigma = [0, 0] + [sigma_voxels] * (array.ndim - 2)
    return torch.from_numpy(gaussian_filter(array, sigma=sigma, mode="nearest").astype(array.dtype)).to(x.device)


@dataclass(frozen=True)
class Curves:
    """Deletion and insertion curves: the class probability as the most salient voxels are removed or added."""
    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray

    @property
    def deletion_auc(self) -> float:
        """Area under the deletion curve (lower is more faithful)."""
        return float(np.trapezoid(self.deletion, self.fractions))

    @property
    def insertion_auc(self) -> float:
        """Area under the insertion curve (higher is more faithful)."""
        return float(np.trapezoid(self.insertion, self.fractions))


@torch.no_grad()
def deletion_insertion(
    model: nn.Module,
    x: torch.Tensor,
    cam_map: torch.Tensor,
    target: int,
    *,
    steps: int = 20,
    baseline: str = "blur",
    batch_size: int = 8,
) -> Curves:
    """Deletion and insertion curves of one input ``x`` ``(1, C, *S)`` for ``cam_map`` ``(*S)``."""
    if x.shape[0] != 1 or tuple(cam_map.shape) != tuple(x.shape[2:]):
        raise MetricError(f"expected x (1, C, *S) and a map (*S), found {tuple(x.shape)} and {tuple(cam_map.shape)}")
    was_training = model.training
    model.eval()
    try:
        base = baseline_image(x, baseline)
        order = torch.argsort(cam_map.reshape(-1).to(x.device), descending=True)
        n = order.numel()
        fractions = np.linspace(0.0, 1.0, steps + 1)
        counts = np.rint(fractions * n).astype(int)
        rank = torch.empty(n, dtype=torch.long, device=x.device)
        rank[order] = torch.arange(n, device=x.device)
        rank = rank.reshape(cam_map.shape)

        def curve(start: torch.Tensor, end: torch.Tensor) -> np.ndarray:
            scores = []
            for first in range(0, len(counts), batch_size):
                chunk = counts[first : first + batch_size]
                masks = torch.stack([rank < int(c) for c in chunk])[:, None]  # (b, 1, *S): top-c voxels
                batch = torch.where(masks, end, start)  # broadcast over channels
                scores.append(torch.softmax(model(batch), dim=1)[:, target].cpu())
            return torch.cat(scores).numpy()

        return Curves(fractions, deletion=curve(x, base), insertion=curve(base, x))
    finally:
        model.train(was_training)
