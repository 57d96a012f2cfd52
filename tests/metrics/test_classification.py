import numpy as np
import pytest

from medcam.metrics import classification_metrics, roc_auc


def test_roc_auc_hand_computed():
    # pairs (pos, neg): (0.35 > 0.1), (0.35 < 0.4), (0.8 > 0.1), (0.8 > 0.4): 3 of 4
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5  # a tie counts one half
    assert roc_auc(np.array([1, 1, 0]), np.array([0.9, 0.8, 0.1])) == 1.0
    with pytest.raises(ValueError, match="needs both classes"):
        roc_auc(np.array([1, 1]), np.array([0.2, 0.3]))


def test_roc_auc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.normal(labels, 1.0), 1)  # rounding makes ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairwise = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert roc_auc(labels, scores) == pytest.approx(pairwise)


def test_threshold_metrics():
    metrics = classification_metrics(np.array([1, 1, 1, 0, 0]), np.array([0.9, 0.6, 0.2, 0.7, 0.1]))
    assert metrics.sensitivity == pytest.approx(2 / 3) and metrics.specificity == pytest.approx(1 / 2)
    assert metrics.accuracy == pytest.approx(3 / 5) and metrics.n == 5 and metrics.n_positive == 3
    assert "AUC" in str(metrics)
