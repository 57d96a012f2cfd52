"""The warm pipeline of ``bench_pipeline.py`` for two commits, run in alternation on one series.

    python benchmarks/compare_pipeline.py 282ca33            # that commit against the working tree
    python benchmarks/compare_pipeline.py 282ca33 --pairs 9 --size 256 256 100

On a shared machine the I/O floor, and with it every ratio, moves by a factor of two from minute
to minute; two versions run turn about, each in a fresh process on the same series, differ only
by what changed. The base commit is checked out into a temporary git worktree and its own
``bench_pipeline.py`` runs its own code. Prints each pair and the medians of the total, of each
stage and of the peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_pipeline import make_series  # noqa: E402


def warm_run(root: Path, series: Path, out: Path) -> dict:
    """One warm case with the code under ``root``, in a fresh process."""
    out.mkdir()
    os.sync()
    environment = dict(os.environ, PYTHONPATH=str(root))
    command = [sys.executable, str(root / "benchmarks" / "bench_pipeline.py"), "--child", "warm", str(series), str(out)]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=root, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base", help="the commit to compare the working tree with")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--size", type=int, nargs=3, default=[512, 512, 200])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = tmp / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.base], check=True)
        try:
            print(f"making a {args.size[0]}x{args.size[1]}x{args.size[2]} CT series...", flush=True)
            make_series(tmp / "src", tuple(args.size))
            versions = {f"base {args.base}": base, "working tree": ROOT}
            runs: dict[str, list[dict]] = {name: [] for name in versions}
            for pair in range(args.pairs):
                for name, root in versions.items():
                    run = warm_run(root, tmp / "src", tmp / f"out-{pair}-{len(runs[name])}-{root.name}")
                    runs[name].append(run)
                    stages = ", ".join(f"{stage} {seconds:.2f}" for stage, seconds in run["stages"].items())
                    print(f"  pair {pair + 1}, {name}: {run['total']:.2f} s ({stages})", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=True)
    print()
    for name, results in runs.items():
        total = statistics.median(run["total"] for run in results)
        memory = statistics.median(max(run["maxrss"], run["writing_memory"]) for run in results)
        stages = ", ".join(
            f"{stage} {statistics.median(run['stages'][stage] for run in results):.2f}" for stage in results[0]["stages"]
        )
        print(f"{name}: median of {len(results)}: {total:.2f} s, peak memory {memory / 2**20:.0f} MiB ({stages})")


if __name__ == "__main__":
    main()
