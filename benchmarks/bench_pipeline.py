"""One large CT series from disk to every output, as a ratio to the I/O floor measured in the same run.

    python benchmarks/bench_pipeline.py                    # 512 x 512 x 200, bundled 3D model
    python benchmarks/bench_pipeline.py --size 256 256 100 # quicker

Stages timed, each a call of the product: reading the DICOM series (``read_study``), ``explain``
(preprocess, inference + CAM, back-sampling onto the 512 x 512 x 200 grid) and ``Explanation.save``
(NIfTI with ISA-L gzip level 1, the Parametric Map and the Secondary Capture series, one after
another, as ``write_case_outputs`` writes them). The I/O floor is
pydicom reading every source file and decoding its pixels, plus plain writes of as many bytes as
the outputs hold (into the page cache, as the pipeline's own writes; the median of three),
measured after each pipeline run. Every run and every floor write starts after an (untimed)
``os.sync()``, so none pays for the previous one's writeback. The pipeline runs in three modes, each in a
fresh child process: cold (the case pays for imports and model loading), warm (after a small
case, as every case but the first of a cohort) and warm with an uncompressed NIfTI; each mode
``--repeats`` times (3), interleaved, and the run with the median ratio is shown in full. Each
child's peak resident memory (VmHWM) is its own; while the outputs are written, its resident
memory is also sampled every 50 ms; the peak is the larger of the two. Memory is
reported as a multiple of the float32 size of the volume.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def make_series(folder: Path, size: tuple[int, int, int]) -> None:
    """A CT-like series of ``size`` voxels: a small phantom upsampled, with fresh noise."""
    from scipy.ndimage import zoom

    from medcam.geometry import Volume
    from medcam.synthetic import ct_abdomen_scene, make_study, write_dicom_series
    from medcam.synthetic.phantoms import axial_geometry

    fov = (380.0, 380.0, 1.5 * size[2])
    small_shape = (96, 96, max(8, size[2] // 4))
    small = make_study(
        ct_abdomen_scene(np.random.default_rng(0), n_lesions=1),
        axial_geometry(small_shape, tuple(f / n for f, n in zip(fov, small_shape))), seed=0,
    )
    factors = [n / m for n, m in zip(size, small_shape)]
    data = zoom(small.volume.array, factors, order=1).astype(np.float32)
    data += np.random.default_rng(1).normal(0, 8, data.shape).astype(np.float32)
    geometry = axial_geometry(size, tuple(f / n for f, n in zip(fov, size)))
    write_dicom_series(Volume(data, geometry), folder)


def _peak_rss_bytes() -> int:
    """This process's peak resident set (VmHWM): unlike ru_maxrss it is not inherited across exec."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakSampler:
    """The largest value ``measure()`` returns while the block runs, sampled every ``interval`` s."""

    def __init__(self, measure, interval: float) -> None:
        import threading

        self.measure, self.interval, self.peak = measure, interval, measure()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            self.peak = max(self.peak, self.measure())

    def __enter__(self) -> _PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self.measure())


