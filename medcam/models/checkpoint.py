"""Checkpoints that carry their preprocessing: one file, loaded without executing code.

Format: a ``torch.save`` dictionary holding only tensors and strings, so it loads with
``torch.load(..., weights_only=True)``::

    {"medcam": "<JSON metadata>", "state_dict": {name: tensor}}

The metadata records the format version, model config, preprocessing config, class names,
spatial dims, the training data's modalities, a training data summary, validation metrics and
package versions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medcam import __version__
from medcam.errors import CheckpointError
from medcam.models.gap_classifier import ClassifierConfig, GapClassifier
from medcam.models.provenance import file_sha256
from medcam.transforms import PreprocessConfig

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "FORMAT", "FORMAT_VERSION"]

FORMAT = "medcam-checkpoint"
FORMAT_VERSION = 1


def _versions() -> dict[str, str]:
    import monai
    import numpy

    return {"medcam": __version__, "torch": torch.__version__, "monai": monai.__version__, "numpy": numpy.__version__}


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A loaded checkpoint: the model in eval mode and everything needed to reproduce inference."""

    model: GapClassifier
    model_config: ClassifierConfig
    preprocess_config: PreprocessConfig
    class_names: tuple[str, ...]
    metadata: dict[str, Any]
    path: Path | None
    sha256: str | None

    @property
    def spatial_dims(self) -> int:
        """2 for images, 3 for volumes."""
        return self.model_config.spatial_dims


def save_checkpoint(
    path: str | Path,
    model: GapClassifier,
    preprocess_config: PreprocessConfig,
    class_names: Sequence[str],
    *,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    modalities: tuple[str, ...] | list[str] = (),
) -> Path:
    """Write ``model`` and its metadata to ``path`` atomically (temporary name, then rename).

    ``modalities``: the DICOM Modality values (0008,0060) of the training data ("CT"); a study
    of another modality is then refused at inference unless the caller allows it.
    """
    config = model.config
    if len(class_names) != config.num_classes:
        raise CheckpointError(f"{len(class_names)} class names for a model with {config.num_classes} classes")
    if preprocess_config.spatial_dims != config.spatial_dims:
        raise CheckpointError(
            f"preprocessing is {preprocess_config.spatial_dims}D but the model is {config.spatial_dims}D"
        )
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spatial_dims": config.spatial_dims,
        "model_config": config.to_dict(),
        "preprocess_config": preprocess_config.to_dict(),
        "class_names": list(class_names),
        "modalities": [str(m) for m in modalities],
        "training": training or {},
        "metrics": metrics or {},
        "versions": _versions(),
    }
    state = {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        torch.save({"medcam": json.dumps(metadata, sort_keys=True), "state_dict": state}, partial)
        os.replace(partial, path)
    except BaseException:  # interrupted or failed: never leave a half-written file behind
        partial.unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a medcam checkpoint (never executes code from the file).

    Raises
    ------
    CheckpointError
        Missing, corrupt or foreign file; unknown format version; config and weights that
        do not match.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the checkpoint file is empty (0 bytes): an interrupted copy or download?")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types on bad files
        first_line = (str(exc).splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}: {first_line}); "
            "the file is corrupt, truncated, or not a torch file"
        ) from exc
    if not isinstance(payload, dict) or "medcam" not in payload or "state_dict" not in payload:
        keys = sorted(payload)[:5] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{path}: not a medcam checkpoint (expected 'medcam' metadata and 'state_dict', found {keys}); "
            "a file from another tool?"
        )
    try:
        metadata = json.loads(payload["medcam"])
    except (TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: the medcam metadata is not valid JSON") from exc
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: the medcam metadata is a JSON {type(metadata).__name__}, expected an object")
    for key in ("model_config", "preprocess_config"):
        if not isinstance(metadata.get(key, {}), dict):
            raise CheckpointError(f"{path}: the metadata's {key} is a JSON {type(metadata[key]).__name__}, expected an object")
    if metadata.get("format") != FORMAT or metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format {metadata.get('format')!r} version {metadata.get('format_version')!r}; "
            f"this medcam reads {FORMAT!r} version {FORMAT_VERSION}"
        )
    try:
        model_config = ClassifierConfig.from_dict(metadata.get("model_config", {}))
        preprocess_config = PreprocessConfig.from_dict(metadata.get("preprocess_config", {}))
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    class_names = tuple(metadata.get("class_names", ()))
    if len(class_names) != model_config.num_classes:
        raise CheckpointError(f"{path}: {len(class_names)} class names for {model_config.num_classes} classes")
    model = GapClassifier(model_config)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:600]
        raise CheckpointError(f"{path}: the weights do not match the model config: {detail}") from exc
    model.eval().to(device)
    return Checkpoint(model, model_config, preprocess_config, class_names, metadata, path, file_sha256(path))
