"""Preprocessing from a :class:`Volume` (or a file) to the model grid, with MONAI dictionary transforms.

The result is a MONAI ``MetaTensor`` of shape ``(1, *spatial)`` whose ``.affine`` maps model
voxel indices to the same RAS millimetres as the source volume's affine. Every spatial step
(orientation, spacing, pad/crop, resize) is affine, so that one matrix is all the geometry
needed to put a model-grid heatmap back on the scanner grid (:func:`medcam.geometry.model_geometry`).

A :class:`PreprocessConfig` is stored in every checkpoint so inference reproduces training.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medcam.errors import CheckpointError, ConfigError, GeometryError
from medcam.geometry import Volume, model_geometry, orthogonal_axes

__all__ = ["PreprocessConfig", "build_transform", "to_meta_tensor", "preprocess", "run_transform", "model_geometry"]

_INTENSITY_MODES = ("window", "robust_zscore", "percentile")
MAX_MODEL_VOXELS = 512**3  # a larger model grid is refused: 0.5 GiB per float32 input already
_SIZE_MODES = ("pad_crop", "resize")


@dataclass(frozen=True)
class PreprocessConfig:
    """How a volume becomes model input.

    Parameters
    ----------
    spatial_dims : {2, 3}
        3 for volumes (CT, MR); 2 for single images (radiographs, single slices).
    spacing : tuple of float
        Target voxel size in mm, one per spatial axis.
    spatial_size : tuple of int
        Model input size, one per spatial axis, reached by centred pad/crop (``size_mode``
        "pad_crop", keeps the spacing) or by resizing (``"resize"``, changes it).
    intensity : {"window", "robust_zscore", "percentile"}
        "window": clip to ``window`` = (centre, width), e.g. (40, 400) HU, and scale to [0, 1];
        "robust_zscore": (x - median) / (IQR / 1.349) over the foreground (voxels above 10% of
        the 99th percentile), clipped to [-5, 5] (MR); "percentile": the 1st..99th percentiles
        scaled to [0, 1] (radiographs).
    orientation : str or None
        Axis codes to reorient to ("RAS"); None leaves the axes as stored (2D projection images).
    """

    spatial_dims: int
    spacing: tuple[float, ...]
    spatial_size: tuple[int, ...]
    intensity: str = "window"
    window: tuple[float, float] | None = (40.0, 400.0)
    orientation: str | None = "RAS"
    size_mode: str = "pad_crop"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "spatial_size", tuple(int(s) for s in self.spatial_size))
        if self.window is not None:
            object.__setattr__(self, "window", tuple(float(v) for v in self.window))
        problems = []
        if self.spatial_dims not in (2, 3):
            problems.append(f"spatial_dims must be 2 or 3, found {self.spatial_dims}")
        if len(self.spacing) != self.spatial_dims or any(s <= 0 for s in self.spacing):
            problems.append(f"spacing needs {self.spatial_dims} positive values, found {self.spacing}")
        if len(self.spatial_size) != self.spatial_dims or any(s < 1 for s in self.spatial_size):
            problems.append(f"spatial_size needs {self.spatial_dims} positive sizes, found {self.spatial_size}")
        elif math.prod(self.spatial_size) > MAX_MODEL_VOXELS:
            problems.append(f"a model grid of {' x '.join(map(str, self.spatial_size))} voxels is more than the "
                            f"{MAX_MODEL_VOXELS:,} (512^3) medcam allows: each input would take "
                            f"{math.prod(self.spatial_size) * 4 / 2**30:.0f} GiB before the network's own memory")
        if self.intensity not in _INTENSITY_MODES:
            problems.append(f"intensity must be one of {_INTENSITY_MODES}, found {self.intensity!r}")
        if self.intensity == "window" and (self.window is None or len(self.window) != 2 or self.window[1] <= 0):
            problems.append(f"intensity 'window' needs window=(centre, width > 0), found {self.window}")
        if self.size_mode not in _SIZE_MODES:
            problems.append(f"size_mode must be one of {_SIZE_MODES}, found {self.size_mode!r}")
        if problems:
            raise ConfigError("PreprocessConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """The configuration as JSON-ready values (stored in checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        """The configuration stored by :meth:`to_dict`."""
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"invalid preprocessing config {data!r}: {exc}") from exc


