"""Metrics: classification (ROC AUC, sensitivity, ...), localisation (pointing game, energy, IoU/Dice),
faithfulness (deletion/insertion), the randomisation sanity check, and the evaluation of a cohort
that scores them per CAM method (:mod:`medcam.metrics.evaluation`, imported on its own: it explains)."""

from medcam.metrics.classification import ClassificationMetrics, classification_metrics, roc_auc

__all__ = ["ClassificationMetrics", "classification_metrics", "roc_auc"]
