"""The GAP + linear head found from what the layers compute, on real MONAI networks and medcam's own,
and exact CAM checked on every call (mean map + bias = logit)."""

import pytest
import torch
from monai.networks.nets import DenseNet121, EfficientNetBN, ResNet, SEResNet50
from torch import nn

from medcam.cam import CAM, CamError, GradCAM, HiResCAM, find_gap_head
from medcam.models import ClassifierConfig, GapClassifier

NETWORKS = {
    "densenet121": (lambda: DenseNet121(spatial_dims=3, in_channels=1, out_channels=3), ("class_layers.relu", "class_layers.out")),
    "resnet": (lambda: ResNet("basic", [1, 1, 1, 1], [8, 16, 32, 64], spatial_dims=3, n_input_channels=1, num_classes=3), ("layer4", "fc")),
    "seresnet": (lambda: SEResNet50(spatial_dims=3, in_channels=1, num_classes=3, layers=(1, 1, 1, 1)), ("layer4", "last_linear")),
    # its activation module runs twice (stem and head): the head's call is the one taken
    "efficientnet": (lambda: EfficientNetBN("efficientnet-b0", spatial_dims=3, in_channels=1, num_classes=3, pretrained=False),
                     ("_swish", "_fc")),
    "gap_classifier": (lambda: GapClassifier(ClassifierConfig(3, num_classes=3, channels=(4, 8), convs_per_stage=(1, 1))),
                       ("features", "classifier")),
}


@pytest.fixture(params=list(NETWORKS), ids=list(NETWORKS))
def network(request):
    torch.manual_seed(0)
    build, head = NETWORKS[request.param]
    return build().eval(), head


def _input(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 1, 64, 64, 64, generator=torch.Generator().manual_seed(1))


def test_the_head_is_found_and_cam_is_exact_batch_exact_and_a_multiple_of_gradcam(network):
    model, (layer, fc) = network
    x = _input()
    found = find_gap_head(model, x)
    assert (found.feature_layer, found.fc_layer) == (layer, fc)
    assert not any(m._forward_hooks for m in model.modules())  # discovery left no hook
    targets = torch.tensor([2, 0])
    with CAM(model, layer, fc=fc, include_bias=True) as cam, GradCAM(model, layer) as gradcam:
        exact = cam(x, target=targets)
        gradient = gradcam(x, target=targets)
        alone = [cam(x[i : i + 1], target=int(targets[i])) for i in range(2)]
    # the spatial mean of the map with its bias is the logit itself
    assert torch.allclose(exact.feature_map.flatten(1).mean(1), exact.score, rtol=1e-4, atol=1e-4)
    for i in range(2):  # mixed targets in one batch give each sample its own map
        assert torch.allclose(exact.map[i], alone[i].map[0], atol=1e-4 * float(exact.map.abs().max()))
    bias = dict(model.named_modules())[fc].bias[targets].detach()
    no_bias = exact.feature_map - bias.reshape(-1, 1, 1, 1)
    positions = exact.feature_map[0].numel()
    assert torch.allclose(gradient.feature_map * positions, no_bias, rtol=1e-3, atol=1e-4 * float(no_bias.abs().max()))


def test_a_layer_that_does_not_feed_the_pooling_is_refused_for_cam():
    torch.manual_seed(0)
    model = DenseNet121(spatial_dims=3, in_channels=1, out_channels=2).eval()
    with pytest.raises(CamError, match=r"CAM from layer 'features' is not exact"):
        with CAM(model, "features", fc="class_layers.out") as cam:
            cam(_input(1))
    with pytest.raises(CamError, match=r"layer 'class_layer.out' not found in DenseNet121; did you mean 'class_layers.out'"):
        CAM(model, "class_layers.relu", fc="class_layer.out")


class FlattenHead(nn.Module):
    """Convolutions, then every position flattened into the linear layer: no global pooling."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 4, 4, stride=4)
        self.fc = nn.Linear(4 * 4 * 4 * 4, 2)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))


class Pooled(nn.Module):
    """GAP + linear, but the last activation is a function call, not a module."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 4, 4, stride=4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.tanh(self.conv(x)).mean(dim=(2, 3, 4)))


class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 4, stride=4)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3, 4))


@pytest.mark.parametrize(("model", "message"), [
    (FlattenHead(), r"no layer's output averages to the input of its linear layer 'fc'"),
    (Pooled(), r"no layer's output averages to the input of its linear layer 'fc'"),
    (TwoOutputs(), r"has no linear layer that produces its logits"),
], ids=["flatten", "functional-activation", "no-linear"])
def test_models_without_a_found_head_are_refused(model, message):
    with pytest.raises(CamError, match=message):
        find_gap_head(model.eval(), torch.randn(1, 1, 16, 16, 16))


def test_discovery_restores_the_training_flag_and_hooks_work_on_a_train_mode_model():
    torch.manual_seed(0)
    model = ResNet("basic", [1, 1, 1, 1], [8, 16, 32, 64], spatial_dims=3, n_input_channels=1, num_classes=2)
    model.train()
    model.fc.weight.requires_grad_(False)
    find_gap_head(model, _input(1))
    assert model.training and not model.fc.weight.requires_grad and model.conv1.weight.requires_grad
    with HiResCAM(model, "layer4") as extractor:
        extractor(_input(1), target=1)
    assert model.training and not model.fc.weight.requires_grad and model.conv1.weight.requires_grad
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())
