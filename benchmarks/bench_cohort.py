"""Cohort throughput: one process, two local worker processes, a two-worker Dask LocalCluster, in one run.

    python benchmarks/bench_cohort.py                      # 8 CT series of 256 x 256 x 100, all outputs
    python benchmarks/bench_cohort.py --cases 4 --size 128 128 50 --repeats 1

Each configuration is ``medcam explain COHORT --model ct3d.pt --formats nifti,pm,sc,png`` in a
fresh process (``--workers 1``, ``--workers 2``, ``--scheduler local:2``), timed from start to
exit: worker start-up and model loading are part of the cost, as for a user. The configurations
run in turn ``--repeats`` times (the machine is shared: a ratio is taken between runs made
minutes apart at most); the median of each is reported, in cases per minute, with the ratios
2 workers / 1 worker and Dask / local pool. The peak resident memory of each process of the run
(the command, each worker) is sampled every 0.1 s from /proc and reported for the largest
worker. Targets on 2 cores: 2 workers >= 1.7x one; Dask within 10 % of the local pool.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_pipeline import make_series  # noqa: E402

MODEL = ROOT / "sample_data" / "models" / "ct3d.pt"
CONFIGURATIONS = {"1 process": ["--workers", "1"], "2 workers": ["--workers", "2"], "Dask LocalCluster, 2 workers": ["--scheduler", "local:2"]}


def timed_run(cohort: Path, out: Path, options: list[str]) -> tuple[float, int, int]:
    """(seconds, peak RSS of the command's own process, largest peak RSS of any other process of its tree)."""
    command = [str(Path(sys.executable).with_name("medcam")), "explain", str(cohort), "--model", str(MODEL), "--out", str(out),
               "--formats", "nifti,pm,sc,png", "--quiet", *options]
    start = time.perf_counter()
    process = psutil.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peaks: dict[int, int] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                tree = [process, *process.children(recursive=True)]
            except psutil.Error:
                tree = []
            for member in tree:
                try:
                    peaks[member.pid] = max(peaks.get(member.pid, 0), member.memory_info().rss)
                except psutil.Error:
                    pass
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = process.communicate()[0].decode()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if process.returncode != 0 or " 0 failed" not in output:
        raise SystemExit(f"{' '.join(command)} failed:\n{output}")
    own = peaks.pop(process.pid, 0)
    # the workers are the big ones; the resource tracker, a nanny, the scheduler stay small
    return seconds, own, max(peaks.values(), default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=3, default=[256, 256, 100])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medcam-bench-cohort-") as scratch:
        scratch = Path(scratch)
        cohort = scratch / "cohort"
        print(f"making {args.cases} CT series of {' x '.join(map(str, args.size))}...", flush=True)
        for index in range(args.cases):
            make_series(cohort / f"case{index:02d}", tuple(args.size))
        results: dict[str, list[tuple[float, int, int]]] = {name: [] for name in CONFIGURATIONS}
        for repeat in range(args.repeats):
            for name, options in CONFIGURATIONS.items():
                run = timed_run(cohort, scratch / f"out-{repeat}-{len(results[name])}-{options[-1].replace(':', '')}", options)
                results[name].append(run)
                print(f"  run {repeat + 1}, {name}: {run[0]:.1f} s, {60 * args.cases / run[0]:.2f} cases/min, "
                      f"peak RSS command {run[1] / 2**20:.0f} MiB, largest worker {run[2] / 2**20:.0f} MiB", flush=True)
    rate = {name: 60 * args.cases / statistics.median(r[0] for r in runs) for name, runs in results.items()}
    print(f"\n{args.cases} cases of {' x '.join(map(str, args.size))}, formats nifti,pm,sc,png, median of {args.repeats}; "
          f"{psutil.cpu_count()} CPUs")
    print("| configuration | cases / min | vs 1 process | peak RSS, command | peak RSS, largest worker |")
    print("| --- | --- | --- | --- | --- |")
    for name, runs in results.items():
        own, worker = max(r[1] for r in runs), max(r[2] for r in runs)
        print(f"| {name} | {rate[name]:.2f} | {rate[name] / rate['1 process']:.2f}x | {own / 2**20:.0f} MiB | "
              f"{worker / 2**20:.0f} MiB |" if worker else f"| {name} | {rate[name]:.2f} | 1.00x | {own / 2**20:.0f} MiB | - |")
    pool, dask = rate["2 workers"], rate["Dask LocalCluster, 2 workers"]
    print(f"\n2 workers / 1 process: {pool / rate['1 process']:.2f}x (target >= 1.7x); Dask / local pool: {dask / pool:.2f} "
          "(target >= 0.90)")


if __name__ == "__main__":
    main()
