"""Explicit, separate normalisation of raw maps (medcam never normalises behind your back)."""

from __future__ import annotations

import torch

__all__ = ["normalize"]


def normalize(cam: torch.Tensor, *, clip_negative: bool = True, eps: float = 1e-12) -> torch.Tensor:
    """Scale each sample's map ``(N, *spatial)`` to [0, 1]; high stays high (never inverted).

    With ``clip_negative`` (the papers' ReLU) negative evidence becomes 0 and the map is
    divided by its maximum; otherwise it is min-max scaled. A map with no positive range
    becomes all zeros.
    """
    flat = cam.flatten(1)
    if clip_negative:
        flat = flat.clamp(min=0)
        low = torch.zeros(flat.shape[0], 1, dtype=flat.dtype, device=flat.device)
    else:
        low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    scaled = torch.where(span > eps, (flat - low) / span.clamp(min=eps), torch.zeros_like(flat))
    return scaled.reshape(cam.shape)
