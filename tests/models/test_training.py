"""A tiny training run end to end on generated files, and every refusal of bad training input."""

import csv

import numpy as np
import pytest
import torch

from medcam.errors import ConfigError
from medcam.models import ClassifierConfig, GapClassifier, load_checkpoint
from medcam.models.losses import centre_classifier, localisation_penalty
from medcam.models.training import TrainingConfig, TrainingError, calibrate_binary, train_classifier
from medcam.models.training_data import TrainingData, load_manifest_data, make_synthetic_crops, make_synthetic_data, split_data
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
        out=tmp_path / "model.pt", config=TrainingConfig(3, 2, 1e-2, 0), log=lines.append,
    )
    assert len(result.history) == 3 and len(lines) == 3 and "AUC" in lines[0]
    checkpoint = load_checkpoint(result.checkpoint)
    training = checkpoint.metadata["training"]
    assert training["train"]["n"] == 6 and training["validation"]["class_counts"] == [1, 1]
    assert training["best_epoch"] == result.best_epoch
    assert "auc" in checkpoint.metadata["metrics"]["validation"]
    assert checkpoint.preprocess_config == PREPROCESS
    # labels only: the linear layer is left as trained, not centred over classes
    assert checkpoint.model.classifier.weight.sum(dim=0).abs().max() > 1e-3


def test_training_is_seeded(manifest, tmp_path):
    data = load_manifest_data(manifest, PREPROCESS, ("no lesion", "lesion"))
    train, val = split_data(data, 0.25, seed=0)
    runs = [
        train_classifier(
            train, val, model_config=TINY, preprocess_config=PREPROCESS, class_names=("a", "b"),
            out=tmp_path / f"m{i}.pt", config=TrainingConfig(2, 2, seed=3), log=lambda _: None,
        )
        for i in range(2)
    ]
    assert runs[0].history[-1]["train_loss"] == runs[1].history[-1]["train_loss"]


def test_training_leaves_the_caller_s_random_state_and_logs_through_logging(manifest, tmp_path, caplog, capsys):
    import logging

    data = load_manifest_data(manifest, PREPROCESS, ("no lesion", "lesion"))
    train, val = split_data(data, 0.25, seed=0)
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    with caplog.at_level(logging.INFO, logger="medcam.models.training"):
        train_classifier(train, val, model_config=TINY, preprocess_config=PREPROCESS, class_names=("a", "b"),
                         out=tmp_path / "m.pt", config=TrainingConfig(2, 2, seed=3))
    assert torch.equal(torch.get_rng_state(), before)  # seeded inside, restored on return
    assert capsys.readouterr().out == ""  # nothing printed by the library
    lines = [r.getMessage() for r in caplog.records if r.name == "medcam.models.training"]
    assert len(lines) >= 2 and "AUC" in lines[0]


