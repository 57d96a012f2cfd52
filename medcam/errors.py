"""Error classes.

Every error medcam raises for bad input is a :class:`MedcamError`. Each subclass also
inherits the builtin it stands for, so generic handlers (``except ValueError``) still
catch it. Messages name the input, what was expected and what was found.
"""


class MedcamError(Exception):
    """Base class of every error medcam raises on purpose."""


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


class MedcamWarning(UserWarning):
    """Something medcam did to the data that the user should know about (e.g. resampling)."""
