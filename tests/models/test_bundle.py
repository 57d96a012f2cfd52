"""MONAI Bundles through the command line: real MONAI networks (DenseNet121, ResNet, SEResNet) in a
bundle folder, explained on a DICOM series; the outputs are dciodvfy-clean, on the source grid, and
equal what MONAI itself computes from the bundle (its own reader, preprocessing, CAM classes and
inverse transforms)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from medcam.cam import CamError
from medcam.cli import main
from medcam.errors import CheckpointError
from medcam.explanation import explain
from medcam.models import load_model
from medcam.study import read_study
from tests.bundles import build_network, write_bundle
from tests.conftest import tree_hash

SOURCE = Path(__file__).resolve().parents[2] / "sample_data" / "ct_lesion_dicom"

#: The layers a MONAI network's GAP + linear head is made of (what medcam must find by itself).
HEADS = {"densenet121": ("class_layers.relu", "class_layers.out"), "resnet": ("layer4", "fc"), "seresnet": ("layer4", "last_linear")}


@pytest.fixture(scope="module", params=list(HEADS), ids=list(HEADS))
def bundle(request, tmp_path_factory):
    return write_bundle(tmp_path_factory.mktemp("bundles") / request.param, request.param), request.param


def _monai_side(bundle_dir: Path, network_name: str, method: str, class_idx: int | None = None) -> np.ndarray:
    """The map as MONAI computes it from the bundle alone: the bundle's own preprocessing (MONAI's
    PydicomReader included), MONAI's CAM / GradCAM with an identity post-processor, and the
    preprocessing's inverse back to the source grid."""
    from monai.bundle import ConfigParser
    from monai.data import MetaTensor
    from monai.visualize import CAM, GradCAM

    parser = ConfigParser()
    parser.read_config(str(bundle_dir / "configs" / "inference.json"))
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(bundle_dir / "models" / "model.pt", weights_only=True))
    network.eval()
    preprocessing = parser.get_parsed_content("preprocessing")
    image = preprocessing({"image": str(SOURCE)})["image"]
    layer, fc = HEADS[network_name]
    if method == "cam":
        extractor = CAM(nn_module=network, target_layers=layer, fc_layers=fc, postprocessing=lambda m: m)
    else:
        extractor = GradCAM(nn_module=network, target_layers=layer, postprocessing=lambda m: m)
    # None: the predicted class (an int class_idx breaks MONAI's CAM, not its GradCAM)
    result = extractor(image.as_tensor()[None], class_idx=class_idx)
    on_model_grid = MetaTensor(result[0].detach(), meta=image.meta, applied_operations=list(image.applied_operations))
    return preprocessing.inverse({"image": on_model_grid})["image"][0].numpy()


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_bundle_explained_from_the_cli_on_the_source_grid_as_monai_computes_it(bundle, tmp_path, dciodvfy, capsys):
    bundle_dir, network_name = bundle
    before = tree_hash(SOURCE)
    source = read_study(SOURCE)
    maps = {}
    # MONAI's CAM explains the predicted class (it breaks on a given one): medcam is told that class
    predicted = explain(load_model(bundle_dir), source).predicted
    for method in ("cam", "gradcam"):
        out = tmp_path / method
        code = main(["explain", str(SOURCE), "--model", str(bundle_dir), "--method", method, "--out", str(out),
                     "--formats", "nifti,pm,sc", "--class", str(predicted)])
        assert code == 0, capsys.readouterr().err
        assert f"(layer '{HEADS[network_name][0]}')" in capsys.readouterr().out
        nifti = nib.load(str(out / f"{method}.nii.gz"))
        assert nifti.shape == source.volume.shape
        assert np.allclose(nifti.affine, source.volume.geometry.affine_ras, atol=1e-4)
        maps[method] = np.asarray(nifti.dataobj, dtype=np.float32)
        pm = pydicom.dcmread(out / f"{method}_pm.dcm")
        assert int(pm.NumberOfFrames) == source.volume.shape[2] and (pm.Rows, pm.Columns) == (96, 96)
        sc_files = sorted((out / f"{method}_sc").iterdir())
        assert len(sc_files) == source.volume.shape[2]
        for path in (out / f"{method}_pm.dcm", sc_files[0], sc_files[-1]):
            assert dciodvfy(path) == [], path
    assert tree_hash(SOURCE) == before

    # exact CAM, end to end, against MONAI's CAM (which adds the bias: a constant, r is blind to it)
    theirs = _monai_side(bundle_dir, network_name, "cam")
    assert theirs.shape == maps["cam"].shape
    assert _pearson(maps["cam"], theirs) >= 0.999
    assert np.unravel_index(maps["cam"].argmax(), theirs.shape) == np.unravel_index(theirs.argmax(), theirs.shape)

    # GAP + linear: Grad-CAM is CAM divided by the number of feature positions (a positive factor)
    factor = float((maps["cam"] * maps["gradcam"]).sum() / (maps["gradcam"] ** 2).sum())
    assert factor > 1 and np.abs(maps["cam"] - factor * maps["gradcam"]).max() <= 1e-3 * np.abs(maps["cam"]).max()

    # Grad-CAM against MONAI's, which rectifies at feature resolution: medcam's feature map,
    # rectified the same way, through medcam's upsampling and back-projection
    from medcam.backproject import to_source_grid
    from medcam.cam.base import upsample

    model = load_model(bundle_dir)
    assert np.array_equal(explain(model, source, method="gradcam", target=predicted).heatmap.array, maps["gradcam"])  # what the CLI wrote
    compared = 0
    for target in (0, 1):  # a class whose map is negative everywhere rectifies to zero: compare those that are not
        explanation = explain(model, source, method="gradcam", target=target)
        rectified = upsample(torch.relu(explanation.result.feature_map), explanation.model_input.shape[1:])[0]
        ours = to_source_grid(rectified, explanation.model_input, source.volume.geometry).array
        theirs = _monai_side(bundle_dir, network_name, "gradcam", class_idx=target)
        assert (theirs.max() > 0) == (ours.max() > 0)
        if theirs.max() > 0:
            assert _pearson(ours, theirs) >= 0.999
            assert np.unravel_index(ours.argmax(), ours.shape) == np.unravel_index(theirs.argmax(), theirs.shape)
            compared += 1
    assert compared >= 1


