"""One interface for every model medcam explains: a medcam checkpoint, a MONAI Bundle, or any
``nn.Module`` with a MONAI transform.

An :class:`ExplainableModel` holds the network, its preprocessing (a MONAI transform applied to
a channel-first ``MetaTensor`` whose ``.affine`` is the source's RAS affine; every spatial step
MONAI applies keeps that affine up to date, so the model grid is known in patient space), the
class names, the spatial dims, the default target layer and the provenance of the weights.

>>> model = from_module(net, Compose([Orientation("RAS"), Spacing((2, 2, 2))]), ["normal", "lesion"])  # doctest: +SKIP
>>> explain(model, read_study("study/"), method="gradcam").save("out/")   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medcam.cam.head import GapHead, find_gap_head
from medcam.errors import CamError, CheckpointError, GeometryError, MedcamError, ModalityError
from medcam.geometry import Volume
from medcam.models.provenance import ModelProvenance
from medcam.transforms import build_transform, run_transform, to_meta_tensor

__all__ = ["ExplainableModel", "class_index", "from_checkpoint", "from_module", "load_model", "tensor_transform"]

#: Values of DICOM Modality (0008,0060) that name the same kind of image.
_MODALITY_ALIASES = {"MRI": "MR", "CXR": "CR", "XRAY": "CR", "X-RAY": "CR"}


def class_index(class_names: Sequence[str], name_or_index: str | int) -> int:
    """The output index of a class given by name or by index (a digit string too), checked
    against ``class_names`` (any index when there are none).

    >>> class_index(["no lesion", "lesion"], "lesion"), class_index(["no lesion", "lesion"], "0")
    (1, 0)

    Raises
    ------
    CamError
        No such class.
    """
    if isinstance(name_or_index, int) or str(name_or_index).isdigit():
        index = int(name_or_index)
        if not class_names or 0 <= index < len(class_names):
            return index
    elif name_or_index in class_names:
        return list(class_names).index(name_or_index)
    choices = f"one of {list(class_names)} or 0..{len(class_names) - 1}" if class_names else "a class index"
    raise CamError(f"class {name_or_index!r}: expected {choices}")


def normalise_modality(name: str) -> str:
    text = str(name).strip().upper()
    return _MODALITY_ALIASES.get(text, text)


@dataclass(frozen=True, eq=False)
class ExplainableModel:
    """A classifier with everything needed to explain it on a study.

    Attributes
    ----------
    module : nn.Module
        Returns logits ``(N, classes)`` for input ``(N, C, *spatial)``.
    preprocessing : callable
        ``MetaTensor (C, *source spatial) -> MetaTensor (C, *model spatial)``, keeping the affine.
    class_names : tuple of str
        One per output; empty when unknown (classes are then named by index).
    spatial_dims : {2, 3}
    provenance : ModelProvenance
    layer, fc_layer : str or None
        The default target layer and (for exact CAM) linear layer; None: found from the model
        (:func:`medcam.cam.find_gap_head`: the layer that feeds global average pooling).
    modalities : tuple of str
        DICOM Modality values the model was trained on; empty when it does not say.
    intensity_window : (centre, width) or None
        The intensity window the preprocessing clips to (a CT model's HU window), which figures
        use to show sources that carry no window of their own; None when it has none.
    """

    module: nn.Module
    preprocessing: Callable[[Any], Any]
    class_names: tuple[str, ...]
    spatial_dims: int
    provenance: ModelProvenance
    layer: str | None = None
    fc_layer: str | None = None
    modalities: tuple[str, ...] = ()
    intensity_window: tuple[float, float] | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(str(n) for n in self.class_names))
        object.__setattr__(self, "modalities", tuple(normalise_modality(m) for m in self.modalities))
        if self.spatial_dims not in (2, 3):
            raise CheckpointError(f"{self.provenance.name}: spatial_dims must be 2 or 3, found {self.spatial_dims}")

    @property
    def device(self) -> torch.device:
        """The torch device the model runs on."""
        parameter = next(self.module.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    def class_name(self, index: int) -> str:
        """The name of class ``index``."""
        return self.class_names[index] if 0 <= index < len(self.class_names) else f"class {index}"

    def class_index(self, name_or_index: str | int) -> int:
        """The output index of a class given by name or index (``--class``): :func:`class_index`."""
        return class_index(self.class_names, name_or_index)

    def prepare(self, volume: Volume):
        """The model input of ``volume``: a ``MetaTensor (C, *model spatial)`` with its RAS affine.

        Raises
        ------
        MedcamError
            The preprocessing failed on this volume (the message gives the root cause), or
            returned something that is not a channel-first MetaTensor of the model's dims.
        """
        source = to_meta_tensor(volume, self.spatial_dims)
        try:
            tensor = self.preprocessing(source)
        except MedcamError:
            raise
        except Exception as exc:  # noqa: BLE001 - MONAI wraps a failing step's error in RuntimeError
            cause: BaseException = exc
            while cause.__cause__ is not None:
                cause = cause.__cause__
            detail = " ".join(str(cause).split())[:300]
            raise MedcamError(f"{self.provenance.name}: its preprocessing failed on a volume of shape {volume.shape} "
                              f"({type(cause).__name__}: {detail})") from exc
        if not hasattr(tensor, "affine"):
            raise GeometryError(
                f"{self.provenance.name}: the preprocessing returned {type(tensor).__name__} without an affine; "
                "it must keep MONAI's MetaTensor (drop ToNumpy / EnsureType(track_meta=False) steps)"
            )
        if tensor.dim() != self.spatial_dims + 1:
            raise GeometryError(
                f"{self.provenance.name}: the preprocessing returned shape {tuple(tensor.shape)}; "
                f"expected (channels, {self.spatial_dims} spatial axes)"
            )
        return tensor

    def gap_head(self, x: torch.Tensor) -> GapHead:
        """The GAP + linear head (feature layer and linear layer), found once on input ``x``."""
        if "head" not in self._cache:
            if self.layer is not None and self.fc_layer is not None:
                self._cache["head"] = GapHead(self.layer, self.fc_layer)
            else:
                found = find_gap_head(self.module, x)
                self._cache["head"] = GapHead(self.layer or found.feature_layer, self.fc_layer or found.fc_layer)
        return self._cache["head"]

    def weights_sha256(self) -> str:
        """SHA-256 of the weight file, or of the parameters and buffers of a module built in Python
        (computed at each call: the module may have changed)."""
        if self.provenance.sha256:
            return self.provenance.sha256
        digest = hashlib.sha256()
        for name, tensor in self.module.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def check_modality(self, modality: str | None, where: str) -> None:
        """Refuse a study of another modality than the model's (when both are known)."""
        if not self.modalities or not modality:
            return
        if normalise_modality(modality) not in self.modalities:
            raise ModalityError(
                f"{where}: the study is {modality} but the model {self.provenance.name} was trained on "
                f"{'/'.join(self.modalities)}; its prediction would be meaningless (pass allow_modality_mismatch=True, "
                "--allow-modality-mismatch, to explain it anyway)"
            )


def _is_dictionary_transform(transform) -> str | None:
    """The first key of a MONAI dictionary transform (or a Compose of them), else None."""
    from monai.transforms import Compose, MapTransform

    if isinstance(transform, MapTransform):
        return str(transform.keys[0])
    if isinstance(transform, Compose):
        steps = [t for t in transform.transforms if isinstance(t, MapTransform)]
        if steps and len(steps) == len(transform.transforms):
            return str(steps[0].keys[0])
    return None


@dataclass(frozen=True)
class TensorTransform:
    """``MetaTensor -> MetaTensor`` through ``transform`` (None: unchanged), a dictionary transform
    run on ``{key: tensor}``. A class rather than a closure, so a model pickles into worker processes."""

    transform: Any
    key: str | None = None

    def __call__(self, tensor):
        if self.transform is None:
            return tensor
        if self.key is None:
            return run_transform(self.transform, tensor)
        return run_transform(self.transform, {self.key: tensor})[self.key]


def tensor_transform(transform, key: str | None = None) -> Callable[[Any], Any]:
    """``transform`` as ``MetaTensor -> MetaTensor``: an array transform as it is, a dictionary
    transform around ``{key: tensor}`` (``key`` defaults to the transform's first key)."""
    if transform is None:
        return TensorTransform(None)
    return TensorTransform(transform, key or _is_dictionary_transform(transform))


def from_module(
    module: nn.Module,
    transform=None,
    class_names: Sequence[str] = (),
    *,
    spatial_dims: int = 3,
    layer: str | None = None,
    fc_layer: str | None = None,
    modalities: Sequence[str] = (),
    name: str | None = None,
    key: str | None = None,
) -> ExplainableModel:
    """An ``nn.Module`` with its MONAI preprocessing (array or dictionary transforms; the image
    key of a dictionary transform is ``key`` or its first key). ``transform`` None: the model
    sees the source volume on its own grid."""
    if isinstance(module, torch.jit.ScriptModule):
        raise CheckpointError(
            f"{name or type(module).__name__}: a TorchScript module cannot be explained (hooks do not attach to "
            "ScriptModules); pass the nn.Module built in Python with its state_dict loaded"
        )
    provenance = ModelProvenance("module", name or type(module).__name__)
    return ExplainableModel(module, tensor_transform(transform, key), tuple(class_names), spatial_dims, provenance,
                            layer, fc_layer, tuple(modalities))


def from_checkpoint(checkpoint) -> ExplainableModel:
    """A loaded medcam :class:`~medcam.models.Checkpoint` (hook-free exact CAM on its GapClassifier)."""
    config = checkpoint.preprocess_config
    transform = build_transform(config)
    name = checkpoint.path.name if checkpoint.path is not None else "checkpoint"
    provenance = ModelProvenance("medcam-checkpoint", name, checkpoint.path, checkpoint.sha256)
    return ExplainableModel(
        checkpoint.model, lambda tensor: run_transform(transform, {"image": tensor})["image"], checkpoint.class_names,
        checkpoint.spatial_dims, provenance, "features", "classifier", tuple(checkpoint.metadata.get("modalities", ())),
        config.window if config.intensity == "window" else None,
    )


def checked_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device this process can use, or a one-line error saying why not."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise MedcamError(f"--device {device}: not a device name; use cpu, cuda or cuda:N") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise MedcamError(f"--device {device}: CUDA is not available here (a CPU-only torch, or no GPU); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise MedcamError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise MedcamError(f"--device {device}: medcam runs on cpu or cuda")
    return device


def load_model(path: str | Path, *, device: str | torch.device = "cpu", class_names: Sequence[str] | None = None) -> ExplainableModel:
    """The model at ``path``: a MONAI Bundle folder or zip, or a medcam checkpoint file.

    Raises
    ------
    CheckpointError
        Missing path, a file of another kind, or a bundle that cannot be loaded (the message says why).
    """
    path = Path(path)
    device = checked_device(device)
    if not path.exists():
        raise CheckpointError(f"{path}: no such model file or bundle folder")
    if path.is_dir() or path.suffix.lower() == ".zip":
        from medcam.models.bundle import load_bundle

        return load_bundle(path, device=device, class_names=class_names)
    from medcam.models.checkpoint import load_checkpoint

    model = from_checkpoint(load_checkpoint(path, device=device))
    if class_names:
        if len(class_names) != len(model.class_names):
            raise CheckpointError(f"{path}: {len(class_names)} class names given for a model of {len(model.class_names)} classes")
        model = dataclasses.replace(model, class_names=tuple(class_names), _cache={})
    return model
