"""Load a MONAI Bundle (folder or zip) as an :class:`ExplainableModel`.

The layout MONAI's bundle specification defines::

    <bundle>/configs/inference.json   (or .yaml)  network_def, preprocessing
    <bundle>/configs/metadata.json                 class names, input modality (optional)
    <bundle>/models/model.pt                       the state_dict (or {"model": state_dict})

The network is built from ``network_def`` with ``monai.bundle.ConfigParser`` and its weights
are loaded with ``torch.load(..., weights_only=True)`` (a pickle cannot run code). The
preprocessing is the bundle's own ``preprocessing`` with its loading steps (``LoadImage(d)``,
``EnsureChannelFirst(d)``) taken out: medcam's readers load the study, with the geometry they
get right (slices by position, gantry tilt, enhanced multi-frame), and hand the rest of the
bundle's transforms a channel-first ``MetaTensor`` with its RAS affine. Like any MONAI bundle,
``inference.json`` is code (``_target_`` classes are imported, ``$`` expressions evaluated): load
only bundles you trust.
"""

from __future__ import annotations

import copy
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from medcam.errors import CheckpointError
from medcam.models.explainable import ExplainableModel, tensor_transform
from medcam.models.provenance import ModelProvenance, file_sha256

__all__ = ["load_bundle", "LOADING_TRANSFORMS"]

#: Steps of a bundle's preprocessing that medcam's readers replace.
LOADING_TRANSFORMS = ("LoadImage", "LoadImaged", "EnsureChannelFirst", "EnsureChannelFirstd", "AddChannel", "AddChanneld")
_CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")


def _target_name(item: Any) -> str:
    return str(item.get("_target_", "")).rsplit(".", 1)[-1] if isinstance(item, dict) else ""


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _one_line(exc: BaseException) -> str:
    cause = _root_cause(exc)
    text = " ".join(str(cause).split())
    return f"{type(cause).__name__}: {text[:300]}"


def _parse(parser, key: str, where: str):
    """``parser.get_parsed_content(key)``, every failure as one CheckpointError line."""
    try:
        return parser.get_parsed_content(key)
    except Exception as exc:  # noqa: BLE001 - MONAI wraps import and constructor errors in RuntimeError
        cause = _root_cause(exc)
        if isinstance(cause, (ImportError, ModuleNotFoundError)) or "Cannot locate" in str(cause) or "not found" in str(cause):
            raise CheckpointError(
                f"{where}: '{key}' references something that cannot be imported ({_one_line(exc)}); "
                "install the package the bundle needs"
            ) from exc
        raise CheckpointError(f"{where}: '{key}' cannot be built ({_one_line(exc)})") from exc


def _find_root(folder: Path) -> Path:
    """The folder holding ``configs/`` (a bundle zip usually holds one top folder)."""
    if (folder / "configs").is_dir():
        return folder
    children = [p for p in folder.iterdir() if p.is_dir() and (p / "configs").is_dir()]
    if len(children) == 1:
        return children[0]
    raise CheckpointError(f"{folder}: not a MONAI Bundle (no configs/ folder with inference.json)")


def _section(metadata: dict, key: str) -> dict:
    """``metadata["network_data_format"][key]``, or an empty dict where either is absent or not an object."""
    formats = metadata.get("network_data_format")
    section = formats.get(key) if isinstance(formats, dict) else None
    return section if isinstance(section, dict) else {}


def _class_names(metadata: dict, given: Sequence[str] | None, where: str) -> tuple[str, ...]:
    if given:
        return tuple(given)
    for output in _section(metadata, "outputs").values():
        channels = output.get("channel_def") if isinstance(output, dict) else None
        if isinstance(channels, dict) and channels:
            try:
                return tuple(str(channels[k]) for k in sorted(channels, key=int))
            except ValueError as exc:
                raise CheckpointError(f"{where}: metadata.json channel_def keys must be class indices, found {sorted(channels)}") from exc
    return ()


def _modalities(metadata: dict) -> tuple[str, ...]:
    found = []
    for item in _section(metadata, "inputs").values():
        if isinstance(item, dict) and isinstance(item.get("modality"), str) and item["modality"].strip():
            found.append(item["modality"])
    return tuple(found)


def _spatial_dims(parser, metadata: dict) -> int:
    network = parser.get("network_def", {})
    if isinstance(network, dict) and isinstance(network.get("spatial_dims"), int):
        return int(network["spatial_dims"])
    for item in _section(metadata, "inputs").values():
        shape = item.get("spatial_shape") if isinstance(item, dict) else None
        if isinstance(shape, (list, tuple)) and len(shape) in (2, 3):
            return len(shape)
    return 3


def _state_dict(path: Path, where: str) -> dict[str, torch.Tensor]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types on bad or unsafe files
        raise CheckpointError(
            f"{where}: models/model.pt is not a plain state_dict that loads with weights_only=True ({_one_line(exc)})"
        ) from exc
    if isinstance(payload, dict) and isinstance(payload.get("model"), dict):  # MONAI's CheckpointSaver layout
        payload = payload["model"]
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise CheckpointError(f"{where}: models/model.pt holds {type(payload).__name__}, not a state_dict of tensors")
    if payload and all(k.startswith("module.") for k in payload):  # saved from DataParallel / DDP
        payload = {k[len("module."):]: v for k, v in payload.items()}
    return payload


