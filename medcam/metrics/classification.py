"""Binary classification metrics for lesion detection."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata

from medcam.errors import MetricError

__all__ = ["roc_auc", "ClassificationMetrics", "classification_metrics"]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative), ties 1/2.

    Computed with the Mann-Whitney U statistic: ``(R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)``
    where ``R_pos`` is the sum of the positives' mid-ranks.

    >>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=float).ravel()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise MetricError(f"roc_auc needs both classes, found {n_pos} positives and {n_neg} negatives")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass(frozen=True)
class ClassificationMetrics:
    """ROC AUC, accuracy, sensitivity and specificity at a probability threshold, with the case counts."""
    auc: float
    accuracy: float
    sensitivity: float
    specificity: float
    n: int
    n_positive: int
    threshold: float

    def to_dict(self) -> dict:
        """The metrics as JSON-ready values."""
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"AUC {self.auc:.4f}  accuracy {self.accuracy:.3f}  sensitivity {self.sensitivity:.3f}  "
            f"specificity {self.specificity:.3f}  (n={self.n}, {self.n_positive} positive)"
        )


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, *, threshold: float = 0.5) -> ClassificationMetrics:
    """ROC AUC, and accuracy / sensitivity / specificity at ``threshold`` on the positive probability."""
    labels = np.asarray(labels).astype(bool).ravel()
    probabilities = np.asarray(probabilities, dtype=float).ravel()
    predicted = probabilities >= threshold
    positives, negatives = labels.sum(), (~labels).sum()
    return ClassificationMetrics(
        auc=roc_auc(labels, probabilities),
        accuracy=float((predicted == labels).mean()),
        sensitivity=float((predicted & labels).sum() / positives),
        specificity=float((~predicted & ~labels).sum() / negatives),
        n=int(labels.size),
        n_positive=int(positives),
        threshold=threshold,
    )