def test_interrupted_run_keeps_the_last_best_checkpoint(manifest, tmp_path):
    data = load_manifest_data(manifest, PREPROCESS, ("no lesion", "lesion"))
    train, val = split_data(data, 0.25, seed=0)

    def interrupt_at_epoch_two(line):
        if line.lstrip().startswith("epoch   2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_classifier(
            train, val, model_config=TINY, preprocess_config=PREPROCESS, class_names=("a", "b"),
            out=tmp_path / "m.pt", config=TrainingConfig(5, 2), log=interrupt_at_epoch_two,
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
    with pytest.raises(TrainingError, match=r"expected a manifest with the columns 'image', 'label'; found \['path', 'y'\]"):
        load_manifest_data(bad, PREPROCESS, names)
    with pytest.raises(TrainingError, match="the manifest has no rows"):
        load_manifest_data(_write_manifest(folder / "empty.csv", []), PREPROCESS, names)


def test_empty_or_one_class_split_is_refused(tmp_path):
    images = torch.zeros(4, 1, 32, 24, 12)
    one_class = TrainingData(images, torch.zeros(4, dtype=torch.int64))
    with pytest.raises(TrainingError, match=r"the training split has class counts \[4, 0\]"):
        train_classifier(one_class, one_class, model_config=TINY, preprocess_config=PREPROCESS,
                         class_names=("a", "b"), out=tmp_path / "m.pt", config=TrainingConfig(1))
    both = TrainingData(images, torch.tensor([0, 1, 0, 1]))
    empty = both.subset([])
    with pytest.raises(TrainingError, match="the validation split is empty"):
        train_classifier(both, empty, model_config=TINY, preprocess_config=PREPROCESS,
                         class_names=("a", "b"), out=tmp_path / "m.pt", config=TrainingConfig(1))


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


def test_localisation_penalty_counts_evidence_outside_lesion_cells():
    """Hand-built: class-1 evidence relative to the mean class is half feature channel 0; stride 4,
    so an 8^3 mask has 2^3 cells."""
    model = GapClassifier(TINY)
    assert model.config.stride == 4
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.weight[1, 0] = 1.0  # centred: +0.5 for class 1, -0.5 for class 0
    features = torch.zeros(2, 8, 2, 2, 2)
    features[0, 0, 0, 0, 0] = 5.0  # on the lesion: allowed
    features[0, 0, 1, 1, 1] = 3.0  # outside: penalised
    features[0, 0, 0, 1, 0] = -2.0  # outside, negative evidence: penalised too
    features[0, 1, 1, 0, 0] = 9.0  # a channel no class weighs
    features[1, 0, 1, 0, 0] = 4.0  # a study without lesions: every cell counts
    masks = torch.zeros(2, 1, 8, 8, 8, dtype=torch.bool)
    masks[0, 0, 3, 2, 1] = True  # one lesion voxel, in cell (0, 0, 0)
    penalty = localisation_penalty(model, features, masks, margin_cells=0)
    assert penalty.item() == pytest.approx(0.5 * (3.0 + 2.0 + 4.0) / (2 * 8))
    # one cell of margin: the whole 2^3 grid of the lesion study is allowed; the other study is not
    assert localisation_penalty(model, features, masks, margin_cells=1).item() == pytest.approx(0.5 * 4.0 / (2 * 8))


def test_centring_the_classifier_keeps_every_probability_and_halves_the_logit_difference():
    torch.manual_seed(0)
    model = GapClassifier(TINY).eval()
    with torch.no_grad():
        model.classifier.weight.add_(torch.randn_like(model.classifier.weight))
        model.classifier.bias.add_(torch.tensor([0.7, -0.2]))
    x = torch.randn(3, 1, 16, 16, 8)
    before = torch.softmax(model(x), dim=1)
    difference = model(x) @ torch.tensor([-1.0, 1.0])
    centre_classifier(model)
    assert torch.allclose(torch.softmax(model(x), dim=1), before, atol=1e-6)
    assert torch.allclose(model.classifier.weight.sum(dim=0), torch.zeros(8), atol=1e-6)
    assert torch.allclose(model(x)[:, 1], difference / 2, atol=1e-5)


def test_calibration_rescales_the_logit_and_keeps_the_map_s_shape():
    """Platt scaling through the linear layer: the logit difference becomes a d + b, fitted so that
    the class-balanced log-loss is lowest; the class-1 CAM is a times the old one plus a constant."""
    from medcam.cam import create_extractor

    torch.manual_seed(0)
    model = GapClassifier(TINY).eval()
    x = torch.randn(40, 1, 16, 16, 8)
    with torch.no_grad():
        d = model(x) @ torch.tensor([-1.0, 1.0])
    labels = (d > d.median()).long()  # the model ranks these labels perfectly, but its scale is tiny
    labels[:4] = 1 - labels[:4]  # four flipped, so that the fit is finite
    with create_extractor("cam", model, "features", fc_layer="classifier") as cam:
        before = cam(x[:2], target=1).map
    a, b = calibrate_binary(model, x, labels)
    with torch.no_grad():
        after_d = model(x) @ torch.tensor([-1.0, 1.0])
    assert a > 1 and torch.allclose(after_d, a * d + b, atol=1e-4)
    # the fit is the optimum: moving a or b either way raises the class-balanced log-loss
    y, w = labels.double(), torch.where(labels == 1, 0.5 / labels.double().mean(), 0.5 / (1 - labels.double().mean()))

    def loss(scale, shift):
        z = scale * d.double() + shift
        return float((w * torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")).sum())

    assert all(loss(a, b) <= loss(a * f, b + s) for f in (0.9, 1.1) for s in (-0.1, 0.0, 0.1))
    with create_extractor("cam", model, "features", fc_layer="classifier") as cam:
        after = cam(x[:2], target=1).map
    for old, new in zip(before, after):  # the same map up to a positive affine change: its shape and peak stay
        fitted = np.polyfit(old.flatten().numpy(), new.flatten().numpy(), 1)
        assert fitted[0] > 0 and np.allclose(np.polyval(fitted, old.numpy()), new.numpy(), atol=1e-4)
        assert int(old.argmax()) == int(new.argmax())


def test_training_with_the_localisation_loss_moves_evidence_onto_the_lesion(tmp_path):
    """Bright-cube 'lesions' at random places: with the loss, class-1 evidence outside the lesion
    cells shrinks over training; without masks the loss is refused."""
    rng = np.random.default_rng(0)
    n, size = 32, 16
    images = torch.from_numpy(rng.normal(0, 0.3, (n, 1, size, size, size)).astype(np.float32))
    masks = torch.zeros(n, 1, size, size, size, dtype=torch.bool)
    labels = torch.tensor([i % 2 for i in range(n)])
    for i in range(1, n, 2):
        corner = rng.integers(0, size - 4, size=3)
        box = (i, 0, *[slice(int(c), int(c) + 4) for c in corner])
        images[box] += 2.0
        masks[box] = True
    data = TrainingData(images, labels, {"source": "test"}, masks)
    train, val = data.subset(range(24)), data.subset(range(24, 32))
    lines = []
    result = train_classifier(
        train, val, model_config=TINY, preprocess_config=PREPROCESS, class_names=("a", "b"), out=tmp_path / "m.pt",
        config=TrainingConfig(6, 8, 1e-2, 0, localisation_weight=1.0, localisation_warmup=2), log=lines.append,
    )
    penalties = [entry["localisation_penalty"] for entry in result.history]
    assert "outside-lesion evidence" in lines[0]
    assert penalties[-1] < 0.5 * max(penalties[:2])
    assert result.best_epoch > 2  # chosen after the warm-up
    trained = load_checkpoint(result.checkpoint)
    assert trained.metadata["training"]["localisation_weight"] == 1.0
    assert torch.allclose(trained.model.classifier.weight.sum(dim=0), torch.zeros(8), atol=1e-5)  # centred
    with pytest.raises(ConfigError, match="must be shorter than the 2 epochs"):
        TrainingConfig(2, localisation_weight=1.0, localisation_warmup=2)
    with pytest.raises(TrainingError, match="needs a binary task and training data with lesion masks"):
        train_classifier(TrainingData(images, labels), val, model_config=TINY, preprocess_config=PREPROCESS,
                         class_names=("a", "b"), out=tmp_path / "n.pt", config=TrainingConfig(1, localisation_weight=1.0))


def test_synthetic_crops_carry_their_lesion_masks_on_the_model_grid():
    from medcam.models.recipes import TASK_DEFAULTS
    from medcam.synthetic.tasks import get_task
    from medcam.transforms import model_geometry, preprocess

    config = TASK_DEFAULTS["ct3d"][0]
    crops, volumes = make_synthetic_crops("ct3d", 2, seed=5, config=config, crop_size=(40, 32, 20))
    assert crops.masks.shape == (4, 1, 40, 32, 20) and volumes.masks.shape == (4, 1, 80, 64, 40)
    assert not volumes.masks[1::2].any() and not crops.masks[1::2].any()  # the lesion-free halves
    for pair in range(2):
        positive, _ = get_task("ct3d").matched_pair(pair, 5)
        grid = model_geometry(preprocess(positive.volume, config))
        # every lesion centre lies in a marked model voxel, and the marked voxels lie near a lesion
        for lesion in positive.lesions:
            ijk = np.rint(grid.world_to_voxel(lesion.center_ras)).astype(int)
            assert volumes.masks[2 * pair, 0][tuple(ijk)]
        marked = np.argwhere(volumes.masks[2 * pair, 0].numpy())
        world = np.array([grid.voxel_to_world(v.astype(float)) for v in marked])
        nearest = np.min([np.linalg.norm(world - lesion.center_ras, axis=1) for lesion in positive.lesions], axis=0)
        reach = max(max(lesion.radii_mm) for lesion in positive.lesions) + 5.0  # radius plus half a voxel
        assert nearest.max() <= reach
        assert crops.masks[2 * pair].any()


def test_a_mask_on_another_grid_reaches_the_model_grid_through_world_coordinates(tmp_path):
    """Hand-computed: the model grid is the image's (RAS, 12 x 12 x 16 mm from the origin); the
    mask lies on a 3 mm grid flipped in x and y, holding the box x 100..125, y 50..62, z 60..70 mm.
    Model voxel centres (12 i, 12 j, 16 k) that interpolate a nonzero mask value: i 9 and 10 (108,
    120 mm), j 5 (60 mm), k 4 (64 mm)."""
    from medcam.geometry import ImageGeometry, Volume
    from medcam.io import write_nifti

    image = Volume(np.random.default_rng(0).normal(40, 5, (32, 24, 12)).astype(np.float32),
                   ImageGeometry((32, 24, 12), np.diag([12.0, 12.0, 16.0, 1.0])))
    mask_affine = np.array([[-3.0, 0, 0, 200.0], [0, -3.0, 0, 150.0], [0, 0, 3.0, 40.0], [0, 0, 0, 1]])
    mask_geometry = ImageGeometry((41, 41, 16), mask_affine)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in mask_geometry.shape], indexing="ij"), axis=-1)
    x, y, z = np.moveaxis(mask_geometry.voxel_to_world(ijk.astype(float)), -1, 0)
    box = (x >= 100) & (x <= 125) & (y >= 50) & (y <= 62) & (z >= 60) & (z <= 70)
    write_nifti(image, tmp_path / "image.nii.gz")
    write_nifti(Volume(box.astype(np.float32), mask_geometry), tmp_path / "mask.nii.gz")
    write_nifti(Volume(np.zeros(mask_geometry.shape, np.float32), mask_geometry), tmp_path / "empty.nii.gz")
    rows = [{"image": "image.nii.gz", "label": "1", "mask": "mask.nii.gz"}, {"image": "image.nii.gz", "label": "0", "mask": ""}]
    data = load_manifest_data(_write_manifest(tmp_path / "m.csv", rows, fields=("image", "label", "mask")), PREPROCESS,
                              ("no lesion", "lesion"))
    assert data.masks.shape == (2, 1, 32, 24, 12)
    assert sorted(map(tuple, torch.nonzero(data.masks[0, 0]).tolist())) == [(9, 5, 4), (10, 5, 4)]
    assert not data.masks[1].any()
    bad = _write_manifest(tmp_path / "no_mask.csv", [{"image": "image.nii.gz", "label": "1", "mask": ""}], fields=("image", "label", "mask"))
    with pytest.raises(TrainingError, match=r"no_mask.csv row 2: a lesion case without a mask"):
        load_manifest_data(bad, PREPROCESS, ("no lesion", "lesion"))
    bad = _write_manifest(tmp_path / "empty.csv", [{"image": "image.nii.gz", "label": "1", "mask": "empty.nii.gz"}],
                          fields=("image", "label", "mask"))
    with pytest.raises(TrainingError, match=r"empty.csv row 2: the mask .*empty.nii.gz is empty on the model grid"):
        load_manifest_data(bad, PREPROCESS, ("no lesion", "lesion"))


