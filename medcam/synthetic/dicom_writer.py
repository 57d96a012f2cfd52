"""Write synthetic volumes as standard DICOM: CT / MR series, enhanced multi-frame, CR images.

The writer exists to make *hard* test series on purpose: oblique, sagittal or coronal stacks,
non-square pixels, gantry tilt (from a sheared geometry), reversed InstanceNumbers, shuffled
file names, a missing slice, enhanced multi-frame (through highdicom's legacy converter), RLE
compression and MONOCHROME1 radiographs. Every object carries complete patient, study,
series, frame of reference, equipment and image modules and passes ``dciodvfy``.

Geometry is written from the volume's affine: slice ``k`` gets ImagePositionPatient
``affine_lps @ (0, 0, k)``; ImageOrientationPatient holds the unit i and j axes (row and
column directions); PixelSpacing is ``(|j axis|, |i axis|)`` = (row spacing, column spacing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    CTImageStorage,
    MRImageStorage,
    RLELossless,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from medcam.errors import ConfigError
from medcam.export.part10 import set_file_meta
from medcam.geometry import Volume

__all__ = ["StudyInfo", "write_dicom_series", "write_dicom_image"]

_CT_INTERCEPT = -1024.0
_MAX_STORED = 4095  # 12 bits stored


@dataclass(frozen=True)
class StudyInfo:
    """Patient and study attributes shared by every series of one synthetic study.

    Every UID is a deterministic function of ``uid_seed`` and the object's role (study,
    series number, slice), so the series of one study share StudyInstanceUID and
    FrameOfReferenceUID, and regenerating a study gives identical files. ``None`` draws a
    random seed when the StudyInfo is made: fresh UIDs for each new StudyInfo.
    """

    patient_name: str = "Synthetic^Patient"
    patient_id: str = "SYN0001"
    patient_birth_date: str = "19700101"
    patient_sex: str = "O"
    study_date: str = "20260101"
    study_time: str = "120000"
    study_id: str = "1"
    accession_number: str = "ACC0001"
    study_description: str = "medcam synthetic study"
    uid_seed: str | None = None

    def __post_init__(self) -> None:
        if self.uid_seed is None:
            object.__setattr__(self, "uid_seed", generate_uid())

    def uid(self, *role: object) -> str:
        """The UID of ``role`` (study, series, frame of reference...), fixed by the study's ``uid_seed``."""
        return generate_uid(entropy_srcs=[str(self.uid_seed), *map(str, role)])


def _ds(value: float) -> str:
    """A decimal string of at most 16 characters."""
    return format_number_as_ds(float(value))


def _base(study: StudyInfo, modality: str, series_uid: str, series_number: int, description: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    ds.StudyInstanceUID = study.uid("study")
    ds.StudyDate = study.study_date
    ds.StudyTime = study.study_time
    ds.ReferringPhysicianName = ""
    ds.StudyID = study.study_id
    ds.AccessionNumber = study.accession_number
    ds.StudyDescription = study.study_description
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.SeriesDate = study.study_date
    ds.SeriesTime = study.study_time
    ds.Manufacturer = "medcam synthetic"
    ds.ManufacturerModelName = "phantom"
    ds.SoftwareVersions = pydicom.__version__
    ds.InstitutionName = "medcam"
    ds.ContentDate = study.study_date
    ds.ContentTime = study.study_time
    ds.AcquisitionDate = study.study_date
    ds.AcquisitionTime = study.study_time
    ds.AcquisitionNumber = 1
    ds.BurnedInAnnotation = "NO"
    return ds


def _pixel_module(ds: Dataset, pixels: np.ndarray, photometric: str = "MONOCHROME2") -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = (int(n) for n in pixels.shape)
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint16).tobytes()


def _plane_module(ds: Dataset, affine_lps: np.ndarray, k: int) -> None:
    axes = affine_lps[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    row_dir, col_dir = axes[:, 0] / spacing[0], axes[:, 1] / spacing[1]
    position = affine_lps[:3, :3] @ np.array([0.0, 0.0, float(k)]) + affine_lps[:3, 3]
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.ImageOrientationPatient = [_ds(v) for v in (*row_dir, *col_dir)]
    ds.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]
    normal = np.cross(row_dir, col_dir)
    ds.SliceThickness = _ds(abs(float(np.dot(axes[:, 2], normal))))
    ds.SliceLocation = _ds(float(np.dot(position, normal)))


