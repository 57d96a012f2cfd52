"""Seeded synthetic studies: CT-like abdomens, MR-like heads and radiograph-like chests with lesions.

A study is an analytic *scene* in patient coordinates (RAS mm): ellipsoids with intensities,
painted in order. It is rasterised at the voxel centres of any :class:`ImageGeometry`, so the
same anatomy and the same lesions can be drawn on an axial, oblique, tilted or 2D grid, and
the ground truth (lesion mask and lesion centres in millimetres) is exact whatever the grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medcam.geometry import ImageGeometry, Volume, affine_lps_to_ras, ras_to_lps

__all__ = [
    "Ellipsoid",
    "Lesion",
    "Scene",
    "SyntheticStudy",
    "ct_abdomen_scene",
    "mr_head_scene",
    "chest_radiograph_scene",
    "make_study",
    "axial_geometry",
    "radiograph_geometry",
]


def _rotation(angles_deg: tuple[float, float, float]) -> np.ndarray:
    """Rotation matrix from angles (degrees) about x, then y, then z."""
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True, eq=False)
class Ellipsoid:
    """A solid ellipsoid in RAS millimetres.

    ``value`` replaces what lies below (``additive=False``) or is added to it (``additive=True``,
    for projection-like radiographs). ``rotation`` holds the ellipsoid's axes as columns.
    """

    center_ras: np.ndarray
    radii_mm: np.ndarray
    value: float
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    additive: bool = False

    def contains(self, points_ras: np.ndarray) -> np.ndarray:
        """A boolean mask of the ``points`` (..., 3) in RAS mm that lie inside the ellipsoid."""
        local = (np.asarray(points_ras) - self.center_ras) @ (self.rotation / self.radii_mm)
        return np.einsum("...i,...i->...", local, local) <= 1.0

    def index_box(self, geometry: ImageGeometry) -> tuple[slice, slice, slice] | None:
        """Voxel index ranges of ``geometry`` that can hold points of the ellipsoid (None if none)."""
        half = np.sqrt((self.rotation**2) @ (self.radii_mm**2))  # world axis-aligned half extents
        signs = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1], indexing="ij")).reshape(3, -1).T
        corners = geometry.world_to_voxel(self.center_ras + signs * half)
        low = np.clip(np.floor(corners.min(axis=0)).astype(int), 0, None)
        high = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 1, geometry.shape)
        if np.any(high <= low):
            return None
        return tuple(slice(int(a), int(b)) for a, b in zip(low, high))  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class Lesion:
    """Ground truth of one lesion: centre (RAS mm), semi-axes (mm), contrast and host organ."""

    center_ras: np.ndarray
    radii_mm: np.ndarray
    contrast: float
    host: str

    @property
    def center_lps(self) -> np.ndarray:
        """Centre in DICOM patient coordinates (LPS mm)."""
        return ras_to_lps(self.center_ras)


@dataclass(frozen=True, eq=False)
class Scene:
    """Anatomy and lesions of one synthetic patient, in RAS millimetres."""

    modality: str
    background: float
    shapes: tuple[Ellipsoid, ...]
    lesions: tuple[Lesion, ...]
    noise_sigma: float
    blur_mm: float
    rician: bool = False

    def rasterize(self, geometry: ImageGeometry, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Intensities (float32) and lesion mask (uint8) at every voxel centre of ``geometry``."""
        from scipy.ndimage import gaussian_filter

        ijk = np.stack(np.meshgrid(*[np.arange(n) for n in geometry.shape], indexing="ij"), axis=-1)
        points = geometry.voxel_to_world(ijk.astype(float))  # (I, J, K, 3) voxel centres, RAS mm
        image = np.full(geometry.shape, self.background, dtype=np.float64)
        mask = np.zeros(geometry.shape, dtype=np.uint8)
        lesion_shapes = [Ellipsoid(les.center_ras, les.radii_mm, les.contrast, additive=True) for les in self.lesions]
        for shape in (*self.shapes, *lesion_shapes):
            box = shape.index_box(geometry)
            if box is None:
                continue
            inside = shape.contains(points[box])
            region = image[box]  # a view: writes land in image
            region[inside] = region[inside] + shape.value if shape.additive else shape.value
            if any(shape is lesion for lesion in lesion_shapes):
                mask[box][inside] = 1
        sigma = [self.blur_mm / s if n > 1 else 0.0 for s, n in zip(geometry.spacing, geometry.shape)]
        image = gaussian_filter(image, sigma=sigma, mode="nearest")
        if self.rician:
            real = image + rng.normal(0.0, self.noise_sigma, image.shape)
            imag = rng.normal(0.0, self.noise_sigma, image.shape)
            image = np.hypot(real, imag)
        else:
            image = image + rng.normal(0.0, self.noise_sigma, image.shape)
        return image.astype(np.float32), mask


