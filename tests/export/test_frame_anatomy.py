"""The Frame Anatomy item of a derived object, from each way a source can state its anatomy."""

from pydicom.dataset import Dataset

from medcam.export.frame_anatomy import frame_anatomy


def _source(**attributes) -> Dataset:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def test_body_part_and_laterality_of_a_single_frame_source():
    item = frame_anatomy(_source(BodyPartExamined="ABDOMEN", Laterality=""))
    region = item.AnatomicRegionSequence[0]
    assert (region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning) == ("818981001", "SCT", "Abdomen")
    assert item.FrameLaterality == "U"  # an empty Laterality says nothing
    assert frame_anatomy(_source(BodyPartExamined="BREAST", ImageLaterality="L")).FrameLaterality == "L"
    unknown = frame_anatomy(_source(BodyPartExamined="SOMETHING"))
    assert unknown.AnatomicRegionSequence[0].CodeValue == "38266002" and unknown.FrameLaterality == "U"
    assert frame_anatomy(_source()).AnatomicRegionSequence[0].CodeMeaning == "Entire body"


def test_an_enhanced_source_gives_its_own_group():
    own = Dataset()
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "12738006", "SCT", "Brain"
    own.AnatomicRegionSequence = [code]
    own.FrameLaterality = "B"
    shared = Dataset()
    shared.FrameAnatomySequence = [own]
    item = frame_anatomy(_source(SharedFunctionalGroupsSequence=[shared], BodyPartExamined="HEAD"))
    assert item.AnatomicRegionSequence[0].CodeMeaning == "Brain" and item.FrameLaterality == "B"
    assert item is not own  # a copy: the source header is never changed
