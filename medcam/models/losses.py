"""The localisation loss of training with lesion masks, and the centring of the linear layer it
goes with."""

from __future__ import annotations

import torch
from torch import nn

from medcam.models.gap_classifier import GapClassifier

__all__ = ["localisation_penalty", "centre_classifier"]


def localisation_penalty(
    model: GapClassifier, features: torch.Tensor, masks: torch.Tensor, *, target: int = 1, margin_cells: int = 1
) -> torch.Tensor:
    """Mean over samples and feature cells of the CAM evidence for class ``target`` that lies
    outside the lesion, of either sign: ``mean |M| * (1 - A)``, with
    ``M = sum_k (w[target, k] - mean_c w[c, k]) F_k`` the evidence relative to the mean class
    (what the softmax sees, so it cannot be moved into another class's map; see
    :func:`centre_classifier`).

    ``A`` marks the feature cells that hold at least one lesion voxel of ``masks`` (the model
    grid max-pooled by the model's stride), and their neighbours up to ``margin_cells`` away
    (the lesion's rim and the receptive field's blur). The penalty is in logit units: the part of the
    target's score that comes from cells without lesion. For a study without lesions every cell
    counts (the multiple-instance assumption: a study is positive because of some region).
    Negative evidence counts too: were it free, a network can make all anatomy negative and
    leave its maximum in the air around the patient, a map whose peak means nothing.
    """
    stride = model.config.stride
    pool = nn.functional.max_pool3d if masks.dim() == 5 else nn.functional.max_pool2d
    allowed = pool(masks.float(), kernel_size=stride, stride=stride, ceil_mode=True)
    if margin_cells:
        allowed = pool(allowed, kernel_size=2 * margin_cells + 1, stride=1, padding=margin_cells)
    crop: tuple[slice | int, ...] = (slice(None), 0, *[slice(0, n) for n in features.shape[2:]])
    allowed = allowed[crop]
    weights = model.classifier.weight
    evidence = torch.einsum("k,nk...->n...", weights[target] - weights.mean(dim=0), features)
    return (evidence.abs() * (1.0 - allowed)).mean()


@torch.no_grad()
def centre_classifier(model: GapClassifier) -> None:
    """Subtract the mean over classes from the linear layer's weights and biases, in place.

    The softmax is unchanged (every logit of a sample moves by the same amount), so predictions
    are exactly the same; what changes is that each class's CAM becomes its evidence relative to
    the mean class, instead of carrying an arbitrary share that cancels in the softmax. For two
    classes, the lesion class's map is then half the logit difference's.
    """
    model.classifier.weight.sub_(model.classifier.weight.mean(dim=0, keepdim=True))
    model.classifier.bias.sub_(model.classifier.bias.mean())
