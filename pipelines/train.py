"""Train the bundled models on the project's own synthetic data (the exact commands are in
sample_data/README.md and benchmarks/RESULTS.md):

    python pipelines/train.py ct3d sample_data/models/ct3d.pt
    python pipelines/train.py cr2d sample_data/models/cr2d.pt

Composed only of library calls: :func:`medcam.models.recipes.train_synthetic_task`.
"""

import argparse
import time

from medcam.models.recipes import train_synthetic_task


def main() -> None:
    parser = argparse.ArgumentParser(description="Train a bundled medcam model on synthetic data.")
    parser.add_argument("task", choices=["ct3d", "cr2d"])
    parser.add_argument("out")
    parser.add_argument("--n-pairs", type=int, default=700)
    parser.add_argument("--crop-epochs", type=int, help="default: the task's recipe (medcam.models.recipes.TASK_RECIPES)")
    parser.add_argument("--epochs", type=int, help="default: the task's recipe")
    parser.add_argument("--localisation-weight", type=float, help="default: the task's recipe")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    result = train_synthetic_task(
        args.task, args.out, n_pairs=args.n_pairs, crop_epochs=args.crop_epochs, epochs=args.epochs, seed=args.seed,
        localisation_weight=args.localisation_weight,
        log=lambda line: print(line, flush=True),
    )
    print(f"best epoch {result.best_epoch}: {result.best_metrics}")
    print(f"wall time including data generation: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
