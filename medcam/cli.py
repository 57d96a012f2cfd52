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
  medcam info sample_data/mr_brain.nii.gz        the same for a NIfTI file
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
