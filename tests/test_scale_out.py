"""Cohorts beyond one process, on the real engines: spawned worker processes, sharding into parts,
a worker killed mid-run, a Dask LocalCluster, and `dask scheduler` + two `dask worker` processes
started on 127.0.0.1 with the CLI run against them. Every run must equal a one-process run:
same predictions, identical NIfTI voxels."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medcam.cases import find_cases, part_from_environment, shard
from medcam.cli import build_parser, main
from medcam.cohort import manifest_name, run_cohort
from medcam.errors import MedcamError
from medcam.io import write_nifti
from medcam.models import ClassifierConfig, GapClassifier, from_module, load_model
from medcam.synthetic import axial_geometry, ct_abdomen_scene, make_study, write_dicom_series
from medcam.transforms import PreprocessConfig, build_transform

FORMATS = "nifti,pm"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Six small studies: three DICOM series and three NIfTI files."""
    root = tmp_path_factory.mktemp("cohort")
    geometry = axial_geometry((32, 24, 12), (12.0, 12.0, 16.0))
    for index in range(6):
        study = make_study(ct_abdomen_scene(np.random.default_rng(index), n_lesions=index % 2), geometry, seed=index)
        if index % 2:
            write_dicom_series(study.volume, root / f"patient{index}")
        else:
            write_nifti(study.volume, root / f"patient{index}.nii.gz")
    return root


@pytest.fixture(scope="module")
def reference(cohort, model_path, tmp_path_factory):
    """The one-process run every other run is compared with."""
    out = tmp_path_factory.mktemp("reference")
    summary = run_cohort(find_cases(cohort), load_model(model_path), out, formats=FORMATS.split(","), log=lambda _: None)
    assert summary.done == 6 and summary.failed == 0
    return out


def _rows(out: Path, name: str = "manifest.csv") -> dict[str, dict[str, str]]:
    with open(out / name, newline="") as handle:
        return {row["case_id"]: row for row in csv.DictReader(handle)}


def assert_same_results(out: Path, reference: Path, name: str = "manifest.csv") -> None:
    rows, expected = _rows(out, name), _rows(reference)
    assert sorted(rows) == sorted(expected)
    for case_id, row in rows.items():
        assert row["status"] == "ok", row["error"]
        assert (row["prediction"], row["probability"], row["peak_lps_mm"]) == (
            expected[case_id]["prediction"], expected[case_id]["probability"], expected[case_id]["peak_lps_mm"])
        ours, theirs = nib.load(out / case_id / "cam.nii.gz"), nib.load(reference / case_id / "cam.nii.gz")
        assert np.array_equal(ours.get_fdata(), theirs.get_fdata()) and np.array_equal(ours.affine, theirs.affine)
        assert (out / case_id / ".cam.complete.json").is_file()


def test_two_worker_processes_give_the_one_process_results(cohort, model_path, reference, tmp_path):
    out = tmp_path / "out"
    summary = run_cohort(find_cases(cohort), load_model(model_path), out, formats=FORMATS.split(","), workers=2,
                         log=lambda _: None)
    assert (summary.done, summary.failed) == (6, 0)
    assert_same_results(out, reference)
    again = run_cohort(find_cases(cohort), load_model(model_path), out, formats=FORMATS.split(","), workers=2)
    assert (again.done, again.skipped) == (0, 6)  # resumed: nothing redone


def test_a_model_built_in_python_reaches_the_workers_pickled(cohort, tmp_path):
    torch.manual_seed(3)
    net = GapClassifier(ClassifierConfig(3, channels=(4, 8), convs_per_stage=(1, 1)))
    model = from_module(net, build_transform(PreprocessConfig(3, (12.0, 12.0, 16.0), (32, 24, 12))), ["no", "yes"])
    cases = find_cases(cohort)[:3]
    alone = run_cohort(cases, model, tmp_path / "alone", formats=["nifti"], log=lambda _: None)
    pooled = run_cohort(cases, model, tmp_path / "pooled", formats=["nifti"], workers=2, log=lambda _: None)
    assert alone.done == pooled.done == 3
    for case in cases:
        assert _rows(tmp_path / "pooled")[case.case_id]["probability"] == _rows(tmp_path / "alone")[case.case_id]["probability"]


def test_a_model_that_cannot_be_pickled_is_refused_in_one_line(cohort, tmp_path):
    net = GapClassifier(ClassifierConfig(3, channels=(4, 8), convs_per_stage=(1, 1)))
    transform = build_transform(PreprocessConfig(3, (12.0, 12.0, 16.0), (32, 24, 12)))
    model = from_module(net, lambda x: transform(x), ["no", "yes"])
    with pytest.raises(MedcamError, match="cannot be sent to worker processes"):
        run_cohort(find_cases(cohort), model, tmp_path / "out", formats=["nifti"], workers=2)


def test_parts_cover_every_case_exactly_once_and_a_whole_run_sees_them(cohort, model_path, reference, tmp_path):
    cases = find_cases(cohort)
    for parts in (1, 2, 4, 7):
        chosen = [case.case_id for part in range(parts) for case in shard(cases, parts, part)]
        assert sorted(chosen) == sorted(case.case_id for case in cases) and len(set(chosen)) == len(cases)
    with pytest.raises(MedcamError, match="part id"):
        shard(cases, 3, 3)
    out = tmp_path / "out"
    model = load_model(model_path)
    for part in range(3):
        summary = run_cohort(cases, model, out, formats=FORMATS.split(","), num_parts=3, part_id=part, log=lambda _: None)
        assert summary.done == 2 and summary.manifest.name == manifest_name(3, part) == f"manifest.part-{part + 1}-of-3.csv"
        assert len(_rows(out, summary.manifest.name)) == 2
    whole = run_cohort(cases, model, out, formats=FORMATS.split(","), log=lambda _: None)
    assert (whole.done, whole.skipped) == (0, 6)  # every part's cases seen as done
    assert_same_results(out, reference)


