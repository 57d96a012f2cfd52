"""Measure a checkpoint on a fresh held-out synthetic set (a seed not used in training):

    python pipelines/evaluate_classifier.py sample_data/models/ct3d.pt --task ct3d --n 200 --seed 9001

Prints ROC AUC, accuracy, sensitivity and specificity, and the AUC on the small/faint half.
"""

import argparse

import numpy as np

from medcam.metrics import classification_metrics, roc_auc
from medcam.models import load_checkpoint
from medcam.models.training import predict_probabilities
from medcam.models.training_data import make_synthetic_data
from medcam.synthetic.tasks import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description="Evaluate a checkpoint on held-out synthetic studies.")
    parser.add_argument("checkpoint")
    parser.add_argument("--task", required=True, choices=["ct3d", "cr2d"])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=9001)
    args = parser.parse_args()
    checkpoint = load_checkpoint(args.checkpoint)
    training_seed = checkpoint.metadata.get("training", {}).get("train", {}).get("seed")
    if training_seed is not None and args.seed in (training_seed, training_seed + 1):
        raise SystemExit(f"seed {args.seed} was used in training or validation; pick another")
    data = make_synthetic_data(args.task, args.n, args.seed, checkpoint.preprocess_config)
    probabilities = predict_probabilities(checkpoint.model, data.images)[:, 1]
    labels = data.labels.numpy() == 1
    print(f"{args.checkpoint} on {args.n} held-out {args.task} studies (seed {args.seed}):")
    print(f"  {classification_metrics(labels, probabilities)}")
    task = get_task(args.task)
    # the hardest positives: every lesion at most the median size and contrast of the task's range
    hard = []
    for index in np.flatnonzero(labels):
        lesions = task.study(int(index), args.seed).lesions
        small = all(lesion.radii_mm.mean() <= np.mean(task.radius_range) for lesion in lesions)
        faint = all(abs(lesion.contrast) <= np.mean(task.contrast_range) for lesion in lesions)
        hard.append(small or faint)
    hard_index = np.flatnonzero(labels)[np.asarray(hard, bool)]
    subset = np.concatenate([hard_index, np.flatnonzero(~labels)])
    print(f"  small or faint lesions only ({len(hard_index)} positives vs all negatives): "
          f"AUC {roc_auc(labels[subset], probabilities[subset]):.4f}")


if __name__ == "__main__":
    main()