@dataclass(frozen=True, eq=False)
class SyntheticStudy:
    """A rasterised scene: the image, its lesion mask and the lesions' ground truth."""

    volume: Volume
    mask: Volume
    scene: Scene

    @property
    def lesions(self) -> tuple[Lesion, ...]:
        """The lesion ellipsoids of the scene (none for a normal study)."""
        return self.scene.lesions

    @property
    def modality(self) -> str:
        """The DICOM Modality the study stands for (CT, CR...)."""
        return self.scene.modality

    def to_study(self, case_id: str):
        """This study as a :class:`medcam.Study` with its mask and its lesions' true centres."""
        from medcam.study import Study

        centres = np.array([lesion.center_ras for lesion in self.lesions]).reshape(-1, 3)
        return Study.from_volume(self.volume, case_id=case_id, mask=self.mask, lesion_centres_ras=centres)

    @property
    def has_lesion(self) -> bool:
        """Whether any lesion lies in the study."""
        return bool(self.mask.array.any())


def _e(center, radii, value, *, angles=(0.0, 0.0, 0.0), additive=False) -> Ellipsoid:
    return Ellipsoid(np.asarray(center, float), np.asarray(radii, float), float(value), _rotation(angles), additive)


def _place_lesions(
    rng: np.random.Generator,
    hosts: dict[str, Ellipsoid],
    n_lesions: int,
    radius_range: tuple[float, float],
    contrast_range: tuple[float, float],
    *,
    flat: bool = False,
) -> tuple[Lesion, ...]:
    lesions = []
    names = sorted(hosts)
    for _ in range(n_lesions):
        name = names[rng.integers(len(names))]
        host = hosts[name]
        radius = rng.uniform(*radius_range)
        radii = radius * rng.uniform(0.8, 1.2, size=3)
        if flat:
            radii[2] = 1e4
        # uniform point in the host, kept away from its border by the lesion radius
        extent = radii[:2].max() if flat else radii.max()
        room = np.maximum(host.radii_mm - extent - 2.0, 0.0)
        if flat:
            room[2] = 0.0
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        offset = direction * rng.uniform(0, 1) ** (1 / 3) * room
        center = host.center_ras + host.rotation @ offset
        magnitude = rng.uniform(*contrast_range)
        sign = 1.0 if rng.uniform() < 0.5 else -1.0
        lesions.append(Lesion(center, radii, sign * magnitude, name))
    return tuple(lesions)


