import pytest
import torch

from medcam.models import ClassifierConfig, GapClassifier


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def model(request):
    torch.manual_seed(0)
    config = ClassifierConfig(request.param, channels=(4, 8, 16), convs_per_stage=(1, 1, 1), num_classes=3)
    return GapClassifier(config).eval()


def _input(model, batch=2):
    size = (32, 24, 16)[: model.config.spatial_dims]
    return torch.randn(batch, 1, *size, generator=torch.Generator().manual_seed(1))


def test_shapes_and_named_parts(model):
    x = _input(model)
    logits, features = model.forward_with_features(x)
    assert logits.shape == (2, 3)
    stride = model.config.stride
    assert stride == 8
    assert features.shape == (2, 16, *[n // stride for n in x.shape[2:]])
    assert isinstance(model.features, torch.nn.Sequential) and isinstance(model.classifier, torch.nn.Linear)
    assert torch.equal(model(x), logits)


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
    ],
    ids=["dims", "classes", "stages", "stem"],
)
def test_bad_configs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClassifierConfig(**kwargs)
