import json

import pytest
import torch

from medcam.errors import CheckpointError
from medcam.models import (
    ClassifierConfig,
    GapClassifier,
    load_checkpoint,
    save_checkpoint,
)
from medcam.transforms import PreprocessConfig

CONFIG = ClassifierConfig(3, channels=(4, 8), convs_per_stage=(1, 1))
PREPROCESS = PreprocessConfig(3, (8.0, 8.0, 8.0), (16, 16, 8))


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = GapClassifier(CONFIG).eval()
    path = save_checkpoint(
        tmp_path / "m.pt", model, PREPROCESS, ("no lesion", "lesion"),
        training={"source": "synthetic:test", "n": 4}, metrics={"validation": {"auc": 0.5}},
    )
    return path, model


def test_round_trip_reproduces_the_model_and_its_preprocessing(saved):
    path, model = saved
    checkpoint = load_checkpoint(path)
    x = torch.randn(2, 1, 16, 16, 8)
    assert torch.equal(checkpoint.model(x), model(x))
    assert not checkpoint.model.training
    assert checkpoint.model_config == CONFIG and checkpoint.preprocess_config == PREPROCESS
    assert checkpoint.class_names == ("no lesion", "lesion") and checkpoint.spatial_dims == 3
    assert checkpoint.metadata["training"]["source"] == "synthetic:test"
    assert checkpoint.metadata["metrics"]["validation"]["auc"] == 0.5
    assert set(checkpoint.metadata["versions"]) == {"medcam", "torch", "monai", "numpy"}
    assert len(checkpoint.sha256) == 64
    assert not list(path.parent.glob("*.partial"))


def test_loading_never_unpickles_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("executed",))

    path = tmp_path / "evil.pt"
    torch.save({"medcam": "{}", "state_dict": {}, "x": Payload()}, path)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_corrupt_truncated_and_foreign_files(saved, tmp_path):
    path, model = saved
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="truncated.pt: not a readable checkpoint"):
        load_checkpoint(truncated)
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a medcam checkpoint .* a file from another tool"):
        load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt")


def _rewrite_metadata(path, change):
    payload = torch.load(path, weights_only=True)
    metadata = json.loads(payload["medcam"])
    change(metadata)
    payload["medcam"] = json.dumps(metadata)
    torch.save(payload, path)


def test_config_and_weights_mismatch(saved):
    path, _ = saved
    _rewrite_metadata(path, lambda m: m["model_config"].update(channels=[4, 16]))
    with pytest.raises(CheckpointError, match="the weights do not match the model config: .*size mismatch"):
        load_checkpoint(path)


def test_unknown_version_and_bad_configs(saved):
    path, _ = saved
    _rewrite_metadata(path, lambda m: m.update(format_version=99))
    with pytest.raises(CheckpointError, match="version 99; this medcam reads 'medcam-checkpoint' version 1"):
        load_checkpoint(path)
    _rewrite_metadata(path, lambda m: m.update(format_version=1, preprocess_config={"spatial_dims": 5}))
    with pytest.raises(CheckpointError, match="invalid preprocessing config"):
        load_checkpoint(path)


def test_save_refuses_inconsistent_metadata(tmp_path):
    model = GapClassifier(CONFIG)
    with pytest.raises(CheckpointError, match="1 class names for a model with 2 classes"):
        save_checkpoint(tmp_path / "m.pt", model, PREPROCESS, ("only",))
    with pytest.raises(CheckpointError, match="preprocessing is 2D but the model is 3D"):
        save_checkpoint(tmp_path / "m.pt", model, PreprocessConfig(2, (1.0, 1.0), (16, 16)), ("a", "b"))


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def broken_save(obj, target):
        with open(target, "wb") as handle:
            handle.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "m.pt", GapClassifier(CONFIG), PREPROCESS, ("a", "b"))
    assert list(tmp_path.iterdir()) == []
