"""CAM maps are aligned with the input: with a network whose features just pool the input, the CAM
peak of a single bright voxel lies in the feature cell that holds the voxel (no half-cell drift)."""

import numpy as np
import pytest
import torch
from torch import nn

from medcam.cam import CAM
from medcam.models import ClassifierConfig, GapClassifier


def _pooling_network(spatial_dims: int, pool_after, fine_head: int = 0, fine_path: str = "skip") -> GapClassifier:
    """Convolutions that only pass values on; with a fine head, ``fine_path`` says which of its two
    inputs its last convolution passes on: the maps before the last pooling ("skip") or the
    repeated coarse maps ("coarse")."""
    config = ClassifierConfig(spatial_dims, channels=(2, 2, 2), convs_per_stage=(1, 1, 1), pool_after=pool_after,
                              fine_head=fine_head)
    model = GapClassifier(config)
    fuse = model.features.fuse[0] if fine_head else None
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                module.weight.zero_()
                centre = (slice(None), slice(None)) + (1,) * spatial_dims
                if module is fuse:  # input channels: the skip's, then the coarse maps'
                    out_channels = module.weight.shape[0]
                    offset = 0 if fine_path == "skip" else module.weight.shape[1] - out_channels
                    module.weight[centre][:, offset : offset + out_channels] = torch.eye(out_channels)
                elif module.weight.shape[-1] == 3:  # 3x3(x3): the centre tap passes each channel through
                    module.weight[centre] = torch.eye(module.weight.shape[0], module.weight.shape[1])
                else:  # the patchify stem, or the 1x1 reduction: average of its block or channels
                    module.weight.fill_(1.0 / module.weight[0, 0].numel())
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_parameters()
                module.reset_running_stats()
        model.classifier.weight.fill_(1.0)
        model.classifier.bias.zero_()
    return model.eval()


@pytest.mark.parametrize(
    ("spatial_dims", "pool_after", "fine_head", "fine_path"),
    [(3, (True, False, False), 0, ""), (3, (True, True, False), 0, ""), (2, (True, True, False), 0, ""),
     (3, (True, False, False), 2, "skip"), (3, (True, False, False), 2, "coarse"), (2, (True, True, False), 2, "coarse")],
    ids=["3d-stride4", "3d-stride8", "2d-stride8", "3d-fine-head-skip", "3d-fine-head-coarse", "2d-fine-head-coarse"],
)
def test_cam_peak_sits_in_the_cell_of_the_bright_voxel(spatial_dims, pool_after, fine_head, fine_path):
    model = _pooling_network(spatial_dims, pool_after, fine_head, fine_path)
    # the cells the map can resolve: the fine head's when it passes the skip, the coarse grid's otherwise
    stride = model.config.stride * (2 if fine_path == "coarse" else 1)
    size = (48, 40, 32)[:spatial_dims]
    rng = np.random.default_rng(0)
    for _ in range(5):
        point = tuple(int(rng.integers(4, n - 4)) for n in size)
        x = torch.zeros(1, 1, *size)
        x[(0, 0, *point)] = 1.0
        with CAM(model) as extractor:
            result = extractor(x, target=1)
        peak = np.unravel_index(int(result.map[0].argmax()), size)
        # the upsampled peak lies in the feature cell that holds the bright voxel, along every axis
        assert np.array_equal(np.asarray(peak) // stride, np.asarray(point) // stride), (point, peak)
