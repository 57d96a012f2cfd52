"""Read and write NIfTI volumes with their affine kept exactly."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from medcam.errors import GeometryError, ImageReadError
from medcam.geometry import ImageGeometry, Volume, axis_cosine
from medcam.io.memory import check_volume_fits
from medcam.io.paths import checked_input

__all__ = ["read_nifti", "write_nifti", "set_affine", "NIFTI_SUFFIXES"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def read_nifti(path: str | Path) -> Volume:
    """Read a NIfTI-1 or NIfTI-2 file as a float32 :class:`Volume`.

    The affine is nibabel's ``img.affine`` (sform when its code is set, else qform), which is
    already voxel -> RAS mm. Scaling (scl_slope / scl_inter) is applied. A 2D image becomes one
    slice; a 4D image is accepted only with one volume.

    Raises
    ------
    ImageReadError
        Missing or unreadable file, unsupported dimensionality, NaN or infinite voxels.
    GeometryError
        A singular or non-finite affine.
    """
    path = checked_input(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: a folder, not a NIfTI file")
    try:
        image: nib.Nifti1Image = nib.load(str(path))  # type: ignore[assignment]  # a NIfTI-1 or -2 image
        if np.issubdtype(image.get_data_dtype(), np.complexfloating):
            raise ImageReadError(f"{path}: complex voxels ({image.get_data_dtype()}); expected real values (take the magnitude first)")
        _check_declared_size(image, path)
        data = np.asarray(image.get_fdata(dtype=np.float32))
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types on bad files
        raise ImageReadError(f"{path}: not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, np.newaxis]
    if data.ndim != 3:
        raise ImageReadError(f"{path}: expected a 2D or 3D image (or 4D with one volume), found shape {data.shape}")
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise ImageReadError(f"{path}: {bad} voxels are NaN or infinite; expected finite values everywhere")
    _check_pixel_sizes(image, path)
    try:
        geometry = ImageGeometry(data.shape, image.affine)
    except GeometryError as exc:
        raise GeometryError(f"{path}: {exc}") from exc
    return Volume(data, geometry)


def _check_declared_size(image, path: Path) -> None:
    """Refuse a header that declares more voxels than the file holds (uncompressed) or than this
    machine's memory holds as float32, before nibabel asks for that memory."""
    shape = tuple(int(n) for n in image.shape)
    count = int(np.prod(shape, dtype=np.float64))
    if not str(path).lower().endswith(".gz"):
        declared = int(image.dataobj.offset) + count * image.get_data_dtype().itemsize
        if path.stat().st_size < declared:
            raise ImageReadError(f"{path}: the header declares {' x '.join(map(str, shape))} voxels ({declared} bytes with "
                                 f"the header) but the file holds {path.stat().st_size}; it is truncated or its header is wrong")
    check_volume_fits(shape, str(path))


def _stored_pixdim(path: Path) -> np.ndarray | None:
    """pixdim[1:4] as the file stores it (nibabel replaces zeros with 1 while it reads)."""
    import gzip

    opener = gzip.open if str(path).lower().endswith(".gz") else open
    with opener(path, "rb") as handle:
        block = handle.read(540)
    for order in ("<", ">"):
        size = int(np.frombuffer(block[:4], dtype=f"{order}i4")[0]) if len(block) >= 4 else 0
        if size == 348 and len(block) >= 108:  # NIfTI-1: float32 pixdim at byte 76
            return np.frombuffer(block[76:108], dtype=f"{order}f4")[1:4].astype(float)
        if size == 540 and len(block) >= 168:  # NIfTI-2: float64 pixdim at byte 104
            return np.frombuffer(block[104:168], dtype=f"{order}f8")[1:4].astype(float)
    return None


def _check_pixel_sizes(image, path: Path) -> None:
    """Refuse a zero or non-finite voxel size in ``pixdim`` where the affine comes from it (no
    sform): nibabel would put 1 mm there, a geometry the file does not hold."""
    header = image.header
    if int(header["sform_code"]) > 0:
        return
    sizes = _stored_pixdim(path)
    if sizes is None:
        return
    spatial = min(3, int(header["dim"][0]))
    if np.any(~np.isfinite(sizes[:spatial])) or np.any(sizes[:spatial] == 0):
        raise ImageReadError(f"{path}: voxel size {sizes[:spatial].tolist()} mm in the header (pixdim) and no sform; "
                             "the geometry is unknown")


def set_affine(header: nib.Nifti1Header, geometry: ImageGeometry) -> None:
    """The sform is the affine exactly (code 1, scanner); the qform too when the voxel axes are
    orthogonal. A qform holds only a rotation, spacings and a flip, so a sheared grid (a gantry
    tilt) cannot be one: its qform code is 0 (unknown) and readers take the sform (ITK, hence
    3D Slicer and ITK-SNAP, read a shear-stripped qform 1 mm and more off)."""
    affine = geometry.affine_ras
    if axis_cosine(affine) > 1e-5:
        header.set_qform(None, code=0)
    else:
        header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)


def write_nifti(volume: Volume, path: str | Path, *, dtype: type = np.float32) -> Path:
    """Write a volume as NIfTI-1 with its affine as sform and, unless sheared, as qform
    (:func:`set_affine`).

    Float values written with an integer ``dtype`` are rounded and clipped to its range.

    The file is written under a temporary name and renamed when complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(volume.array)
    if np.issubdtype(np.dtype(dtype), np.integer) and not np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(dtype)
        data = np.clip(np.rint(data), info.min, info.max)
    image = nib.Nifti1Image(data.astype(dtype), volume.geometry.affine_ras)
    set_affine(image.header, volume.geometry)
    image.header.set_xyzt_units("mm")
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    partial = path.with_name(path.name[: -len(suffix)] + ".partial" + suffix)
    nib.save(image, str(partial))
    partial.replace(path)
    return path
