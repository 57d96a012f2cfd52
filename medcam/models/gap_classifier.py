"""A lesion classifier whose head is global average pooling plus one linear layer (CAM-ready).

In the spirit of SIANN (Zhang et al., shift-invariant neural network for lesion detection):
convolutions and max pooling make detection independent of where the lesion sits, and global
average pooling (GAP) keeps the last feature maps spatial and class-specific, so the same
network detects and localises. The score of class ``c`` is

    y_c = b_c + sum_k w[c, k] * mean(F_k)

so ``M_c = sum_k w[c, k] * F_k`` is an exact spatial decomposition of it (Zhou et al., CVPR 2016).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from medcam.errors import CheckpointError, ConfigError

__all__ = ["ClassifierConfig", "FineHeadFeatures", "GapClassifier"]


@dataclass(frozen=True)
class ClassifierConfig:
    """Architecture of a :class:`GapClassifier`.

    A patchify stem comes first: a convolution ``channels[0]`` wide whose kernel equals its stride
    (``stem_stride``), so each stem output covers one block of input voxels and, like every 2x
    max pooling after it, keeps feature-voxel centres exactly where ``align_corners=False``
    upsampling puts them (no half-voxel drift of the maps). Then stage
    ``s`` is ``convs_per_stage[s]`` 3x3(x3) convolutions of width ``channels[s]`` with batch norm
    and ReLU, followed by 2x max pooling where ``pool_after`` says (by default after every stage
    but the last). The last stage's output is the feature map CAM uses, ``stride`` times
    smaller than the input: fewer poolings give finer maps at a higher cost.

    ``fine_head`` > 0 adds a head that halves the map's cell size for little cost (the deep
    stages keep running on the coarse grid): the last stage's maps are reduced to
    ``fine_head`` channels by a 1x1(x1) convolution, repeated 2x (nearest neighbour, so each
    coarse cell covers exactly its two fine cells per axis) and joined with the maps just
    before the last pooling; one 3x3(x3) convolution of width ``fine_head`` then gives the
    feature map CAM uses. It needs at least one pooling.
    """

    spatial_dims: int = 3
    in_channels: int = 1
    num_classes: int = 2
    channels: tuple[int, ...] = (16, 32, 64)
    convs_per_stage: tuple[int, ...] = (1, 2, 2)
    stem_stride: int = 2
    pool_after: tuple[bool, ...] | None = None
    dropout: float = 0.0
    fine_head: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "convs_per_stage", tuple(int(c) for c in self.convs_per_stage))
        if self.pool_after is None:
            object.__setattr__(self, "pool_after", tuple(s < len(self.channels) - 1 for s in range(len(self.channels))))
        object.__setattr__(self, "pool_after", tuple(bool(p) for p in self.pool_after))  # type: ignore[union-attr]
        problems = []
        if self.spatial_dims not in (2, 3):
            problems.append(f"spatial_dims must be 2 or 3, found {self.spatial_dims}")
        if self.num_classes < 2:
            problems.append(f"num_classes must be at least 2, found {self.num_classes}")
        if not self.channels or len(self.channels) != len(self.convs_per_stage):
            problems.append(f"channels {self.channels} and convs_per_stage {self.convs_per_stage} must have one entry per stage")
        if len(self.pools) != len(self.channels):
            problems.append(f"pool_after {self.pool_after} needs one entry per stage")
        if any(c < 1 for c in (*self.channels, *self.convs_per_stage, self.in_channels, self.stem_stride)):
            problems.append("channel counts and convolutions per stage must be positive")
        if self.fine_head < 0 or (self.fine_head and not any(self.pools)):
            problems.append(f"fine_head {self.fine_head} must be 0, or positive with at least one pooling in pool_after")
        if problems:
            raise ConfigError("ClassifierConfig: " + "; ".join(problems))

    @property
    def stride(self) -> int:
        """Ratio of input size to feature-map size."""
        return self.stem_stride * 2 ** (sum(self.pools) - (1 if self.fine_head else 0))

    @property
    def pools(self) -> tuple[bool, ...]:
        """``pool_after`` as filled in: whether each stage is followed by a 2x pooling."""
        return self.pool_after or ()

    @property
    def feature_channels(self) -> int:
        """Channels of the feature map CAM uses."""
        return self.fine_head or self.channels[-1]

    def to_dict(self) -> dict:
        """The configuration as JSON-ready values (stored in checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ClassifierConfig:
        """The configuration stored by :meth:`to_dict`."""
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"invalid model config {data!r}: {exc}") from exc