def test_bundle_metadata_reaches_the_model(bundle, tmp_path):
    bundle_dir, network_name = bundle
    model = load_model(bundle_dir)
    assert model.class_names == ("no lesion", "lesion") and model.modalities == ("CT",) and model.spatial_dims == 3
    assert model.provenance.format == "monai-bundle" and len(model.provenance.sha256) == 64
    assert load_model(bundle_dir, class_names=["a", "b"]).class_names == ("a", "b")
    assert not model.module.training


def test_a_zipped_bundle_loads_like_its_folder(tmp_path):
    folder = write_bundle(tmp_path / "net", "resnet")
    archive = tmp_path / "net.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in folder.rglob("*"):
            handle.write(path, Path("net") / path.relative_to(folder))
    zipped, unzipped = load_model(archive), load_model(folder)
    study = read_study(SOURCE)
    a, b = explain(zipped, study, method="cam"), explain(unzipped, study, method="cam")
    assert np.array_equal(a.heatmap.array, b.heatmap.array)
    assert zipped.provenance.path == archive and zipped.provenance.sha256 != unzipped.provenance.sha256


def test_a_class_name_the_bundle_does_not_have_is_a_clear_error(tmp_path):
    model = load_model(write_bundle(tmp_path / "net", "resnet"))
    with pytest.raises(CamError, match=r"class 'tumour': expected one of \['no lesion', 'lesion'\]"):
        explain(model, read_study(SOURCE), target="tumour")


def _break_config(bundle_dir: Path, edit) -> Path:
    path = bundle_dir / "configs" / "inference.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))
    return bundle_dir


def _no_network_def(root):
    return _break_config(write_bundle(root, "resnet"), lambda c: (c.pop("network_def"), c.pop("network")))


def _no_weights(root):
    return write_bundle(root, "resnet", weights=False)


def _wrong_weights(root):
    return write_bundle(root, "resnet", state_dict=build_network("densenet121").state_dict())


def _missing_package(root):
    bundle_dir = write_bundle(root, "resnet")
    return _break_config(bundle_dir, lambda c: c.__setitem__("network_def", {"_target_": "medcam_no_such_package.Net"}))


