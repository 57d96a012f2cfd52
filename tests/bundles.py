"""Write MONAI Bundle folders for the tests: real MONAI networks, seeded initial weights, the layout
and config keys of MONAI's bundle specification (configs/inference.json, configs/metadata.json,
models/model.pt)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

#: A bundle's preprocessing as MONAI's own bundles write it: loading steps first, then an
#: orientation that is not RAS, spacing, an intensity window and a pad/crop to the network size.
PREPROCESSING = [
    {"_target_": "LoadImaged", "keys": "image", "reader": "PydicomReader"},
    {"_target_": "EnsureChannelFirstd", "keys": "image"},
    {"_target_": "Orientationd", "keys": "image", "axcodes": "LPI"},
    {"_target_": "Spacingd", "keys": "image", "pixdim": [4.0, 4.0, 5.0], "mode": "bilinear"},
    {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -160, "a_max": 240, "b_min": 0.0, "b_max": 1.0, "clip": True},
    {"_target_": "ResizeWithPadOrCropd", "keys": "image", "spatial_size": [64, 64, 64]},
]

NETWORKS = {
    "densenet121": {"_target_": "DenseNet121", "spatial_dims": 3, "in_channels": 1, "out_channels": 2},
    "resnet": {"_target_": "ResNet", "block": "basic", "layers": [1, 1, 1, 1], "block_inplanes": [8, 16, 32, 64],
               "spatial_dims": 3, "n_input_channels": 1, "num_classes": 2},
    "seresnet": {"_target_": "SEResNet50", "spatial_dims": 3, "in_channels": 1, "num_classes": 2, "layers": [1, 1, 1, 1]},
}


def build_network(name: str, seed: int = 0) -> torch.nn.Module:
    """The network of ``NETWORKS[name]``, built by MONAI's ConfigParser with seeded weights."""
    from monai.bundle import ConfigParser

    torch.manual_seed(seed)
    return ConfigParser({"network_def": NETWORKS[name]}).get_parsed_content("network_def").eval()


def write_bundle(root: Path, network: str | dict, *, state_dict: dict | None = None, preprocessing: list | None = None,
                 metadata: dict | None = None, weights: bool = True, extra: dict | None = None) -> Path:
    """A bundle folder at ``root``; ``network`` names an entry of NETWORKS or is a network_def."""
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    network_def = NETWORKS[network] if isinstance(network, str) else network
    config = {
        "imports": ["$import torch"],
        "bundle_root": ".",
        "device": "$torch.device('cpu')",
        "network_def": network_def,
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": PREPROCESSING if preprocessing is None else preprocessing},
        **(extra or {}),
    }
    (root / "configs" / "inference.json").write_text(json.dumps(config, indent=2))
    meta = {
        "name": root.name, "version": "0.1.0",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "hounsfield", "modality": "CT", "num_channels": 1,
                                 "spatial_shape": [64, 64, 64]}},
            "outputs": {"pred": {"type": "probabilities", "num_channels": 2, "channel_def": {"0": "no lesion", "1": "lesion"}}},
        },
    }
    (root / "configs" / "metadata.json").write_text(json.dumps(metadata if metadata is not None else meta, indent=2))
    if weights:
        if state_dict is None:
            state_dict = build_network(network).state_dict() if isinstance(network, str) else {}
        torch.save(state_dict, root / "models" / "model.pt")
    return root