def ct_abdomen_scene(
    rng: np.random.Generator,
    *,
    n_lesions: int = 1,
    center_ras: tuple[float, float, float] = (0.0, 0.0, 0.0),
    radius_range: tuple[float, float] = (5.0, 18.0),
    contrast_range: tuple[float, float] = (25.0, 80.0),
) -> Scene:
    """An abdomen in Hounsfield units: fat, muscle wall, liver, spleen, kidneys, aorta, spine.

    Lesions sit in the liver, spleen or kidneys, hypo- or hyper-dense by ``contrast_range`` HU.
    Anatomy sizes are jittered per patient.
    """
    c = np.asarray(center_ras, float)
    j = lambda: rng.uniform(0.92, 1.08)  # noqa: E731 - per-organ size jitter
    body = _e(c, (165 * j(), 120 * j(), 1e4), -90)  # subcutaneous fat
    muscle = _e(c + (0, -5, 0), (150 * j(), 105 * j(), 1e4), 45)
    cavity = _e(c + (0, 5, 0), (135 * j(), 88 * j(), 1e4), 5)  # fatty/fluid cavity
    liver = _e(c + (60, 15, 10), (65 * j(), 55 * j(), 70 * j()), 62, angles=(0, 0, 15))
    spleen = _e(c + (-75, -25, 20), (30 * j(), 45 * j(), 50 * j()), 50, angles=(0, 0, -20))
    kidney_r = _e(c + (50, -45, -30), (22 * j(), 30 * j(), 45 * j()), 32, angles=(0, 0, 25))
    kidney_l = _e(c + (-55, -45, -25), (22 * j(), 30 * j(), 45 * j()), 32, angles=(0, 0, -25))
    aorta = _e(c + (-8, -40, 0), (10, 10, 1e4), 160)
    spine = _e(c + (0, -70, 0), (18, 16, 1e4), 650)
    canal = _e(c + (0, -78, 0), (7, 7, 1e4), 20)
    shapes = (body, muscle, cavity, liver, spleen, kidney_r, kidney_l, aorta, spine, canal)
    hosts = {"liver": liver, "spleen": spleen, "kidney_right": kidney_r, "kidney_left": kidney_l}
    lesions = _place_lesions(rng, hosts, n_lesions, radius_range, contrast_range)
    return Scene("CT", -1000.0, shapes, lesions, noise_sigma=12.0, blur_mm=1.0)


def mr_head_scene(
    rng: np.random.Generator,
    *,
    n_lesions: int = 1,
    center_ras: tuple[float, float, float] = (0.0, 0.0, 0.0),
    radius_range: tuple[float, float] = (4.0, 14.0),
    contrast_range: tuple[float, float] = (120.0, 300.0),
) -> Scene:
    """A T1-weighted-like head: scalp fat, skull, grey and white matter, ventricles.

    Intensities are arbitrary scanner units; noise is Rician. Lesions sit in the white matter.
    """
    c = np.asarray(center_ras, float)
    j = lambda: rng.uniform(0.94, 1.06)  # noqa: E731
    scalp = _e(c, (78 * j(), 98 * j(), 88 * j()), 900)
    skull = _e(c, (73, 93, 83), 80)
    csf = _e(c, (68, 88, 78), 150)
    grey = _e(c, (65, 85, 75), 520)
    white = _e(c + (0, 0, 5), (52 * j(), 70 * j(), 58 * j()), 720)
    vent_r = _e(c + (10, 5, 10), (6, 25, 10), 150, angles=(0, 0, 10))
    vent_l = _e(c + (-10, 5, 10), (6, 25, 10), 150, angles=(0, 0, -10))
    shapes = (scalp, skull, csf, grey, white, vent_r, vent_l)
    hosts = {"white_matter": white}
    lesions = _place_lesions(rng, hosts, n_lesions, radius_range, contrast_range)
    return Scene("MR", 0.0, shapes, lesions, noise_sigma=25.0, blur_mm=1.0, rician=True)


