"""CAM engine correctness: agreement between methods, batch-exactness, hooks and state restored."""

import numpy as np
import pytest
import torch
from torch import nn

from medcam.cam import (
    CAM,
    CamError,
    CamMethod,
    GradCAM,
    HiResCAM,
    ScoreCAM,
    create_extractor,
    normalize,
)
from medcam.models import ClassifierConfig, GapClassifier

ALL_METHODS = [m.value for m in CamMethod]


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1])


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def gap_model(request):
    torch.manual_seed(0)
    config = ClassifierConfig(request.param, channels=(4, 8, 8), convs_per_stage=(1, 1, 1), num_classes=3)
    model = GapClassifier(config)
    # make batch norm non-trivial, as after training
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm3d)):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _input(model, batch=3, seed=1):
    size = (40, 32, 24)[: model.config.spatial_dims]
    return torch.randn(batch, 1, *size, generator=torch.Generator().manual_seed(seed))


def test_cam_gradcam_hirescam_agree_on_a_gap_model(gap_model):
    x = _input(gap_model, batch=1)
    results = {}
    for method in ("cam", "gradcam", "hirescam"):
        with create_extractor(method, gap_model) as extractor:
            results[method] = extractor(x, target=2)
    cam = results["cam"].feature_map
    for method in ("gradcam", "hirescam"):
        other = results[method].feature_map
        assert _pearson(cam, other) > 0.999
        ratio = (other / cam)[cam.abs() > 1e-3]
        assert torch.all(ratio > 0) and torch.allclose(ratio, ratio.mean(), rtol=1e-3)  # one positive factor
        assert _pearson(results["cam"].map, results[method].map) > 0.999


def test_cam_is_an_exact_decomposition_of_the_score(gap_model):
    x = _input(gap_model)
    with CAM(gap_model, include_bias=True) as extractor:
        result = extractor(x, target=[0, 1, 2])
    logits = gap_model(x)
    means = result.feature_map.flatten(1).mean(dim=1)
    assert torch.allclose(means, logits[torch.arange(3), torch.tensor([0, 1, 2])], atol=1e-5)
    assert torch.allclose(result.score, means, atol=1e-5)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_batch_exact_with_mixed_targets(gap_model, method):
    """Batch of 3 (no spatial size is 3), mixed targets: each map equals the single-sample map."""
    x = _input(gap_model, batch=3)
    targets = torch.tensor([2, 0, 1])
    options = {"batch_size": 3} if method == "scorecam" else {}
    with create_extractor(method, gap_model, **options) as extractor:
        batch = extractor(x, target=targets)
        singles = [extractor(x[i : i + 1], target=int(targets[i])) for i in range(3)]
    assert torch.equal(batch.target, targets)
    assert batch.map.shape == (3, *x.shape[2:])
    for i, single in enumerate(singles):
        assert torch.allclose(batch.feature_map[i], single.feature_map[0], atol=1e-5, rtol=1e-4), method
        assert torch.allclose(batch.map[i], single.map[0], atol=1e-5, rtol=1e-4), method


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_on_2d_and_3d_returns_maps_on_the_input_grid(gap_model, method):
    x = _input(gap_model, batch=2)
    with create_extractor(method, gap_model) as extractor:
        result = extractor(x)  # predicted class
    assert result.map.shape == (2, *x.shape[2:]) and result.map.dtype == torch.float32
    stride = gap_model.config.stride
    assert result.feature_map.shape == (2, *[n // stride for n in x.shape[2:]])
    assert torch.equal(result.target, gap_model(x).argmax(dim=1))
    assert result.method == method and result.layer == "features"
    assert torch.all((result.probability > 0) & (result.probability < 1))
    assert torch.isfinite(result.map).all()


def test_upsampling_is_align_corners_false(gap_model):
    x = _input(gap_model, batch=1)
    with CAM(gap_model) as extractor:
        result = extractor(x, target=0)
    size = x.shape[2:]
    mode = "bilinear" if len(size) == 2 else "trilinear"
    expected = torch.nn.functional.interpolate(result.feature_map[:, None], size=size, mode=mode, align_corners=False)[:, 0]
    assert torch.allclose(result.map, expected)


@pytest.mark.parametrize(
    "shape, size",
    [
        ((1, 8, 8, 8), (16, 16, 16)),  # the fine head's factor 2
        ((3, 4, 5, 6), (32, 20, 12)),  # a factor per axis (8, 4, 2), batch 3
        ((2, 2, 2, 2), (64, 64, 64)),  # resnet18 layer4 at 64^3: factor 32, every voxel near an edge
        ((2, 7, 9), (28, 9)),  # 2D, one axis not upsampled
        ((1, 5), (15,)),  # 1D, an odd factor
        ((1, 4, 4, 4), (10, 12, 16)),  # not whole multiples: F.interpolate itself
        ((1, 3, 3), (3, 3)),  # nothing to do: a copy
        ((2, 1, 4, 1), (8, 8, 5)),  # one-voxel axes (outer and innermost): the edge value everywhere
    ],
)
def test_upsample_equals_torch_linear_interpolation(shape, size):
    from medcam.cam.base import upsample

    feature_map = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape)))
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    expected = torch.nn.functional.interpolate(feature_map[:, None], size=size, mode=mode, align_corners=False)[:, 0]
    result = upsample(feature_map, size)
    assert result.shape == expected.shape and result.dtype == feature_map.dtype
    assert torch.allclose(result, expected, rtol=0, atol=2e-6)
    assert result.data_ptr() != feature_map.data_ptr()  # a new tensor, never the input


