import numpy as np
import pytest
import torch
from torch import nn

from medcam.metrics.faithfulness import baseline_image, deletion_insertion
from medcam.metrics.sanity import cascading_randomisation, ssim_global
from medcam.models import ClassifierConfig, GapClassifier


class BrightSpot(nn.Module):
    """Class 1 logit = 10 * mean of the 4x4x4 corner region: only those voxels matter."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Linear(1, 1)

    def forward(self, x):
        score = 10 * x[:, 0, :4, :4, :4].mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(score), score], dim=1)


def test_a_faithful_map_deletes_fast_and_inserts_fast():
    x = torch.ones(1, 1, 8, 8, 8)
    good = torch.zeros(8, 8, 8)
    good[:4, :4, :4] = 1.0  # ranks exactly the voxels the model uses first
    bad = 1.0 - good  # ranks them last
    good_curves = deletion_insertion(BrightSpot(), x, good, 1, steps=8, baseline="constant", batch_size=3)
    bad_curves = deletion_insertion(BrightSpot(), x, bad, 1, steps=8, baseline="constant", batch_size=3)
    assert good_curves.deletion_auc < bad_curves.deletion_auc
    assert good_curves.insertion_auc > bad_curves.insertion_auc
    assert good_curves.deletion[0] == pytest.approx(bad_curves.deletion[0])  # nothing removed yet
    # after 1/8 of the voxels (exactly the used region) the good map has removed all evidence
    assert good_curves.deletion[1] == pytest.approx(0.5, abs=1e-6)
    assert len(good_curves.fractions) == 9


def test_baselines_and_shape_checks():
    x = torch.zeros(1, 1, 6, 6, 6)
    x[0, 0, 3, 3, 3] = 1.0
    blurred = baseline_image(x, "blur", sigma_voxels=1.0)
    assert blurred.shape == x.shape and float(blurred.max()) < 1.0 and float(blurred.sum()) == pytest.approx(1.0, rel=0.05)
    assert torch.equal(baseline_image(x, "constant", value=2.0), torch.full_like(x, 2.0))
    with pytest.raises(ValueError, match="baseline must be"):
        baseline_image(x, "noise")
    with pytest.raises(ValueError, match="expected x"):
        deletion_insertion(BrightSpot(), x, torch.zeros(5, 5, 5), 1)


def test_ssim_global():
    a = np.random.default_rng(0).normal(size=100)
    assert ssim_global(a, a) == pytest.approx(1.0)
    assert ssim_global(a, 3 * a + 1) == pytest.approx(1.0)  # scaled to [0, 1] first
    assert ssim_global(a, -a) < 0.5


def test_randomisation_drops_similarity_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = GapClassifier(ClassifierConfig(3, channels=(4, 8), convs_per_stage=(1, 1))).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 1, 16, 16, 8, generator=torch.Generator().manual_seed(1))
    steps = cascading_randomisation(model, x, 1, method="gradcam")
    assert [s.layer for s in steps][0] == "classifier"
    assert steps[-1].spearman < 0.9
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
