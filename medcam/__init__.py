"""medcam: Class Activation Maps for medical imaging, on the scanner's own voxel grid."""

__version__ = "0.1.0"

from medcam.errors import (  # noqa: E402
    CheckpointError,
    DicomSeriesError,
    ExportError,
    GeometryError,
    ImageReadError,
    MedcamError,
    MedcamWarning,
)
from medcam.geometry import ImageGeometry, Volume, resample_to  # noqa: E402

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
    "Volume",
    "resample_to",
]