def _ct_attributes(ds: Dataset, tilt_deg: float) -> None:
    ds.SOPClassUID = CTImageStorage
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.RescaleIntercept = _ds(_CT_INTERCEPT)
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.KVP = "120"
    ds.GantryDetectorTilt = _ds(tilt_deg)
    ds.ConvolutionKernel = "STANDARD"
    ds.PatientPosition = "HFS"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"


def _mr_attributes(ds: Dataset) -> None:
    ds.SOPClassUID = MRImageStorage
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.ScanningSequence = "GR"
    ds.SequenceVariant = "SP"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "3D"
    ds.RepetitionTime = "8"
    ds.EchoTime = "3"
    ds.EchoTrainLength = "1"
    ds.MagneticFieldStrength = "3"
    ds.ImagedNucleus = "1H"
    ds.FlipAngle = "10"
    ds.PatientPosition = "HFS"


def _stored_values(modality: str, image: np.ndarray) -> np.ndarray:
    values = image - _CT_INTERCEPT if modality == "CT" else image
    return np.clip(np.rint(values), 0, _MAX_STORED).astype(np.uint16)


def write_dicom_series(
    volume: Volume,
    folder: str | Path,
    *,
    modality: str = "CT",
    study: StudyInfo | None = None,
    series_number: int = 1,
    series_description: str = "synthetic",
    body_part: str = "ABDOMEN",
    reverse_instance_numbers: bool = False,
    shuffle_file_names: bool = False,
    drop_slices: Sequence[int] = (),
    multiframe: bool = False,
    rle: bool = False,
    seed: int = 0,
) -> list[Path]:
    """Write a volume as a CT or MR Image Storage series (or one enhanced multi-frame object).

    Parameters
    ----------
    volume : Volume
        Values in HU for CT, scanner units for MR; any geometry, sheared included (the shear
        angle becomes GantryDetectorTilt for CT).
    folder : path
        Created if missing; files are named ``IM{InstanceNumber:04d}.dcm`` unless shuffled.
    modality : {"CT", "MR"}
    reverse_instance_numbers : bool
        InstanceNumber decreases along the stack (a valid series whose numbering lies).
    shuffle_file_names : bool
        Random file names, so file order says nothing about spatial order.
    drop_slices : sequence of int
        Slice indices not written: a series with a gap.
    multiframe : bool
        Convert the series into one Legacy Converted Enhanced CT/MR Image (highdicom).
    rle : bool
        RLE Lossless transfer syntax instead of Explicit VR Little Endian.

    Returns
    -------
    list of Path
        The files written.
    """
    if modality not in ("CT", "MR"):
        raise ConfigError(f"write_dicom_series: modality must be 'CT' or 'MR', found {modality!r}")
    study = study or StudyInfo()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    geometry = volume.geometry
    affine_lps = geometry.affine_lps
    series_uid = study.uid("series", series_number)
    frame_of_reference = study.uid("frame-of-reference")
    stored = _stored_values(modality, np.asarray(volume.array, dtype=np.float64))
    keep = [k for k in range(geometry.shape[2]) if k not in set(drop_slices)]
    tilt = _signed_tilt_deg(affine_lps)
    window = np.percentile(volume.array, [1, 99])

    datasets = []
    for number, k in enumerate(keep, start=1):
        instance = len(keep) + 1 - number if reverse_instance_numbers else number
        ds = _base(study, modality, series_uid, series_number, series_description)
        ds.BodyPartExamined = body_part
        ds.FrameOfReferenceUID = frame_of_reference
        ds.PositionReferenceIndicator = ""
        ds.InstanceNumber = instance
        if modality == "CT":
            _ct_attributes(ds, tilt)
        else:
            _mr_attributes(ds)
            ds.WindowCenter = _ds((window[0] + window[1]) / 2)
            ds.WindowWidth = _ds(max(1.0, window[1] - window[0]))
        ds.SOPInstanceUID = study.uid("instance", series_number, k)
        _plane_module(ds, affine_lps, k)
        _pixel_module(ds, stored[:, :, k].T)  # pixel rows run along j, columns along i
        set_file_meta(ds)
        datasets.append(ds)

    if multiframe:
        return [_write_multiframe(datasets, folder, modality, study, series_number)]

    names = [f"IM{ds.InstanceNumber:04d}.dcm" for ds in datasets]
    if shuffle_file_names:
        rng = np.random.default_rng(seed)
        names = [f"{rng.integers(16**8):08x}.dcm" for _ in datasets]
    paths = []
    for ds, name in zip(datasets, names):
        if rle:
            ds.compress(RLELossless, encoding_plugin="pydicom")
        path = folder / name
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _signed_tilt_deg(affine_lps: np.ndarray) -> float:
    """Gantry tilt: angle between the slice step and the image-plane normal (0 for an orthogonal stack).

    The sign follows the tilt of the column direction towards the feet (negative z).
    """
    axes = affine_lps[:3, :3] / np.linalg.norm(affine_lps[:3, :3], axis=0)
    normal = np.cross(axes[:, 0], axes[:, 1])
    angle = float(np.degrees(np.arccos(np.clip(abs(np.dot(normal, axes[:, 2])), 0.0, 1.0))))
    if angle < 1e-6:
        return 0.0
    return angle if axes[2, 1] <= 0 else -angle


