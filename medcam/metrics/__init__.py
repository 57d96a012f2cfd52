"""Metrics: classification (ROC AUC, sensitivity, ...); localisation and faithfulness to come."""

from medcam.metrics.classification import ClassificationMetrics, classification_metrics, roc_auc

__all__ = ["ClassificationMetrics", "classification_metrics", "roc_auc"]
