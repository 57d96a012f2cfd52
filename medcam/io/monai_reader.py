"""A MONAI ``ImageReader`` backed by medcam's readers, for users who keep their own MONAI pipelines.

``LoadImage(reader=MedcamReader())`` (or ``LoadImaged(keys, reader=MedcamReader())``) then gets
medcam's geometry: DICOM slices ordered by position along the plane normal (MONAI's
``PydicomReader`` sorts by InstanceNumber, so a series with shuffled numbers comes in scrambled),
gantry tilt kept as a sheared affine, enhanced multi-frame read per frame, and NIfTI affines
exactly as stored. The image is ``(i, j, k)`` as medcam reads it (``i`` along a DICOM row, ``j``
down a column, ``k`` through slices), its affine voxel -> RAS millimetres (``space`` "RAS").

>>> from monai.transforms import LoadImage                       # doctest: +SKIP
>>> image = LoadImage(reader=MedcamReader(), ensure_channel_first=True)("study/")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data.image_reader import ImageReader

from medcam.errors import ImageReadError
from medcam.geometry import Volume
from medcam.io.nifti import NIFTI_SUFFIXES

__all__ = ["MedcamReader"]


class MedcamReader(ImageReader):
    """Read DICOM folders, DICOM files and NIfTI files with medcam (see the module docstring).

    Parameters
    ----------
    series_uid : str, optional
        SeriesInstanceUID (0020,000E) to read when a folder holds several series.
    """

    def __init__(self, series_uid: str | None = None) -> None:
        super().__init__()
        self.series_uid = series_uid

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        """Whether every name is a NIfTI file, a DICOM file or a folder this reader reads."""
        names = [filename] if isinstance(filename, (str, os.PathLike)) else list(filename)
        return all(
            Path(name).is_dir() or str(name).lower().endswith((*NIFTI_SUFFIXES, ".dcm")) or "." not in Path(name).name
            for name in names
        )

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any) -> list[tuple[Volume, str]]:
        """Each path read as a study on its scanner's grid: (volume, path) pairs."""
        from medcam.study import read_study

        paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        return [(read_study(Path(path), series_uid=self.series_uid).volume, str(path)) for path in paths]

    def get_data(self, img) -> tuple[np.ndarray, dict]:
        """The image array and its MONAI metadata (affine in RAS, original shape) of what ``read`` returned."""
        images = img if isinstance(img, list) else [img]
        arrays, metas = [], []
        for volume, name in images:
            arrays.append(np.array(volume.array, dtype=np.float32))  # a writable copy: the volume stays read-only
            affine = np.array(volume.geometry.affine_ras, dtype=np.float64)
            metas.append({
                "affine": affine, "original_affine": affine.copy(), "spatial_shape": np.asarray(volume.shape),
                "space": "RAS", "original_channel_dim": float("nan"), "filename_or_obj": name,
            })
        if len(arrays) == 1:
            return arrays[0], metas[0]
        if any(a.shape != arrays[0].shape for a in arrays):
            raise ImageReadError(f"MedcamReader: images of different shapes {[a.shape for a in arrays]} cannot be stacked")
        meta = dict(metas[0], original_channel_dim=0)
        return np.stack(arrays, axis=0), meta
