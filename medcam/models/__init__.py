"""GAP lesion classifiers and their checkpoints."""

from medcam.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from medcam.models.gap_classifier import ClassifierConfig, GapClassifier

__all__ = ["Checkpoint", "ClassifierConfig", "GapClassifier", "load_checkpoint", "save_checkpoint"]
