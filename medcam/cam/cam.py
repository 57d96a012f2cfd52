"""CAM (Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016).

For a network whose last feature maps ``F`` ``(N, K, *S)`` feed global average pooling and one
linear layer ``(W, b)``, the score of class ``c`` is ``y_c = b_c + sum_k W[c, k] mean_s F_k(s)``,
so ``M_c(s) = sum_k W[c, k] F_k(s)`` decomposes it exactly: ``mean_s M_c(s) + b_c = y_c``.
One forward pass, no gradients, no hooks when the model returns its features
(:class:`medcam.models.GapClassifier`). Any other network with such a head works through a
hook on its feature layer; :func:`medcam.cam.find_gap_head` finds both layers. The
decomposition is checked on every call: a layer that does not feed the pooling directly is
refused rather than giving an inexact map. With ``include_bias=True`` the map is ``M_c + b_c``,
whose spatial mean is the logit itself. The bias is left out by default, as in the paper: it
shifts every position equally and says nothing about where.
"""

from __future__ import annotations

from torch import nn

from medcam.cam.base import CamExtractor, resolve_layer, weighted_sum
from medcam.cam.head import check_exact
from medcam.errors import CamError

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
        Name of the feature layer; defaults to ``"features"`` (a GapClassifier's).
    fc : str
        Name of the linear layer; defaults to ``"classifier"`` (a GapClassifier's).
    """

    method = "cam"
    needs_gradients = False

    def __init__(self, model: nn.Module, layer: str = "features", *, fc: str = "classifier", include_bias: bool = False) -> None:
        super().__init__(model, layer)
        linear = resolve_layer(model, fc)
        if not isinstance(linear, nn.Linear):
            raise CamError(
                f"CAM needs the linear layer after global average pooling: {fc!r} is {type(linear).__name__} "
                f"in {type(model).__name__}; use a gradient method (gradcam, hirescam...) for other architectures"
            )
        self.fc = linear
        self.fc_name = fc
        self.include_bias = include_bias
        self._hook_free = hasattr(model, "forward_with_features") and layer == "features"

    @property
    def uses_hook(self) -> bool:  # type: ignore[override]
        """Whether a forward hook captures the activations: not for a medcam GapClassifier's own feature layer."""
        return not self._hook_free

    def _forward(self, x):
        if self._hook_free:
            return self.model.forward_with_features(x)
        return super()._forward(x)

    def _compute(self, x, activation, logits, targets):
        weights = self.fc.weight[targets]  # (N, K)
        if activation.dim() < 3 or weights.shape[1] != activation.shape[1]:
            raise CamError(
                f"the linear layer {self.fc_name!r} takes {weights.shape[1]} inputs but layer {self.layer_name!r} "
                f"gives shape {tuple(activation.shape)}"
            )
        cam = weighted_sum(weights, activation)
        check_exact(cam, self.fc.bias, logits, targets, self.layer_name, self.fc_name)
        if self.include_bias and self.fc.bias is not None:
            cam = cam + self.fc.bias[targets].reshape(-1, *([1] * (activation.dim() - 2)))
        return cam
