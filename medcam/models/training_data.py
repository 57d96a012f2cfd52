"""Training data on the model grid: preprocessed images, labels and lesion masks, from a synthetic
task or a user's manifest (lesion masks on any grid carried through world coordinates); lesion-centred
crops; seeded stratified splits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medcam.errors import MedcamError, TrainingError
from medcam.progress import ProgressCallback, report_each
from medcam.transforms import PreprocessConfig, build_transform, preprocess

__all__ = ["TrainingData", "make_synthetic_data", "make_synthetic_crops", "load_manifest_data", "lesion_centred_crops",
           "split_data"]


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
        """The cases at ``index``, with their masks."""
        rows = torch.as_tensor(np.asarray(index, dtype=np.int64))
        masks = None if self.masks is None else self.masks[rows]
        return TrainingData(self.images[rows], self.labels[rows], dict(self.summary), masks)

    def counts(self, num_classes: int) -> list[int]:
        """Cases per class, for ``num_classes`` classes."""
        return torch.bincount(self.labels, minlength=num_classes).tolist()


def make_synthetic_data(
    task_name: str, n: int, seed: int, config: PreprocessConfig, *, matched_pairs: bool = False, progress: ProgressCallback | None = None
) -> TrainingData:
    """Generate ``n`` studies of a synthetic task (see :mod:`medcam.synthetic.tasks`) and preprocess them.

    With ``matched_pairs`` the ``n`` studies are ``n // 2`` pairs, each a study with lesions and
    the same patient and noise without (:meth:`SyntheticTask.matched_pair`).
    """
    from medcam.synthetic.tasks import get_task

    task = get_task(task_name)
    transform = build_transform(config)
    images, labels = [], []

    def add(study) -> None:
        images.append(preprocess(study.volume, config, transform=transform).as_tensor().to(torch.float16))
        labels.append(int(study.has_lesion))

    count = n // 2 if matched_pairs else n
    for index in report_each(range(count), progress, task=f"generating {task_name}", total=count, unit="study"):
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
    jitter: float = 0.25, progress: ProgressCallback | None = None,
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
    from medcam.geometry import model_geometry, resample_to
    from medcam.synthetic.tasks import get_task

    task = get_task(task_name)
    transform = build_transform(config)
    rng = np.random.default_rng([seed, 7])
    crop = np.asarray(crop_size, dtype=int)
    crops, volumes, labels, crop_masks, volume_masks = [], [], [], [], []
    for index in report_each(range(n_pairs), progress, task=f"generating {task_name} pairs", total=n_pairs, unit="pair"):
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
    manifest: str | Path, config: PreprocessConfig, class_names: Sequence[str], *, progress: ProgressCallback | None = None
) -> TrainingData:
    """Read a manifest CSV with columns ``image`` (path, relative to the CSV's folder) and ``label``,
    and optionally ``mask``: a lesion mask (NIfTI or DICOM) on any grid.

    A label is a class index (``0`` .. ``C-1``) or a class name. With a ``mask`` column, every
    case with a lesion needs a non-empty mask, and a case without one may leave it blank; each
    mask is carried to the model grid through world coordinates (every model voxel the lesion
    touches), as the localisation loss and the lesion-centred crops need. Every problem names
    its row.
    """
    from medcam.geometry import Volume, model_geometry, resample_to
    from medcam.io.tables import read_table, table_path
    from medcam.study import read_study

    manifest = Path(manifest)
    try:
        columns, rows = read_table(manifest, ["image", "label"], what="manifest")
    except MedcamError as exc:
        raise TrainingError(str(exc)) from None
    names = list(class_names)
    with_masks = "mask" in columns
    transform = build_transform(config)
    images, labels, masks = [], [], []
    for number, row in enumerate(report_each(rows, progress, task="reading", total=len(rows), unit="image"), start=2):
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
    train_index: list[int] = []
    val_index: list[int] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = int(round(len(members) * val_fraction))
        val_index.extend(members[:n_val])
        train_index.extend(members[n_val:])
    return data.subset(sorted(train_index)), data.subset(sorted(val_index))