def test_the_part_comes_from_the_options_torchrun_or_a_slurm_array():
    parser = build_parser()

    def part(argv, environ):  # the options as the command line parses them
        args = parser.parse_args(["explain", "x", "--model", "m", "--out", "o", *argv])
        return part_from_environment(args.num_parts, args.part_id, environ)

    assert part([], {}) == (1, 0)
    assert part(["--num-parts", "4", "--part-id", "2"], {"WORLD_SIZE": "8", "RANK": "1"}) == (4, 2)
    assert part([], {"WORLD_SIZE": "3", "RANK": "2"}) == (3, 2)
    assert part([], {"SLURM_ARRAY_TASK_COUNT": "5", "SLURM_ARRAY_TASK_ID": "11", "SLURM_ARRAY_TASK_MIN": "10"}) == (5, 1)
    with pytest.raises(MedcamError, match="go together"):
        part(["--num-parts", "4"], {})


def test_a_foreign_manifest_in_the_output_folder_is_refused(cohort, model_path, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.csv").write_text("patient,score\nA,1\n")
    with pytest.raises(MedcamError, match="not a medcam manifest"):
        run_cohort(find_cases(cohort), load_model(model_path), out, formats=["nifti"])


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from medcam.cli import main; sys.exit(main())", *argv]


@pytest.mark.slow
def test_a_worker_killed_mid_run_the_cohort_completes_and_nothing_half_written_looks_complete(
        cohort, model_path, reference, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(_cli("explain", str(cohort), "--model", str(model_path), "--out", str(out), "--formats",
                                    FORMATS, "--workers", "2", "--quiet"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline, killed = time.monotonic() + 120, None
    while killed is None and time.monotonic() < deadline and process.poll() is None:
        # a worker that has started writing a case: its folder exists, its marker not yet
        started = [p for p in out.glob("*/") if p.is_dir() and not (p / ".cam.complete.json").exists()] if out.is_dir() else []
        workers = [pid for pid in _children(process.pid) if "spawn" in Path(f"/proc/{pid}/cmdline").read_text()]
        if started and workers:
            os.kill(workers[0], signal.SIGKILL)
            killed = workers[0]
        time.sleep(0.005)
    output = process.communicate(timeout=300)[0].decode()
    assert killed is not None, output
    assert process.returncode == 0, output
    assert_same_results(out, reference)


@pytest.mark.slow
def test_a_cohort_on_a_dask_local_cluster_equals_the_one_process_run(cohort, model_path, reference, tmp_path):
    from medcam.cluster import cluster_client

    with cluster_client("local:2") as client:
        summary = run_cohort(find_cases(cohort), load_model(model_path), tmp_path / "out", formats=FORMATS.split(","),
                             executor=client, log=lambda _: None)
        assert len(client.scheduler_info()["workers"]) == 2
    assert (summary.done, summary.failed) == (6, 0)
    assert_same_results(tmp_path / "out", reference)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_the_cli_on_a_dask_scheduler_and_two_workers_started_here(cohort, model_path, reference, tmp_path):
    dask = Path(sys.executable).with_name("dask")
    address = f"tcp://127.0.0.1:{_free_port()}"
    environment = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    started = [subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                                 "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)]
    try:
        for _ in range(2):
            started.append(subprocess.Popen([str(dask), "worker", address, "--nthreads", "1", "--no-dashboard"],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment))
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        out = tmp_path / "out"
        run = subprocess.run(_cli("explain", str(cohort), "--model", str(model_path), "--out", str(out), "--formats", FORMATS,
                                  "--quiet"), env={**environment, "DASK_SCHEDULER_ADDRESS": address},
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "6 explained, 0 already done, 0 failed" in run.stdout
        assert_same_results(out, reference)
    finally:
        for process in reversed(started):
            process.terminate()
        for process in started:
            process.wait(timeout=60)


def test_workers_and_a_scheduler_together_are_refused(cohort, model_path, tmp_path, capsys):
    code = main(["explain", str(cohort), "--model", str(model_path), "--out", str(tmp_path / "o"), "--workers", "2",
                 "--scheduler", "local:2"])
    assert code == 2 and "choose one" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_exits_130_in_one_line_and_a_rerun_completes(cohort, model_path, reference, tmp_path, workers):
    out = tmp_path / "out"
    process = subprocess.Popen(_cli("explain", str(cohort), "--model", str(model_path), "--out", str(out), "--formats",
                                    FORMATS, "--quiet", "--workers", workers), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and not list(out.glob("*/.cam.complete.json")):
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)  # as Ctrl-C does (the terminal signals the whole group; here the command)
    stdout, stderr = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.fail(f"the cohort finished before the interrupt reached it: {stdout.decode()}")
    assert process.returncode == 130, stderr.decode()
    assert stderr.decode().strip().splitlines() == ["medcam: interrupted; outputs written completely are kept, a re-run completes the rest"]
    rerun = subprocess.run(_cli("explain", str(cohort), "--model", str(model_path), "--out", str(out), "--formats", FORMATS,
                                "--quiet"), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert_same_results(out, reference)
