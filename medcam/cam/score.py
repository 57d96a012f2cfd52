"""Score-CAM (Wang et al., CVPR Workshops 2020), chunked so memory stays bounded.

Each channel ``A_k`` of the target layer is upsampled to the input grid and min-max scaled to
``H_k`` in [0, 1]; the input masked by it is scored: ``w_k = softmax(f(X * H_k))_c``; the map is
``M(s) = sum_k w_k A_k(s)`` (raw: no ReLU). Masks are built and scored ``batch_size`` channels
at a time, never all at once (torchcam materialises every mask: many GB for one 3D volume).
"""

from __future__ import annotations

import torch
from torch import nn

from medcam.cam.base import CamExtractor, upsample
from medcam.errors import CamError

__all__ = ["ScoreCAM"]

class ScoreCAM(CamExtractor):
    """Score-CAM for any model.

    Parameters
    ----------
    batch_size : int
        Masked inputs built and scored per forward pass. Peak memory is about ``batch_size``
        times one forward pass on one input (its activations dominate), whatever the number of
        channels: lower it for large 3D inputs or big models.
    """

    method = "scorecam"
    needs_gradients = False

    def __init__(self, model: nn.Module, layer: str, *, batch_size: int = 8) -> None:
        super().__init__(model, layer)
        if batch_size < 1:
            raise CamError(f"ScoreCAM: batch_size must be at least 1, found {batch_size}")
        self.batch_size = int(batch_size)

    @torch.no_grad()
    def _compute(self, x, activation, logits, targets):
        activation = activation.detach()
        n_channels = activation.shape[1]
        chunk = self.batch_size
        maps = []
        for sample in range(x.shape[0]):
            acts = activation[sample]  # (K, *S)
            weights = torch.empty(n_channels, dtype=x.dtype, device=x.device)
            for first in range(0, n_channels, chunk):
                masks = upsample(acts[first : first + chunk], x.shape[2:])  # (c, *input)
                flat = masks.flatten(1)
                low, high = flat.min(dim=1).values, flat.max(dim=1).values
                span = torch.where(high > low, high - low, torch.ones_like(high))
                shape = (-1, *([1] * (masks.dim() - 1)))
                masks = torch.where((high > low).reshape(shape), (masks - low.reshape(shape)) / span.reshape(shape), torch.zeros_like(masks))
                masked = x[sample : sample + 1] * masks.unsqueeze(1)  # (c, C, *input)
                del masks
                scores = self.model(masked)
                weights[first : first + chunk] = torch.softmax(scores, dim=1)[:, targets[sample]]
                del masked, scores
            maps.append((weights.reshape(-1, *([1] * (acts.dim() - 1))) * acts).sum(dim=0))
        return torch.stack(maps)
