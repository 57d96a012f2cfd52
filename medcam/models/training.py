"""Training a :class:`GapClassifier`: data from a manifest CSV or a synthetic task, seeded splits,
class-balanced loss, validation ROC AUC / accuracy / sensitivity / specificity, best checkpoint kept.

The checkpoint is written only through :func:`save_checkpoint` (temporary name, then rename),
so an interrupted run leaves the previous best checkpoint, never a half-written file.
"""

from __future__ import annotations

import functools
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medcam.errors import MedcamError, MedcamWarning, TrainingError
from medcam.metrics.classification import ClassificationMetrics, classification_metrics
from medcam.models.checkpoint import save_checkpoint
from medcam.models.checks import validation_localisation
from medcam.models.distributed import barrier, current_ranks
from medcam.models.gap_classifier import ClassifierConfig, GapClassifier
from medcam.transforms import PreprocessConfig, build_transform, preprocess

__all__ = [
    "TASK_DEFAULTS",
    "TASK_RECIPES",
    "TrainingData",
    "TrainingResult",
    "TrainingError",
    "centre_classifier",
    "lesion_centred_crops",
    "load_manifest_data",
    "localisation_penalty",
    "make_synthetic_crops",
    "make_synthetic_data",
    "predict_probabilities",
    "split_data",
    "train_classifier",
    "train_manifest",
    "train_synthetic_task",
]

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


@dataclass
class TrainingData:
    """Preprocessed images ``(N, 1, *spatial)`` (float16 to halve memory), labels ``(N,)``, a
    summary, and optionally lesion masks on the model grid ``(N, 1, *spatial)`` (bool; all false
    for a study without lesions), which the localisation loss of :func:`train_classifier` needs."""

    images: torch.Tensor
    labels: torch.Tensor
    summary: dict[str, Any] = field(default_factory=dict)
    masks: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.numel())

    def subset(self, index: Sequence[int] | np.ndarray) -> TrainingData:
        """The cases at ``indices``, with their masks."""
        index = torch.as_tensor(np.asarray(index, dtype=np.int64))
        masks = None if self.masks is None else self.masks[index]
        return TrainingData(self.images[index], self.labels[index], dict(self.summary), masks)

    def counts(self, num_classes: int) -> list[int]:
        """Cases per class, for ``num_classes`` classes."""
        return torch.bincount(self.labels, minlength=num_classes).tolist()


