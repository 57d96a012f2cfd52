"""Heatmap as NIfTI (float32, exactly the source affine as sform, and as qform unless sheared) plus a JSON sidecar."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from isal import igzip_threaded

from medcam.errors import ExportError
from medcam.export.atomic import atomic_output
from medcam.geometry import Volume
from medcam.io.nifti import set_affine

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
    heatmap: Volume, path: str | Path, *, sidecar: dict[str, Any], overwrite: bool = False, compress_level: int = 1,
    gzip_threads: int = 0,
) -> tuple[Path, Path]:
    """Write ``heatmap`` (float32) and ``sidecar`` (JSON) next to each other.

    The sform is the heatmap's affine (code 1, scanner), and so is the qform unless the grid is
    sheared (:func:`medcam.io.nifti.set_affine`), so for a NIfTI source the shape and affine are
    identical to the input's. ``.nii.gz`` files are deflated by ISA-L at
    ``compress_level`` (0-3; zlib's level 6 or 9 can cost more than the whole explanation), in
    the calling thread, or in ``gzip_threads`` threads of its own if the caller asks
    (``isal.igzip_threaded``); ``.nii`` files are not compressed. The voxels are streamed out a
    slab at a time, never copied whole.
    """
    path = Path(path)
    json_path = sidecar_path(path)
    array = np.asarray(heatmap.array)
    header = nib.Nifti1Header()
    header.set_data_shape(array.shape)
    header.set_data_dtype(np.float32)
    set_affine(header, heatmap.geometry)
    header.set_xyzt_units("mm")
    header["descrip"] = b"medcam heatmap (raw)"
    with atomic_output(path, overwrite=overwrite) as temporary, open(temporary, "wb") as handle:
        if path.name.endswith(".gz"):
            with igzip_threaded.open(handle, "wb", compresslevel=compress_level, threads=gzip_threads) as gz:
                for block in _nifti_blocks(header, array):
                    gz.write(block)
        else:
            for block in _nifti_blocks(header, array):
                handle.write(block)
    with atomic_output(json_path, overwrite=overwrite) as temporary:
        temporary.write_text(json.dumps(sidecar, indent=2, sort_keys=True, default=_jsonable) + "\n")
    return path, json_path


def _nifti_blocks(header: nib.Nifti1Header, array: np.ndarray, *, block_bytes: int = 8 << 20) -> Iterator[bytes | memoryview]:
    """The single-file NIfTI byte stream: the header (with its empty extension flag, up to
    ``vox_offset``), then the voxels in NIfTI's column-major order (x fastest), cut along the
    last axis into blocks of about ``block_bytes``: views of the array's own memory when it is
    float32 in Fortran order, as medcam's maps are, else copies."""
    buffer = io.BytesIO()
    header.write_to(buffer)
    if buffer.tell() != int(header["vox_offset"]):  # nibabel wrote extensions or padding the offset does not count
        raise ExportError(f"NIfTI header of {buffer.tell()} bytes, but its vox_offset is {int(header['vox_offset'])}")
    yield buffer.getvalue()
    plane = int(np.prod(array.shape[:2])) * 4
    step = max(1, block_bytes // max(plane, 1))
    for first in range(0, array.shape[2], step):
        slab = np.asfortranarray(array[:, :, first : first + step], dtype=np.float32)
        yield memoryview(slab.T).cast("B")  # type: ignore[arg-type]  # slab.T (a buffer) is C-contiguous: its bytes in slab's Fortran order


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
