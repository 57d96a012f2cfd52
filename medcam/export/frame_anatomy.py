"""The Frame Anatomy functional group of a derived multi-frame object, from its source's anatomy.

3D Slicer's Parametric Map loader (dcmqi's ``paramap2itkimage``) reads the Frame Anatomy group of
every Parametric Map without checking that it is there: without it, it crashes. An enhanced source
gives its own group; otherwise the region comes from BodyPartExamined (0018,0015) through the
SNOMED CT codes of PS3.16 Annex L, and the laterality from the source's FrameLaterality,
ImageLaterality or Laterality, "U" (unknown) when none says.
"""

from __future__ import annotations

import copy

from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

__all__ = ["frame_anatomy", "set_frame_anatomy"]

#: BodyPartExamined -> SNOMED CT anatomic region (PS3.16 Annex L, the common values).
_REGIONS = {
    "ABDOMEN": codes.SCT.Abdomen, "BRAIN": codes.SCT.Brain, "CHEST": codes.SCT.Chest, "THORAX": codes.SCT.Chest,
    "HEAD": codes.SCT.Head, "NECK": codes.SCT.Neck, "HEADNECK": codes.SCT.HeadAndNeck, "PELVIS": codes.SCT.Pelvis,
    "WHOLEBODY": codes.SCT.EntireBody, "LIVER": codes.SCT.Liver, "KIDNEY": codes.SCT.Kidney, "BREAST": codes.SCT.Breast,
    "KNEE": codes.SCT.Knee, "SPINE": codes.SCT.Spine,
}
_LATERALITIES = ("R", "L", "B", "U")


def _code_item(code) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code.value, code.scheme_designator, code.meaning
    return item


def _source_group(source: Dataset) -> Dataset | None:
    """An enhanced source's own Frame Anatomy item (shared, or its first frame's)."""
    for groups in (source.get("SharedFunctionalGroupsSequence"), source.get("PerFrameFunctionalGroupsSequence")):
        if groups and "FrameAnatomySequence" in groups[0] and len(groups[0].FrameAnatomySequence):
            return groups[0].FrameAnatomySequence[0]
    return None


def frame_anatomy(source: Dataset) -> Dataset:
    """The Frame Anatomy item (AnatomicRegionSequence, FrameLaterality) for an object derived
    from ``source``. A body part with no code here (or none given) is "Entire body": the region
    the object covers is the source's, whatever it is called."""
    found = _source_group(source)
    if found is not None and "AnatomicRegionSequence" in found and found.get("FrameLaterality") in _LATERALITIES:
        return copy.deepcopy(found)
    item = Dataset()
    region = found.AnatomicRegionSequence if found is not None and "AnatomicRegionSequence" in found else None
    if region is None:
        if "AnatomicRegionSequence" in source:
            region = copy.deepcopy(source.AnatomicRegionSequence)
        else:
            body_part = str(source.get("BodyPartExamined", "")).strip().upper().replace(" ", "")
            region = [_code_item(_REGIONS.get(body_part, codes.SCT.EntireBody))]
    item.AnatomicRegionSequence = region
    laterality = next((str(v).strip() for v in (source.get("FrameLaterality"), source.get("ImageLaterality"),
                                                 source.get("Laterality")) if v and str(v).strip() in _LATERALITIES), "U")
    item.FrameLaterality = laterality
    return item


def set_frame_anatomy(instance: Dataset, source: Dataset) -> None:
    """Put :func:`frame_anatomy` in ``instance``'s shared functional groups (unless it has one)."""
    shared = instance.SharedFunctionalGroupsSequence[0]
    if "FrameAnatomySequence" not in shared and not any("FrameAnatomySequence" in f for f in instance.PerFrameFunctionalGroupsSequence):
        shared.FrameAnatomySequence = [frame_anatomy(source)]