class InplaceNet(nn.Module):
    """Not a GapClassifier: in-place ReLUs after the target layer, a different layer naming."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv3d(4, 6, 3, padding=1))
        self.act = nn.ReLU(inplace=True)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.act(self.body(x)).mean(dim=(2, 3, 4)))


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "scorecam"])
def test_inplace_relu_model_by_layer_name(method):
    torch.manual_seed(0)
    model = InplaceNet()
    x = torch.randn(2, 1, 12, 10, 8)
    with create_extractor(method, model, layer="body.2") as extractor:
        result = extractor(x, target=1)
    assert result.map.shape == (2, 12, 10, 8) and torch.isfinite(result.map).all()


def test_cam_on_another_architecture_with_named_fc():
    torch.manual_seed(0)
    model = InplaceNet().eval()
    x = torch.randn(1, 1, 12, 10, 8)
    with CAM(model, "act", fc="head") as cam, GradCAM(model, "act") as gradcam:
        a, b = cam(x, target=1), gradcam(x, target=1)
    assert _pearson(a.feature_map, b.feature_map) > 0.999
    with pytest.raises(CamError, match="CAM needs the linear layer after global average pooling"):
        CAM(model, "act", fc="body")


def test_hooks_removed_and_state_restored_even_after_an_exception(gap_model):
    gap_model.train()
    flags_before = [p.requires_grad for p in gap_model.parameters()]
    gap_model.features[0].weight.requires_grad_(False)
    flags_before[0] = False
    with pytest.raises(CamError, match="targets for a batch"):
        with GradCAM(gap_model, "features") as extractor:
            assert len(gap_model.features._forward_hooks) == 1
            extractor(_input(gap_model, batch=2), target=[0, 1, 2])
    assert len(gap_model.features._forward_hooks) == 0
    assert gap_model.training
    assert [p.requires_grad for p in gap_model.parameters()] == flags_before
    assert all(p.grad is None for p in gap_model.parameters())
    assert not any(m._forward_hooks for m in gap_model.modules())


def test_exception_inside_the_block_propagates_and_cleans_up(gap_model):
    with pytest.raises(RuntimeError, match="boom"):
        with HiResCAM(gap_model, "features.3"):
            raise RuntimeError("boom")
    assert not any(m._forward_hooks for m in gap_model.modules())


def test_no_global_state_changed(gap_model):
    grad_enabled = torch.is_grad_enabled()
    cudnn = torch.backends.cudnn.enabled
    with torch.no_grad():
        with GradCAM(gap_model, "features") as extractor:
            extractor(_input(gap_model, batch=1))  # gradients work even under no_grad
    assert torch.is_grad_enabled() == grad_enabled and torch.backends.cudnn.enabled == cudnn


def test_errors_list_the_valid_names(gap_model):
    with pytest.raises(CamError, match=r"unknown CAM method 'gradcam\+\+\+'; valid methods: cam, gradcam, gradcam\+\+"):
        create_extractor("gradcam+++", gap_model)
    with pytest.raises(CamError, match=r"layer 'features.99' not found in GapClassifier; did you mean 'features.9'"):
        GradCAM(gap_model, "features.99")
    with pytest.raises(CamError, match=r"layer 'zzz' not found in GapClassifier; it has \d+ named layers, the last ones .*classifier"):
        GradCAM(gap_model, "zzz")
    with pytest.raises(CamError, match=r"target classes \[5\] outside 0..2"):
        with GradCAM(gap_model, "features") as extractor:
            extractor(_input(gap_model, batch=1), target=5)
    with pytest.raises(CamError, match="outside its 'with' block"):
        GradCAM(gap_model, "features")(_input(gap_model, batch=1))
    assert CamMethod.from_name("GradCAM++") is CamMethod.GRADCAM_PLUS_PLUS


def test_score_cam_chunks_give_the_same_map(gap_model):
    x = _input(gap_model, batch=1)
    with ScoreCAM(gap_model, "features", batch_size=1) as small, ScoreCAM(gap_model, "features", batch_size=64) as large:
        assert torch.allclose(small(x, target=1).map, large(x, target=1).map, atol=1e-5)


def test_normalize_is_explicit_and_never_inverts():
    raw = torch.tensor([[[-2.0, 0.0], [1.0, 4.0]]])
    assert torch.allclose(normalize(raw), torch.tensor([[[0.0, 0.0], [0.25, 1.0]]]))
    assert torch.allclose(normalize(raw, clip_negative=False), torch.tensor([[[0.0, 2 / 6], [3 / 6, 1.0]]]))
    assert torch.equal(normalize(-torch.ones(1, 2, 2)), torch.zeros(1, 2, 2))
    assert normalize(raw).argmax() == raw.argmax()