def _progress(iterable, *, total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


def make_synthetic_data(
    task_name: str, n: int, seed: int, config: PreprocessConfig, *, matched_pairs: bool = False, progress: bool = False
) -> TrainingData:
    """Generate ``n`` studies of a synthetic task (see :mod:`medcam.data.tasks`) and preprocess them.

    With ``matched_pairs`` the ``n`` studies are ``n // 2`` pairs, each a study with lesions and
    the same patient and noise without (:meth:`SyntheticTask.matched_pair`).
    """
    from medcam.data.tasks import get_task

    task = get_task(task_name)
    transform = build_transform(config)
    images, labels = [], []

    def add(study) -> None:
        images.append(preprocess(study.volume, config, transform=transform).as_tensor().to(torch.float16))
        labels.append(int(study.has_lesion))

    count = n // 2 if matched_pairs else n
    for index in _progress(range(count), total=count, desc=f"generating {task_name}", enabled=progress):
        if matched_pairs:
            for study in task.matched_pair(index, seed):
                add(study)
        else:
            add(task.study(index, seed))
    summary = {
        "source": f"synthetic:{task_name}", "task": task.description, "seed": seed, "n": len(labels),
        "matched_pairs": matched_pairs,
    }
    return TrainingData(torch.stack(images), torch.tensor(labels, dtype=torch.int64), summary)


def make_synthetic_crops(
    task_name: str, n_pairs: int, seed: int, config: PreprocessConfig, crop_size: Sequence[int], *,
    jitter: float = 0.25, progress: bool = False,
) -> tuple[TrainingData, TrainingData]:
    """Lesion-centred crops of matched pairs, and the whole volumes they come from.

    For each pair (:meth:`SyntheticTask.matched_pair`) one crop of ``crop_size`` model voxels
    is cut around a lesion (shifted by up to ``jitter`` of the crop size, always inside the
    volume) from the study with lesions, and the same crop from the study without: the two
    differ only by the lesion. This is how SIANN was trained (on regions of interest); the
    network is fully convolutional with global average pooling, so it then runs on whole
    volumes, on which it is fine-tuned (see :func:`train_synthetic_task`).

    Returns ``(crops, volumes)``; both hold ``2 * n_pairs`` samples, half positive, with their
    lesion masks on the model grid (every voxel of the model grid the lesion touches).
    """
    from medcam.data.tasks import get_task
    from medcam.geometry import resample_to
    from medcam.transforms import model_geometry

    task = get_task(task_name)
    transform = build_transform(config)
    rng = np.random.default_rng([seed, 7])
    crop = np.asarray(crop_size, dtype=int)
    crops, volumes, labels, crop_masks, volume_masks = [], [], [], [], []
    for index in _progress(range(n_pairs), total=n_pairs, desc=f"generating {task_name} pairs", enabled=progress):
        positive, negative = task.matched_pair(index, seed)
        tensors = [preprocess(study.volume, config, transform=transform) for study in (positive, negative)]
        grid = model_geometry(tensors[0])
        touched = resample_to(positive.mask, grid, order=1).array > 0.01
        lesion_mask = torch.from_numpy(np.ascontiguousarray(touched.reshape(tensors[0].shape[1:])))[None]
        lesion = positive.lesions[int(rng.integers(len(positive.lesions)))]
        centre = grid.world_to_voxel(lesion.center_ras)[: config.spatial_dims]
        centre = centre + rng.uniform(-jitter, jitter, size=len(crop)) * crop
        size = np.asarray(tensors[0].shape[1:])
        low = np.clip(np.rint(centre - crop / 2).astype(int), 0, size - crop)
        window = (slice(None), *[slice(int(a), int(a + c)) for a, c in zip(low, crop)])
        for label, tensor in zip((1, 0), tensors):
            full = tensor.as_tensor().to(torch.float16)
            mask = lesion_mask if label else torch.zeros_like(lesion_mask)
            volumes.append(full)
            crops.append(full[window].clone())
            volume_masks.append(mask)
            crop_masks.append(mask[window].clone())
            labels.append(label)
    summary = {
        "source": f"synthetic:{task_name}", "task": task.description, "seed": seed, "n": len(labels),
        "matched_pairs": True,
    }
    label_tensor = torch.tensor(labels, dtype=torch.int64)
    crop_summary = {**summary, "crop_size": [int(c) for c in crop]}
    return (
        TrainingData(torch.stack(crops), label_tensor, crop_summary, torch.stack(crop_masks)),
        TrainingData(torch.stack(volumes), label_tensor.clone(), summary, torch.stack(volume_masks)),
    )


def load_manifest_data(
    manifest: str | Path, config: PreprocessConfig, class_names: Sequence[str], *, progress: bool = False
) -> TrainingData:
    """Read a manifest CSV with columns ``image`` (path, relative to the CSV's folder) and ``label``,
    and optionally ``mask``: a lesion mask (NIfTI or DICOM) on any grid.

    A label is a class index (``0`` .. ``C-1``) or a class name. With a ``mask`` column, every
    case with a lesion needs a non-empty mask, and a case without one may leave it blank; each
    mask is carried to the model grid through world coordinates (every model voxel the lesion
    touches), as the localisation loss and the lesion-centred crops need. Every problem names
    its row.
    """
    from medcam.geometry import Volume, resample_to
    from medcam.io.tables import read_table, table_path
    from medcam.study import read_study
    from medcam.transforms import model_geometry

    manifest = Path(manifest)
    try:
        columns, rows = read_table(manifest, ["image", "label"], what="manifest")
    except MedcamError as exc:
        raise TrainingError(str(exc)) from None
    names = list(class_names)
    with_masks = "mask" in columns
    transform = build_transform(config)
    images, labels, masks = [], [], []
    for number, row in enumerate(_progress(rows, total=len(rows), desc="reading", enabled=progress), start=2):
        where = f"{manifest} row {number}"
        raw = (row.get("label") or "").strip()
        if raw in names:
            label = names.index(raw)
        elif raw.isdigit() and int(raw) < len(names):
            label = int(raw)
        else:
            raise TrainingError(f"{where}: unknown label {raw!r}; expected one of {names} or 0..{len(names) - 1}")
        image_path = table_path(manifest, row.get("image"))
        if image_path is None or not image_path.exists():
            raise TrainingError(f"{where}: image {image_path or '(blank)'} does not exist")
        try:
            tensor = preprocess(read_study(image_path).volume, config, transform=transform)
        except MedcamError as exc:
            raise TrainingError(f"{where}: cannot use {image_path}: {exc}") from exc
        images.append(tensor.as_tensor().to(torch.float16))
        labels.append(label)
        if with_masks:
            mask = torch.zeros(tensor.shape, dtype=torch.bool)
            mask_path = table_path(manifest, row.get("mask"))
            if mask_path is not None:
                try:
                    lesion = read_study(mask_path).volume
                except MedcamError as exc:
                    raise TrainingError(f"{where}: cannot use the mask {mask_path}: {exc}") from exc
                binary = lesion.array > 0  # nonzero is lesion; carried through world coordinates
                on_grid = resample_to(Volume(binary.astype(np.float32), lesion.geometry), model_geometry(tensor), order=1)
                mask = torch.from_numpy(np.ascontiguousarray(on_grid.array.reshape(tensor.shape[1:]) > 0.01))[None]
                if label and not bool(mask.any()):
                    raise TrainingError(f"{where}: the mask {mask_path} is empty on the model grid (no lesion voxel, or it lies "
                                        "outside the model's field of view)")
            elif label:
                raise TrainingError(f"{where}: a lesion case without a mask; give its mask, or leave the mask column out")
            masks.append(mask if label else torch.zeros_like(mask))
    summary = {"source": f"manifest:{manifest.name}", "n": len(rows), "masks": with_masks}
    return TrainingData(torch.stack(images), torch.tensor(labels, dtype=torch.int64), summary,
                        torch.stack(masks) if with_masks else None)


def lesion_centred_crops(data: TrainingData, crop_size: Sequence[int], seed: int, *, jitter: float = 0.25,
                         per_case: int = 1) -> TrainingData:
    """``per_case`` crops of ``crop_size`` model voxels per case: around a random lesion voxel
    (shifted by up to ``jitter`` of the crop size) for a case with lesions; for one without,
    around a model-grid position drawn from the lesion voxels of all the cases with lesions
    (shifted alike), always inside the volume. Masks are cropped alike.

    The negatives' crops are where the positives' are, so the crop's place (deep in the brain
    against the scalp or the air, say) tells nothing: a classifier of these crops must see the
    lesion. (Centring them on any bright voxel let a classifier of brain MR crops learn the place,
    crop loss 0.60, and nothing of the lesions: whole-volume AUC 0.52.) Without any lesion in the
    data, a random voxel above the image's median is the centre.

    The cohort counterpart of :func:`make_synthetic_crops` (there, matched pairs share a crop).
    """
    if data.masks is None:
        raise TrainingError("lesion-centred crops need lesion masks (a 'mask' column in the manifest)")
    rng = np.random.default_rng([seed, 11])
    crop = np.asarray(crop_size, dtype=int)
    size = np.asarray(data.images.shape[2:])
    if np.any(crop > size):
        raise TrainingError(f"crop size {tuple(crop)} exceeds the model grid {tuple(size)}")
    lesion_voxels = torch.cat([torch.nonzero(mask[0]) for mask in data.masks if bool(mask.any())] or [torch.zeros((0, len(crop)), dtype=torch.int64)])
    images, masks, labels = [], [], []
    for index in [i for i in range(len(data)) for _ in range(per_case)]:
        image, mask = data.images[index], data.masks[index]
        labels.append(int(data.labels[index]))
        if bool(mask.any()):
            candidates = torch.nonzero(mask[0])
        elif len(lesion_voxels):
            candidates = lesion_voxels
        else:
            candidates = torch.nonzero(image[0].float() > image[0].float().median())
        if len(candidates) == 0:
            candidates = torch.nonzero(torch.ones_like(mask[0]))
        centre = candidates[int(rng.integers(len(candidates)))].numpy() + rng.uniform(-jitter, jitter, size=len(crop)) * crop
        low = np.clip(np.rint(centre - crop / 2).astype(int), 0, size - crop)
        window = (slice(None), *[slice(int(a), int(a + c)) for a, c in zip(low, crop)])
        images.append(image[window].clone())
        masks.append(mask[window].clone())
    summary = {**data.summary, "crop_size": [int(c) for c in crop], "crops_per_case": per_case, "matched_pairs": False}
    return TrainingData(torch.stack(images), torch.tensor(labels, dtype=torch.int64), summary, torch.stack(masks))


def split_data(data: TrainingData, val_fraction: float, seed: int) -> tuple[TrainingData, TrainingData]:
    """Seeded split stratified by class: every class keeps ``val_fraction`` of its cases for validation."""
    rng = np.random.default_rng(seed)
    labels = data.labels.numpy()
    train_index, val_index = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = int(round(len(members) * val_fraction))
        val_index.extend(members[:n_val])
        train_index.extend(members[n_val:])
    return data.subset(sorted(train_index)), data.subset(sorted(val_index))


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


def localisation_penalty(
    model: GapClassifier, features: torch.Tensor, masks: torch.Tensor, *, target: int = 1, margin_cells: int = 1
) -> torch.Tensor:
    """Mean over samples and feature cells of the CAM evidence for class ``target`` that lies
    outside the lesion, of either sign: ``mean |M| * (1 - A)``, with
    ``M = sum_k (w[target, k] - mean_c w[c, k]) F_k`` the evidence relative to the mean class
    (what the softmax sees, so it cannot be moved into another class's map; see
    :func:`centre_classifier`).

    ``A`` marks the feature cells that hold at least one lesion voxel of ``masks`` (the model
    grid max-pooled by the model's stride), and their neighbours up to ``margin_cells`` away
    (the lesion's rim and the receptive field's blur). The penalty is in logit units: the part of the
    target's score that comes from cells without lesion. For a study without lesions every cell
    counts (the multiple-instance assumption: a study is positive because of some region).
    Negative evidence counts too: were it free, a network can make all anatomy negative and
    leave its maximum in the air around the patient, a map whose peak means nothing.
    """
    stride = model.config.stride
    pool = nn.functional.max_pool3d if masks.dim() == 5 else nn.functional.max_pool2d
    allowed = pool(masks.float(), kernel_size=stride, stride=stride, ceil_mode=True)
    if margin_cells:
        allowed = pool(allowed, kernel_size=2 * margin_cells + 1, stride=1, padding=margin_cells)
    allowed = allowed[(slice(None), 0, *[slice(0, n) for n in features.shape[2:]])]
    weights = model.classifier.weight
    evidence = torch.einsum("k,nk...->n...", weights[target] - weights.mean(dim=0), features)
    return (evidence.abs() * (1.0 - allowed)).mean()


@torch.no_grad()
def centre_classifier(model: GapClassifier) -> None:
    """Subtract the mean over classes from the linear layer's weights and biases, in place.

    The softmax is unchanged (every logit of a sample moves by the same amount), so predictions
    are exactly the same; what changes is that each class's CAM becomes its evidence relative to
    the mean class, instead of carrying an arbitrary share that cancels in the softmax. For two
    classes, the lesion class's map is then half the logit difference's.
    """
    model.classifier.weight -= model.classifier.weight.mean(dim=0, keepdim=True)
    model.classifier.bias -= model.classifier.bias.mean()


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
    model.classifier.weight *= a
    model.classifier.bias *= a
    model.classifier.bias += torch.tensor([-b / 2, b / 2], dtype=model.classifier.bias.dtype)
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


def _validate(model: nn.Module, val: TrainingData) -> tuple[ClassificationMetrics, float, dict[str, float]]:
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


@_keeps_the_global_rng
def train_classifier(
    train: TrainingData,
    val: TrainingData,
    *,
    model_config: ClassifierConfig,
    preprocess_config: PreprocessConfig,
    class_names: Sequence[str],
    out: str | Path,
    epochs: int = 15,
    batch_size: int = 16,
    lr: float = 2e-3,
    seed: int = 0,
    augment: bool = True,
    initial_state: dict[str, torch.Tensor] | None = None,
    select_by: str = "loss",
    localisation_weight: float = 0.0,
    localisation_warmup: int = 0,
    batch_norm_samples: int | None = 512,
    extra_summary: dict[str, Any] | None = None,
    modalities: Sequence[str] = (),
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> TrainingResult:
    """Train with AdamW and a one-cycle schedule; keep the best checkpoint on the validation set.

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
    ranks = current_ranks()
    if not ranks.main:
        log, progress = (lambda _line: None), False
    num_classes = model_config.num_classes
    _check_split("training", train, num_classes)
    _check_split("validation", val, num_classes)
    if localisation_weight and (train.masks is None or num_classes != 2):
        raise TrainingError("the localisation loss needs a binary task and training data with lesion masks")
    if localisation_warmup >= epochs:
        raise TrainingError(f"localisation_warmup ({localisation_warmup}) must be shorter than the {epochs} epochs")
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
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "augment": augment,
        "localisation_weight": localisation_weight, "localisation_warmup": localisation_warmup, "processes": ranks.world,
        **(extra_summary or {}),
    }
    bn_images = train.images
    if batch_norm_samples is not None and len(train) > batch_norm_samples:
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:batch_norm_samples]
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
        for first in _progress(batches, total=steps_per_epoch, desc=f"epoch {epoch}/{epochs}", enabled=progress):
            index = order[first : first + local_batch]
            images, labels = train.images[index].float(), train.labels[index]
            masks = train.masks[index] if localisation_weight else None
            if augment:
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
        metrics, val_loss, localisation = _validate(model, val)
        history.append({"epoch": epoch, "train_loss": total_loss / len(train), "val_loss": val_loss, **metrics.to_dict()})
        if localisation_weight:
            history[-1]["localisation_penalty"] = total_penalty / len(train)
        history[-1].update(localisation)
        # cross-entropy is a proper score: best calibrated and ranked; AUC only ranks
        if select_by == "loss":
            key = (-val_loss, metrics.auc)
        elif select_by == "auc+hit" and "hit_rate" in localisation:  # classification and localisation alike
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
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(range(units), num_replicas=ranks.world, rank=ranks.rank, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        chosen = torch.tensor(list(sampler), dtype=torch.int64)
    else:
        chosen = torch.randperm(units, generator=generator)
    return torch.stack([2 * chosen, 2 * chosen + 1], dim=1).flatten() if per_unit == 2 else chosen


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
    progress: bool = False,
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
    from medcam.data.tasks import get_task

    modalities = (get_task(task_name).study(0, seed).modality,)
    crops, volumes = make_synthetic_crops(task_name, n_pairs, seed, preprocess_config, crop, progress=progress)
    val = make_synthetic_data(task_name, n_val, seed + 1, preprocess_config, progress=progress)
    out = Path(out)
    stage_one = out.with_name(out.name + ".crops.partial")
    log(f"stage 1: {len(crops)} lesion-centred crops of {crop} voxels, {crop_epochs} epochs")
    first = train_classifier(
        crops, val, model_config=model_config, preprocess_config=preprocess_config, class_names=class_names,
        out=stage_one, epochs=crop_epochs, batch_size=batch_size, lr=lr, seed=seed, select_by="auc",
        localisation_weight=localisation_weight, localisation_warmup=min(int(recipe["localisation_warmup"]), max(crop_epochs - 1, 0)),
        batch_norm_samples=int(recipe["batch_norm_samples"]) or None, modalities=modalities, progress=progress, log=log,
    )
    from medcam.models.checkpoint import load_checkpoint

    state = load_checkpoint(stage_one).model.state_dict()
    barrier()  # every rank has read it
    if current_ranks().main:
        stage_one.unlink()
    log(f"stage 2: {len(volumes)} whole volumes, {epochs} epochs")
    second = train_classifier(
        volumes, val, model_config=model_config, preprocess_config=preprocess_config, class_names=class_names,
        out=out, epochs=epochs, batch_size=batch_size, lr=lr / 3, seed=seed + 1, initial_state=state,
        localisation_weight=localisation_weight, batch_norm_samples=int(recipe["batch_norm_samples"]) or None,
        extra_summary={"recipe": "crops then whole volumes", "stage1": {"crops": len(crops), "crop_size": list(crop),
                       "epochs": crop_epochs, "best_epoch": first.best_epoch, "seconds": round(first.seconds, 1)}},
        modalities=modalities, progress=progress, log=log,
    )
    second.seconds += first.seconds
    return second


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
    progress: bool = False,
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
    common = dict(model_config=model_config, preprocess_config=preprocess_config, class_names=class_names,
                  batch_size=batch_size, modalities=modalities, progress=progress, log=log)
    out = Path(out)
    state, extra, first = None, {"recipe": "whole volumes"}, None
    if crop_epochs:
        crop = tuple(crop_size or (min(n, max(8, round(recipe["crop_mm"] / s)))
                                   for n, s in zip(preprocess_config.spatial_size, preprocess_config.spacing)))
        crops = lesion_centred_crops(train, crop, seed, per_case=max(1, -(-int(recipe["crops"] or 1) // len(train))))
        warmup = min(int(recipe["localisation_warmup"]), crop_epochs - 1) if weight else 0
        stage_one = out.with_name(out.name + ".crops.partial")
        log(f"stage 1: {len(crops)} lesion-centred crops of {crop} voxels, {crop_epochs} epochs")
        first = train_classifier(crops, val, out=stage_one, epochs=crop_epochs, lr=lr, seed=seed, select_by="auc+hit",
                                 localisation_weight=weight, localisation_warmup=warmup, **common)
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
    result = train_classifier(train, val, out=out, epochs=epochs, lr=lr / 3 if state is not None else lr, seed=seed + 1,
                              initial_state=state, localisation_weight=weight, extra_summary=extra, **common)
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
        metrics, val_loss, localisation = _validate(model, val)
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