def chest_radiograph_scene(
    rng: np.random.Generator,
    *,
    n_lesions: int = 1,
    center_ras: tuple[float, float, float] = (0.0, 0.0, 0.0),
    radius_range: tuple[float, float] = (5.0, 15.0),
    contrast_range: tuple[float, float] = (120.0, 400.0),
) -> Scene:
    """A PA chest radiograph as summed attenuation in a plane: thorax, lungs, heart, spine, ribs.

    Shapes are cylinders along z (the beam) drawn additively, so the image is projection-like;
    RAS +y is the patient's head. Nodules sit in the lungs and always add attenuation.
    Draw it on :func:`radiograph_geometry`, the grid a reader gives a radiograph.
    """
    c = np.asarray(center_ras, float)
    j = lambda: rng.uniform(0.94, 1.06)  # noqa: E731
    lungs = {
        "lung_right": _e(c + (70, 15, 0), (58 * j(), 115 * j(), 1e4), -900, additive=True),  # RAS +x: right
        "lung_left": _e(c + (-70, 15, 0), (55 * j(), 110 * j(), 1e4), -900, additive=True),
    }
    shapes = [
        _e(c, (160 * j(), 190 * j(), 1e4), 1400, additive=True),  # thorax soft tissue
        *lungs.values(),
        _e(c + (-20, -55, 0), (55 * j(), 45 * j(), 1e4), 700, additive=True, angles=(0, 0, 20)),  # heart
        _e(c, (14, 190, 1e4), 500, additive=True),  # spine
    ]
    for side in (1.0, -1.0):
        for level in range(6):
            y = 95 - 32 * level
            shapes.append(_e(c + (side * 65, y, 0), (75, 5, 1e4), 180, additive=True, angles=(0, 0, side * 18)))
    lesions = _place_lesions(rng, lungs, n_lesions, radius_range, contrast_range, flat=True)
    lesions = tuple(Lesion(les.center_ras, les.radii_mm, abs(les.contrast), les.host) for les in lesions)
    return Scene("CR", 200.0, tuple(shapes), lesions, noise_sigma=30.0, blur_mm=1.0)


def radiograph_geometry(shape: tuple[int, int], pixel_spacing_mm: float) -> ImageGeometry:
    """The grid :func:`medcam.io.read_dicom_series` gives a radiograph without patient position.

    Pixel (0, 0) at the origin, rows along LPS +x (patient's left), columns along LPS +y; one
    slice 1 mm thick. Scenes drawn on it have ground truth in the same frame as the read image.
    """
    affine_lps = np.diag([pixel_spacing_mm, pixel_spacing_mm, 1.0, 1.0])
    return ImageGeometry((shape[0], shape[1], 1), affine_lps_to_ras(affine_lps))


def axial_geometry(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    *,
    center_ras: tuple[float, float, float] = (0.0, 0.0, 0.0),
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0),
    tilt_deg: float = 0.0,
) -> ImageGeometry:
    """An LPS-oriented grid (i to patient Left, j to Posterior, k Superior) centred on ``center_ras``.

    ``rotation_deg`` turns the whole grid (an oblique acquisition). ``tilt_deg`` tilts the image
    planes about the x axis while the slices keep advancing along z, as a CT with gantry tilt
    does: the resulting grid is sheared.
    """
    t = np.radians(tilt_deg)
    col_dir_lps = np.array([0.0, np.cos(t), -np.sin(t)])
    axes_lps = np.column_stack([[1.0, 0.0, 0.0], col_dir_lps, [0.0, 0.0, 1.0]])
    rot_lps = _rotation(rotation_deg)
    affine_lps = np.eye(4)
    affine_lps[:3, :3] = rot_lps @ axes_lps @ np.diag(spacing)
    center_lps = ras_to_lps(np.asarray(center_ras, float))
    half = (np.asarray(shape, float) - 1.0) / 2.0
    affine_lps[:3, 3] = center_lps - affine_lps[:3, :3] @ half
    return ImageGeometry(shape, affine_lps_to_ras(affine_lps))


def make_study(scene: Scene, geometry: ImageGeometry, *, seed: int) -> SyntheticStudy:
    """Rasterise ``scene`` on ``geometry`` with seeded noise."""
    image, mask = scene.rasterize(geometry, np.random.default_rng(seed))
    return SyntheticStudy(Volume(image, geometry), Volume(mask, geometry), scene)
