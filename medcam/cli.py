"""The ``medcam`` command line. Heavy imports live inside the commands so ``--help`` is instant."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from medcam import __version__
from medcam.errors import MedcamError

EXAMPLES = """examples:
  medcam info sample_data/ct_lesion_dicom        series, geometry and orientation of a DICOM folder
  medcam info sample_data/ct_lesion.nii.gz       the same for a NIfTI file
  medcam train --synthetic ct3d --out ct3d.pt
                                                 train the 3D lesion classifier on synthetic CT
  medcam train --manifest cohort.csv --spatial-dims 3 --spacing 4 4 5 --size 80 64 40 --out model.pt
                                                 train on your own labelled NIfTI/DICOM (CSV: image,label)
"""


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
    from medcam.io.volume import is_nifti_path

    path = Path(args.path)
    if path.is_file() and is_nifti_path(path):
        volume = read_nifti(path)
        print(f"{path}: NIfTI")
        print("\n".join(_format_geometry(volume.geometry)))
        print(f"    values       {float(volume.array.min()):.4g} .. {float(volume.array.max()):.4g}")
        return 0
    if not path.exists():
        raise MedcamError(f"{path}: no such file or folder")
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
    from medcam.models.training import train_synthetic_task

    progress = not args.quiet and sys.stderr.isatty()
    log = (lambda _line: None) if args.quiet else print
    if args.synthetic:
        result = train_synthetic_task(
            args.synthetic, args.out, n_pairs=args.n, n_val=args.n_val, seed=args.seed, crop_epochs=args.crop_epochs,
            epochs=args.epochs or 4, batch_size=args.batch_size, lr=args.lr, progress=progress, log=log,
        )
    else:
        result = _train_manifest(args, progress, log)
    print(f"best epoch {result.best_epoch}: {result.best_metrics}")
    print(f"checkpoint: {result.checkpoint} ({result.seconds:.0f} s)")
    return 0


def _train_manifest(args: argparse.Namespace, progress: bool, log):
    from medcam.models import ClassifierConfig
    from medcam.models.training import load_manifest_data, split_data, train_classifier
    from medcam.transforms import PreprocessConfig

    if not (args.spatial_dims and args.spacing and args.size):
        raise MedcamError("--manifest needs --spatial-dims, --spacing and --size (the model grid)")
    try:
        preprocess_config = PreprocessConfig(
            args.spatial_dims, tuple(args.spacing), tuple(args.size), intensity=args.intensity,
            window=tuple(args.window) if args.window else None,
            orientation=None if args.spatial_dims == 2 else "RAS",
        )
        class_names = tuple(args.classes)
        model_config = ClassifierConfig(
            args.spatial_dims, num_classes=len(class_names), channels=tuple(args.channels),
            convs_per_stage=(1,) + (2,) * (len(args.channels) - 1),
        )
    except ValueError as exc:
        raise MedcamError(str(exc)) from exc
    data = load_manifest_data(args.manifest, preprocess_config, class_names, progress=progress)
    train, val = split_data(data, args.val_fraction, args.seed)
    log(f"training on {len(train)} cases {train.counts(len(class_names))}, validating on {len(val)} {val.counts(len(class_names))}")
    return train_classifier(
        train, val, model_config=model_config, preprocess_config=preprocess_config, class_names=class_names,
        out=args.out, epochs=args.epochs or 15, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        progress=progress, log=log,
    )


def build_parser() -> argparse.ArgumentParser:
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

    train = commands.add_parser("train", help="train a GAP lesion classifier (synthetic task or manifest CSV)")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--synthetic", choices=["ct3d", "cr2d"], help="generate a synthetic cohort of this task")
    source.add_argument("--manifest", type=Path, help="CSV with columns image (path) and label")
    train.add_argument("--out", type=Path, required=True, help="checkpoint to write (best validation loss)")
    train.add_argument("--n", type=int, default=800, help="synthetic: matched pairs to generate (default 800)")
    train.add_argument("--n-val", type=int, default=200, help="synthetic: independent validation studies")
    train.add_argument("--crop-epochs", type=int, default=25, help="synthetic: epochs on lesion-centred crops")
    train.add_argument("--seed", type=int, default=0, help="seed of data generation, split and training")
    train.add_argument("--val-fraction", type=float, default=0.2)
    train.add_argument("--epochs", type=int, help="epochs (default 15; synthetic: 4 on whole volumes, after the crops)")
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--lr", type=float, default=3e-3)
    train.add_argument("--spatial-dims", type=int, choices=[2, 3], help="manifest: 2D images or 3D volumes")
    train.add_argument("--spacing", type=float, nargs="+", help="manifest: model voxel size in mm")
    train.add_argument("--size", type=int, nargs="+", help="manifest: model input size in voxels")
    train.add_argument("--intensity", default="window", choices=["window", "robust_zscore", "percentile"])
    train.add_argument("--window", type=float, nargs=2, default=(40.0, 400.0), metavar=("CENTRE", "WIDTH"))
    train.add_argument("--classes", nargs="+", default=["no lesion", "lesion"], help="class names, label order")
    train.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64], help="width of each stage")
    train.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    train.set_defaults(handler=_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.handler(args))
    except MedcamError as exc:
        if args.debug:
            raise
        print(f"medcam: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
