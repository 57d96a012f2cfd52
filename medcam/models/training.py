"""The training loop of a :class:`GapClassifier` (:func:`train_classifier`): class-balanced loss,
the localisation loss with lesion masks, validation ROC AUC / accuracy / sensitivity / specificity and
CAM hit rate, best checkpoint kept; the logit calibration and prediction helpers around it. The data
are in :mod:`medcam.models.training_data`, the losses in :mod:`medcam.models.losses`, the recipes
that chain these stages in :mod:`medcam.models.recipes`.

The checkpoint is written only through :func:`save_checkpoint` (temporary name, then rename),
so an interrupted run leaves the previous best checkpoint, never a half-written file.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from medcam.errors import ConfigError, MedcamWarning, TrainingError
from medcam.metrics.classification import ClassificationMetrics, classification_metrics
from medcam.models.checkpoint import save_checkpoint
from medcam.models.checks import validation_localisation
from medcam.models.distributed import barrier, current_ranks
from medcam.models.gap_classifier import ClassifierConfig, GapClassifier
from medcam.models.losses import centre_classifier, localisation_penalty
from medcam.models.training_data import TrainingData
from medcam.progress import ProgressCallback, report_each
from medcam.transforms import PreprocessConfig

__all__ = ["TrainingConfig", "TrainingResult", "TrainingError", "calibrate_binary", "predict_probabilities", "train_classifier",
           "validate"]

logger = logging.getLogger(__name__)


@dataclass
class TrainingResult:
    """A finished training run: the checkpoint written, the best epoch, its metrics and the history."""
    checkpoint: Path
    best_metrics: ClassificationMetrics | None  # None on the ranks other than 0 of a distributed run
    best_epoch: int
    history: list[dict[str, float]]
    seconds: float


def _check_split(name: str, data: TrainingData, num_classes: int) -> None:
    counts = data.counts(num_classes)
    if len(data) == 0:
        raise TrainingError(f"the {name} split is empty; add cases or change the validation fraction")
    if num_classes == 2 and min(counts) == 0:
        raise TrainingError(f"the {name} split has class counts {counts}: both classes are needed")


@torch.no_grad()
def _recompute_batch_norm(model: nn.Module, images: torch.Tensor, batch_size: int) -> None:
    """Batch-norm running statistics as exact averages over ``images`` (train-mode forward passes)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    was_training = model.training
    model.train()
    for first in range(0, len(images), batch_size):
        model(images[first : first + batch_size].float())
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.train(was_training)


@torch.no_grad()
def calibrate_binary(model: GapClassifier, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 16) -> tuple[float, float]:
    """Fit the logit difference of a binary model to ``images`` (whole volumes) and ``labels``:
    ``z1 - z0 -> a (z1 - z0) + b``, with ``a > 0`` and ``b`` by class-balanced logistic regression
    (Platt scaling); the linear layer is changed in place so that the model computes it.

    A network trained on crops scores a whole volume by the mean over many more cells: its
    ranking carries over, its scale and threshold do not. Scaling the linear layer's weights by
    ``a`` and moving its biases keeps the CAM exact (the map of class 1 becomes ``a`` times the
    old one plus a constant: its shape, peak and energy are unchanged). Returns ``(a, b)``.
    """
    if model.config.num_classes != 2:
        raise TrainingError(f"calibration is for two classes; this model has {model.config.num_classes} "
                            "(train on whole volumes instead: epochs > 0)")
    was_training = model.training
    model.eval()
    try:
        logits = torch.cat([model(images[i : i + batch_size].float()) for i in range(0, len(images), batch_size)])
    finally:
        model.train(was_training)
    d = (logits[:, 1] - logits[:, 0]).double().numpy()
    y = (labels.numpy() == 1).astype(float)
    weight = np.where(y == 1, 0.5 / max(y.mean(), 1e-9), 0.5 / max(1 - y.mean(), 1e-9))
    scale = float(np.std(d)) or 1.0
    x = np.stack([d / scale, np.ones_like(d)], axis=1)
    theta = np.zeros(2)
    for _ in range(50):  # Newton's method on the weighted log-loss, with a small ridge
        p = 1.0 / (1.0 + np.exp(-(x @ theta)))
        gradient = x.T @ (weight * (p - y)) + 1e-3 * theta
        hessian = (x * (weight * p * (1 - p))[:, None]).T @ x + 1e-3 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    a, b = max(float(theta[0]) / scale, 1e-6), float(theta[1])  # a ranking that is backwards stays, barely scaled
    classifier = model.classifier
    classifier.weight.mul_(a)
    classifier.bias.mul_(a).add_(torch.tensor([-b / 2, b / 2], dtype=classifier.bias.dtype))
    return a, b


