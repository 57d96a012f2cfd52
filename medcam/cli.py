"""The ``medcam`` command line. Heavy imports live inside the commands so ``--help`` is instant."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medcam import __version__
from medcam.errors import MedcamError
from medcam.progress import Progress, ProgressCallback, progress_line

if TYPE_CHECKING:
    from medcam.models.training import TrainingResult
    from medcam.study import Study

_IMPORTED = time.perf_counter()

EXAMPLES = """examples:
  medcam demo --out out/demo                     explain every bundled study with the bundled models
  medcam explain sample_data/ct_lesion_dicom --model sample_data/models/ct3d.pt --out out/ct_lesion
                                                 one study: NIfTI, Parametric Map, overlay series, PNG
  medcam explain study/ --model my_bundle/ --method gradcam --out out/study
                                                 your study with your MONAI Bundle (configs/, models/model.pt)
  medcam info sample_data/ct_lesion_dicom        series, geometry and orientation of a DICOM folder
  medcam info sample_data/ct_lesion.nii.gz       the same for a NIfTI file
  medcam evaluate --model sample_data/models/ct3d.pt --synthetic ct3d --n 4 --methods cam,gradcam --out out/eval_ct3d
                                                 hit rate, energy, deletion/insertion per CAM method (about a
                                                 minute; benchmarks/RESULTS.md: --n 100, every method)
  medcam train --synthetic ct3d --pairs 24 --n-val 16 --crop-epochs 1 --epochs 1 --out out/ct3d_quick.pt
                                                 the 3D lesion classifier's recipe on synthetic CT, shortened to
                                                 a minute (its defaults train sample_data/models/ct3d.pt)
  medcam explain sample_data/ct_cohort.csv --model sample_data/models/ct3d.pt --out out/cohort
                                                 a cohort listed in a CSV (image[,case_id,mask,label])
  medcam evaluate --manifest sample_data/ct_cohort.csv --model sample_data/models/ct3d.pt --out out/evaluation
                                                 AUC and localisation on a labelled cohort of your own
  python pipelines/make_brain_mr_cohort.py --out out/brain_mr --n 24 --seed 0
                                                 a small brain MR cohort from the MNI152 template (manifests)
  medcam train --manifest out/brain_mr/with_masks.csv --spatial-dims 3 --spacing 3 3 3 --size 64 72 64 --intensity robust_zscore --classes "no lesion" lesion --modality MR --crop-epochs 3 --out out/my_model.pt
                                                 train on your own NIfTI/DICOM (CSV: image,label[,mask]);
                                                 --crop-epochs 3 for a first look, the default 20 for a model
"""


class _Bars:
    """The command line's progress display: a tqdm bar for each task reported, the last one
    closed when another task starts."""

    def __init__(self) -> None:
        self._bar: Any = None  # a tqdm bar
        self._task: str | None = None

    def __call__(self, report: Progress) -> None:
        from tqdm.auto import tqdm

        bar = self._bar
        if bar is None or report.task != self._task:
            self.close()
            bar = self._bar = tqdm(total=report.total, desc=report.task, unit=report.unit, leave=False, dynamic_ncols=True)
            self._task = report.task
        bar.update(report.done - bar.n)

    def close(self) -> None:
        """Close the bar on screen, if any."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextmanager
def _bars(enabled: bool) -> Iterator[ProgressCallback | None]:
    """Progress bars on a terminal (``enabled`` and stderr is one), else no progress callback."""
    if not (enabled and sys.stderr.isatty()):
        yield None
        return
    bars = _Bars()
    try:
        yield bars
    finally:
        bars.close()


class _CaseLines:
    """Progress as one printed line per case, with the time left (:func:`medcam.progress.progress_line`)."""

    def __init__(self) -> None:
        self._began = self._last = time.perf_counter()

    def __call__(self, report: Progress) -> None:
        now = time.perf_counter()
        print(progress_line(report.done, report.total, report.item or "?", now - self._last, now - self._began), flush=True)
        self._last = now


