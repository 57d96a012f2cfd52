"""medcam: Class Activation Maps for medical imaging, on the scanner's own voxel grid.

>>> import medcam                                                     # doctest: +SKIP
>>> model = medcam.load_model("sample_data/models/ct3d.pt")          # or a MONAI Bundle folder
>>> explanation = medcam.explain(model, medcam.read_study("sample_data/ct_lesion_dicom"), method="gradcam")
>>> explanation.save("out/", formats=("nifti", "pm", "sc"))

The names that need torch (``explain``, the models) are imported on first use, so that
``import medcam`` and ``medcam --help`` stay instant.
"""

__version__ = "0.1.0"

from medcam.errors import (  # noqa: E402
    CheckpointError,
    DicomSeriesError,
    ExportError,
    GeometryError,
    ImageReadError,
    MedcamError,
    MedcamWarning,
    ModalityError,
)
from medcam.geometry import ImageGeometry, Volume, resample_to  # noqa: E402

#: public name -> the module that defines it (imported when the name is first used)
_LAZY = {
    "Explanation": "medcam.explanation",
    "explain": "medcam.explanation",
    "Study": "medcam.study",
    "read_study": "medcam.study",
    "ExplainableModel": "medcam.models.explainable",
    "ModelProvenance": "medcam.models.provenance",
    "from_module": "medcam.models.explainable",
    "load_model": "medcam.models.explainable",
    "MedcamReader": "medcam.io.monai_reader",
    "run_cohort": "medcam.cohort",
    "find_cases": "medcam.cases",
    "cases_from_csv": "medcam.cases",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medcam' has no attribute {name!r}")


__all__ = [
    "__version__",
    "CheckpointError",
    "DicomSeriesError",
    "ExportError",
    "GeometryError",
    "ImageGeometry",
    "ImageReadError",
    "MedcamError",
    "MedcamWarning",
    "ModalityError",
    "Volume",
    "resample_to",
    *_LAZY,
]
