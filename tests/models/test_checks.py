"""The validation check of a trained model's maps: hit rate, energy and evidence in the foreground,
on hand-made inputs whose CAM is known."""

import torch
from torch import nn

from medcam.models.checks import foreground, validation_localisation


class EvidenceIsTheMirroredImage(nn.Module):
    """A GAP + linear model whose feature map is its input mirrored through the volume's centre:
    the class-1 CAM relative to the mean class is that mirror image (weights -1 and +1)."""

    def __init__(self):
        super().__init__()
        self.classifier = nn.Linear(1, 2)
        with torch.no_grad():
            self.classifier.weight.copy_(torch.tensor([[-1.0], [1.0]]))
            self.classifier.bias.zero_()

    def forward_with_features(self, x):
        features = torch.flip(x, dims=(2, 3, 4))
        return self.classifier(features.mean(dim=(2, 3, 4))), features


def test_foreground_is_what_differs_from_the_border():
    image = torch.zeros(1, 10, 10, 10)
    image[0, 3:7, 3:7, 3:7] = 5.0
    assert torch.equal(foreground(image)[0], image[0] > 0)
    shifted = image - 2.0  # a negative background (z-scored air) is background all the same
    assert torch.equal(foreground(shifted)[0], image[0] > 0)


def test_hit_rate_energy_and_evidence_in_foreground_are_measured_on_the_model_grid():
    images = torch.zeros(3, 1, 10, 10, 10)
    images[:2, 0, 2:8, 2:8, 2:8] = 1.0  # cases 0 and 1: a "body" the mirror maps onto itself
    images[0, 0, 4, 4, 4] = 3.0         # mirrored to (5, 5, 5): inside case 0's lesion
    images[1, 0, 7, 7, 7] = 3.0         # mirrored to (2, 2, 2): outside case 1's lesion
    images[2, 0, 0:4, 0:4, 0:4] = 1.0   # case 2 (negative): a body in a corner, its evidence in the air
    masks = torch.zeros(3, 1, 10, 10, 10, dtype=torch.bool)
    masks[0, 0, 3:6, 3:6, 3:6] = True
    masks[1, 0, 3:5, 3:5, 3:5] = True
    found = validation_localisation(EvidenceIsTheMirroredImage(), images, torch.tensor([1, 1, 0]), masks)
    assert found["positives"] == 2 and found["hit_rate"] == 0.5
    total = 6**3 - 1 + 3.0  # each positive's evidence: the body, one voxel of it at 3
    assert abs(found["energy"] - ((26 + 3.0) / total + 8 / total) / 2) < 1e-6
    assert abs(found["evidence_in_foreground"] - (1 + 1 + 0) / 3) < 1e-6
    assert "hit_rate" not in validation_localisation(EvidenceIsTheMirroredImage(), images, torch.tensor([1, 1, 0]), None)
