import pytest
import torch

from medcam.models import ClassifierConfig, GapClassifier
from medcam.models.gap_classifier import FineHeadFeatures


@pytest.fixture(params=[(2, 0), (3, 0), (2, 6), (3, 6)], ids=["2d", "3d", "2d-fine-head", "3d-fine-head"])
def model(request):
    torch.manual_seed(0)
    dims, fine_head = request.param
    config = ClassifierConfig(dims, channels=(4, 8, 16), convs_per_stage=(1, 1, 1), num_classes=3, fine_head=fine_head)
    return GapClassifier(config).eval()


def _input(model, batch=2):
    size = (32, 24, 16)[: model.config.spatial_dims]
    return torch.randn(batch, 1, *size, generator=torch.Generator().manual_seed(1))


def test_shapes_and_named_parts(model):
    x = _input(model)
    logits, features = model.forward_with_features(x)
    assert logits.shape == (2, 3)
    stride = model.config.stride
    fine = model.config.fine_head
    assert stride == (4 if fine else 8)
    assert features.shape == (2, fine or 16, *[n // stride for n in x.shape[2:]])
    assert isinstance(model.features, FineHeadFeatures if fine else torch.nn.Sequential)
    assert isinstance(model.classifier, torch.nn.Linear) and model.classifier.in_features == model.config.feature_channels
    assert torch.equal(model(x), logits)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_fine_head_covers_odd_sizes_before_the_last_pooling(spatial_dims):
    """36 -> stem 18 -> pool 9 (the skip) -> pool 4 -> repeated 8: the ninth fine cell repeats the eighth."""
    torch.manual_seed(0)
    model = GapClassifier(ClassifierConfig(spatial_dims, channels=(4, 8, 8), convs_per_stage=(1, 1, 1), fine_head=4)).eval()
    x = torch.randn(1, 1, *(36, 28, 20)[:spatial_dims])
    _, features = model.forward_with_features(x)
    assert features.shape[2:] == (9, 7, 5)[:spatial_dims]


def test_logits_are_the_linear_layer_of_the_feature_mean(model):
    """The CAM identity: y_c = b_c + sum_k w[c, k] * mean(F_k)."""
    logits, features = model.forward_with_features(_input(model))
    pooled = features.flatten(2).mean(dim=2)
    expected = pooled @ model.classifier.weight.T + model.classifier.bias
    assert torch.allclose(logits, expected, atol=1e-5)


def test_torchscript_gives_the_same_logits(model):
    x = _input(model)
    scripted = torch.jit.script(model)
    assert torch.allclose(scripted(x), model(x), atol=1e-6)
    logits, features = scripted.forward_with_features(x)
    assert torch.allclose(features, model.forward_with_features(x)[1], atol=1e-6)


@pytest.mark.slow
def test_torch_compile_gives_the_same_logits():
    torch.manual_seed(0)
    model = GapClassifier(ClassifierConfig(3, channels=(4, 8), convs_per_stage=(1, 1))).eval()
    x = torch.randn(1, 1, 16, 16, 8)
    compiled = torch.compile(model)
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(spatial_dims=4), "spatial_dims must be 2 or 3"),
        (dict(num_classes=1), "num_classes must be at least 2"),
        (dict(channels=(8, 16), convs_per_stage=(1,)), "one entry per stage"),
        (dict(stem_stride=0), "must be positive"),
        (dict(channels=(8, 16), convs_per_stage=(1, 1), pool_after=(False, False), fine_head=8), "at least one pooling"),
        (dict(fine_head=-1), "fine_head -1 must be 0"),
    ],
    ids=["dims", "classes", "stages", "stem", "fine-head-without-pooling", "negative-fine-head"],
)
def test_bad_configs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClassifierConfig(**kwargs)
