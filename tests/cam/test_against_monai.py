"""Grad-CAM and Grad-CAM++ equal MONAI's at batch size 1, value for value (MONAI rectifies; given
an identity postprocessing it does not normalise, so the comparison is on the rectified raw maps)."""

import math

import numpy as np
import pytest
import torch
from monai.visualize import GradCAM as MonaiGradCAM
from monai.visualize import GradCAMpp as MonaiGradCAMpp

from medcam.cam import GradCAM, GradCAMPlusPlus
from medcam.models import ClassifierConfig, GapClassifier


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def model(request):
    torch.manual_seed(3)
    return GapClassifier(ClassifierConfig(request.param, channels=(4, 8, 8), convs_per_stage=(1, 1, 1))).eval()


@pytest.mark.parametrize(("ours", "theirs"), [(GradCAM, MonaiGradCAM), (GradCAMPlusPlus, MonaiGradCAMpp)], ids=["gradcam", "gradcam++"])
def test_matches_monai_at_batch_one(model, ours, theirs):
    size = (48, 40, 32)[: model.config.spatial_dims]
    x = torch.randn(1, 1, *size, generator=torch.Generator().manual_seed(0))
    with ours(model, "features") as extractor:
        result = extractor(x, target=1)
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())  # ours left nothing behind
    # MONAI rectifies at feature resolution, before upsampling: compare there
    monai_map = theirs(nn_module=model, target_layers="features", postprocessing=lambda m: m).compute_map(x, class_idx=1)
    mine = torch.relu(result.feature_map).flatten().numpy()
    other = monai_map.detach().flatten().numpy()
    assert mine.shape == other.shape and other.max() > 0
    # the same values, scale and sign included (a correlation alone is blind to both). MONAI's
    # Grad-CAM++ keeps the paper's exp(score) factor, which medcam leaves out, and adds 1e-7 to
    # the alphas' denominators (about 1 % of them here): equal within 2 % once the factor is taken out
    if ours is GradCAMPlusPlus:
        other = other / math.exp(float(result.score[0]))
        np.testing.assert_allclose(mine, other, rtol=0.02, atol=1e-3 * float(np.abs(other).max()))
    else:
        np.testing.assert_allclose(mine, other, rtol=1e-4, atol=1e-5 * float(np.abs(other).max()))
    assert np.corrcoef(mine, other)[0, 1] > 0.999