@torch.no_grad()
def predict_probabilities(model: nn.Module, images: torch.Tensor, *, batch_size: int = 16) -> np.ndarray:
    """Softmax probabilities ``(N, C)`` for preprocessed images, in eval mode (restored afterwards)."""
    was_training = model.training
    model.eval()
    try:
        out = [torch.softmax(model(images[i : i + batch_size].float()), dim=1) for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out).numpy()


def validate(model: nn.Module, val: TrainingData) -> tuple[ClassificationMetrics, float, dict[str, float]]:
    """The validation metrics at threshold 0.5, the validation cross-entropy and the maps' figures."""
    probabilities = predict_probabilities(model, val.images)
    metrics = classification_metrics(val.labels.numpy() == 1, probabilities[:, 1])
    val_loss = float(nn.functional.nll_loss(torch.log(torch.from_numpy(probabilities).clamp(min=1e-7)), val.labels))
    return metrics, val_loss, validation_localisation(model, val.images, val.labels, val.masks)


def _keeps_the_global_rng(function: Callable) -> Callable:
    """Run ``function`` on a fork of torch's global random state: it may seed it (initial weights,
    dropout) and the caller's random stream is as it was afterwards."""
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with torch.random.fork_rng():
            return function(*args, **kwargs)
    return wrapper


@dataclass(frozen=True)
class TrainingConfig:
    """How :func:`train_classifier` trains: recorded in the checkpoint's training summary.

    Attributes
    ----------
    epochs, batch_size, lr : int, int, float
        Epochs over the training data, the global batch (shared out between DDP ranks) and the
        one-cycle schedule's peak learning rate.
    seed : int
        Initial weights, sample order, flips and the batch-norm sample: the same seed, the same model.
    augment : bool
        Random flips along every spatial axis.
    select_by : {"loss", "auc", "auc+hit"}
        Which epoch's weights are kept: the lowest validation cross-entropy, the highest AUC, or the
        highest mean of the AUC and the CAM hit rate on the validation positives (with masks).
    localisation_weight, localisation_warmup : float, int
        Weight of :func:`localisation_penalty` (0: none), reached linearly over the warm-up epochs.
    batch_norm_samples : int or None
        Training cases the batch-norm statistics are recomputed on after each epoch (None: all).

    Raises
    ------
    ConfigError
        A value out of range: no epochs, a batch of none, a warm-up not shorter than training, an
        unknown ``select_by``.
    """

    epochs: int = 15
    batch_size: int = 16
    lr: float = 2e-3
    seed: int = 0
    augment: bool = True
    select_by: str = "loss"
    localisation_weight: float = 0.0
    localisation_warmup: int = 0
    batch_norm_samples: int | None = 512

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            problems.append(f"epochs, batch_size and lr must be positive, found {self.epochs}, {self.batch_size}, {self.lr}")
        if self.select_by not in SELECT_BY:
            problems.append(f"select_by {self.select_by!r}: expected one of {', '.join(SELECT_BY)}")
        if self.localisation_warmup >= max(self.epochs, 1) or self.localisation_warmup < 0:
            problems.append(f"localisation_warmup ({self.localisation_warmup}) must be shorter than the {self.epochs} epochs")
        if self.localisation_weight < 0:
            problems.append(f"localisation_weight must not be negative, found {self.localisation_weight}")
        if problems:
            raise ConfigError("TrainingConfig: " + "; ".join(problems))


