"""Finding series in folders, and every way a folder or series is refused."""

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import BasicTextSRStorage, ExplicitVRLittleEndian, GrayscaleSoftcopyPresentationStateStorage, generate_uid

from medcam.errors import DicomSeriesError, ImageReadError
from medcam.io import find_series, read_dicom_series
from medcam.synthetic import StudyInfo, write_dicom_series


def _non_image(path, sop_class, modality):
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = modality, generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID = "Synthetic^Patient", "SYN0001"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = sop_class, ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture
def mixed_folder(tmp_path, ct_study, mr_study):
    study = StudyInfo()
    write_dicom_series(ct_study.volume, tmp_path / "study" / "a", study=study, series_number=3)
    write_dicom_series(mr_study.volume, tmp_path / "study" / "b", modality="MR", study=study, series_number=4)
    _non_image(tmp_path / "study" / "report.dcm", BasicTextSRStorage, "SR")
    _non_image(tmp_path / "study" / "state.dcm", GrayscaleSoftcopyPresentationStateStorage, "PR")
    (tmp_path / "study" / "notes.txt").write_text("not DICOM")
    return tmp_path / "study"


def test_find_series_groups_by_uid_and_says_what_it_skipped(mixed_folder):
    scan = find_series(mixed_folder)
    assert [(s.modality, s.number, len(s.files)) for s in scan.series] == [("CT", 3, 12), ("MR", 4, 10)]
    reasons = {s.path.name: s.reason for s in scan.skipped}
    assert reasons["notes.txt"] == "not a DICOM file"
    assert reasons["report.dcm"].startswith("non-image object (Modality SR")
    assert reasons["state.dcm"].startswith("non-image object (Modality PR")
    assert scan.unreadable == () and scan.n_files == 25


def test_several_series_need_a_choice(mixed_folder):
    with pytest.raises(DicomSeriesError, match=r"2 image series found; choose one with series_uid=") as error:
        read_dicom_series(mixed_folder)
    scan = find_series(mixed_folder)
    assert all(s.uid in str(error.value) for s in scan.series)
    mr = read_dicom_series(mixed_folder, series_uid=scan.series[1].uid)
    assert mr.modality == "MR" and mr.volume.shape == (30, 34, 10)
    with pytest.raises(DicomSeriesError, match="no image series with SeriesInstanceUID 1.2.3"):
        read_dicom_series(mixed_folder, series_uid="1.2.3")


def test_empty_folder_and_folder_without_dicom(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DicomSeriesError, match="the folder is empty"):
        read_dicom_series(tmp_path / "empty")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("hello")
    (tmp_path / "text" / "b.csv").write_text("1,2")
    with pytest.raises(DicomSeriesError, match=r"no DICOM files found \(2 files looked at\)"):
        read_dicom_series(tmp_path / "text")
    with pytest.raises(ImageReadError, match="no such file or folder"):
        read_dicom_series(tmp_path / "missing")


def test_only_non_image_objects(tmp_path):
    _non_image(tmp_path / "sr.dcm", BasicTextSRStorage, "SR")
    with pytest.raises(DicomSeriesError, match="no DICOM image series found; skipped 1 files: non-image object"):
        read_dicom_series(tmp_path)


def _rewrite(path, change):
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=True)


def test_missing_position_in_a_3d_series(tmp_path, ct_study):
    files = write_dicom_series(ct_study.volume, tmp_path / "ct")
    _rewrite(files[5], lambda ds: delattr(ds, "ImagePositionPatient"))
    with pytest.raises(DicomSeriesError, match=r"missing ImagePositionPatient in 1 of 12 slices \(first: IM0006.dcm\)"):
        read_dicom_series(tmp_path / "ct")


def test_mixed_rows_and_columns(tmp_path, ct_study):
    files = write_dicom_series(ct_study.volume, tmp_path / "ct")

    def shrink(ds):
        pixels = ds.pixel_array[:20, :20].copy()
        ds.Rows, ds.Columns = 20, 20
        ds.PixelData = pixels.tobytes()

    _rewrite(files[2], shrink)
    with pytest.raises(DicomSeriesError, match=r"mixed Rows/Columns: 36x40 in IM0001.dcm, 20x20 in IM0003.dcm"):
        read_dicom_series(tmp_path / "ct")


def test_truncated_file(tmp_path, ct_study):
    files = write_dicom_series(ct_study.volume, tmp_path / "ct")
    data = files[4].read_bytes()
    files[4].write_bytes(data[: len(data) - 1000])
    with pytest.raises(ImageReadError, match=r"IM0005.dcm: the pixel data holds \d+ bytes but the header declares \d+ .*; the file is truncated"):
        read_dicom_series(tmp_path / "ct")
    files[6].write_bytes(files[6].read_bytes()[:400])  # cut inside the header
    with pytest.raises(ImageReadError, match=r"IM0007.dcm: damaged or truncated DICOM file"):
        read_dicom_series(tmp_path / "ct")


def test_duplicate_positions(tmp_path, ct_study):
    files = write_dicom_series(ct_study.volume, tmp_path / "ct")
    position = pydicom.dcmread(files[3]).ImagePositionPatient
    _rewrite(files[4], lambda ds: setattr(ds, "ImagePositionPatient", position))
    with pytest.raises(DicomSeriesError, match="two slices at the same position"):
        read_dicom_series(tmp_path / "ct")


def test_mixed_orientations(tmp_path, ct_study):
    files = write_dicom_series(ct_study.volume, tmp_path / "ct")
    _rewrite(files[0], lambda ds: setattr(ds, "ImageOrientationPatient", ["0", "1", "0", "0", "0", "-1"]))
    with pytest.raises(DicomSeriesError, match="mixed orientations: IM0002.dcm is not parallel to IM0001.dcm"):
        read_dicom_series(tmp_path / "ct")


def test_positions_off_one_line(tmp_path, ct_study):
    files = write_dicom_series(ct_study.volume, tmp_path / "ct")

    def shift(ds):
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [str(x + 3.0), str(y), str(z)]

    _rewrite(files[6], shift)
    with pytest.raises(DicomSeriesError, match=r"slice positions do not lie on one line \(IM0007.dcm is 3.\d+ mm off\)"):
        read_dicom_series(tmp_path / "ct")


def test_bad_orientation_and_colour_images(tmp_path, ct_study):
    files = write_dicom_series(ct_study.volume, tmp_path / "ct")
    _rewrite(files[0], lambda ds: setattr(ds, "ImageOrientationPatient", ["1", "0", "0", "1", "0", "0"]))
    with pytest.raises(DicomSeriesError, match="IM0001.dcm: ImageOrientationPatient .* is not two orthogonal unit vectors"):
        read_dicom_series(tmp_path / "ct")

    def colour(ds):
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0

    _rewrite(files[1], colour)
    with pytest.raises(DicomSeriesError, match=r"colour images \(SamplesPerPixel 3, RGB\) are not supported"):
        read_dicom_series(files[1])
    assert np.isfinite(read_dicom_series(files[2]).volume.array).all()
