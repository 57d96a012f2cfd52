"""Class Activation Maps: exact CAM for GAP classifiers, the Grad-CAM family and Score-CAM, 2D and 3D.

>>> with create_extractor("gradcam", model) as extractor:   # doctest: +SKIP
...     result = extractor(x, target=1)
"""

from medcam.cam.base import CamExtractor, CamResult
from medcam.cam.cam import CAM
from medcam.cam.gradient import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from medcam.cam.head import GapHead, check_exact, find_gap_head
from medcam.cam.normalize import normalize
from medcam.cam.registry import METHODS, CamMethod, create_extractor, default_layer
from medcam.cam.score import ScoreCAM
from medcam.errors import CamError

__all__ = [
    "CAM",
    "METHODS",
    "CamError",
    "CamExtractor",
    "CamMethod",
    "CamResult",
    "GapHead",
    "GradCAM",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "ScoreCAM",
    "XGradCAM",
    "check_exact",
    "create_extractor",
    "find_gap_head",
    "default_layer",
    "normalize",
]
