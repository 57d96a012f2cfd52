"""Who and what a written DICOM object is: its UIDs (fresh or deterministic), its series number,
the equipment that made it, and DICOM-safe labels."""

from __future__ import annotations

from pydicom.uid import generate_uid

__all__ = ["SERIES_NUMBERS", "UidFactory", "code_string", "derived_object_identity", "set_dimension_organization_uid"]

#: SeriesNumber of each derived series: above what scanners use, so a viewer lists the overlays
#: after the source series, in this order.
SERIES_NUMBERS = {"pm": 9001, "sc": 9002, "seg": 9003, "sr": 9004}


def code_string(text: str) -> str:
    """``text`` as a valid DICOM Code String (CS: at most 16 of A-Z, 0-9, space and underscore),
    as a label: upper case, ``+`` spelt ``P`` (``gradcam++`` -> ``GRADCAMPP``), anything else
    (spaces too) an underscore.

    >>> code_string("gradcam++"), code_string("my method-2")
    ('GRADCAMPP', 'MY_METHOD_2')
    """
    upper = str(text).upper().replace("+", "P")
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in upper)
    return cleaned[:16] or "MAP"


class UidFactory:
    """New DICOM UIDs: fresh by default, or a deterministic function of ``seed`` and a role."""

    def __init__(self, seed: str | None = None) -> None:
        self.seed = seed

    def uid(self, *role: object) -> str:
        """The UID of ``role`` (``"pm-series"``, a slice index...): fresh, or derived from the seed and the role when the factory has a seed."""
        if self.seed is None:
            return generate_uid()
        return generate_uid(entropy_srcs=[self.seed, *map(str, role)])


def set_dimension_organization_uid(instance, uid: str) -> None:
    """Give a highdicom multi-frame object this DimensionOrganizationUID (highdicom makes a random
    one), in its DimensionOrganizationSequence and every DimensionIndexSequence item: with
    deterministic UIDs, every UID of the object is then a function of the inputs."""
    for item in instance.get("DimensionOrganizationSequence", []):
        item.DimensionOrganizationUID = uid
    for item in instance.get("DimensionIndexSequence", []):
        if "DimensionOrganizationUID" in item:
            item.DimensionOrganizationUID = uid


def derived_object_identity(uids: UidFactory, kind: str, series_number: int) -> dict:
    """The new-series, new-instance and equipment arguments every highdicom object medcam writes takes."""
    from medcam import __version__

    return {
        "series_instance_uid": uids.uid(f"{kind}-series"),
        "series_number": series_number,
        "sop_instance_uid": uids.uid(f"{kind}-instance"),
        "instance_number": 1,
        "manufacturer": "medcam",
        "manufacturer_model_name": "medcam",
        "software_versions": __version__,
        "device_serial_number": "0",
    }
