"""What a classifier's maps do on its validation set: hit rate and energy in the lesion masks, and
how much of the evidence lies in the foreground (the body, not the air around it)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["foreground", "validation_localisation"]


def foreground(image: torch.Tensor, *, fraction: float = 0.05) -> torch.Tensor:
    """Voxels of a model input ``(1, *spatial)`` that differ from its background, the median of its
    outer faces (air, or padding), by more than ``fraction`` of its 1st-99th percentile range."""
    values = image[0].float()
    faces = torch.cat([values.movedim(axis, 0)[index].reshape(-1) for axis in range(values.dim()) for index in (0, -1)])
    background = faces.median()
    sample = values.reshape(-1)[:: max(1, values.numel() // 200_000)]
    low, high = torch.quantile(sample, torch.tensor([0.01, 0.99]))
    return ((values - background).abs() > fraction * float(high - low))[None]


@torch.no_grad()
def validation_localisation(model, images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor | None, *,
                            target: int = 1, batch_size: int = 8) -> dict[str, float]:
    """CAM of class ``target`` (relative to the mean class) on every validation case, on the model
    grid: the hit rate and energy in the lesion masks of the positives (when masks are given) and,
    over every case, the share of the positive evidence inside the :func:`foreground`."""
    from medcam.cam.base import upsample

    was_training = model.training
    model.eval()
    weights = model.classifier.weight
    relative = weights[target] - weights.mean(dim=0)
    hits, energies, inside = [], [], []
    try:
        for first in range(0, len(images), batch_size):
            x = images[first : first + batch_size].float()
            _, features = model.forward_with_features(x)
            evidence = upsample(torch.einsum("k,nk...->n...", relative, features), x.shape[2:])
            for offset in range(len(x)):
                index = first + offset
                positive = torch.relu(evidence[offset])
                total = float(positive.sum())
                if total > 0:
                    inside.append(float(positive[foreground(x[offset])[0]].sum()) / total)
                if masks is not None and int(labels[index]) == target and bool(masks[index].any()):
                    lesion = masks[index, 0]
                    hits.append(float(lesion.reshape(-1)[int(torch.argmax(evidence[offset]))]))
                    energies.append(float(positive[lesion].sum()) / total if total > 0 else 0.0)
    finally:
        model.train(was_training)
    found = {"evidence_in_foreground": float(np.mean(inside)) if inside else float("nan")}
    if hits:
        found.update(hit_rate=float(np.mean(hits)), energy=float(np.mean(energies)), positives=len(hits))
    return found
