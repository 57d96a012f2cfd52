"""The errors medcam raises, in one hierarchy.

Every error medcam raises for bad input is a :class:`MedcamError`. Each subclass also
inherits the builtin it stands for, so generic handlers (``except ValueError``) still
catch it. Messages name the input, what was expected and what was found; the command line
prints them as one line.
"""

__all__ = [
    "MedcamError", "ConfigError", "InputTypeError", "GeometryError", "DicomSeriesError", "ImageReadError",
    "ExportError", "CheckpointError", "ModalityError", "CamError", "TrainingError", "MetricError", "PacsError",
    "MedcamWarning",
]


class MedcamError(Exception):
    """Base class of every error medcam raises on purpose."""


class ConfigError(MedcamError, ValueError):
    """An option or configuration value outside what it accepts (a method name, a size, an order)."""


class InputTypeError(MedcamError, TypeError):
    """An argument of a type the function does not take."""


class GeometryError(MedcamError, ValueError):
    """An affine, a shape or a set of positions that does not describe a valid voxel grid."""


class DicomSeriesError(MedcamError, ValueError):
    """A DICOM folder or series that cannot be read as one regular volume."""


class ImageReadError(MedcamError, ValueError):
    """A file that is missing, unreadable or holds unusable voxel values."""


class ExportError(MedcamError, RuntimeError):
    """An output that cannot be written as asked."""


class CheckpointError(MedcamError, ValueError):
    """A model checkpoint that is corrupt, foreign or inconsistent."""


class ModalityError(MedcamError, ValueError):
    """A study of another modality than the model was trained on."""


class CamError(MedcamError, ValueError):
    """A CAM request that cannot be served: unknown method or layer, bad targets, wrong model."""


class TrainingError(MedcamError, ValueError):
    """Training input that cannot be used (bad manifest row, empty split...)."""


class MetricError(MedcamError, ValueError):
    """A measurement that is undefined for its input (an AUC of one class, an empty lesion mask)."""


class PacsError(MedcamError, RuntimeError):
    """A PACS that cannot be reached, refuses us, or does not hold what was asked for."""


class MedcamWarning(UserWarning):
    """Something medcam did to the data that the user should know about (e.g. resampling)."""