def _write_multiframe(datasets: list[Dataset], folder: Path, modality: str, study: StudyInfo, series_number: int) -> Path:
    from highdicom.legacy import (
        LegacyConvertedEnhancedCTImage,
        LegacyConvertedEnhancedMRImage,
    )

    cls = LegacyConvertedEnhancedCTImage if modality == "CT" else LegacyConvertedEnhancedMRImage
    # the converter sorts frames itself; give it the datasets in a scrambled order to prove
    # nothing downstream relies on frame order
    order = list(range(len(datasets)))[::-1]
    enhanced = cls(
        [datasets[i] for i in order],
        series_instance_uid=study.uid("series", series_number, "multiframe"),
        series_number=series_number,
        sop_instance_uid=study.uid("instance", series_number, "multiframe"),
        instance_number=1,
    )
    path = folder / "multiframe.dcm"
    enhanced.save_as(path, enforce_file_format=True)
    return path


def write_dicom_image(
    volume: Volume,
    path: str | Path,
    *,
    study: StudyInfo | None = None,
    series_number: int = 1,
    series_description: str = "synthetic radiograph",
    body_part: str = "CHEST",
    monochrome1: bool = False,
) -> Path:
    """Write a one-slice volume as a CR Image Storage object (no patient position or orientation).

    The pixel spacing is written both as ImagerPixelSpacing and PixelSpacing. With
    ``monochrome1`` the stored values are inverted and PhotometricInterpretation is
    MONOCHROME1, as many radiography devices do.
    """
    if volume.shape[2] != 1:
        raise ConfigError(f"write_dicom_image: expected a one-slice volume, found shape {volume.shape}")
    study = study or StudyInfo()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = _stored_values("CR", np.asarray(volume.array[:, :, 0], dtype=np.float64)).T
    if monochrome1:
        stored = (_MAX_STORED - stored).astype(np.uint16)
    ds = _base(study, "CR", study.uid("series", series_number), series_number, series_description)
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = study.uid("instance", series_number, 0)
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BodyPartExamined = body_part
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    spacing = volume.spacing
    ds.ImagerPixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]
    ds.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]
    ds.PixelSpacingCalibrationType = "GEOMETRY"
    ds.PixelSpacingCalibrationDescription = "synthetic"
    ds.KVP = "120"
    low, high = np.percentile(stored, [1, 99])
    ds.WindowCenter = _ds((low + high) / 2)
    ds.WindowWidth = _ds(max(1.0, high - low))
    _pixel_module(ds, stored, "MONOCHROME1" if monochrome1 else "MONOCHROME2")
    set_file_meta(ds)
    ds.save_as(path, enforce_file_format=True)
    return path