def _torchscript_only(root):
    bundle_dir = write_bundle(root, "resnet", weights=False)
    torch.jit.save(torch.jit.trace(build_network("resnet"), torch.zeros(1, 1, 16, 16, 16)), bundle_dir / "models" / "model.ts")
    return bundle_dir


def _not_a_bundle(root):
    root.mkdir()
    (root / "notes.txt").write_text("no configs here")
    return root


BAD_BUNDLES = {
    "no-network-def": (_no_network_def, "has no 'network_def'"),
    "no-model-pt": (_no_weights, r"no models/model.pt"),
    "weights-do-not-match": (_wrong_weights, r"models/model.pt does not match 'network_def'"),
    "package-not-installed": (_missing_package, r"'network_def' references something that cannot be imported .*medcam_no_such_package"),
    "torchscript-only": (_torchscript_only, r"only a TorchScript model \(models/model.ts\).*hooks do not attach"),
    "not-a-bundle": (_not_a_bundle, r"not a MONAI Bundle"),
}


@pytest.mark.parametrize("case", list(BAD_BUNDLES), ids=list(BAD_BUNDLES))
def test_bad_bundles_are_one_line_errors(case, tmp_path, capsys):
    make, message = BAD_BUNDLES[case]
    bundle_dir = make(tmp_path / "bundle")
    with pytest.raises(CheckpointError, match=message):
        load_model(bundle_dir)
    assert main(["explain", str(SOURCE), "--model", str(bundle_dir), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medcam: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cam_on_a_network_without_a_gap_head_and_a_wrong_layer_are_one_line_errors(tmp_path, capsys):
    # MONAI's Classifier flattens its last feature maps into the linear layer: no global pooling
    classifier = {"_target_": "Classifier", "in_shape": [1, 64, 64, 64], "classes": 2, "channels": [4, 8], "strides": [2, 2]}
    flat = write_bundle(tmp_path / "flat", classifier, state_dict=_seeded_state(classifier))
    assert main(["explain", str(SOURCE), "--model", str(flat), "--method", "cam", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "no layer's output averages to the input of its linear layer" in err and err.count("\n") == 1
    densenet = write_bundle(tmp_path / "dense", "densenet121")
    assert main(["explain", str(SOURCE), "--model", str(densenet), "--method", "gradcam", "--layer", "class_layers.rleu",
                 "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "layer 'class_layers.rleu' not found in DenseNet121; did you mean 'class_layers.relu'" in err and err.count("\n") == 1


def _seeded_state(network_def: dict) -> dict:
    from monai.bundle import ConfigParser

    torch.manual_seed(0)
    return ConfigParser({"n": network_def}).get_parsed_content("n").state_dict()


def test_densenet_features_is_refused_as_inexact_cam(tmp_path):
    """MONAI DenseNet's ``features`` ends at norm5, before the ReLU that precedes pooling."""
    model = load_model(write_bundle(tmp_path / "dense", "densenet121"))
    with pytest.raises(CamError, match=r"CAM from layer 'features' is not exact: mean map \+ bias = .* but the logit is"):
        explain(model, read_study(SOURCE), method="cam", layer="features", fc_layer="class_layers.out")
    assert explain(model, read_study(SOURCE), method="cam").layer == "class_layers.relu"


def test_bundle_preprocessing_loading_steps_are_replaced_by_medcams_reader(tmp_path):
    """The bundle's LoadImaged (here MONAI's PydicomReader) never runs: a series whose
    InstanceNumbers are shuffled still reaches the network in spatial order."""
    scrambled = tmp_path / "series"
    shutil.copytree(SOURCE, scrambled)
    files = sorted(scrambled.iterdir())
    numbers = np.random.default_rng(0).permutation(len(files)) + 1
    for path, number in zip(files, numbers):
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = int(number)
        ds.save_as(path)
    model = load_model(write_bundle(tmp_path / "net", "resnet"))
    original, shuffled = (model.prepare(read_study(p).volume) for p in (SOURCE, scrambled))
    assert torch.equal(original.as_tensor(), shuffled.as_tensor())
    assert torch.allclose(original.affine, shuffled.affine)
