"""Figures in radiological convention whatever the voxel order: a phantom with a blob on the
patient's right, one anterior and one superior must appear where a radiologist expects them
(right on the image's left, anterior and superior up; anterior on the left of the sagittal view)
for LPS, RAS, LIA and oblique grids, with the markers and the millimetre aspect of each plane."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from medcam.export.figures import _draw_overlay, anatomical_views
from medcam.geometry import ImageGeometry, Volume
from medcam.io import read_dicom_series, read_nifti, write_nifti
from medcam.synthetic import write_dicom_series

SPACING = np.array([2.0, 3.0, 4.0])
BLOBS_RAS = {"right": (40.0, 0.0, 0.0), "anterior": (0.0, 40.0, 0.0), "superior": (0.0, 0.0, 40.0)}


def _rotation(degrees_z: float, degrees_x: float) -> np.ndarray:
    a, b = np.radians(degrees_z), np.radians(degrees_x)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


DIRECTIONS = {  # columns: where voxel axes i, j, k point in RAS
    "LPS": np.diag([-1.0, -1.0, 1.0]),
    "RAS": np.eye(3),
    "LIA": np.array([[-1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]]),
    "oblique": _rotation(20.0, 12.0) @ np.diag([-1.0, -1.0, 1.0]),
}


def _geometry(direction: np.ndarray) -> ImageGeometry:
    shape = np.ceil(130.0 / SPACING).astype(int) | 1  # odd: a voxel centre at the world origin
    linear = direction * SPACING
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = -linear @ ((shape - 1) / 2.0)
    return ImageGeometry(tuple(int(n) for n in shape), affine)


def _blob(geometry: ImageGeometry, centre_ras) -> Volume:
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in geometry.shape], indexing="ij"), axis=-1).reshape(-1, 3)
    world = geometry.voxel_to_world(grid.astype(float))
    values = np.exp(-np.sum((world - np.asarray(centre_ras)) ** 2, axis=1) / (2 * 8.0**2))
    return Volume(values.reshape(geometry.shape).astype(np.float32), geometry)


def _views(volume: Volume):
    centre = tuple(int(n) // 2 for n in volume.shape)  # the voxel at the world origin
    return {view.name: view for view in anatomical_views(volume, volume, at=centre)}


def _where(image: np.ndarray) -> tuple[float, float]:
    """(row, column) of the brightest pixel, as fractions of the image's height and width."""
    row, column = np.unravel_index(int(np.argmax(image)), image.shape)
    return row / (image.shape[0] - 1), column / (image.shape[1] - 1)


@pytest.mark.parametrize("order", list(DIRECTIONS))
def test_the_patients_right_anterior_and_superior_appear_where_a_radiologist_looks(order):
    geometry = _geometry(DIRECTIONS[order])
    right, anterior, superior = (_views(_blob(geometry, BLOBS_RAS[name])) for name in ("right", "anterior", "superior"))
    assert [v.markers for v in right.values()] == [("R", "L", "A", "P"), ("R", "L", "S", "I"), ("A", "P", "S", "I")]
    # right: on the image's left in the axial and coronal views
    assert _where(right["axial"].gray)[1] < 0.35 and _where(right["coronal"].gray)[1] < 0.35
    # anterior: up in the axial view, on the left of the sagittal view
    assert _where(anterior["axial"].gray)[0] < 0.35 and _where(anterior["sagittal"].gray)[1] < 0.35
    # superior: up in the coronal and sagittal views
    assert _where(superior["coronal"].gray)[0] < 0.35 and _where(superior["sagittal"].gray)[0] < 0.35
    # and nowhere else: the blob through the plane's centre stays centred on the other axis
    assert abs(_where(right["axial"].gray)[0] - 0.5) < 0.15 and abs(_where(superior["coronal"].gray)[1] - 0.5) < 0.15


@pytest.mark.parametrize("order, aspects", [("LPS", (3 / 2, 4 / 2, 4 / 3)), ("RAS", (3 / 2, 4 / 2, 4 / 3)),
                                            ("LIA", (4 / 2, 3 / 2, 3 / 4))])
def test_each_plane_has_its_millimetre_aspect(order, aspects):
    views = _views(_blob(_geometry(DIRECTIONS[order]), BLOBS_RAS["right"]))
    assert tuple(views[name].aspect for name in ("axial", "coronal", "sagittal")) == pytest.approx(aspects)


def test_a_dicom_series_and_its_ras_nifti_twin_look_the_same(tmp_path):
    """Round trip through real files: the series as DICOM (LPS voxel order) and as a RAS-ordered
    NIfTI, read back, give the same pictures and the same plane positions."""
    volume = _blob(_geometry(DIRECTIONS["LPS"]), BLOBS_RAS["right"])
    volume = Volume(volume.array * 1000.0, volume.geometry)
    write_dicom_series(volume, tmp_path / "dicom", modality="MR")
    dicom = read_dicom_series(tmp_path / "dicom").volume
    flipped = Volume(np.ascontiguousarray(volume.array[::-1, ::-1, :]), _ras_twin(volume.geometry))
    write_nifti(flipped, tmp_path / "twin.nii.gz")
    nifti = read_nifti(tmp_path / "twin.nii.gz")
    assert nifti.geometry.orientation == "RAS" and dicom.geometry.orientation == "LPS"
    a, b = _views(dicom), _views(nifti)
    for name in a:
        assert a[name].position == b[name].position
        assert np.allclose(a[name].gray, b[name].gray, atol=1.0)  # DICOM stores integers


def _ras_twin(geometry: ImageGeometry) -> ImageGeometry:
    """The same grid with its first two voxel axes reversed (an LPS grid becomes RAS)."""
    affine = geometry.affine_ras.copy()
    n = np.asarray(geometry.shape)
    affine[:3, 3] = geometry.voxel_to_world(np.array([n[0] - 1, n[1] - 1, 0], dtype=float))
    affine[:3, 0] *= -1
    affine[:3, 1] *= -1
    return ImageGeometry(geometry.shape, affine)


def test_the_figure_says_what_it_shows():
    volume = _blob(_geometry(DIRECTIONS["oblique"]), BLOBS_RAS["right"])
    mask = Volume((volume.array > 0.5).astype(np.float32), volume.geometry)
    figure = _draw_overlay(Figure, volume, volume, window=(0.0, 1.0), title="case 7", label="cam evidence for 'lesion'",
                           mask=mask, colormap="jet", opacity=0.45, at=None)
    texts = [t.get_text() for axis in figure.axes for t in axis.texts] + [t.get_text() for t in figure.texts]
    assert texts.count("R") == 2 and texts.count("A") == 2 and texts.count("S") == 2
    assert "cam evidence for 'lesion'" in texts
    titles = [axis.get_title() for axis in figure.axes[:3]]
    assert titles[0].startswith("axial, z = ") and titles[1].startswith("coronal, y = ") and titles[2].startswith("sagittal, x = ")
    # the j axis leans most: arccos(cos 20° cos 12°) = 23.2° from the patient axis it is shown along
    assert "grid 23° oblique, shown in its nearest planes" in figure.get_suptitle()
    assert sum(len(axis.collections) for axis in figure.axes[:3]) >= 3  # the mask's contour in every plane
