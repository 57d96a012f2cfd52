"""Any nn.Module with a MONAI transform is explained and exported like a medcam checkpoint."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.networks.nets import ResNet
from monai.transforms import (
    Compose,
    Orientation,
    Orientationd,
    ScaleIntensityRange,
    ScaleIntensityRanged,
    Spacing,
    Spacingd,
)

from medcam.errors import CheckpointError, GeometryError, ModalityError
from medcam.explanation import explain
from medcam.models import from_module, load_model
from medcam.study import read_study

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
RAS = (("L", "R"), ("P", "A"), ("I", "S"))


@pytest.fixture
def resnet():
    torch.manual_seed(0)
    return ResNet("basic", [1, 1, 1, 1], [8, 16, 32, 64], spatial_dims=3, n_input_channels=1, num_classes=2)


def test_a_module_with_array_or_dictionary_transforms_gives_the_same_map(resnet, tmp_path):
    array = Compose([Orientation("PIR", labels=RAS), Spacing((6.0, 6.0, 6.0)), ScaleIntensityRange(-160, 240, 0.0, 1.0, clip=True)])
    dictionary = Compose([Orientationd("img", "PIR", labels=RAS), Spacingd("img", (6.0, 6.0, 6.0)),
                          ScaleIntensityRanged("img", -160, 240, 0.0, 1.0, clip=True)])
    study = read_study(SAMPLE / "ct_lesion_dicom")
    a = explain(from_module(resnet, array, ["no lesion", "lesion"]), study, method="gradcam", target="lesion")
    b = explain(from_module(resnet, dictionary, ["no lesion", "lesion"]), study, method="gradcam", target=1)
    assert np.array_equal(a.heatmap.array, b.heatmap.array) and a.layer == "layer4" and a.target_name == "lesion"
    outputs = a.save(tmp_path / "out", formats=("nifti", "pm"))
    written = nib.load(str(outputs.paths["nifti"][0]))
    assert written.shape == study.volume.shape and np.allclose(written.affine, study.volume.geometry.affine_ras, atol=1e-4)
    assert outputs.paths["pm"][0].is_file()
    assert a.model.provenance.format == "module" and a.model.provenance.sha256 is None


def test_the_callers_model_is_left_as_it_was(resnet):
    resnet.train()
    resnet.conv1.weight.requires_grad_(False)
    before = {name: tensor.clone() for name, tensor in resnet.state_dict().items()}
    model = from_module(resnet, None, ["a", "b"])
    for method in ("cam", "gradcam", "scorecam"):
        explain(model, SAMPLE / "ct_normal.nii.gz", method=method)
    assert resnet.training and not resnet.conv1.weight.requires_grad and resnet.fc.weight.requires_grad
    assert not any(m._forward_hooks or m._backward_hooks or m._forward_pre_hooks for m in resnet.modules())
    after = resnet.state_dict()  # batch-norm statistics included: every pass ran in eval mode
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_weights_digest_identifies_a_modules_weights(resnet):
    digest = from_module(resnet).weights_sha256()
    assert digest == from_module(resnet).weights_sha256() and len(digest) == 64
    with torch.no_grad():
        resnet.fc.bias[0] += 1.0
    assert from_module(resnet).weights_sha256() != digest


def test_torchscript_and_affine_dropping_preprocessing_are_refused(resnet):
    scripted = torch.jit.trace(resnet.eval(), torch.zeros(1, 1, 16, 16, 16))
    with pytest.raises(CheckpointError, match="TorchScript module cannot be explained .*hooks do not attach"):
        from_module(scripted)
    model = from_module(resnet, lambda tensor: tensor.as_tensor(), ["a", "b"])
    with pytest.raises(GeometryError, match="preprocessing returned Tensor without an affine"):
        explain(model, SAMPLE / "ct_normal.nii.gz")


def test_a_preprocessing_that_fails_is_a_one_line_error(resnet):
    from monai.transforms import ResizeWithPadOrCrop

    from medcam.errors import MedcamError

    model = from_module(resnet, Compose([ResizeWithPadOrCrop((32, 32))]), ["a", "b"])  # 2D size for a 3D volume
    with pytest.raises(MedcamError, match=r"ResNet: its preprocessing failed on a volume of shape \(96, 96, 40\)"):
        explain(model, SAMPLE / "ct_lesion_dicom")


def test_a_study_of_another_modality_is_refused_unless_allowed():
    model = load_model(SAMPLE / "models" / "ct3d.pt")
    assert model.modalities == ("CT",)
    with pytest.raises(ModalityError, match="the study is MR but the model ct3d.pt was trained on CT"):
        explain(model, SAMPLE / "mr_oblique_dicom")
    study = read_study(SAMPLE / "mr_oblique_dicom")
    assert explain(model, study, allow_modality_mismatch=True).heatmap.shape == study.volume.shape
    assert explain(model, SAMPLE / "ct_lesion.nii.gz").target_name in model.class_names  # NIfTI: no modality to check
