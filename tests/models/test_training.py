"""A tiny training run end to end on generated files, and every refusal of bad training input."""

import csv

import pytest
import torch

from medcam.models import ClassifierConfig, load_checkpoint
from medcam.models.training import (
    TrainingData,
    TrainingError,
    load_manifest_data,
    make_synthetic_data,
    split_data,
    train_classifier,
)
from medcam.transforms import PreprocessConfig
from tests.conftest import TINY_PREPROCESS as PREPROCESS
TINY = ClassifierConfig(3, channels=(4, 8), convs_per_stage=(1, 1))


def test_tiny_training_run_end_to_end(manifest, tmp_path):
    data = load_manifest_data(manifest, PREPROCESS, ("no lesion", "lesion"))
    assert data.images.shape == (8, 1, 32, 24, 12) and data.labels.tolist() == [0, 1] * 4
    train, val = split_data(data, 0.25, seed=0)
    lines = []
    result = train_classifier(
        train, val, model_config=TINY, preprocess_config=PREPROCESS, class_names=("no lesion", "lesion"),
        out=tmp_path / "model.pt", epochs=3, batch_size=2, lr=1e-2, seed=0, log=lines.append,
    )
    assert len(result.history) == 3 and len(lines) == 3 and "AUC" in lines[0]
    checkpoint = load_checkpoint(result.checkpoint)
    training = checkpoint.metadata["training"]
    assert training["train"]["n"] == 6 and training["validation"]["class_counts"] == [1, 1]
    assert training["best_epoch"] == result.best_epoch
    assert "auc" in checkpoint.metadata["metrics"]["validation"]
    assert checkpoint.preprocess_config == PREPROCESS


def test_training_is_seeded(manifest, tmp_path):
    data = load_manifest_data(manifest, PREPROCESS, ("no lesion", "lesion"))
    train, val = split_data(data, 0.25, seed=0)
    runs = [
        train_classifier(
            train, val, model_config=TINY, preprocess_config=PREPROCESS, class_names=("a", "b"),
            out=tmp_path / f"m{i}.pt", epochs=2, batch_size=2, seed=3, log=lambda _: None,
        )
        for i in range(2)
    ]
    assert runs[0].history[-1]["train_loss"] == runs[1].history[-1]["train_loss"]


def test_interrupted_run_keeps_the_last_best_checkpoint(manifest, tmp_path):
    data = load_manifest_data(manifest, PREPROCESS, ("no lesion", "lesion"))
    train, val = split_data(data, 0.25, seed=0)

    def interrupt_at_epoch_two(line):
        if line.lstrip().startswith("epoch   2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_classifier(
            train, val, model_config=TINY, preprocess_config=PREPROCESS, class_names=("a", "b"),
            out=tmp_path / "m.pt", epochs=5, batch_size=2, log=interrupt_at_epoch_two,
        )
    assert load_checkpoint(tmp_path / "m.pt").metadata["training"]["best_epoch"] in (1, 2)
    assert not list(tmp_path.glob("*.partial"))


def _write_manifest(path, rows, fields=("image", "label")):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_bad_manifests_name_the_row(manifest, tmp_path):
    folder = manifest.parent
    names = ("no lesion", "lesion")
    bad = _write_manifest(folder / "missing.csv", [{"image": "case0.nii.gz", "label": "0"}, {"image": "nope.nii.gz", "label": "1"}])
    with pytest.raises(TrainingError, match=r"missing.csv row 3: image .*nope.nii.gz does not exist"):
        load_manifest_data(bad, PREPROCESS, names)
    bad = _write_manifest(folder / "label.csv", [{"image": "case0.nii.gz", "label": "tumour"}])
    with pytest.raises(TrainingError, match=r"label.csv row 2: unknown label 'tumour'; expected one of"):
        load_manifest_data(bad, PREPROCESS, names)
    (folder / "broken.nii.gz").write_bytes(b"garbage")
    bad = _write_manifest(folder / "unreadable.csv", [{"image": "broken.nii.gz", "label": "1"}])
    with pytest.raises(TrainingError, match=r"unreadable.csv row 2: cannot use .*broken.nii.gz: .*not a readable NIfTI"):
        load_manifest_data(bad, PREPROCESS, names)
    bad = _write_manifest(folder / "columns.csv", [{"path": "case0.nii.gz", "y": "1"}], fields=("path", "y"))
    with pytest.raises(TrainingError, match="expected columns 'image' and 'label'"):
        load_manifest_data(bad, PREPROCESS, names)
    with pytest.raises(TrainingError, match="the manifest has no rows"):
        load_manifest_data(_write_manifest(folder / "empty.csv", []), PREPROCESS, names)


def test_empty_or_one_class_split_is_refused(tmp_path):
    images = torch.zeros(4, 1, 32, 24, 12)
    one_class = TrainingData(images, torch.zeros(4, dtype=torch.int64))
    with pytest.raises(TrainingError, match=r"the training split has class counts \[4, 0\]"):
        train_classifier(one_class, one_class, model_config=TINY, preprocess_config=PREPROCESS,
                         class_names=("a", "b"), out=tmp_path / "m.pt", epochs=1)
    both = TrainingData(images, torch.tensor([0, 1, 0, 1]))
    empty = both.subset([])
    with pytest.raises(TrainingError, match="the validation split is empty"):
        train_classifier(both, empty, model_config=TINY, preprocess_config=PREPROCESS,
                         class_names=("a", "b"), out=tmp_path / "m.pt", epochs=1)


def test_split_is_stratified_and_seeded():
    data = TrainingData(torch.zeros(20, 1, 2, 2, 2), torch.tensor([0] * 12 + [1] * 8))
    train, val = split_data(data, 0.25, seed=1)
    assert val.counts(2) == [3, 2] and train.counts(2) == [9, 6]
    again, _ = split_data(data, 0.25, seed=1)
    assert torch.equal(train.labels, again.labels)


def test_synthetic_data_is_labelled_and_reproducible():
    config = PreprocessConfig(2, (5.6, 5.6), (64, 64), intensity="percentile", window=None, orientation=None)
    a = make_synthetic_data("cr2d", 6, seed=4, config=config)
    b = make_synthetic_data("cr2d", 6, seed=4, config=config)
    assert a.images.shape == (6, 1, 64, 64) and torch.equal(a.images, b.images)
    assert set(a.labels.tolist()) <= {0, 1} and a.summary["source"] == "synthetic:cr2d"
    with pytest.raises(ValueError, match="unknown synthetic task 'xray'"):
        make_synthetic_data("xray", 1, seed=0, config=config)