class FineHeadFeatures(nn.Module):
    """The trunk with the ``fine_head`` of :class:`ClassifierConfig`: ``shallow`` runs up to the
    last pooling, ``deep`` from it (pooling included); ``reduce`` and ``fuse`` make the finer map.

    Submodules are registered in the order data flows through them.
    """

    def __init__(self, shallow: nn.Sequential, deep: nn.Sequential, skip_width: int, deep_width: int, width: int,
                 spatial_dims: int) -> None:
        super().__init__()
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        norm = nn.BatchNorm3d if spatial_dims == 3 else nn.BatchNorm2d
        self.shallow = shallow
        self.deep = deep
        self.reduce = nn.Sequential(conv(deep_width, width, 1, bias=False), norm(width), nn.ReLU(inplace=True))
        self.fuse = nn.Sequential(conv(skip_width + width, width, 3, padding=1, bias=False), norm(width), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feature maps at twice the coarse resolution, ``(N, fine_head, *spatial)``."""
        skip = self.shallow(x)
        coarse = self.reduce(self.deep(skip))
        fine = nn.functional.interpolate(coarse, scale_factor=2.0, mode="nearest")
        # max pooling floors odd sizes: the last fine cell of an odd axis repeats its neighbour
        pad: list[int] = []
        for axis in range(skip.dim() - 1, 1, -1):
            pad += [0, skip.shape[axis] - fine.shape[axis]]
        if any(p > 0 for p in pad):
            fine = nn.functional.pad(fine, pad, mode="replicate")
        return self.fuse(torch.cat([skip, fine], dim=1))


class GapClassifier(nn.Module):
    """CNN -> global average pooling -> one linear layer, for 2D or 3D input.

    Named parts: ``features`` (the convolutional trunk), ``pooling`` (GAP), ``classifier``
    (the linear layer). ``forward(x)`` returns logits ``(N, num_classes)``;
    ``forward_with_features(x)`` also returns the last feature maps ``(N, C, *spatial)``, so
    CAM needs no hooks. Both work under TorchScript and ``torch.compile``.
    """

    def __init__(self, config: ClassifierConfig = ClassifierConfig()) -> None:
        super().__init__()
        self.config = config
        conv = nn.Conv3d if config.spatial_dims == 3 else nn.Conv2d
        norm = nn.BatchNorm3d if config.spatial_dims == 3 else nn.BatchNorm2d
        pool = nn.MaxPool3d if config.spatial_dims == 3 else nn.MaxPool2d
        width = config.channels[0]
        layers: list[nn.Module] = [
            conv(config.in_channels, width, config.stem_stride, stride=config.stem_stride, bias=False),
            norm(width),
            nn.ReLU(inplace=True),
        ]
        skip_width, last_pool = width, -1
        for stage, (channels, n_convs) in enumerate(zip(config.channels, config.convs_per_stage)):
            for _ in range(n_convs):
                layers += [conv(width, channels, 3, padding=1, bias=False), norm(channels), nn.ReLU(inplace=True)]
                width = channels
            if config.pools[stage]:
                skip_width, last_pool = width, len(layers)
                layers.append(pool(2))
        if config.fine_head:
            self.features: nn.Module = FineHeadFeatures(
                nn.Sequential(*layers[:last_pool]), nn.Sequential(*layers[last_pool:]), skip_width, width, config.fine_head,
                config.spatial_dims,
            )
            width = config.fine_head
        else:
            self.features = nn.Sequential(*layers)
        self.pooling = nn.AdaptiveAvgPool3d(1) if config.spatial_dims == 3 else nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(width, config.num_classes)

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(N, num_classes)`` and last feature maps ``(N, C, *spatial)``."""
        features = self.features(x)
        pooled = torch.flatten(self.pooling(features), 1)
        return self.classifier(self.dropout(pooled)), features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)``."""
        return self.forward_with_features(x)[0]


# TorchScript compiles only forward and what it calls unless told; export the feature path too.
GapClassifier.forward_with_features = torch.jit.export(GapClassifier.forward_with_features)  # type: ignore[method-assign]
