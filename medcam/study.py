"""A study to explain: where it comes from, its volume (read when first needed), its DICOM headers
when the source is DICOM, an optional lesion mask, and a case id.

One type for every place that stands for "a study": one case from the command line, a cohort's
cases (listed without reading them), the labelled cases of an evaluation, a synthetic study.

>>> study = read_study("sample_data/ct_lesion_dicom")      # doctest: +SKIP
>>> study.volume.shape, study.modality, study.series.series_uid   # doctest: +SKIP
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from medcam.errors import ImageReadError
from medcam.geometry import Volume
from medcam.io.dicom import DicomSeries, read_dicom_series
from medcam.io.nifti import read_nifti
from medcam.io.paths import checked_input
from medcam.io.volume import is_nifti_path

__all__ = ["Study", "read_study", "safe_case_id"]


def safe_case_id(text: str) -> str:
    """``text`` as a folder name: letters, digits, ``-``, ``_`` and ``.`` only, never ``..``."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", text).strip("_.")
    return cleaned or "case"


@dataclass(frozen=True, eq=False)
class Study:
    """One study. Build it with :func:`read_study` (from a path, read lazily) or
    :meth:`from_volume` / :meth:`from_series` (already in memory).

    Attributes
    ----------
    source : Path or None
        The NIfTI file, DICOM file or DICOM folder it is read from (None when built in memory).
    case_id : str
        A name for the case, usable as a folder name.
    series_uid : str or None
        SeriesInstanceUID (0020,000E) to read when a DICOM folder holds several series.
    mask_source : Path, Volume or None
        The lesion mask: a file (NIfTI or DICOM) on any grid, or a Volume.
    label : str or None
        The class the study is known to belong to (a name or an index, as a manifest gives it).
    map_source : Path or None
        A map of it already written (``cam.nii.gz``), for an evaluation to score.
    """

    source: Path | None
    case_id: str
    series_uid: str | None = None
    mask_source: Path | Volume | None = None
    label: str | None = None
    map_source: Path | None = None
    _loaded: dict = field(default_factory=dict, repr=False, compare=False)

    # -- constructors ----------------------------------------------------------------------
    @classmethod
    def from_volume(cls, volume: Volume, *, case_id: str = "study", mask: Volume | None = None,
                    source: str | Path | None = None, lesion_centres_ras: np.ndarray | None = None) -> Study:
        """A study of a volume already in memory (no DICOM headers: no DICOM outputs).

        ``lesion_centres_ras`` (n, 3) gives the lesions' true centres where they are known (a
        synthetic study); otherwise they are the mask's component centroids."""
        loaded: dict[str, object] = {"volume": volume, "series": None}
        if lesion_centres_ras is not None:
            loaded["centres"] = np.asarray(lesion_centres_ras, dtype=float).reshape(-1, 3)
        return cls(Path(source) if source is not None else None, case_id, None, mask, None, None, loaded)

    @classmethod
    def from_series(cls, series: DicomSeries, *, case_id: str | None = None, mask: Volume | Path | None = None,
                    source: str | Path | None = None) -> Study:
        """A study of a DICOM series read with :func:`medcam.io.read_dicom_series`."""
        if source is None and series.frames:
            files = {frame.path for frame in series.frames}
            source = next(iter(files)) if len(files) == 1 else series.frames[0].path.parent
        return cls(Path(source) if source is not None else None, case_id or safe_case_id(series.series_uid),
                   series.series_uid, mask, None, None, {"volume": series.volume, "series": series})

    # -- what is read lazily -----------------------------------------------------------------
    @property
    def is_nifti(self) -> bool:
        """Whether the study's source is a NIfTI file."""
        return self.source is not None and self.source.is_file() and is_nifti_path(self.source)

    def _read(self) -> None:
        if "volume" in self._loaded:
            return
        if self.source is None:
            raise ImageReadError(f"study {self.case_id}: no source to read")
        checked_input(self.source)
        if self.is_nifti:
            self._loaded.update(volume=read_nifti(self.source), series=None)
        else:
            series = read_dicom_series(self.source, self.series_uid)
            self._loaded.update(volume=series.volume, series=series)

    @property
    def volume(self) -> Volume:
        """The image on the scanner's own grid (RAS), read on first use."""
        self._read()
        return self._loaded["volume"]

    @property
    def series(self) -> DicomSeries | None:
        """The DICOM series (headers in spatial order), or None for a NIfTI source."""
        self._read()
        return self._loaded["series"]

    @property
    def modality(self) -> str | None:
        """DICOM Modality (0008,0060), or None when the source does not say (NIfTI)."""
        series = self.series
        return (series.modality or None) if series is not None else None

    @property
    def source_series_uid(self) -> str | None:
        """The SeriesInstanceUID of a DICOM source, else None."""
        series = self.series
        return series.series_uid if series is not None else None

    @cached_property
    def mask(self) -> Volume | None:
        """The lesion mask (nonzero = lesion), or None. Read on first use, on its own grid."""
        if self.mask_source is None:
            return None
        if isinstance(self.mask_source, Volume):
            return self.mask_source
        path = checked_input(self.mask_source, f"lesion mask of case {self.case_id}")
        if path.is_file() and is_nifti_path(path):
            return read_nifti(path)
        return read_dicom_series(path).volume

    def mask_on_image_grid(self) -> Volume | None:
        """The mask carried to the image's grid through world coordinates (as it is when already
        there): nonzero mask voxels are lesion, an image voxel is lesion when its centre is."""
        from medcam.geometry import resample_to

        mask = self.mask
        if mask is None or mask.geometry.is_close(self.volume.geometry, atol=1e-3):
            return mask
        binary = Volume((np.asarray(mask.array) > 0).astype(np.float32), mask.geometry)
        on_grid = resample_to(binary, self.volume.geometry, order=1)
        return Volume((on_grid.array >= 0.5).astype(np.float32), self.volume.geometry)

    @cached_property
    def lesion_centres_ras(self) -> np.ndarray:
        """Lesion centres (RAS mm), ``(n, 3)``: as given to :meth:`from_volume`, else the centroids
        of the mask's connected components; empty without a mask."""
        from scipy.ndimage import center_of_mass, label

        if "centres" in self._loaded:
            return self._loaded["centres"]
        mask = self.mask
        if mask is None:
            return np.zeros((0, 3))
        inside = np.asarray(mask.array) > 0
        components, count = label(inside)
        centres = [mask.geometry.voxel_to_world(np.asarray(c)) for c in center_of_mass(inside, components, range(1, count + 1))]
        return np.array(centres).reshape(-1, 3)

    def release(self) -> None:
        """Forget what was read (the next use reads the source again); in-memory studies keep it."""
        if self.source is not None:
            self._loaded.clear()
            self.__dict__.pop("mask", None)

    def __repr__(self) -> str:
        where = str(self.source) if self.source is not None else "in memory"
        extra = f", series {self.series_uid}" if self.series_uid else ""
        return f"Study({self.case_id!r}, {where}{extra}{', with mask' if self.mask_source is not None else ''})"


def read_study(source: str | Path, *, series_uid: str | None = None, mask: str | Path | Volume | None = None,
               case_id: str | None = None) -> Study:
    """A study of a NIfTI file, a DICOM file or a DICOM folder; nothing is read until it is used.

    Raises
    ------
    ImageReadError
        ``source`` does not exist.
    """
    path = checked_input(source)
    if isinstance(mask, (str, Path)):
        mask = Path(mask)
    name = path.name[: -len(".nii.gz")] if path.name.lower().endswith(".nii.gz") else path.stem if path.is_file() else path.name
    return Study(path, case_id or safe_case_id(name), series_uid, mask)

