"""CAM methods by name, for the command line and the pipelines."""

from __future__ import annotations

from enum import Enum

from torch import nn

from medcam.cam.base import CamExtractor
from medcam.cam.cam import CAM
from medcam.cam.gradient import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from medcam.cam.score import ScoreCAM
from medcam.errors import CamError

__all__ = ["CamMethod", "METHODS", "create_extractor", "default_layer"]


class CamMethod(str, Enum):  # noqa: UP042 (a StrEnum would print differently in messages)
    """The methods medcam implements; the value is the name used on the command line."""

    CAM = "cam"
    GRADCAM = "gradcam"
    GRADCAM_PLUS_PLUS = "gradcam++"
    XGRADCAM = "xgradcam"
    LAYERCAM = "layercam"
    HIRESCAM = "hirescam"
    SCORECAM = "scorecam"

    @classmethod
    def from_name(cls, name: str | CamMethod) -> CamMethod:
        """The method named ``name`` (any case); a CamError naming the valid methods for another name."""
        try:
            return cls(str(name.value if isinstance(name, CamMethod) else name).lower())
        except ValueError:
            raise CamError(f"unknown CAM method {name!r}; valid methods: {', '.join(m.value for m in cls)}") from None


METHODS: dict[CamMethod, type[CamExtractor]] = {
    CamMethod.CAM: CAM,
    CamMethod.GRADCAM: GradCAM,
    CamMethod.GRADCAM_PLUS_PLUS: GradCAMPlusPlus,
    CamMethod.XGRADCAM: XGradCAM,
    CamMethod.LAYERCAM: LayerCAM,
    CamMethod.HIRESCAM: HiResCAM,
    CamMethod.SCORECAM: ScoreCAM,
}


def default_layer(model: nn.Module) -> str:
    """``"features"`` for models that have it (GapClassifier); otherwise the caller must name one."""
    if "features" in dict(model.named_modules()):
        return "features"
    raise CamError(
        f"{type(model).__name__} has no 'features' layer: name the target layer, or find the layer that feeds "
        "global average pooling with medcam.cam.find_gap_head(model, x)"
    )


def create_extractor(method: str | CamMethod, model: nn.Module, layer: str | None = None, *,
                     fc_layer: str | None = None, **options) -> CamExtractor:
    """An extractor for ``method`` on ``model`` (use it as a context manager). ``fc_layer``
    names CAM's linear layer (default ``"classifier"``); the other methods need none."""
    cls = METHODS[CamMethod.from_name(method)]
    if cls is CAM and fc_layer is not None:
        options["fc"] = fc_layer
    return cls(model, layer or default_layer(model), **options)
