"""Synthetic studies with known lesions, and writers that turn them into DICOM and NIfTI files."""

from medcam.synthetic.dicom_writer import StudyInfo, write_dicom_image, write_dicom_series
from medcam.synthetic.phantoms import (
    Lesion,
    Scene,
    SyntheticStudy,
    axial_geometry,
    chest_radiograph_scene,
    ct_abdomen_scene,
    make_study,
    mr_head_scene,
    radiograph_geometry,
)

__all__ = [
    "Lesion",
    "Scene",
    "StudyInfo",
    "SyntheticStudy",
    "axial_geometry",
    "chest_radiograph_scene",
    "ct_abdomen_scene",
    "make_study",
    "mr_head_scene",
    "radiograph_geometry",
    "write_dicom_image",
    "write_dicom_series",
]