def _format_geometry(geometry) -> list[str]:
    import numpy as np

    from medcam.geometry import ras_to_lps

    spacing = " x ".join(f"{s:.4g}" for s in geometry.spacing)
    lines = [
        f"    shape        {' x '.join(str(n) for n in geometry.shape)} (i x j x k)",
        f"    spacing      {spacing} mm",
        f"    orientation  {geometry.orientation} (voxel axes point to)",
        f"    origin       LPS ({', '.join(f'{v:.4g}' for v in ras_to_lps(geometry.origin_ras))}) mm",
    ]
    if geometry.shear_degrees > 1e-3:
        lines.append(f"    gantry tilt  {geometry.shear_degrees:.3g} deg (sheared grid kept as acquired)")
    with np.printoptions(precision=4, suppress=True):
        rows = str(geometry.affine_ras).splitlines()
    lines.append("    affine (RAS) " + rows[0])
    lines.extend("                 " + row for row in rows[1:])
    return lines


def _info(args: argparse.Namespace) -> int:
    import warnings

    from medcam.io import find_series, read_nifti
    from medcam.io.dicom import read_series_geometry
    from medcam.io.dicom_scan import scan_files
    from medcam.io.paths import checked_input
    from medcam.io.volume import is_nifti_path

    path = checked_input(args.path)
    if path.is_file() and is_nifti_path(path):
        volume = read_nifti(path)
        print(f"{path}: NIfTI")
        print("\n".join(_format_geometry(volume.geometry)))
        print(f"    values       {float(volume.array.min()):.4g} .. {float(volume.array.max()):.4g}")
        return 0
    scan = find_series(path) if path.is_dir() else scan_files([path])
    print(f"{path}: {scan.n_files} files, {len(scan.series)} image series")
    for info in scan.series:
        print(f"  {info.summary()}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                geometry = read_series_geometry(info)
            except MedcamError as exc:
                print(f"    not readable as one volume: {exc}")
                continue
        print("\n".join(_format_geometry(geometry)))
        for warning in caught:
            print(f"    note: {warning.message}")
    for skipped in scan.skipped:
        print(f"  skipped {skipped.path.name}: {skipped.reason}")
    for bad in scan.unreadable:
        print(f"  unreadable {bad.path.name}: {bad.reason}")
    return 0


def _train(args: argparse.Namespace) -> int:
    """Train; under torchrun (``WORLD_SIZE`` > 1) as one rank of a DistributedDataParallel run."""
    from medcam.models.distributed import process_group
    from medcam.models.recipes import train_synthetic_task

    with process_group() as ranks, _bars(not args.quiet and ranks.main) as progress:
        quiet = args.quiet or not ranks.main  # rank 0 speaks for the run
        log: Callable[[str], None] = (lambda _line: None) if quiet else print
        if args.synthetic:
            result = train_synthetic_task(
                args.synthetic, args.out, n_pairs=args.n, n_val=args.n_val, seed=args.seed, crop_epochs=args.crop_epochs,
                epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, progress=progress, log=log,
            )
        else:
            result = _train_manifest(args, progress, log)
    if not ranks.main:
        return 0
    if ranks.distributed:
        print(f"trained on {ranks.world} processes (DistributedDataParallel, global batch {args.batch_size})")
    print(f"best epoch {result.best_epoch}: {result.best_metrics}")
    print(f"checkpoint: {result.checkpoint} ({result.seconds:.0f} s)")
    return 0


def _train_manifest(args: argparse.Namespace, progress: ProgressCallback | None, log: Callable[[str], None]) -> TrainingResult:
    from medcam.models.recipes import manifest_configs, train_manifest

    if not (args.spatial_dims and args.spacing and args.size):
        raise MedcamError("--manifest needs --spatial-dims, --spacing and --size (the model grid)")
    class_names = tuple(args.classes)
    preprocess_config, model_config = manifest_configs(
        args.spatial_dims, args.spacing, args.size, class_names, intensity=args.intensity, window=tuple(args.window),
        channels=args.channels, stem_stride=args.stem_stride,
        pool_after=[bool(p) for p in args.pool_after] if args.pool_after else None, fine_head=args.fine_head,
    )
    return train_manifest(
        args.manifest, args.out, preprocess_config=preprocess_config, model_config=model_config, class_names=class_names,
        val_fraction=args.val_fraction, seed=args.seed, crop_size=args.crop_size, crop_epochs=args.crop_epochs,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, localisation_weight=args.localisation_weight,
        modalities=tuple(args.modality or ()), progress=progress, log=log,
    )


def _explain_one(model, study, out: Path, *, method: str, target, formats, threshold, layer=None, fc_layer=None,
                 deterministic_uids: bool, overwrite: bool, allow_modality_mismatch: bool = False):
    """Explain and export one study; returns (explanation, outputs)."""
    from medcam.explanation import explain

    explanation = explain(model, study, method=method, target=target, layer=layer, fc_layer=fc_layer,
                          allow_modality_mismatch=allow_modality_mismatch)
    outputs = explanation.save(out, formats=formats, threshold=threshold, deterministic_uids=deterministic_uids,
                               overwrite=overwrite)
    return explanation, outputs


def _parse_formats(text: str) -> tuple[str, ...]:
    from medcam.export.case import FORMATS

    formats = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise MedcamError(f"--formats: unknown {unknown or text!r}; choose from {', '.join(FORMATS)}")
    return formats


def _cohort(args: argparse.Namespace, model, cases, roots=()) -> int:
    import gc
    import os

    from medcam.cases import part_from_environment
    from medcam.cohort import run_cohort

    log = (lambda _line: None) if args.quiet else print
    num_parts, part_id = part_from_environment(args.num_parts, args.part_id)
    scheduler = args.scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if scheduler and args.workers != 1:
        raise MedcamError("--workers and --scheduler: choose one (a Dask cluster has its own workers)")
    gc.freeze()  # an application's choice: what is imported and loaded by now is never collected
    options = dict(method=args.method, formats=_parse_formats(args.formats), workers=args.workers, num_parts=num_parts,
                   part_id=part_id, force=args.force, deterministic_uids=args.deterministic_uids, input_roots=roots, log=log,
                   layer=args.layer, fc_layer=args.fc_layer, allow_modality_mismatch=args.allow_modality_mismatch,
                   target=args.target, threshold=args.threshold, send_to=args.send, calling_aet=args.calling_aet)
    if scheduler:
        try:
            from medcam.cluster import cluster_client
        except ImportError as exc:
            raise MedcamError("--scheduler needs Dask: pip install 'dask[distributed]'") from exc
        with cluster_client(scheduler) as client, _bars(not args.quiet) as progress:
            summary = run_cohort(cases, model, args.out, executor=client, progress=progress, **options)
    else:
        with _bars(not args.quiet) as progress:
            summary = run_cohort(cases, model, args.out, progress=progress, **options)
    print(summary)
    return 1 if (summary.failed or summary.not_sent) and not args.allow_failures else 0


def _explain(args: argparse.Namespace) -> int:
    from medcam.cam import CamMethod
    from medcam.io.paths import checked_input
    from medcam.models import load_model
    from medcam.pacs.targets import check_calling_aet, is_dicomweb_url, parse_target

    CamMethod.from_name(args.method)  # an unknown method fails before any work
    if args.send is not None:  # a bad destination fails before any work
        parse_target(args.send)
        check_calling_aet(args.calling_aet)

    if is_dicomweb_url(args.input):
        return _explain_url(args)
    source = checked_input(args.input)
    model = load_model(args.model, device=args.device, class_names=args.classes)
    return _explain_path(args, model, source)


def _explain_url(args: argparse.Namespace) -> int:
    """A DICOMweb study or series: fetched into a temporary folder (removed afterwards), then
    explained as a folder of series (a study of several image series is a cohort)."""
    import tempfile

    from medcam.models import load_model
    from medcam.pacs import fetch

    model = load_model(args.model, device=args.device, class_names=args.classes)  # a bad model fails before the download
    with tempfile.TemporaryDirectory(prefix="medcam-fetch-") as scratch:
        series = fetch(args.input, Path(scratch), log=(lambda _line: None) if args.quiet else print)
        return _explain_path(args, model, series[0] if len(series) == 1 else Path(scratch))


def _explain_path(args: argparse.Namespace, model, source: Path) -> int:
    from medcam.cases import cases_from_csv, find_cases
    from medcam.study import read_study

    if source.is_file() and source.suffix.lower() == ".csv":
        return _cohort(args, model, cases_from_csv(source))
    study = read_study(source, series_uid=args.series)
    if source.is_dir() and not args.series:
        cases = find_cases(source)
        if len(cases) > 1:
            return _cohort(args, model, cases, roots=[source])
        study = cases[0]
    target = model.class_index(args.target) if args.target is not None else None
    explanation, outputs = _explain_one(
        model, study, Path(args.out), method=args.method, target=target, formats=_parse_formats(args.formats),
        threshold=args.threshold, layer=args.layer, fc_layer=args.fc_layer, deterministic_uids=args.deterministic_uids,
        overwrite=args.overwrite, allow_modality_mismatch=args.allow_modality_mismatch,
    )
    peak = ", ".join(f"{v:.1f}" for v in explanation.peak_lps)
    predicted = f"predicted {explanation.predicted_name!r}; " if explanation.predicted_name is not None else ""
    print(f"{args.input}: {predicted}{args.method} map of {explanation.target_name!r} (p={explanation.probability:.3f}), "
          f"peak at LPS ({peak}) mm (layer {explanation.layer!r})")
    for fmt, paths in outputs.paths.items():
        shown = str(paths[0].parent) + f"/ ({len(paths)} files)" if len(paths) > 2 else ", ".join(str(p) for p in paths)
        print(f"  {fmt:5s} {shown}")
    for note in outputs.notes:
        print(f"  note: {note}")
    if args.send is not None:
        from medcam.explanation import output_name
        from medcam.pacs import PacsError, send_outputs

        try:
            print(f"  {send_outputs(args.out, args.send, names=[output_name(args.method)], calling_aet=args.calling_aet)}")
        except PacsError as exc:
            raise MedcamError(f"outputs written to {args.out}, not sent: {exc}") from None
    return 0


def _seconds_since_start() -> float:
    """Seconds since this process started, the interpreter's start-up included (Linux's process
    table), else since this module was imported."""
    try:
        with open("/proc/self/stat") as handle:
            start_ticks = int(handle.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/uptime") as handle:
            return float(handle.read().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


def _demo(args: argparse.Namespace) -> int:
    from medcam.demo import run_demo

    print(f"{'study':18s} {'truth':6s} {'prediction':11s} {'p(finding)':>10s}  {'map peak, LPS mm':24s} {'to lesion':>9s}  outputs")
    start = time.perf_counter()
    for case in run_demo(args.out, data=args.data):
        explanation = case.explanation
        peak = "(" + ", ".join(f"{v:.1f}" for v in explanation.peak_lps) + ")"
        distance = f"{case.distance_mm:.0f} mm" if case.distance_mm is not None else "-"
        print(f"{case.case_id:18s} {case.truth:6s} {explanation.predicted_name or '?':11s} {explanation.probability:10.3f}  "
              f"{peak:24s} {distance:>9s}  {case.out_dir} [{', '.join(case.outputs.paths)}]")
    print("p(finding) is the probability of the class mapped (lesion, nodule) for every study, negative ones too: "
          "their maps show where the little evidence there is lies.")
    print(f"done in {_seconds_since_start():.1f} s from the command's start ({time.perf_counter() - start:.1f} s loading the "
          "models, explaining and writing; the rest is start-up); open the *.nii.gz in 3D Slicer or ITK-SNAP, "
          "the DICOM outputs next to the source series in OHIF, Weasis or Horos, the PNGs anywhere")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from medcam.cam import CamMethod
    from medcam.cases import cases_from_csv, synthetic_cases
    from medcam.metrics.evaluation import evaluate, write_report
    from medcam.models import load_model

    methods = [CamMethod.from_name(m.strip()).value for m in args.methods.split(",") if m.strip()]
    if args.maps and not args.manifest:
        raise MedcamError("--maps scores the maps of a manifest's 'map' column: give --manifest")
    if args.model is None and not args.maps:
        raise MedcamError("--model is needed (unless --maps scores maps already written)")
    model = load_model(args.model, device=args.device, class_names=args.classes) if args.model is not None else None
    cases: Iterable[Study]
    if args.synthetic:
        total = args.n or 100
        cases = synthetic_cases(args.synthetic, total, args.seed)
        title = f"{Path(args.model).name} on {total} lesion-positive {args.synthetic} studies (seed {args.seed})"
    else:
        listed = cases_from_csv(args.manifest)[: args.n or None]  # --n: the first N (default all)
        cases, total = listed, len(listed)
        title = f"{Path(args.model).name if args.model else 'maps on file'} on {args.manifest}"
    result = evaluate(model, cases, methods, tolerance_mm=args.tolerance_mm, energy_tolerance_mm=args.energy_tolerance_mm,
                      steps=args.steps, target=args.target, randomisation_cases=args.randomisation_cases,
                      progress=None if args.quiet else _CaseLines(),
                      layer=args.layer, maps_on_file=args.maps, class_names=args.classes, total=total,
                      figures_dir=args.out / "figures" if args.figures else None, figure_cases=args.figures)
    paths = write_report(result, args.out, title=title, gate=args.gate, tolerance_mm=args.tolerance_mm)
    print(paths["summary_md"].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 1 if result.errors and not result.rows and not result.predictions else 0


def _send_options(parser: argparse.ArgumentParser, flag: str, text: str, required: bool = False) -> None:
    import os

    parser.add_argument(flag, dest="send", metavar="DESTINATION", required=required, help=text)
    parser.add_argument("--calling-aet", default=os.environ.get("MEDCAM_AE_TITLE", "MEDCAM"),
                        help="DIMSE: this side's AE title (default: $MEDCAM_AE_TITLE, else MEDCAM)")


def _send(args: argparse.Namespace) -> int:
    from medcam.pacs import send_outputs

    if not args.out_dir.is_dir():
        raise MedcamError(f"{args.out_dir}: no such output folder")
    print(send_outputs(args.out_dir, args.send, calling_aet=args.calling_aet, log=print))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``medcam`` argument parser with its subcommands (info, demo, explain, send, evaluate, train)."""
    parser = argparse.ArgumentParser(
        prog="medcam",
        description="Class Activation Maps for medical imaging, on the scanner's own voxel grid.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"medcam {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = commands.add_parser("info", help="series found, geometry, orientation, spacing, modality")
    info.add_argument("path", help="a DICOM folder, a DICOM file or a NIfTI file")
    info.set_defaults(handler=_info)

    demo = commands.add_parser("demo", help="explain the bundled studies with the bundled models")
    demo.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    demo.add_argument("--data", type=Path, help="sample data folder (default: the bundled one)")
    demo.set_defaults(handler=_demo)

    explain_cmd = commands.add_parser("explain", help="predict, explain and export one study")
    explain_cmd.add_argument("input", help="a DICOM folder or file, a NIfTI file, a folder of studies, a CSV (column image), "
                                           "or a DICOMweb study or series URL (https://.../studies/UID[/series/UID])")
    explain_cmd.add_argument("--model", type=Path, required=True,
                             help="a medcam checkpoint (.pt), or a MONAI Bundle folder or zip (configs/inference.json, models/model.pt)")
    explain_cmd.add_argument("--classes", nargs="+", help="class names in output order (default: the model's)")
    explain_cmd.add_argument("--layer", help="target layer (default: the layer that feeds global average pooling)")
    explain_cmd.add_argument("--fc-layer", help="cam: the linear layer after the pooling (default: found from the model)")
    explain_cmd.add_argument("--allow-modality-mismatch", action="store_true",
                             help="explain a study of another modality than the model was trained on")
    explain_cmd.add_argument("--out", type=Path, required=True, help="output folder (not inside the input)")
    explain_cmd.add_argument("--method", default="cam", help="cam, gradcam, gradcam++, xgradcam, layercam, hirescam, scorecam")
    explain_cmd.add_argument("--class", dest="target", help="class to explain (name or index; default: predicted)")
    explain_cmd.add_argument("--formats", default="nifti,pm,sc,png", help="comma list of nifti (.nii.gz), nii (uncompressed), pm, sc, seg, sr, png")
    explain_cmd.add_argument("--threshold",
                             help="the SEG output's threshold: a raw map value (2.5), a share of the map's maximum (50%%) or a percentile (p99)")
    explain_cmd.add_argument("--series", help="SeriesInstanceUID, when the folder holds several series")
    explain_cmd.add_argument("--device", default="cpu", help="cpu or cuda")
    explain_cmd.add_argument("--deterministic-uids", action="store_true", help="same inputs give the same UIDs")
    explain_cmd.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    explain_cmd.add_argument("--workers", type=int, default=1,
                             help="cohort: worker processes, each with the model loaded once (default 1: this process)")
    explain_cmd.add_argument("--scheduler", help="cohort: a Dask scheduler, tcp://HOST:PORT (default: $DASK_SCHEDULER_ADDRESS), "
                                                 "or local:N for a local cluster of N worker processes")
    explain_cmd.add_argument("--num-parts", type=int,
                             help="cohort: cut it into this many parts (default: $WORLD_SIZE of torchrun, or a SLURM array's size)")
    explain_cmd.add_argument("--part-id", type=int, help="cohort: the part to run, 0-based (default: $RANK, or $SLURM_ARRAY_TASK_ID)")
    explain_cmd.add_argument("--force", action="store_true", help="cohort: redo cases already done")
    explain_cmd.add_argument("--allow-failures", action="store_true", help="cohort: exit 0 even if some cases failed")
    explain_cmd.add_argument("--quiet", action="store_true", help="no progress bar or per-case lines")
    _send_options(explain_cmd, "--send", "also send the DICOM outputs to a DICOMweb URL (STOW-RS) or dimse://AET@host:port "
                                         "(C-STORE); credentials from the environment (see medcam send --help)")
    explain_cmd.set_defaults(handler=_explain)

    send_cmd = commands.add_parser(
        "send", help="send output sets written earlier to a PACS",
        description="Send the DICOM outputs of every completed output set under OUT_DIR, skipping what the destination "
                    "acknowledged before. DICOMweb credentials: MEDCAM_DICOMWEB_TOKEN, or MEDCAM_DICOMWEB_USER and "
                    "MEDCAM_DICOMWEB_PASSWORD, or the JSON file MEDCAM_PACS_CONFIG (default ~/.config/medcam/pacs.json; "
                    "URL prefix -> user/password/token/ca_bundle); TLS verified (MEDCAM_DICOMWEB_CA_BUNDLE for your CA).")
    send_cmd.add_argument("out_dir", type=Path, help="a folder written by medcam explain (one study or a cohort)")
    _send_options(send_cmd, "--to", "a DICOMweb URL (STOW-RS) or dimse://AET@host:port (C-STORE)", required=True)
    send_cmd.set_defaults(handler=_send)

    evaluate_cmd = commands.add_parser("evaluate", help="localisation, faithfulness and sanity of the maps, per method")
    where = evaluate_cmd.add_mutually_exclusive_group(required=True)
    where.add_argument("--synthetic", choices=["ct3d", "cr2d"], help="lesion-positive synthetic studies of this task")
    where.add_argument("--manifest", type=Path,
                       help="CSV with column image and optionally mask (any grid), label (negatives too) and map (--maps)")
    evaluate_cmd.add_argument("--model", type=Path, help="a medcam checkpoint or a MONAI Bundle")
    evaluate_cmd.add_argument("--maps", action="store_true", help="score the maps already written (the manifest's map column)")
    evaluate_cmd.add_argument("--classes", nargs="+", help="class names in output order (default: the model's)")
    evaluate_cmd.add_argument("--class", dest="target", help="class whose maps are scored (default: the last, the lesion class)")
    evaluate_cmd.add_argument("--layer", help="target layer (default: the layer that feeds global average pooling)")
    evaluate_cmd.add_argument("--out", type=Path, required=True, help="folder for the CSV, Markdown and PNG reports")
    evaluate_cmd.add_argument("--n", type=int, help="cases: synthetic, how many to draw (default 100); a manifest, its first N (default all)")
    evaluate_cmd.add_argument("--seed", type=int, default=4242, help="synthetic: a seed not used in training")
    evaluate_cmd.add_argument("--methods", default="cam,gradcam,gradcam++,xgradcam,layercam,hirescam,scorecam")
    evaluate_cmd.add_argument("--tolerance-mm", type=float, default=10.0, help="dilation of the mask for the tolerant hit rate")
    evaluate_cmd.add_argument("--energy-tolerance-mm", type=float, help="dilation of the mask for the dilated energy (default: --tolerance-mm)")
    evaluate_cmd.add_argument("--steps", type=int, default=20, help="deletion/insertion curve steps")
    evaluate_cmd.add_argument("--randomisation-cases", type=int, default=5)
    evaluate_cmd.add_argument("--figures", type=int, default=4, metavar="N",
                              help="figures (figures/<case>_<method>.png, mask contour drawn) of the first N positives (default 4; 0: none)")
    evaluate_cmd.add_argument("--gate", type=float, default=0.5, help="probability gate reported separately")
    evaluate_cmd.add_argument("--device", default="cpu")
    evaluate_cmd.add_argument("--quiet", action="store_true")
    evaluate_cmd.set_defaults(handler=_evaluate)

    train = commands.add_parser("train", help="train a GAP lesion classifier (synthetic task or manifest CSV)")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--synthetic", choices=["ct3d", "cr2d"], help="generate a synthetic cohort of this task")
    source.add_argument("--manifest", type=Path, help="CSV with columns image (path) and label, optionally mask (a lesion mask on any grid)")
    train.add_argument("--out", type=Path, required=True, help="checkpoint to write (best validation loss)")
    train.add_argument("--pairs", "--n", dest="n", type=int, default=700, help="synthetic: matched pairs to generate (default 700)")
    train.add_argument("--n-val", type=int, default=200, help="synthetic: independent validation studies")
    train.add_argument("--crop-epochs", type=int,
                       help="epochs on lesion-centred crops before the whole volumes (default: the task's recipe; manifest: 20 with masks, 0 without)")
    train.add_argument("--crop-size", type=int, nargs="+", help="manifest: crop size in model voxels (default: 48 mm a side)")
    train.add_argument("--localisation-weight", type=float,
                       help="weight of the loss on CAM evidence outside the lesion masks (manifest default: 0.5 with masks, 0 without)")
    train.add_argument("--seed", type=int, default=0, help="seed of data generation, split and training")
    train.add_argument("--val-fraction", type=float, default=0.2)
    train.add_argument("--epochs", type=int, help="epochs on whole volumes (default: the recipe's; manifest: 0 after the crops, the logit calibrated instead; 40 without masks)")
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--lr", type=float, default=3e-3)
    train.add_argument("--spatial-dims", type=int, choices=[2, 3], help="manifest: 2D images or 3D volumes")
    train.add_argument("--spacing", type=float, nargs="+", help="manifest: model voxel size in mm")
    train.add_argument("--size", type=int, nargs="+", help="manifest: model input size in voxels")
    train.add_argument("--intensity", default="window", choices=["window", "robust_zscore", "percentile"])
    train.add_argument("--window", type=float, nargs=2, default=(40.0, 400.0), metavar=("CENTRE", "WIDTH"))
    train.add_argument("--classes", nargs="+", default=["no lesion", "lesion"], help="class names, label order")
    train.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64], help="manifest: width of each stage")
    train.add_argument("--stem-stride", type=int, default=2, help="manifest: the stem's stride (2: CAM cells of 2 model voxels)")
    train.add_argument("--pool-after", type=int, nargs="+", help="manifest: 1/0 per stage, 2x pooling after it (default 1 0 0 ...)")
    train.add_argument("--fine-head", type=int, default=16, help="manifest: channels of the head that halves the CAM cell (0: none)")
    train.add_argument("--modality", nargs="+", help="manifest: DICOM Modality of the training images (CT, MR...), recorded in the checkpoint")
    train.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    train.set_defaults(handler=_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: ``sys.argv[1:]``); the exit status (0 done, 1 some cases failed, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        if args.debug:
            raise
        # what was written completely is kept; a set cut short has no completion marker, and the next run redoes it
        print("medcam: interrupted; outputs written completely are kept, a re-run completes the rest", file=sys.stderr)
        return 130
    except MedcamError as exc:
        if args.debug:
            raise
        print(f"medcam: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of our output went away (| head): stop quietly, as other tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes stdout
        return 141
    except OSError as exc:  # the system refused something not caught where it happened: one line, with the file
        if args.debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"medcam: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
