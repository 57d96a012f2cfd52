"""CAM maps are aligned with the input: with a network whose features just pool the input, the CAM
peak of a single bright voxel lies in the feature cell that holds the voxel (no half-cell drift)."""

import numpy as np
import pytest
import torch
from torch import nn

from medcam.cam import CAM
from medcam.models import ClassifierConfig, GapClassifier


def _pooling_network(spatial_dims: int, pool_after) -> GapClassifier:
    config = ClassifierConfig(spatial_dims, channels=(2, 2, 2), convs_per_stage=(1, 1, 1), pool_after=pool_after)
    model = GapClassifier(config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                module.weight.zero_()
                if module.weight.shape[-1] == 3:  # 3x3(x3): the centre tap passes each channel through
                    centre = (slice(None), slice(None)) + (1,) * spatial_dims
                    module.weight[centre] = torch.eye(module.weight.shape[0], module.weight.shape[1])
                else:  # the patchify stem: average of its block
                    module.weight.fill_(1.0 / module.weight[0, 0].numel())
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_parameters()
                module.reset_running_stats()
        model.classifier.weight.fill_(1.0)
        model.classifier.bias.zero_()
    return model.eval()


@pytest.mark.parametrize(("spatial_dims", "pool_after"), [(3, (True, False, False)), (3, (True, True, False)), (2, (True, True, False))],
                         ids=["3d-stride4", "3d-stride8", "2d-stride8"])
def test_cam_peak_sits_in_the_cell_of_the_bright_voxel(spatial_dims, pool_after):
    model = _pooling_network(spatial_dims, pool_after)
    stride = model.config.stride
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