class _StageClock:
    """Wall and CPU seconds of consecutive stages. CPU counts every thread of this process and
    the children it has waited for, so that CPU / number of CPUs is the
    least wall time the same work could take on this machine."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._marks = (time.perf_counter(), self._cpu())

    @staticmethod
    def _cpu() -> float:
        times = os.times()
        return times.user + times.system + times.children_user + times.children_system

    def lap(self, stage: str) -> None:
        wall, cpu = time.perf_counter(), self._cpu()
        self.wall[stage], self.cpu[stage] = wall - self._marks[0], cpu - self._marks[1]
        self._marks = (wall, cpu)


def run_case(folder: Path, out: Path, model, nifti: str = "nifti") -> dict:
    """One case through the product: ``read_study`` (the series read at once), ``explain`` (preprocess,
    inference + CAM, back-sampling onto the source grid) and ``Explanation.save`` (the outputs
    one after another, ``write_case_outputs``); ``nifti`` is "nifti" (.nii.gz) or "nii"."""
    from medcam.explanation import explain
    from medcam.study import read_study

    clock = _StageClock()
    study = read_study(folder)
    series = study.series  # reads every file: headers, order, geometry, pixels
    clock.lap("read the DICOM series")
    explanation = explain(model, study, method="cam", target=1)
    clock.lap("explain (preprocess, CAM, back-sampling)")
    with _PeakSampler(_resident_bytes, 0.05) as writing:
        written = explanation.save(out, formats=(nifti, "pm", "sc"), name="cam")
    clock.lap("save NIfTI + PM + SC")
    if written.notes:
        raise RuntimeError(f"outputs not written: {written.notes}")
    output_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"stages": clock.wall, "cpu": clock.cpu, "total": sum(clock.wall.values()),
            "output_bytes": output_bytes, "voxels": int(np.prod(series.volume.shape)), "writing_memory": writing.peak}


def child_pipeline(folder: Path, out: Path, mode: str) -> dict:
    """The pipeline in this fresh process: "cold" (imports, model loading and highdicom's tables
    fall in the case's stages), or "warm" (after one small case, as every case after the first
    of a cohort runs); "warm-nii" writes the NIfTI uncompressed (``--formats nii``)."""
    import shutil

    from medcam.models import load_model

    clock = _StageClock()
    model = load_model(SAMPLE / "models" / "ct3d.pt")
    clock.lap("load the model")
    if mode != "cold":
        (out / "warmup").mkdir()
        run_case(SAMPLE / "ct_lesion_dicom", out / "warmup", model)
        shutil.rmtree(out / "warmup")
    result = run_case(folder, out, model, nifti="nii" if mode == "warm-nii" else "nifti")
    if mode == "cold":
        result["stages"] = {**clock.wall, **result["stages"]}
        result["cpu"] = {**clock.cpu, **result["cpu"]}
        result["total"] += clock.wall["load the model"]
    result["maxrss"] = _peak_rss_bytes()
    return result


def child_floor(folder: Path, out: Path, output_bytes: int, repeats: int = 3) -> dict:
    """Median of ``repeats`` measurements of each part. The writes, like the pipeline's, end in the
    page cache (neither calls fsync)."""
    import statistics

    import pydicom

    reads, writes = [], []
    block = os.urandom(1 << 20)
    for repeat in range(repeats):
        start = time.perf_counter()
        for path in sorted(folder.iterdir()):
            pydicom.dcmread(path).pixel_array  # noqa: B018 - decode, as a reader must
        reads.append(time.perf_counter() - start)
        os.sync()  # untimed: start each write with no dirty pages from before, as the pipeline does
        t = time.perf_counter()
        with open(out / f"floor{repeat}.bin", "wb") as handle:
            for _ in range(output_bytes >> 20):
                handle.write(block)
            handle.write(block[: output_bytes % (1 << 20)])
        writes.append(time.perf_counter() - t)
    read, write = statistics.median(reads), statistics.median(writes)
    return {"read": read, "write": write, "total": read + write, "maxrss": _peak_rss_bytes()}


def _run_child(mode: str, *args: str) -> dict:
    os.sync()  # every child starts with the previous one's writes on disk (writeback would slow it)
    result = subprocess.run([sys.executable, __file__, "--child", mode, *args], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, nargs=3, default=[512, 512, 200])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each mode (interleaved); the median run is shown")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, folder, out, *rest = args.child
        if mode == "floor":
            result = child_floor(Path(folder), Path(out), int(rest[0]))
        else:
            result = child_pipeline(Path(folder), Path(out), mode)
        print(json.dumps(result))
        return
    modes = ("cold", "warm", "warm-nii")
    runs: dict[str, list[tuple[dict, dict]]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"making a {args.size[0]}x{args.size[1]}x{args.size[2]} CT series...", flush=True)
        make_series(tmp / "src", tuple(args.size))
        for repeat in range(args.repeats):
            for mode in modes:  # interleaved, so that a noisy minute does not fall on one mode only
                out, floor_out = tmp / f"{mode}-{repeat}", tmp / f"floor-{mode}-{repeat}"
                out.mkdir()
                run = _run_child(mode, str(tmp / "src"), str(out))
                floor_out.mkdir()  # the floor writes as many bytes as this run's outputs hold
                floor = _run_child("floor", str(tmp / "src"), str(floor_out), str(run["output_bytes"]))
                runs[mode].append((run, floor))
                print(f"  {mode} run {repeat + 1}: {run['total']:.2f} s = {run['total'] / floor['total']:.2f}x", flush=True)
    labels = {"warm": "warm (a case after the first of a cohort), .nii.gz",
              "warm-nii": "warm, uncompressed .nii (--formats nii,pm,sc)",
              "cold": "cold (a fresh process: imports included), .nii.gz"}
    for mode in ("warm", "warm-nii", "cold"):
        ratios = sorted(run["total"] / floor["total"] for run, floor in runs[mode])
        run, floor = sorted(runs[mode], key=lambda pair: pair[0]["total"] / pair[1]["total"])[len(runs[mode]) // 2]
        volume_bytes = run["voxels"] * 4
        print(f"\n{labels[mode]}: ratio to the I/O floor in {len(ratios)} runs: "
              f"{', '.join(f'{r:.2f}x' for r in ratios)}; the median run:")
        print(f"I/O floor: read {floor['read']:.2f} s + write {run['output_bytes'] / 2**20:.0f} MiB {floor['write']:.2f} s "
              f"= {floor['total']:.2f} s; floor process peak memory {floor['maxrss'] / 2**20:.0f} MiB")
        peak = max(run["maxrss"], run["writing_memory"])
        print(f"pipeline: {run['total']:.2f} s = {run['total'] / floor['total']:.2f}x the I/O floor; "
              f"peak memory {peak / 2**20:.0f} MiB = {peak / volume_bytes:.1f}x the float32 volume ({volume_bytes / 2**20:.0f} MiB)")
        print(f"  (this process's own peak {run['maxrss'] / 2**20:.0f} MiB; while writing, {run['writing_memory'] / 2**20:.0f} MiB at most)")
        for name, seconds in run["stages"].items():
            print(f"  {name:42s} {seconds:7.2f} s  {100 * seconds / run['total']:5.1f}%   CPU {run['cpu'][name]:5.2f} s")
        cpu = sum(run["cpu"].values())
        print(f"  CPU time of every stage, all threads: {cpu:.2f} s; on {os.cpu_count()} CPUs the same "
              f"work takes at least {cpu / os.cpu_count():.2f} s = {cpu / os.cpu_count() / floor['total']:.2f}x the floor")


if __name__ == "__main__":
    main()
