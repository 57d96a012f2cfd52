"""Training under torchrun: DistributedDataParallel on two CPU processes (gloo) against one process
with the same global batch; the checkpoint loads, its AUC on held-out studies is the single
process's within 0.05, only rank 0 writes."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medcam.metrics.classification import roc_auc
from medcam.models import load_checkpoint
from medcam.models.recipes import TASK_DEFAULTS
from medcam.models.training import predict_probabilities
from medcam.models.training_data import make_synthetic_data

TRAIN = ["train", "--synthetic", "cr2d", "--pairs", "200", "--n-val", "100", "--crop-epochs", "6", "--epochs", "2",
         "--batch-size", "16", "--seed", "0", "--quiet"]


def _held_out_auc(checkpoint: Path, data) -> float:
    model = load_checkpoint(checkpoint).model
    return roc_auc(data.labels.numpy() == 1, predict_probabilities(model, data.images)[:, 1])


@pytest.mark.slow
def test_torchrun_two_processes_trains_as_one_process_does(tmp_path):
    medcam = str(Path(sys.executable).with_name("medcam"))
    single = subprocess.run([medcam, *TRAIN, "--out", str(tmp_path / "single.pt")], capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    ddp = subprocess.run([torchrun, "--standalone", "--nproc-per-node=2", medcam, *TRAIN, "--out", str(tmp_path / "ddp.pt")],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    assert ddp.stdout.count("checkpoint:") == 1 and "trained on 2 processes" in ddp.stdout  # rank 0 alone speaks
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".pt" or ".partial" in p.name) == ["ddp.pt", "single.pt"]
    checkpoint = load_checkpoint(tmp_path / "ddp.pt")
    assert checkpoint.metadata["training"]["processes"] == 2
    assert load_checkpoint(tmp_path / "single.pt").metadata["training"]["processes"] == 1
    held_out = make_synthetic_data("cr2d", 120, 77, TASK_DEFAULTS["cr2d"][0])
    one, two = _held_out_auc(tmp_path / "single.pt", held_out), _held_out_auc(tmp_path / "ddp.pt", held_out)
    assert one > 0.8, one  # both learnt the task, not chance
    assert abs(one - two) <= 0.05, (one, two)
    assert not np.allclose(checkpoint.model.classifier.weight.detach().numpy(),
                           load_checkpoint(tmp_path / "single.pt").model.classifier.weight.detach().numpy())  # really another run


def test_a_batch_that_cannot_be_shared_between_ranks_is_refused(monkeypatch):
    from medcam.models import distributed, training
    from medcam.models.training import TrainingError

    monkeypatch.setattr(training, "current_ranks", lambda: distributed.Ranks(0, 3))
    data = make_synthetic_data("cr2d", 8, 0, TASK_DEFAULTS["cr2d"][0])
    preprocess_config, model_config, names = TASK_DEFAULTS["cr2d"]
    with pytest.raises(TrainingError, match="cannot be shared out evenly between 3 ranks"):
        training.train_classifier(data, data, model_config=model_config, preprocess_config=preprocess_config,
                                  class_names=names, out="unused.pt", config=training.TrainingConfig(1, 16))
