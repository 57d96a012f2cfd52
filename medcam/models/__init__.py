"""Models medcam explains: its own GAP classifiers and checkpoints, MONAI Bundles, any nn.Module."""

from medcam.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from medcam.models.explainable import (
    ExplainableModel,
    from_checkpoint,
    from_module,
    load_model,
)
from medcam.models.gap_classifier import ClassifierConfig, GapClassifier
from medcam.models.provenance import ModelProvenance

__all__ = [
    "Checkpoint",
    "ClassifierConfig",
    "ExplainableModel",
    "GapClassifier",
    "ModelProvenance",
    "from_checkpoint",
    "from_module",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
]
