"""The Grad-CAM family: maps from the target layer's activation ``A`` ``(N, K, *S)`` and the gradient
``G = dy_c / dA`` of the target class score. Raw maps: no ReLU, no normalisation (the papers
rectify; use :func:`medcam.cam.normalize` for that).
"""

from __future__ import annotations

import torch

from medcam.cam.base import CamExtractor, weighted_sum

__all__ = ["GradCAM", "GradCAMPlusPlus", "XGradCAM", "LayerCAM", "HiResCAM"]


def _spatial_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over spatial axes, keeping them as size 1: ``(N, K, *S) -> (N, K, 1, ...)``."""
    return t.sum(dim=tuple(range(2, t.dim())), keepdim=True)


class _GradientMethod(CamExtractor):
    def _compute(self, x, activation, logits, targets):
        grads = self._gradients(activation, logits, targets)
        return self._combine(activation.detach(), grads)

    def _combine(self, activation: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class GradCAM(_GradientMethod):
    """Grad-CAM (Selvaraju et al., ICCV 2017).

    ``alpha_k = mean_s G_k(s)``;  ``M(s) = sum_k alpha_k A_k(s)``.
    For a GAP + linear model ``alpha_k = w[c, k] / |S|``, so Grad-CAM is CAM divided by ``|S|``.
    """

    method = "gradcam"

    def _combine(self, activation, grads):
        n_positions = activation[0, 0].numel()
        return weighted_sum(_spatial_sum(grads) / n_positions, activation)


class GradCAMPlusPlus(_GradientMethod):
    """Grad-CAM++ (Chattopadhay et al., WACV 2018), with the usual closed form for the alphas.

    ``a_k(s) = G_k(s)^2 / (2 G_k(s)^2 + sum_t A_k(t) G_k(s)^3)``;
    ``w_k = sum_s a_k(s) ReLU(G_k(s))``;  ``M(s) = sum_k w_k A_k(s)``.
    (The paper's exp(score) factor is one positive number per sample and is left out.)
    """

    method = "gradcam++"

    def _combine(self, activation, grads):
        # in place where possible: these are full-size (N, K, *S) tensors
        grads2 = grads * grads
        denominator = (grads2 * grads).mul_(_spatial_sum(activation)).add_(grads2, alpha=2.0)
        denominator.masked_fill_(denominator == 0, 1.0)
        alpha = grads2.div_(denominator)
        weights = _spatial_sum(alpha.mul_(grads.clamp(min=0)))
        return weighted_sum(weights, activation)


class XGradCAM(_GradientMethod):
    """XGrad-CAM (Fu et al., BMVC 2020).

    ``w_k = sum_s (A_k(s) / sum_t A_k(t)) G_k(s)``;  ``M(s) = sum_k w_k A_k(s)``.
    """

    method = "xgradcam"

    def _combine(self, activation, grads):
        total = _spatial_sum(activation)
        total = torch.where(total != 0, total, torch.ones_like(total))
        weights = _spatial_sum(activation / total * grads)
        return weighted_sum(weights, activation)


class LayerCAM(_GradientMethod):
    """LayerCAM (Jiang et al., IEEE TIP 2021).  ``M(s) = sum_k ReLU(G_k(s)) A_k(s)``."""

    method = "layercam"

    def _combine(self, activation, grads):
        return (torch.relu(grads) * activation).sum(dim=1)


class HiResCAM(_GradientMethod):
    """HiResCAM (Draelos & Carin, 2020).  ``M(s) = sum_k G_k(s) A_k(s)``.

    For a GAP + linear model it equals CAM divided by ``|S|``, position by position.
    """

    method = "hirescam"

    def _combine(self, activation, grads):
        return (grads * activation).sum(dim=1)
