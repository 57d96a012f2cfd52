"""CAM cost as a ratio to a plain no-grad forward pass, with MONAI and torchcam timed in the same run.

    python benchmarks/bench_cam.py                          # CPU, 64^3, batch 1 and 2, the bundled model and resnet18
    python benchmarks/bench_cam.py --models densenet121 resnet18 --sizes 96 --batches 1 --no-torchcam
    python benchmarks/bench_cam.py --models densenet121 resnet18 --sizes 96 --skip-gradients --memory
    python benchmarks/bench_cam.py --sizes 64 128 --device cuda
    python benchmarks/bench_cam.py --scorecam-size 48       # Score-CAM vs torchcam (time, peak memory)

For each model (the bundled 3D GAP architecture, MONAI's 3D DenseNet121 and resnet18, whose GAP +
linear heads medcam finds by itself: exact CAM runs on all three), input size and batch size,
every method is run ``--reps`` times, methods interleaved within each repetition, and the median
time is divided by the median time of ``model(x)`` under ``torch.no_grad()``. medcam times include
upsampling the map to the input grid; MONAI's GradCAM upsamples too; torchcam returns maps at
feature resolution (no upsampling). Peak memory: CUDA's max_memory_allocated on a GPU, the peak
resident set size above the pre-call level (sampled every 2 ms) on the CPU, measured in one more,
untimed call of each method (the sampler would slow the timed ones).

torchcam comes from the optional extra: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections.abc import Callable

import torch

from medcam.cam import create_extractor
from medcam.models import GapClassifier
from medcam.models.recipes import TASK_DEFAULTS


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak, or sampled RSS above the starting level."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = _rss_bytes()
            self.running = True
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, _rss_bytes() - self.base)
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self.running = False
            self.thread.join()
            self.peak = max(self.peak, _rss_bytes() - self.base)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call, with nothing else running (no memory sampler: on 2 CPUs a thread
    polling every 2 ms slowed short calls by up to a factor of 2)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _peak_memory(fn: Callable[[], object], device: torch.device) -> int:
    """Peak memory of one more call, made after the timed ones."""
    with PeakMemory(device) as memory:
        fn()
    return memory.peak


def _medcam(method: str, model, layer: str, x: torch.Tensor, **options):
    def run():
        with create_extractor(method, model, layer, **options) as extractor:
            return extractor(x, target=1)

    return run


def _monai_gradcam(model, layer: str, x: torch.Tensor):
    """MONAI's GradCAM on its own copy of the model, built once: each GradCAM object registers a
    forward and a backward hook on the layer and never removes them, so on a shared model they
    pile up and slow every later forward pass, the baseline's and medcam's included."""
    import copy

    from monai.visualize import GradCAM

    explainer = GradCAM(nn_module=copy.deepcopy(model), target_layers=layer, postprocessing=lambda m: m)

    def run():
        return explainer(x, class_idx=1)

    return run


def _torchcam(kind: str, model, layer: str, x: torch.Tensor, **options):
    from torchcam import methods

    def run():
        with getattr(methods, kind)(model, target_layer=layer, input_shape=tuple(x.shape[1:]), **options) as extractor:
            scores = model(x)
            return extractor([1] * x.shape[0], scores)

    return run


def _models(names: list[str]):
    """(name, model, target layer, CAM's linear layer) for each name; the MONAI networks' layers are
    the GAP + linear head medcam finds (DenseNet121: class_layers.relu and class_layers.out)."""
    from medcam.cam import find_gap_head

    for name in names:
        if name == "bundled":
            _, config, _ = TASK_DEFAULTS["ct3d"]
            yield name, GapClassifier(config).eval(), "features", "classifier"
            continue
        from monai.networks import nets

        if name == "resnet18":
            model = nets.resnet18(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        else:
            model = nets.DenseNet121(spatial_dims=3, in_channels=1, out_channels=2).eval()
        head = find_gap_head(model, torch.zeros(1, 1, 64, 64, 64))
        yield name, model, head.feature_layer, head.fc_layer


def bench_gradients(args, device: torch.device) -> None:
    print(f"\n== gradient methods: ratio to a no-grad forward (median of {args.reps}), peak memory MiB ==")
    for model_name, model, layer, fc in _models(args.models):
        model = model.to(device)
        for size in args.sizes:
            for batch in args.batches:
                x = torch.randn(batch, 1, size, size, size, device=device, generator=None)

                def forward():
                    with torch.no_grad():
                        return model(x)

                runs: dict[str, Callable[[], object]] = {"forward": forward}
                runs["cam"] = _medcam("cam", model, layer, x, fc_layer=fc)
                for method in ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam"):
                    runs[method] = _medcam(method, model, layer, x)
                runs["monai GradCAM"] = _monai_gradcam(model, layer, x)
                if not args.no_torchcam:
                    runs["torchcam GradCAM (no upsampling)"] = _torchcam("GradCAM", model, layer, x)
                for run in runs.values():  # warm-up
                    run()
                times: dict[str, list[float]] = {name: [] for name in runs}
                names = list(runs)
                for rep in range(args.reps):
                    # rotate the order each repetition so no method always runs first (cold caches)
                    for name in names[rep % len(names) :] + names[: rep % len(names)]:
                        times[name].append(_timed(runs[name], device))
                peaks = {name: _peak_memory(run, device) for name, run in runs.items()}  # untimed calls
                base = statistics.median(times["forward"])
                print(f"\n{model_name} {batch}x1x{size}^3 on {device}: forward {base * 1000:.1f} ms")
                for name in runs:
                    median = statistics.median(times[name])
                    print(f"  {name:34s} {median / base:6.2f}x   {peaks[name] / 2**20:8.1f} MiB")
                monai = statistics.median(times["monai GradCAM"])
                slowest = max(statistics.median(times[m]) for m in ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam"))
                print(f"  MONAI GradCAM / slowest medcam gradient method: {monai / slowest:.2f}x")
                map_mib = x[:, 0].numel() * 4 / 2**20
                extra = max(peaks[m] for m in runs if not m.startswith(("monai", "torchcam"))) - peaks["forward"]
                print(f"  largest medcam peak minus the forward's: {extra / 2**20:.1f} MiB (the map: {map_mib:.1f} MiB)")


def _probe(args) -> None:
    """Child process of --memory: one call of ``args.probe`` on a fresh model; prints its peak RSS."""
    import resource

    torch.manual_seed(0)
    name, model, layer, fc = next(_models([args.models[0]]))
    x = torch.randn(1, 1, *(args.sizes[0],) * 3)
    if args.probe == "forward":
        with torch.no_grad():
            model(x)
    elif args.probe == "monai GradCAM":
        _monai_gradcam(model, layer, x)()
    else:
        _medcam(args.probe, model, layer, x, **({"fc_layer": fc} if args.probe == "cam" else {}))()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def bench_memory(args) -> None:
    """Peak resident memory of a fresh process that builds the model and makes one call, for a plain
    no-grad forward and for each method (the allocator's reuse hides a call's memory from an RSS
    sampler in a warm process; a fresh process's peak does not)."""
    import subprocess
    import sys

    methods = ["forward", "cam", "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "monai GradCAM"]
    for model_name in args.models:
        for size in args.sizes:
            runs: dict[str, list[int]] = {method: [] for method in methods}
            for _ in range(args.memory_repeats):  # methods interleaved; the median of the repeats is shown
                for method in methods:
                    out = subprocess.run([sys.executable, __file__, "--probe", method, "--models", model_name, "--sizes", str(size)],
                                         capture_output=True, text=True, check=True).stdout
                    runs[method].append(int(out.split()[-1]))
            peaks = {method: statistics.median(values) for method, values in runs.items()}
            map_mib = size**3 * 4 / 2**20
            print(f"\n{model_name} 1x1x{size}^3, peak RSS of a fresh process, median of {args.memory_repeats}, MiB "
                  f"(the map: {map_mib:.1f} MiB)")
            for method in methods:
                extra = (peaks[method] - peaks["forward"]) / 2**20
                print(f"  {method:16s} {peaks[method] / 2**20:8.1f}   {extra:+8.1f} against the forward")


def bench_scorecam(args, device: torch.device) -> None:
    from monai.networks.nets import resnet18

    size = args.scorecam_size
    model = resnet18(spatial_dims=3, n_input_channels=1, num_classes=2).eval().to(device)
    x = torch.randn(1, 1, size, size, size, device=device)
    print(f"\n== Score-CAM, resnet18 layer4 (512 channels), 1x1x{size}^3 on {device} ==")
    runs = {"medcam scorecam": _medcam("scorecam", model, "layer4", x, batch_size=args.scorecam_batch)}
    if not args.no_torchcam:
        runs["torchcam ScoreCAM"] = _torchcam("ScoreCAM", model, "layer4", x, batch_size=args.torchcam_batch)
    results = {}
    for name, run in runs.items():
        # one call each, timed and sampled together: minutes long, so a 2 ms sampler costs nothing
        with PeakMemory(device) as memory:
            elapsed = _timed(run, device)
        results[name] = (elapsed, memory.peak)
        peak = memory.peak
        print(f"  {name:20s} {elapsed:8.1f} s   {peak / 2**20:8.1f} MiB peak")
    if len(results) == 2:
        ours, theirs = results["medcam scorecam"], results["torchcam ScoreCAM"]
        print(f"  time ratio medcam/torchcam {ours[0] / theirs[0]:.2f}, memory ratio {ours[1] / max(theirs[1], 1):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--models", nargs="+", default=["bundled", "resnet18"], choices=["bundled", "densenet121", "resnet18"])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-torchcam", action="store_true")
    parser.add_argument("--scorecam-size", type=int, default=0, help="also compare Score-CAM at this input size")
    parser.add_argument("--scorecam-batch", type=int, default=8, help="medcam Score-CAM masked inputs per forward")
    parser.add_argument("--torchcam-batch", type=int, default=32)
    parser.add_argument("--skip-gradients", action="store_true")
    parser.add_argument("--memory", action="store_true", help="peak memory of one call in a fresh process, per method (CPU)")
    parser.add_argument("--memory-repeats", type=int, default=3)
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        return _probe(args)
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}")
    if not args.skip_gradients:
        bench_gradients(args, device)
    if args.memory:
        bench_memory(args)
    if args.scorecam_size:
        bench_scorecam(args, device)


if __name__ == "__main__":
    main()