def _robust_zscore(image):
    """(x - median) / (IQR / 1.349) over the foreground, clipped to [-5, 5]."""
    import torch

    values = image.as_tensor() if hasattr(image, "as_tensor") else image
    flat = values.reshape(-1).float()
    threshold = 0.1 * torch.quantile(flat[:: max(1, flat.numel() // 200_000)], 0.99)
    foreground = flat[flat > threshold]
    if foreground.numel() < 10:
        foreground = flat
    sample = foreground[:: max(1, foreground.numel() // 200_000)]
    q1, median, q3 = torch.quantile(sample, torch.tensor([0.25, 0.5, 0.75], dtype=sample.dtype))
    scale = torch.clamp((q3 - q1) / 1.349, min=1e-6)
    return torch.clamp((image - median) / scale, -5.0, 5.0)


def build_transform(config: PreprocessConfig):
    """The MONAI ``Compose`` of dictionary transforms (key ``"image"``) for ``config``."""
    from monai.transforms import (
        Compose,
        Lambdad,
        Orientationd,
        Resized,
        ResizeWithPadOrCropd,
        ScaleIntensityRanged,
        ScaleIntensityRangePercentilesd,
        Spacingd,
    )

    steps: list[Any] = []  # MONAI dictionary transforms
    if config.orientation is not None:
        labels = (("L", "R"), ("P", "A"), ("I", "S"))  # RAS world, as the MetaTensor's "space" says
        steps.append(Orientationd("image", axcodes=config.orientation[: config.spatial_dims], labels=labels))
    steps.append(Spacingd("image", pixdim=config.spacing, mode="bilinear", padding_mode="border"))
    if config.intensity == "window":
        centre, width = config.window or (0.0, 0.0)  # never empty: PreprocessConfig requires a window here
        steps.append(
            ScaleIntensityRanged("image", a_min=centre - width / 2, a_max=centre + width / 2, b_min=0.0, b_max=1.0, clip=True)
        )
    elif config.intensity == "percentile":
        steps.append(ScaleIntensityRangePercentilesd("image", lower=1, upper=99, b_min=0.0, b_max=1.0, clip=True))
    else:
        steps.append(Lambdad("image", _robust_zscore))
    if config.size_mode == "pad_crop":
        steps.append(ResizeWithPadOrCropd("image", spatial_size=config.spatial_size, mode="constant"))
    else:
        steps.append(Resized("image", spatial_size=config.spatial_size, mode="trilinear" if config.spatial_dims == 3 else "bilinear"))
    return Compose(steps)


def to_meta_tensor(volume: Volume, spatial_dims: int):
    """A channel-first float32 ``MetaTensor`` of ``volume`` with its RAS affine (axes that are
    orthogonal but for float rounding made exactly orthogonal: :func:`orthogonal_axes`)."""
    import torch
    from monai.data import MetaTensor

    array = np.asarray(volume.array, dtype=np.float32)
    if spatial_dims == 2:
        if volume.shape[2] != 1:
            raise GeometryError(f"a 2D model expects a single image, found a volume of shape {volume.shape}")
        array = array[:, :, 0]
    elif volume.shape[2] == 1:
        raise GeometryError(f"a 3D model expects a volume, found a single image of shape {volume.shape}")
    # a C-ordered copy: Volume arrays are read-only, and MONAI's resampling wants contiguous input
    if array.flags.f_contiguous and not array.flags.c_contiguous:  # the readers' Fortran order:
        with warnings.catch_warnings():  # torch copies it (multi-threaded) from a read-only view
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            reversed_view = torch.from_numpy(array.T)
        tensor = _transposed_copy(reversed_view.permute(*range(array.ndim - 1, -1, -1)))
    else:
        tensor = torch.from_numpy(np.array(array, dtype=np.float32, copy=True, order="C"))
    # axes orthogonal to float rounding are made exactly so: MONAI's Spacing then puts the same
    # study's model grid in the same place whether it was read from DICOM or from NIfTI
    return MetaTensor(
        tensor[None],
        affine=torch.tensor(orthogonal_axes(volume.geometry.affine_ras), dtype=torch.float64),
        meta={"space": "RAS"},
    )


def _transposed_copy(view, slab: int = 16):
    """``view.contiguous()`` for a view whose last axis is the slowest in memory, copied a slab
    of ``slab`` indices of that axis at a time: each slab's writes fill whole cache lines, and
    its reads stay in cache (a quarter less time than one copy at 512 x 512 x 200)."""
    import torch

    out = torch.empty(view.shape, dtype=view.dtype)
    for start in range(0, view.shape[-1], slab):
        out[..., start : start + slab].copy_(view[..., start : start + slab])
    return out


def preprocess(source: Volume | str | Path, config: PreprocessConfig, *, transform=None):
    """Volume or file -> model-grid ``MetaTensor`` ``(1, *spatial_size)`` with its RAS affine.

    ``transform`` may be passed to reuse one built by :func:`build_transform`.
    """
    if not isinstance(source, Volume):
        from medcam.io import read_volume

        source = read_volume(source)
    transform = transform or build_transform(config)
    return run_transform(transform, {"image": to_meta_tensor(source, config.spatial_dims)})["image"]


def run_transform(transform, data):
    """``transform(data)``, a ``Compose`` step by step: each full-resolution intermediate is
    released as soon as the next step has made its own (a Compose call keeps its input alive)."""
    from monai.transforms import Compose, apply_transform

    steps = transform.transforms if isinstance(transform, Compose) and not getattr(transform, "lazy", False) else [transform]
    for step in steps:
        data = apply_transform(step, data)
    return data
