"""Training on a cohort made from real anatomy, measured on held-out cases of the same generator.

    python benchmarks/bench_training.py --n-train 240 --n-test 48            # with masks, then labels only
    python benchmarks/bench_training.py --modes masks --n-train 40 --n-test 16 --crop-epochs 4 --epochs 2

The cohort is :func:`medcam.synthetic.anatomy.brain_mr_case` (nilearn's MNI152 T1 head under random
rigid poses, scanner grids of random plane, axis order and direction, 1-2 mm pixels, 3-5 mm
slices, bias field, noise; 6-20 mm hyper- or hypo-intense lesions in half the cases), written to
NIfTI files with a manifest, as a research group would have it; a quarter of the masks lie on a
grid of their own. Training uses seed ``--seed``; the held-out cases are drawn with another seed.
Each mode trains with ``medcam.models.recipes.train_manifest`` (the command line's recipe), then
every held-out case is explained with exact CAM of the lesion class: classification AUC, CAM hit
rate (the map's peak inside the lesion mask), energy in the mask and peak distance, with 95%
bootstrap intervals. The generator and its seeds are the record: the cohort is not kept.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def held_out_scores(checkpoint: Path, n: int, seed: int) -> dict:
    from medcam.explanation import explain
    from medcam.metrics.classification import roc_auc
    from medcam.metrics.evaluation import bootstrap_ci
    from medcam.metrics.localisation import localisation_scores
    from medcam.models import load_model
    from medcam.synthetic.anatomy import brain_mr_case

    model = load_model(checkpoint)
    labels, probabilities, hits, energies, distances, diameters = [], [], [], [], [], []
    for index in range(n):
        case = brain_mr_case(index, seed)
        explanation = explain(model, case.to_study(f"test{index}"), method="cam", target=1)
        labels.append(case.label)
        probabilities.append(explanation.probability)
        diameters.append(max((lesion.diameter_mm for lesion in case.lesions), default=0.0))
        if case.label:
            scores = localisation_scores(explanation.heatmap, case.mask, np.array([lesion.center_ras for lesion in case.lesions]))
            hits.append(float(scores.hit))
            energies.append(float(scores.energy))
            distances.append(float(scores.peak_distance_mm))
    labels_array, probabilities_array = np.array(labels), np.array(probabilities)
    rng = np.random.default_rng(0)
    aucs = []
    for _ in range(2000):
        pick = rng.integers(0, n, n)
        if 0 < labels_array[pick].sum() < n:
            aucs.append(roc_auc(labels_array[pick] == 1, probabilities_array[pick]))
    diameters_array = np.array(diameters)
    by_size = {}  # AUC of the positives whose largest lesion is in the band, against all negatives
    for low, high in ((6, 10), (10, 15), (15, 20.01)):
        band = (labels_array == 0) | ((diameters_array >= low) & (diameters_array < high))
        if 0 < labels_array[band].sum() < band.sum():
            by_size[f"{low}-{int(high)} mm"] = round(roc_auc(labels_array[band] == 1, probabilities_array[band]), 3)
    return {
        "by_size": by_size,
        "auc": roc_auc(labels_array == 1, probabilities_array), "auc_ci": tuple(np.percentile(aucs, [2.5, 97.5])),
        "hit": bootstrap_ci(hits), "energy": bootstrap_ci(energies), "peak_distance_median": float(np.median(distances)),
        "positives": int(labels_array.sum()), "cases": n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-train", type=int, default=240)
    parser.add_argument("--n-test", type=int, default=48)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--test-seed", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["masks", "labels"], choices=["masks", "labels"])
    parser.add_argument("--spacing", type=float, nargs=3, default=(3.0, 3.0, 3.0))
    parser.add_argument("--size", type=int, nargs=3, default=(64, 72, 64))
    parser.add_argument("--crop-epochs", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--crop-size", type=int, nargs=3, help="lesion-centred crop in model voxels (default: half the grid)")
    parser.add_argument("--localisation-weight", type=float, help="default: the recipe's")
    parser.add_argument("--stem-stride", type=int, default=2)
    parser.add_argument("--work", type=Path,
                        help="folder for the cohort and checkpoints (default: a temporary one); a cohort written there before is reused")
    args = parser.parse_args()

    from medcam.models.recipes import manifest_configs, train_manifest

    # the command line's manifest model: stages of 16, 32, 64 channels, one pooling, the fine head
    preprocess_config, model_config = manifest_configs(3, args.spacing, args.size, ("no lesion", "lesion"),
                                                       intensity="robust_zscore", stem_stride=args.stem_stride)
    with tempfile.TemporaryDirectory(prefix="medcam-bench-training-") as scratch:
        work = args.work or Path(scratch)
        results = {}
        start = time.perf_counter()
        cohort = work / "cohort"
        if args.work is not None and (cohort / "with_masks.csv").is_file():  # a cohort this command wrote before
            manifests = {"masks": cohort / "with_masks.csv", "labels": cohort / "labels_only.csv"}
        else:
            from medcam.synthetic.anatomy import write_brain_mr_cohort

            manifests = dict(zip(("masks", "labels"), write_brain_mr_cohort(cohort, args.n_train, args.seed)))
        written = time.perf_counter() - start
        print(f"cohort of {args.n_train} written in {written:.0f} s", flush=True)
        for mode in args.modes:
            start = time.perf_counter()
            manifest = manifests[mode]
            result = train_manifest(
                manifest, work / f"{mode}.pt", preprocess_config=preprocess_config, model_config=model_config,
                class_names=("no lesion", "lesion"), seed=args.seed, crop_epochs=args.crop_epochs if mode == "masks" else 0, crop_size=args.crop_size,
                epochs=args.epochs, localisation_weight=args.localisation_weight if mode == "masks" else None, modalities=("MR",), log=lambda line: print(f"  [{mode}] {line}", flush=True),
            )
            trained = time.perf_counter() - start
            scores = held_out_scores(result.checkpoint, args.n_test, args.test_seed)
            results[mode] = (scores, trained)
            print(f"{mode}: trained in {trained:.0f} s (reading the cohort included), held out "
                  f"{time.perf_counter() - start - trained:.0f} s: {_row(mode, scores, trained)}; AUC by largest lesion {scores['by_size']}",
                  flush=True)
        print(f"\n{args.n_train} training cases (seed {args.seed}, 20% of them for validation), {args.n_test} held out "
              f"(seed {args.test_seed}); model grid {tuple(args.size)} at {tuple(args.spacing)} mm")
        print("| training | held-out AUC [95% CI] | CAM hit rate [95% CI] | energy in mask | median peak distance mm | train time |")
        print("| --- | --- | --- | --- | --- | --- |")
        for mode, (scores, trained) in results.items():
            print(_row(mode, scores, trained))


def _row(mode: str, s: dict, trained: float) -> str:
    return (f"| {mode} | {s['auc']:.3f} [{s['auc_ci'][0]:.3f}, {s['auc_ci'][1]:.3f}] "
            f"| {s['hit'][0]:.2f} [{s['hit'][1]:.2f}, {s['hit'][2]:.2f}] ({s['positives']} positives) "
            f"| {s['energy'][0]:.3f} | {s['peak_distance_median']:.1f} | {trained / 60:.1f} min |")


if __name__ == "__main__":
    main()
