"""Heatmap as NIfTI (float32, exactly the source affine in qform and sform) plus a JSON sidecar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medcam.export.outputs import atomic_output
from medcam.geometry import Volume

__all__ = ["write_heatmap_nifti", "sidecar_path"]


def sidecar_path(path: str | Path) -> Path:
    """``map.nii.gz`` -> ``map.json``."""
    path = Path(path)
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_suffix(".json")


def write_heatmap_nifti(
    heatmap: Volume, path: str | Path, *, sidecar: dict[str, Any], overwrite: bool = False, compress_level: int = 1
) -> tuple[Path, Path]:
    """Write ``heatmap`` (float32) and ``sidecar`` (JSON) next to each other.

    qform and sform are both the heatmap's affine (code 1, scanner), so for a NIfTI source the
    shape and affine are identical to the input's. ``.nii.gz`` files use gzip level
    ``compress_level`` (1: fast; the default level 9 can cost more than the whole explanation).
    """
    path = Path(path)
    json_path = sidecar_path(path)
    image = nib.Nifti1Image(np.asarray(heatmap.array, dtype=np.float32), heatmap.geometry.affine_ras)
    image.set_qform(heatmap.geometry.affine_ras, code=1)
    image.set_sform(heatmap.geometry.affine_ras, code=1)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = b"medcam heatmap (raw)"
    with atomic_output(path, overwrite=overwrite) as temporary:
        data = image.to_bytes()
        if path.name.endswith(".gz"):
            import gzip

            data = gzip.compress(data, compresslevel=compress_level, mtime=0)
        temporary.write_bytes(data)
    with atomic_output(json_path, overwrite=overwrite) as temporary:
        temporary.write_text(json.dumps(sidecar, indent=2, sort_keys=True, default=_jsonable) + "\n")
    return path, json_path


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