def test_lesion_centred_crops_hold_the_lesion():
    from medcam.models.training_data import lesion_centred_crops

    images = torch.randn(4, 1, 32, 24, 12)
    masks = torch.zeros(4, 1, 32, 24, 12, dtype=torch.bool)
    masks[0, 0, 25:28, 3:5, 8:10] = True
    masks[2, 0, 2:4, 20:22, 1:3] = True
    crops = lesion_centred_crops(TrainingData(images, torch.tensor([1, 0, 1, 0]), {}, masks), (16, 12, 6), seed=0, jitter=0.0)
    assert crops.images.shape == (4, 1, 16, 12, 6) and crops.masks.shape == (4, 1, 16, 12, 6)
    assert crops.masks[0].any() and crops.masks[2].any() and not crops.masks[1].any()
    # a negative's crop lies where a positive's lesion lies (its place tells nothing): the voxels
    # are numbered, so a crop's first value is where it starts
    numbered = torch.arange(32 * 24 * 12, dtype=torch.float32).reshape(1, 1, 32, 24, 12).repeat(4, 1, 1, 1, 1)
    for seed in range(5):
        crops = lesion_centred_crops(TrainingData(numbered, torch.tensor([1, 0, 1, 0]), {}, masks), (16, 12, 6), seed=seed,
                                     jitter=0.0)
        lesions = torch.nonzero(masks[0, 0] | masks[2, 0])
        for negative in (1, 3):
            low = torch.tensor(np.unravel_index(int(crops.images[negative, 0, 0, 0, 0]), (32, 24, 12)))
            inside = ((lesions >= low) & (lesions < low + torch.tensor([16, 12, 6]))).all(dim=1)
            assert inside.any(), (seed, negative, low)
    with pytest.raises(TrainingError, match="need lesion masks"):
        lesion_centred_crops(TrainingData(images, torch.tensor([1, 0, 1, 0]), {}), (16, 12, 6), seed=0)


@pytest.mark.parametrize("options, message", [
    ({"epochs": 0}, "epochs, batch_size and lr must be positive"),
    ({"batch_size": 0}, "epochs, batch_size and lr must be positive"),
    ({"select_by": "accuracy"}, "select_by 'accuracy': expected one of loss, auc, auc\\+hit"),
    ({"localisation_weight": -1.0}, "localisation_weight must not be negative"),
], ids=["no-epochs", "empty-batch", "unknown-selection", "negative-weight"])
def test_a_training_config_out_of_range_is_refused_before_any_work(options, message):
    with pytest.raises(ConfigError, match=f"TrainingConfig: {message}"):
        TrainingConfig(**options)

