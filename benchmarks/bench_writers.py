"""The write phase of one case alone, in three arrangements, interleaved, on a 512 x 512 x 200 series.

    python benchmarks/bench_writers.py                 # 5 rounds
    python benchmarks/bench_writers.py --rounds 9 --size 256 256 100

The NIfTI (.nii.gz, in a background thread), the Parametric Map and the Secondary Capture series
of one explained case are written (1) all by this process, (2) with the Secondary Capture series
in a forked child, (3) as (2) with the child at nice 10, which is what ``write_case_outputs`` does.
Each round runs the three in turn after an (untimed) ``os.sync()``; medians are printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import SAMPLE, make_series  # noqa: E402


def write_all(heatmap, series, out: Path, arrangement: str) -> float:
    from medcam.export.forked import ForkedCall
    from medcam.export.nifti import write_heatmap_nifti
    from medcam.export.parametric_map import write_parametric_map
    from medcam.export.secondary_capture import write_secondary_capture

    os.sync()
    start = time.perf_counter()
    child = None
    if arrangement != "one process":
        child = ForkedCall(write_secondary_capture, heatmap, series, out / "sc", nice=10 if "nice" in arrangement else 0)
    with ThreadPoolExecutor(max_workers=1) as background:
        nifti = background.submit(write_heatmap_nifti, heatmap, out / "cam.nii.gz", sidecar={})
        write_parametric_map(heatmap, series, out / "pm.dcm")
        if child is None:
            write_secondary_capture(heatmap, series, out / "sc")
        else:
            child.result()
        nifti.result()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, nargs=3, default=[512, 512, 200])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from medcam.backproject import to_source_grid
    from medcam.cam import create_extractor
    from medcam.io import read_dicom_series
    from medcam.models import load_checkpoint
    from medcam.transforms import preprocess

    arrangements = ("one process", "Secondary Capture forked", "Secondary Capture forked, nice 10")
    times: dict[str, list[float]] = {name: [] for name in arrangements}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"making a {args.size[0]}x{args.size[1]}x{args.size[2]} CT series...", flush=True)
        make_series(tmp / "src", tuple(args.size))
        checkpoint = load_checkpoint(SAMPLE / "models" / "ct3d.pt")
        series = read_dicom_series(tmp / "src")
        model_input = preprocess(series.volume, checkpoint.preprocess_config)
        with create_extractor("cam", checkpoint.model) as extractor:
            result = extractor(model_input.as_tensor()[None], target=1)
        heatmap = to_source_grid(result.map[0], model_input, series.volume.geometry)
        for round_ in range(args.rounds + 1):  # the first round warms up and is not counted
            for name in arrangements:
                out = tmp / "out"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                seconds = write_all(heatmap, series, out, name)
                if round_:
                    times[name].append(seconds)
    for name in arrangements:
        print(f"{name:36s} median {statistics.median(times[name]):5.2f} s  ({', '.join(f'{t:.2f}' for t in times[name])})")


if __name__ == "__main__":
    main()
