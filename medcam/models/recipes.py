"""The training recipes: the bundled models' on their synthetic tasks (:func:`train_synthetic_task`)
and a user's cohort (:func:`train_manifest`), each a sequence of :func:`~medcam.models.training.train_classifier`
stages with its defaults in one table."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from medcam.errors import TrainingError
from medcam.models.checkpoint import save_checkpoint
from medcam.models.distributed import barrier, current_ranks
from medcam.models.gap_classifier import ClassifierConfig
from medcam.models.training import TrainingConfig, TrainingResult, calibrate_binary, train_classifier, validate
from medcam.models.training_data import (
    TrainingData,
    lesion_centred_crops,
    load_manifest_data,
    make_synthetic_crops,
    make_synthetic_data,
    split_data,
)
from medcam.progress import ProgressCallback
from medcam.transforms import PreprocessConfig

__all__ = ["TASK_DEFAULTS", "TASK_RECIPES", "MANIFEST_RECIPES", "manifest_configs", "train_synthetic_task", "train_manifest"]

logger = logging.getLogger(__name__)


#: Preprocessing, architecture and class names the bundled models use for each synthetic task.
#: Feature maps are 2x (3D: 8 x 8 x 10 mm cells, through the fine head) and 8x (2D: 22 mm cells)
#: coarser than the model input.
TASK_DEFAULTS: dict[str, tuple[PreprocessConfig, ClassifierConfig, tuple[str, str]]] = {
    "ct3d": (
        PreprocessConfig(3, (4.0, 4.0, 5.0), (80, 64, 40), intensity="window", window=(40.0, 400.0)),
        ClassifierConfig(3, channels=(16, 32, 64), convs_per_stage=(1, 2, 2), stem_stride=2, pool_after=(True, False, False),
                         fine_head=16),
        ("no lesion", "lesion"),
    ),
    "cr2d": (
        PreprocessConfig(2, (2.8, 2.8), (128, 128), intensity="percentile", window=None, orientation=None),
        ClassifierConfig(2, channels=(16, 32, 64, 128), convs_per_stage=(1, 2, 2, 2), stem_stride=2,
                         pool_after=(True, True, False, False)),
        ("normal", "nodule"),
    ),
}


#: The training recipe of each bundled model (:func:`train_synthetic_task`'s defaults per task).
#: The 3D model also learns where its evidence may lie (``localisation_weight``, see
#: :func:`localisation_penalty`): its lesion masks come with the synthetic studies.
TASK_RECIPES: dict[str, dict[str, float]] = {
    "ct3d": {"crop_epochs": 14, "epochs": 2, "localisation_weight": 1.0, "localisation_warmup": 6, "batch_norm_samples": 512},
    # batch norm over every training case (0: all), as when cr2d.pt was trained
    "cr2d": {"crop_epochs": 18, "epochs": 4, "localisation_weight": 0.0, "localisation_warmup": 0, "batch_norm_samples": 0},
}


#: The manifest recipe's defaults: with lesion masks, the bundled 3D model's recipe (crops first,
#: with the localisation loss; then whole volumes); with labels only, whole volumes throughout.
#: ``crops`` is how many crops an epoch of the first stage holds at least (several per case on a
#: small cohort): the network must see the lesions some hundred optimizer steps before the
#: localisation loss reaches its full weight, or it learns to say nothing anywhere.
MANIFEST_RECIPES: dict[str, dict[str, float]] = {
    "masks": {"crop_epochs": 20, "epochs": 0, "localisation_weight": 0.5, "localisation_warmup": 10, "crops": 1400,
              "crop_mm": 48.0},
    "labels": {"crop_epochs": 0, "epochs": 40, "localisation_weight": 0.0, "localisation_warmup": 0, "crops": 0,
               "crop_mm": 0.0},
}


def train_synthetic_task(
    task_name: str,
    out: str | Path,
    *,
    n_pairs: int = 700,
    n_val: int = 200,
    seed: int = 0,
    crop_size: Sequence[int] | None = None,
    crop_epochs: int | None = None,
    epochs: int | None = None,
    batch_size: int = 16,
    lr: float = 3e-3,
    localisation_weight: float | None = None,
    progress: ProgressCallback | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainingResult:
    """The recipe of the bundled models: lesion-centred crops first, then whole volumes.

    Stage 1 trains on crops of matched pairs (:func:`make_synthetic_crops`), where the lesion
    is a sizeable part of the input; stage 2 fine-tunes the same network on the whole volumes
    of those pairs, so its scores are calibrated for the input it will see. Validation uses
    ``n_val`` independent studies drawn with ``seed + 1`` (not pairs, not crops).
    ``crop_size`` defaults to half the model input per axis; ``crop_epochs``, ``epochs`` and
    ``localisation_weight`` to the task's :data:`TASK_RECIPES` entry.
    """
    log = log or logger.info  # the caller's logging configuration decides what shows
    preprocess_config, model_config, class_names = TASK_DEFAULTS[task_name]
    recipe = TASK_RECIPES[task_name]
    crop_epochs = int(recipe["crop_epochs"] if crop_epochs is None else crop_epochs)
    epochs = int(recipe["epochs"] if epochs is None else epochs)
    localisation_weight = float(recipe["localisation_weight"] if localisation_weight is None else localisation_weight)
    crop = tuple(crop_size or (max(8, n // 2) for n in preprocess_config.spatial_size))
    from medcam.synthetic.tasks import get_task

    modalities = (get_task(task_name).study(0, seed).modality,)
    crops, volumes = make_synthetic_crops(task_name, n_pairs, seed, preprocess_config, crop, progress=progress)
    val = make_synthetic_data(task_name, n_val, seed + 1, preprocess_config, progress=progress)
    out = Path(out)
    stage_one = out.with_name(out.name + ".crops.partial")
    log(f"stage 1: {len(crops)} lesion-centred crops of {crop} voxels, {crop_epochs} epochs")
    first = train_classifier(
        crops, val, model_config=model_config, preprocess_config=preprocess_config, class_names=class_names,
        out=stage_one, modalities=modalities, progress=progress, log=log,
        config=TrainingConfig(crop_epochs, batch_size, lr, seed, select_by="auc", localisation_weight=localisation_weight,
                              localisation_warmup=min(int(recipe["localisation_warmup"]), max(crop_epochs - 1, 0)),
                              batch_norm_samples=int(recipe["batch_norm_samples"]) or None),
    )
    from medcam.models.checkpoint import load_checkpoint

    state = load_checkpoint(stage_one).model.state_dict()
    barrier()  # every rank has read it
    if current_ranks().main:
        stage_one.unlink()
    log(f"stage 2: {len(volumes)} whole volumes, {epochs} epochs")
    second = train_classifier(
        volumes, val, model_config=model_config, preprocess_config=preprocess_config, class_names=class_names,
        out=out, initial_state=state,
        config=TrainingConfig(epochs, batch_size, lr / 3, seed + 1, localisation_weight=localisation_weight,
                              batch_norm_samples=int(recipe["batch_norm_samples"]) or None),
        extra_summary={"recipe": "crops then whole volumes", "stage1": {"crops": len(crops), "crop_size": list(crop),
                       "epochs": crop_epochs, "best_epoch": first.best_epoch, "seconds": round(first.seconds, 1)}},
        modalities=modalities, progress=progress, log=log,
    )
    second.seconds += first.seconds
    return second


def manifest_configs(
    spatial_dims: int,
    spacing: Sequence[float],
    size: Sequence[int],
    class_names: Sequence[str],
    *,
    intensity: str = "window",
    window: tuple[float, float] = (40.0, 400.0),
    channels: Sequence[int] = (16, 32, 64),
    stem_stride: int = 2,
    pool_after: Sequence[bool] | None = None,
    fine_head: int = 16,
) -> tuple[PreprocessConfig, ClassifierConfig]:
    """The preprocessing and the network of a model trained on a user's cohort (:func:`train_manifest`).

    Parameters
    ----------
    spatial_dims : {2, 3}
        2 for radiographs and single slices (axes kept as stored), 3 for volumes (reoriented to RAS).
    spacing, size : sequence
        The model grid: voxel size in mm and input size in voxels, one per spatial axis.
    class_names : sequence of str
        In label order; the network has one output per class.
    intensity, window : str, (centre, width)
        :class:`~medcam.transforms.PreprocessConfig`'s intensity scaling; ``window`` is used by "window" only.
    channels : sequence of int
        Width of each stage; the first stage has one convolution, the others two.
    stem_stride, fine_head : int
        :class:`~medcam.models.ClassifierConfig`'s.
    pool_after : sequence of bool, optional
        2x pooling after each stage; default: after the first only.

    Raises
    ------
    ConfigError
        A value either configuration refuses (the message lists every problem).
    """
    stages = len(channels)
    preprocess_config = PreprocessConfig(
        spatial_dims, tuple(float(s) for s in spacing), tuple(int(n) for n in size), intensity=intensity,
        window=(float(window[0]), float(window[1])) if intensity == "window" else None, orientation=None if spatial_dims == 2 else "RAS",
    )
    model_config = ClassifierConfig(
        spatial_dims, num_classes=len(class_names), channels=tuple(channels), convs_per_stage=(1,) + (2,) * (stages - 1),
        stem_stride=stem_stride, fine_head=fine_head,
        pool_after=tuple(bool(p) for p in pool_after) if pool_after else (True,) + (False,) * (stages - 1),
    )
    return preprocess_config, model_config


def train_manifest(
    manifest: str | Path,
    out: str | Path,
    *,
    preprocess_config: PreprocessConfig,
    model_config: ClassifierConfig,
    class_names: Sequence[str],
    val_fraction: float = 0.2,
    seed: int = 0,
    crop_size: Sequence[int] | None = None,
    crop_epochs: int | None = None,
    epochs: int | None = None,
    batch_size: int = 16,
    lr: float = 3e-3,
    localisation_weight: float | None = None,
    modalities: Sequence[str] = (),
    progress: ProgressCallback | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainingResult:
    """Train on a user's cohort (:func:`load_manifest_data`), with lesion masks or labels only.

    With a ``mask`` column: ``crop_epochs`` on lesion-centred crops (:func:`lesion_centred_crops`,
    48 mm a side unless ``crop_size`` gives model voxels; several per case on a small cohort)
    with the localisation loss rising over the first epochs and the best epoch chosen by the mean
    of the validation AUC and CAM hit rate (validated on whole volumes); then, with ``epochs`` 0
    (the default), the logit is calibrated to whole volumes (:func:`calibrate_binary`: the maps
    are unchanged), or with ``epochs`` > 0, trained on whole volumes from those weights, chosen by
    validation loss. With labels only, ``epochs`` on whole volumes. Defaults: :data:`MANIFEST_RECIPES`.

    Small crops matter: a lesion of 6-20 mm is a few cells of a crop of half a 200 mm head but a
    large part of a 48 mm crop, and the GAP mean sees it (brain MR cohort, ``benchmarks/RESULTS.md``:
    whole-volume fine-tuning after the crops lost what they had learnt).
    """
    log = log or logger.info  # the caller's logging configuration decides what shows
    data = load_manifest_data(manifest, preprocess_config, class_names, progress=progress)
    train, val = split_data(data, val_fraction, seed)
    num_classes = len(class_names)
    log(f"training on {len(train)} cases {train.counts(num_classes)}, validating on {len(val)} {val.counts(num_classes)}"
        f"{' with lesion masks' if data.masks is not None else ', labels only'}")
    recipe = MANIFEST_RECIPES["masks" if data.masks is not None else "labels"]
    crop_epochs = int(recipe["crop_epochs"] if crop_epochs is None else crop_epochs)
    epochs = int(recipe["epochs"] if epochs is None else epochs)
    weight = float(recipe["localisation_weight"] if localisation_weight is None else localisation_weight)
    if (crop_epochs or weight) and data.masks is None:
        raise TrainingError("lesion-centred crops and the localisation loss need a 'mask' column in the manifest")
    common: dict[str, Any] = dict(model_config=model_config, preprocess_config=preprocess_config, class_names=class_names,
                                  modalities=modalities, progress=progress, log=log)
    out = Path(out)
    extra: dict[str, Any] = {"recipe": "whole volumes"}
    state, first = None, None
    if crop_epochs:
        crop = tuple(crop_size or (min(n, max(8, round(recipe["crop_mm"] / s)))
                                   for n, s in zip(preprocess_config.spatial_size, preprocess_config.spacing)))
        crops = lesion_centred_crops(train, crop, seed, per_case=max(1, -(-int(recipe["crops"] or 1) // len(train))))
        warmup = min(int(recipe["localisation_warmup"]), crop_epochs - 1) if weight else 0
        stage_one = out.with_name(out.name + ".crops.partial")
        log(f"stage 1: {len(crops)} lesion-centred crops of {crop} voxels, {crop_epochs} epochs")
        first = train_classifier(crops, val, out=stage_one, **common,
                                 config=TrainingConfig(crop_epochs, batch_size, lr, seed, select_by="auc+hit",
                                                       localisation_weight=weight, localisation_warmup=warmup))
        from medcam.models.checkpoint import load_checkpoint

        state = load_checkpoint(stage_one).model.state_dict()
        barrier()  # every rank has read it
        if current_ranks().main and epochs:
            stage_one.unlink()
        extra = {"recipe": "crops then whole volumes", "stage1": {"crops": len(crops), "crop_size": list(crop),
                 "epochs": crop_epochs, "best_epoch": first.best_epoch, "seconds": round(first.seconds, 1)}}
        if not epochs:
            return _calibrated(stage_one, out, train, val, first, extra, batch_size=batch_size, log=log)
        log(f"stage 2: {len(train)} whole volumes, {epochs} epochs")
    config = TrainingConfig(epochs, batch_size, lr / 3 if state is not None else lr, seed + 1, localisation_weight=weight)
    result = train_classifier(train, val, out=out, initial_state=state, extra_summary=extra, config=config, **common)
    if first is not None:
        result.seconds += first.seconds
    return result


def _calibrated(stage_one: Path, out: Path, train: TrainingData, val: TrainingData, first: TrainingResult,
                extra: dict[str, Any], *, batch_size: int, log: Callable[[str], None]) -> TrainingResult:
    """The crop stage's checkpoint with its logit calibrated on the whole training volumes
    (:func:`calibrate_binary`), validated again and written to ``out`` (rank 0; the others wait)."""
    from medcam.models.checkpoint import load_checkpoint

    start, metrics = time.perf_counter(), None
    if current_ranks().main:
        checkpoint = load_checkpoint(stage_one)
        model = checkpoint.model
        a, b = calibrate_binary(model, train.images, train.labels, batch_size=batch_size)
        metrics, val_loss, localisation = validate(model, val)
        training = {**checkpoint.metadata.get("training", {}), **extra,
                    "recipe": "crops, then the logit calibrated on whole volumes"}
        training["calibration"] = {"scale": round(a, 6), "shift": round(b, 6), "volumes": len(train)}
        save_checkpoint(out, model, checkpoint.preprocess_config, checkpoint.class_names, training=training,
                        metrics={"validation": metrics.to_dict(), "val_loss": val_loss, "localisation": localisation},
                        modalities=tuple(checkpoint.metadata.get("modalities", ())))
        stage_one.unlink()
        hit = f"  hit rate {localisation['hit_rate']:.2f}" if "hit_rate" in localisation else ""
        log(f"calibrated on {len(train)} whole volumes (logit x {a:.3g} {b:+.3g}): val loss {val_loss:.4f}  {metrics}{hit}")
    barrier()
    return TrainingResult(Path(out), metrics, first.best_epoch, first.history,
                          first.seconds + time.perf_counter() - start)