#: How the kept epoch is chosen (:attr:`TrainingConfig.select_by`).
SELECT_BY = ("loss", "auc", "auc+hit")


@_keeps_the_global_rng
def train_classifier(
    train: TrainingData,
    val: TrainingData,
    *,
    model_config: ClassifierConfig,
    preprocess_config: PreprocessConfig,
    class_names: Sequence[str],
    out: str | Path,
    config: TrainingConfig | None = None,
    initial_state: dict[str, torch.Tensor] | None = None,
    extra_summary: dict[str, Any] | None = None,
    modalities: Sequence[str] = (),
    progress: ProgressCallback | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainingResult:
    """Train with AdamW and a one-cycle schedule as ``config`` says (:class:`TrainingConfig`; its
    defaults when None), from ``initial_state`` when given; keep the best checkpoint on the
    validation set in ``out``, with ``extra_summary`` and ``modalities`` recorded.

    The loss is cross-entropy weighted by inverse class frequency. With ``augment`` each batch is
    randomly flipped along its spatial axes. Training data made of matched pairs (consecutive
    samples ``2i, 2i + 1``, ``summary["matched_pairs"]``) is batched pair by pair, so every
    batch holds both halves of its pairs and the gradient sees the lesion and nothing else.
    After each epoch the batch-norm statistics are recomputed (cumulative average, as
    ``torch.optim.swa_utils.update_bn``) over a fixed, seeded sample of ``batch_norm_samples``
    training cases (all of them when None or when there are fewer): running averages of sparse
    lesion features drift, and validation and inference would be miscalibrated. ``select_by``
    "loss" keeps the lowest validation cross-entropy, "auc" the highest validation AUC, "auc+hit"
    the highest mean of the AUC and the CAM hit rate on the validation positives (with masks).
    Every epoch measures the validation maps (:func:`medcam.models.checks.validation_localisation`);
    the kept epoch's figures go into the checkpoint, and a warning says when most of the evidence
    lies outside the foreground.
    ``localisation_weight`` > 0 adds :func:`localisation_penalty` times that weight to the loss
    (binary tasks; the training data must carry lesion masks): the class-1 CAM is then trained
    to hold its evidence on the lesions and stay neutral elsewhere; its weight rises linearly
    from 0 over the first ``localisation_warmup`` epochs, so the network first learns to see
    the lesions; the best checkpoint is chosen among the epochs after the warm-up. With the loss,
    the linear layer is also centred over classes after each epoch (:func:`centre_classifier`;
    predictions do not change), so the saved class-1 map is the evidence the loss shaped. Without
    it the layer is left as trained: on the labels-only radiograph model, centring took the CAM
    hit rate from 0.46 to 0 (``benchmarks/RESULTS.md``).
    Validation metrics use the positive class (index 1) probability at threshold 0.5.

    Under a ``torch.distributed`` process group (``torchrun``; gloo, on the CPU) the model is
    wrapped in DistributedDataParallel: each epoch a DistributedSampler (seeded, the same on
    every rank) deals the samples (or matched pairs) out to the ranks, each rank takes
    ``batch_size // world`` of every global batch of ``batch_size`` and flips them with its own
    seed, and the gradients are averaged. Batch norm stays consistent: its running statistics
    are recomputed on every rank from the same sample of the same weights, and DDP broadcasts
    rank 0's buffers at each step (the batch statistics of a step are each rank's own: CPU
    tensors have no SyncBatchNorm). Only rank 0 validates, logs and writes the checkpoint; the
    other ranks return once it is written, with ``best_metrics`` None.
    """
    log = log or logger.info  # the caller's logging configuration decides what shows
    config = config or TrainingConfig()
    epochs, batch_size, lr, seed = config.epochs, config.batch_size, config.lr, config.seed
    localisation_weight, localisation_warmup = config.localisation_weight, config.localisation_warmup
    ranks = current_ranks()
    if not ranks.main:
        log, progress = (lambda _line: None), None
    num_classes = model_config.num_classes
    _check_split("training", train, num_classes)
    _check_split("validation", val, num_classes)
    if localisation_weight and (train.masks is None or num_classes != 2):
        raise TrainingError("the localisation loss needs a binary task and training data with lesion masks")
    torch.manual_seed(seed)  # the same initial weights on every rank; the caller's state is restored on return
    generator = torch.Generator().manual_seed(seed + ranks.rank)  # the order (one process) and the flips: per rank
    model = GapClassifier(model_config)
    if initial_state is not None:
        model.load_state_dict(initial_state)
    network: nn.Module = _WithFeatures(model)
    if ranks.distributed:
        if batch_size % ranks.world or (train.summary.get("matched_pairs") and batch_size % (2 * ranks.world)):
            raise TrainingError(f"batch size {batch_size} cannot be shared out evenly between {ranks.world} ranks "
                                f"({'pairs' if train.summary.get('matched_pairs') else 'samples'}); choose a multiple")
        network = nn.parallel.DistributedDataParallel(network)
    local_batch = batch_size // ranks.world
    counts = torch.tensor(train.counts(num_classes), dtype=torch.float32)
    weights = counts.sum() / (num_classes * counts.clamp(min=1))
    criterion = nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = -(-_samples_per_rank(train, ranks) // local_batch)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch)
    spatial_axes = list(range(2, 2 + model_config.spatial_dims))
    summary = {
        "train": {**train.summary, "n": len(train), "class_counts": train.counts(num_classes)},
        "validation": {**val.summary, "n": len(val), "class_counts": val.counts(num_classes)},
        **dataclasses.asdict(config), "processes": ranks.world,
        **(extra_summary or {}),
    }
    bn_images = train.images
    if config.batch_norm_samples is not None and len(train) > config.batch_norm_samples:
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[: config.batch_norm_samples]
        bn_images = train.images[pick.sort().values]
    best: tuple[float, float] | None = None  # (-validation loss, AUC)
    best_metrics: ClassificationMetrics | None = None
    best_localisation: dict[str, float] = {}
    best_epoch = 0
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        order = _epoch_order(train, ranks, seed, epoch, generator)
        total_loss = total_penalty = 0.0
        weight_now = localisation_weight * min(1.0, (epoch - 1) / localisation_warmup if localisation_warmup else 1.0)
        batches = range(0, len(order), local_batch)
        for first in report_each(batches, progress, task=f"epoch {epoch}/{epochs}", total=steps_per_epoch, unit="batch"):
            index = order[first : first + local_batch]
            images, labels = train.images[index].float(), train.labels[index]
            masks = train.masks[index] if localisation_weight and train.masks is not None else None
            if config.augment:
                flips = [axis for axis in spatial_axes if torch.rand(1, generator=generator).item() < 0.5]
                if flips:
                    images = torch.flip(images, flips)
                    masks = None if masks is None else torch.flip(masks, flips)
            logits, features = network(images)
            if masks is not None:
                penalty = localisation_penalty(model, features, masks)
                loss = criterion(logits, labels) + weight_now * penalty
                total_penalty += float(penalty.detach()) * len(index)
            else:
                loss = criterion(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += float(loss.detach()) * len(index)
        if localisation_weight:  # the penalty measures evidence against the mean class: save that map
            centre_classifier(model)
        _recompute_batch_norm(model, bn_images, batch_size)
        if not ranks.main:  # rank 0 validates and writes; the others go on to the next epoch
            continue
        total_loss, total_penalty = total_loss * ranks.world, total_penalty * ranks.world  # rank 0's share, scaled
        metrics, val_loss, localisation = validate(model, val)
        history.append({"epoch": epoch, "train_loss": total_loss / len(train), "val_loss": val_loss, **metrics.to_dict()})
        if localisation_weight:
            history[-1]["localisation_penalty"] = total_penalty / len(train)
        history[-1].update(localisation)
        # cross-entropy is a proper score: best calibrated and ranked; AUC only ranks
        if config.select_by == "loss":
            key = (-val_loss, metrics.auc)
        elif config.select_by == "auc+hit" and "hit_rate" in localisation:  # classification and localisation alike
            key = ((metrics.auc + localisation["hit_rate"]) / 2, -val_loss)
        else:
            key = (metrics.auc, -val_loss)
        # while the localisation weight is still rising, the map is not yet what will be kept
        improved = epoch > localisation_warmup and (best is None or key > best)
        if improved:
            best, best_metrics, best_epoch, best_localisation = key, metrics, epoch, localisation
            save_checkpoint(
                out, model, preprocess_config, class_names,
                training={**summary, "best_epoch": epoch, "seconds": round(time.perf_counter() - start, 1)},
                metrics={"validation": metrics.to_dict(), "val_loss": val_loss, "localisation": localisation},
                modalities=tuple(modalities),
            )
        penalty_text = f"  outside-lesion evidence {total_penalty / len(train):.4f}" if localisation_weight else ""
        hit_text = f"  hit rate {localisation['hit_rate']:.2f}" if "hit_rate" in localisation else ""
        log(
            f"epoch {epoch:3d}/{epochs}  train loss {total_loss / len(train):.4f}{penalty_text}  val loss {val_loss:.4f}  "
            f"{metrics}{hit_text}  evidence in foreground {localisation['evidence_in_foreground']:.2f}{'  *saved' if improved else ''}"
        )
    barrier()  # the checkpoint is written before any rank goes on
    if not ranks.main:
        return TrainingResult(Path(out), None, 0, [], time.perf_counter() - start)
    if best_metrics is None:
        raise TrainingError(f"no epoch after the {localisation_warmup} warm-up epochs was kept; train for more epochs")
    inside = best_localisation["evidence_in_foreground"]
    if inside < 0.5:
        advice = ("the localisation loss left the lesions no evidence: lower --localisation-weight, or train longer on the "
                  "crops first" if localisation_weight else "train with lesion masks (a 'mask' column) or on more cases")
        message = (f"{out}: only {inside:.0%} of the model's evidence on the validation cases lies in the foreground: its maps "
                   f"point at the air or the edge of the field of view, not at lesions; {advice}")
        log(f"warning: {message}")
        warnings.warn(message, MedcamWarning, stacklevel=2)
    return TrainingResult(Path(out), best_metrics, best_epoch, history, time.perf_counter() - start)


class _WithFeatures(nn.Module):
    """The classifier's logits and feature maps in one forward pass (what DDP wraps: a loss on
    the features must go through the wrapped forward for its gradients to be averaged)."""

    def __init__(self, model: GapClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.forward_with_features(images)


def _units(train: TrainingData) -> tuple[int, int]:
    """(how many units an epoch deals out, samples per unit): matched pairs stay together."""
    return (len(train) // 2, 2) if train.summary.get("matched_pairs") else (len(train), 1)


def _samples_per_rank(train: TrainingData, ranks) -> int:
    units, per_unit = _units(train)
    return -(-units // ranks.world) * per_unit  # a DistributedSampler pads every rank's share to the same length


def _epoch_order(train: TrainingData, ranks, seed: int, epoch: int, generator: torch.Generator) -> torch.Tensor:
    """This rank's samples for an epoch, in order: a permutation (one process), or this rank's
    share dealt by a DistributedSampler; matched pairs stay together."""
    units, per_unit = _units(train)
    if ranks.distributed:
        from torch.utils.data import Dataset, DistributedSampler

        # a range is a map-style dataset of its own indices (len and [])
        sampler: DistributedSampler[int] = DistributedSampler(
            cast("Dataset[int]", range(units)), num_replicas=ranks.world, rank=ranks.rank, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        chosen = torch.tensor(list(sampler), dtype=torch.int64)
    else:
        chosen = torch.randperm(units, generator=generator)
    return torch.stack([2 * chosen, 2 * chosen + 1], dim=1).flatten() if per_unit == 2 else chosen


