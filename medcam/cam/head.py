"""Find the global-average-pooling + linear head of any classifier, by watching one forward pass.

Exact CAM needs two layers: the one whose output ``F`` ``(N, K, *S)`` is averaged over space, and
the linear layer ``(W, b)`` that turns the average into the logits. Names differ from network to
network (MONAI DenseNet: ``class_layers.relu`` and ``class_layers.out``; ResNet: ``layer4`` and
``fc``; SEResNet: ``layer4`` and ``last_linear``; EfficientNetBN: ``_swish`` and ``_fc``), and the
obvious name can be wrong: MONAI DenseNet's ``features`` ends at ``norm5``, *before* the ReLU that
precedes the pooling, so CAM from it is not the score decomposition. So the head is found from
what the layers compute, not from their names:

1. the linear layer is the last ``nn.Linear`` whose output is the model's output (the logits);
2. the feature layer is the last module to finish before it whose output has K channels, more
   than one spatial position, and a spatial mean equal to that linear layer's input.

The means are taken inside the hooks, before any later in-place operation can change the
tensors. The result is then checked once more on the same pass: ``mean_s sum_k W[c, k] F_k(s) +
b_c`` must equal every logit (:func:`check_exact`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medcam.errors import CamError

__all__ = ["GapHead", "find_gap_head", "check_exact"]


@dataclass(frozen=True)
class GapHead:
    """Names (as in ``model.named_modules()``) of the feature layer and of the linear layer."""

    feature_layer: str
    fc_layer: str


def _spatial_mean(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().flatten(2).double().mean(dim=2)


def find_gap_head(model: nn.Module, x: torch.Tensor) -> GapHead:
    """The GAP + linear head of ``model``, found on the forward pass of ``x`` ``(N, C, *spatial)``.

    The model is run in eval mode without gradients and left in the mode it was in.

    Raises
    ------
    CamError
        No linear layer produces the logits, or no layer's output averages to its input.
    """
    events: list[tuple[str, nn.Module, Any]] = []  # a Linear's output, a feature map's (channels, mean), or None
    linear_inputs: dict[int, torch.Tensor] = {}

    def record(name: str):
        def hook(module, inputs, output):
            if isinstance(module, nn.Linear) and inputs and isinstance(inputs[0], torch.Tensor):
                linear_inputs[len(events)] = inputs[0].detach().double().clone()
                events.append((name, module, output.detach().clone() if isinstance(output, torch.Tensor) else None))
            elif isinstance(output, torch.Tensor) and output.dim() >= 3 and output.shape[2:].numel() > 1:
                events.append((name, module, (output.shape[1], _spatial_mean(output))))
            else:
                events.append((name, module, None))
        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in model.named_modules() if name]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise CamError(f"{type(model).__name__} must return logits (N, classes), found {getattr(logits, 'shape', type(logits).__name__)}")
    fc_index = next(
        (i for i in range(len(events) - 1, -1, -1)
         if i in linear_inputs and events[i][2] is not None and events[i][2].shape == logits.shape
         and torch.allclose(events[i][2], logits.detach(), rtol=1e-5, atol=1e-6)),
        None,
    )
    if fc_index is None:
        raise CamError(
            f"{type(model).__name__} has no linear layer that produces its logits: exact CAM needs a global average "
            "pooling + linear head; use a gradient method (gradcam, hirescam...) with layer=..."
        )
    pooled = linear_inputs[fc_index]
    if pooled.dim() != 2:
        raise CamError(f"the linear layer {events[fc_index][0]!r} takes input of shape {tuple(pooled.shape)}, not (N, channels)")
    scale = float(pooled.abs().max()) or 1.0
    for name, _, seen in reversed(events[:fc_index]):
        if isinstance(seen, tuple) and seen[0] == pooled.shape[1]:
            if torch.allclose(seen[1], pooled, rtol=1e-4, atol=1e-5 * scale):
                return GapHead(name, events[fc_index][0])
    raise CamError(
        f"{type(model).__name__}: no layer's output averages to the input of its linear layer {events[fc_index][0]!r}, "
        "so its head is not global average pooling + linear (or the pooling follows an operation that is not a "
        "module); exact CAM is not possible: use a gradient method (gradcam, hirescam...) with layer=..."
    )


def check_exact(cam: torch.Tensor, bias: torch.Tensor | None, logits: torch.Tensor, targets: torch.Tensor,
                layer: str, fc: str) -> None:
    """Refuse a CAM whose spatial mean plus bias is not the logit it explains (mean map + bias = logit)."""
    mean = cam.detach().flatten(1).double().mean(dim=1)
    if bias is not None:
        mean = mean + bias.detach().double()[targets]
    logit = logits.detach().double().gather(1, targets[:, None])[:, 0]
    tolerance = 1e-3 * max(1.0, float(logits.detach().abs().max()))
    worst = int(torch.argmax((mean - logit).abs()))
    if float((mean - logit).abs()[worst]) > tolerance:
        raise CamError(
            f"CAM from layer {layer!r} is not exact: mean map + bias = {float(mean[worst]):.5g} but the logit is "
            f"{float(logit[worst]):.5g}; {layer!r} does not feed global average pooling and {fc!r} directly. "
            "Leave the layer unset to let medcam find the head, or use a gradient method"
        )
