"""CAM (Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016).

For a network whose last feature maps ``F`` (N, K, *S) feed global average pooling and one
linear layer ``(W, b)``, the score of class ``c`` is ``y_c = b_c + sum_k W[c, k] mean_s F_k(s)``,
so ``M_c(s) = sum_k W[c, k] F_k(s)`` decomposes it exactly: ``mean_s M_c(s) + b_c = y_c``.
One forward pass, no gradients, no hooks when the model returns its features
(:class:`medcam.models.GapClassifier`). With ``include_bias=True`` the map is ``M_c + b_c``,
whose spatial mean is the logit itself. The bias is left out by default, as in the paper: it
shifts every position equally and says nothing about where.
"""

from __future__ import annotations

from torch import nn

from medcam.cam.base import CamError, CamExtractor, weighted_sum

__all__ = ["CAM"]


class CAM(CamExtractor):
    """Exact CAM for GAP + linear models.

    Parameters
    ----------
    model : nn.Module
        A :class:`GapClassifier` (features returned by ``forward_with_features``: no hook), or
        any model whose layer ``layer`` outputs the maps that are average-pooled into the
        linear layer ``fc``.
    layer : str
        Name of the feature layer; defaults to ``"features"`` for a GapClassifier.
    fc : str
        Name of the linear layer; defaults to ``"classifier"``.
    """

    method = "cam"
    needs_gradients = False

    def __init__(self, model: nn.Module, layer: str = "features", *, fc: str = "classifier", include_bias: bool = False) -> None:
        super().__init__(model, layer)
        linear = dict(model.named_modules()).get(fc)
        if not isinstance(linear, nn.Linear):
            raise CamError(
                f"CAM needs the linear layer after global average pooling: {fc!r} is "
                f"{type(linear).__name__ if linear is not None else 'not a layer'} in {type(model).__name__}; "
                "use a gradient method (gradcam, hirescam...) for other architectures"
            )
        self.fc = linear
        self.include_bias = include_bias
        self._hook_free = hasattr(model, "forward_with_features") and layer == "features"

    @property
    def uses_hook(self) -> bool:  # type: ignore[override]
        return not self._hook_free

    def _forward(self, x):
        if self._hook_free:
            return self.model.forward_with_features(x)
        return super()._forward(x)

    def _compute(self, x, activation, logits, targets):
        weights = self.fc.weight[targets]  # (N, K)
        if weights.shape[1] != activation.shape[1]:
            raise CamError(f"the linear layer takes {weights.shape[1]} inputs but layer {self.layer_name!r} has {activation.shape[1]} channels")
        cam = weighted_sum(weights, activation)
        if self.include_bias and self.fc.bias is not None:
            cam = cam + self.fc.bias[targets].reshape(-1, *([1] * (activation.dim() - 2)))
        return cam