def _preprocessing(parser, where: str):
    """The bundle's preprocessing without its loading steps, and the image key."""
    raw = parser.get("preprocessing")
    if raw is None:
        raise CheckpointError(f"{where}: inference config has no 'preprocessing' (the transforms its network expects)")
    key = "image"
    if isinstance(raw, dict) and isinstance(raw.get("transforms"), list):
        steps = raw["transforms"]
    elif isinstance(raw, list):
        steps = raw
    else:
        steps = None
    if steps is not None:
        for item in steps:
            if _target_name(item) in ("LoadImaged", "EnsureChannelFirstd") and item.get("keys"):
                keys = item["keys"]
                key = keys[0] if isinstance(keys, list) else str(keys)
                break
        kept = [item for item in steps if _target_name(item) not in LOADING_TRANSFORMS]
        edited = copy.deepcopy(raw)
        if isinstance(edited, dict):
            edited["transforms"] = kept
        else:
            edited = kept
        parser["preprocessing"] = edited
    transform = _parse(parser, "preprocessing", where)
    if isinstance(transform, list):
        from monai.transforms import Compose

        transform = Compose(transform)
    return transform, key


def _load_folder(root: Path, where: str, *, device, class_names, sha256: str | None) -> ExplainableModel:
    from monai.bundle import ConfigParser

    configs = root / "configs"
    config = next((configs / name for name in _CONFIG_NAMES if (configs / name).is_file()), None)
    if config is None:
        raise CheckpointError(f"{where}: no configs/inference.json (or .yaml) in the bundle")
    weights = root / "models" / "model.pt"
    if not weights.is_file():
        if (root / "models" / "model.ts").is_file():
            raise CheckpointError(
                f"{where}: the bundle has only a TorchScript model (models/model.ts); medcam cannot explain it, since "
                "hooks do not attach to ScriptModules. Add the state_dict as models/model.pt (torch.save(net.state_dict()))"
            )
        raise CheckpointError(f"{where}: no models/model.pt (the network's state_dict) in the bundle")
    metadata: dict = {}
    metadata_path = configs / "metadata.json"
    if metadata_path.is_file():
        from medcam.io.tables import read_json_object

        metadata = read_json_object(metadata_path, CheckpointError, f"{where}: configs/metadata.json")
    parser = ConfigParser()
    try:
        parser.read_config(str(config))
    except Exception as exc:  # noqa: BLE001 - json / yaml errors
        raise CheckpointError(f"{where}: {config.name} cannot be read ({_one_line(exc)})") from exc
    parser["bundle_root"] = str(root)
    if "network_def" not in parser:
        raise CheckpointError(f"{where}: {config.name} has no 'network_def' (the network to build)")
    network = _parse(parser, "network_def", where)
    if not isinstance(network, torch.nn.Module):
        raise CheckpointError(f"{where}: 'network_def' builds {type(network).__name__}, not a torch.nn.Module")
    state = _state_dict(weights, where)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:500]
        raise CheckpointError(f"{where}: models/model.pt does not match 'network_def': {detail}") from exc
    network.eval().to(device)
    transform, key = _preprocessing(parser, where)
    name = str(metadata.get("name") or root.name)
    provenance = ModelProvenance("monai-bundle", name, Path(where), sha256 or file_sha256(weights))
    return ExplainableModel(
        network, tensor_transform(transform, key), _class_names(metadata, class_names, where), _spatial_dims(parser, metadata),
        provenance, modalities=_modalities(metadata),
    )


def _safe_extract(archive: zipfile.ZipFile, target: Path, where: str) -> None:
    base = target.resolve()
    for member in archive.namelist():
        destination = (base / member).resolve()
        if base != destination and base not in destination.parents:
            raise CheckpointError(f"{where}: the zip holds a path outside its folder ({member!r}); refused")
    archive.extractall(base)


def load_bundle(path: str | Path, *, device: str | torch.device = "cpu", class_names: Sequence[str] | None = None) -> ExplainableModel:
    """A MONAI Bundle folder or zip as an :class:`ExplainableModel` (see the module docstring).

    ``class_names`` overrides the bundle's ``metadata.json``.

    Raises
    ------
    CheckpointError
        No ``network_def`` or ``models/model.pt``; a TorchScript-only bundle; weights that do
        not match the network; a config that references a package that is not installed.
    """
    path = Path(path)
    where = str(path)
    if path.is_dir():
        return _load_folder(_find_root(path), where, device=device, class_names=class_names, sha256=None)
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a MONAI Bundle (neither a folder nor a zip)")
    with tempfile.TemporaryDirectory(prefix="medcam-bundle-") as folder, zipfile.ZipFile(path) as archive:
        _safe_extract(archive, Path(folder), where)
        return _load_folder(_find_root(Path(folder)), where, device=device, class_names=class_names, sha256=file_sha256(path))
