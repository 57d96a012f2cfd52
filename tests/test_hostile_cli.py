"""Hostile command lines get one line on stderr and exit code 2, never a traceback: an empty or
random checkpoint, an output path that is a file, a device that does not exist here."""

from pathlib import Path

import pytest
import torch

from medcam.cli import main

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "sample_data" / "ct_lesion.nii.gz"
MODEL = ROOT / "sample_data" / "models" / "ct3d.pt"


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medcam: error: ") and "\n" not in err and "Traceback" not in err
    assert "np." not in err, err  # numbers as a user writes them
    return err


def test_an_empty_checkpoint(tmp_path, capsys):
    (tmp_path / "empty.pt").touch()
    err = _one_line_error(capsys, ["explain", str(STUDY), "--model", str(tmp_path / "empty.pt"), "--out", str(tmp_path / "o")])
    assert "empty (0 bytes)" in err


def test_a_checkpoint_of_random_bytes(tmp_path, capsys):
    (tmp_path / "junk.pt").write_bytes(bytes(range(256)) * 3)
    err = _one_line_error(capsys, ["explain", str(STUDY), "--model", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "o")])
    assert "not a readable checkpoint" in err


def test_an_output_path_that_is_a_file(tmp_path, capsys):
    (tmp_path / "taken").write_text("mine")
    err = _one_line_error(capsys, ["explain", str(STUDY), "--model", str(MODEL), "--out", str(tmp_path / "taken")])
    assert "is not a folder" in err and (tmp_path / "taken").read_text() == "mine"


@pytest.mark.parametrize("device, message", [("gpu0", "not a device name"), ("tpu", "not a device name"),
                                             ("cuda:7", "CUDA")])
def test_a_device_this_machine_does_not_have(tmp_path, capsys, device, message):
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.fail("this test assumes fewer than 8 CUDA devices")
    err = _one_line_error(capsys, ["explain", str(STUDY), "--model", str(MODEL), "--out", str(tmp_path / "o"), "--device", device])
    assert message in err and not (tmp_path / "o").exists()


def test_outputs_are_not_written_among_the_inputs(tmp_path, capsys):
    study = tmp_path / "ct.nii.gz"
    study.write_bytes(STUDY.read_bytes())
    err = _one_line_error(capsys, ["explain", str(study), "--model", str(MODEL), "--out", str(tmp_path)])
    assert "holds the input ct.nii.gz" in err and sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz"]
