"""A brain MR cohort from real anatomy: nilearn's MNI152 T1 template (shipped inside the nilearn
package, loaded without a download), acquired as real scanners do.

Each case is the template head under a random rigid pose, sampled on a scanner grid of random
orientation (axial, coronal or sagittal slices, any axis order and direction), 1-2 mm pixels and
3-5 mm slices, with a random intensity scale, a smooth multiplicative bias field and Rician
noise. Half the cases (by default) carry one or two lesions, 6-20 mm across, hyper- or
hypo-intense, inside the brain; their mask is exact on the scanner grid (or, on request, on a
grid of its own). Not medcam's phantom generator: the anatomy, its contrast and its shape are
a real brain's.

>>> case = brain_mr_case(0, seed=1)                 # doctest: +SKIP
>>> case.volume, case.mask, case.label, case.lesions
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from itertools import permutations
from pathlib import Path

import numpy as np

from medcam.errors import ConfigError, MedcamError
from medcam.geometry import ImageGeometry, Volume

__all__ = ["AnatomyLesion", "AnatomyCase", "brain_mr_case", "template"]


@dataclass(frozen=True)
class AnatomyLesion:
    """A spherical lesion of a synthetic brain MR case: centre (RAS mm), radius (mm) and contrast."""
    center_ras: np.ndarray
    radius_mm: float
    contrast: float  # relative: +0.5 brightens the tissue by half, -0.4 darkens it

    @property
    def diameter_mm(self) -> float:
        """Twice the radius, in mm."""
        return 2 * self.radius_mm


@dataclass(frozen=True, eq=False)
class AnatomyCase:
    """One study of the cohort: image and mask on the scanner grid, label, lesions, acquisition."""

    volume: Volume
    mask: Volume
    lesions: tuple[AnatomyLesion, ...]
    acquisition: dict = field(default_factory=dict)

    @property
    def label(self) -> int:
        """1 when the case holds a lesion, else 0."""
        return int(bool(self.lesions))

    def to_study(self, case_id: str):
        """This case as a :class:`medcam.Study` with its mask and its lesions' true centres."""
        from medcam.study import Study

        centres = np.array([lesion.center_ras for lesion in self.lesions]).reshape(-1, 3)
        return Study.from_volume(self.volume, case_id=case_id, mask=self.mask, lesion_centres_ras=centres)


@lru_cache(maxsize=2)
def template(resolution: int = 1) -> tuple[Volume, Volume]:
    """The MNI152 T1 template (head) and its brain mask, as Volumes in RAS mm."""
    try:
        from nilearn.datasets import load_mni152_brain_mask, load_mni152_template
    except ImportError as exc:
        raise MedcamError("the brain MR cohort needs nilearn (pip install -e '.[test]' or pip install nilearn)") from exc
    head = load_mni152_template(resolution=resolution)
    brain = load_mni152_brain_mask(resolution=resolution)
    image = np.asarray(head.get_fdata(), dtype=np.float32)
    mask = np.asarray(brain.get_fdata(), dtype=np.float32)
    return (Volume(image, ImageGeometry(image.shape, np.asarray(head.affine, float))),
            Volume(mask, ImageGeometry(mask.shape, np.asarray(brain.affine, float))))


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """A random rotation of at most ``max_deg`` about each axis."""
    ax, ay, az = np.radians(rng.uniform(-max_deg, max_deg, 3))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


_AXIS_ORDERS = list(permutations(range(3)))


def _scanner_grid(rng: np.random.Generator, head_center: np.ndarray) -> tuple[ImageGeometry, dict]:
    """A grid covering a 200 x 230 x 200 mm box around the head, of random plane, axis order and
    direction, slightly oblique, 1-2 mm pixels and 3-5 mm slices."""
    order = _AXIS_ORDERS[int(rng.integers(len(_AXIS_ORDERS)))]
    signs = rng.choice([-1.0, 1.0], 3)
    axes = np.eye(3)[:, list(order)] * signs  # voxel axis -> world direction (a permuted, flipped RAS)
    axes = _rotation(rng, 12.0) @ axes
    pixel = rng.uniform(1.0, 2.0)
    spacing = np.array([pixel, pixel * rng.uniform(0.9, 1.1), rng.uniform(3.0, 5.0)])
    extent_world = np.array([200.0, 230.0, 200.0])
    extent = np.abs(axes.T) @ extent_world  # the box's extent along each voxel axis
    shape = np.maximum(np.ceil(extent / spacing).astype(int), 8)
    affine = np.eye(4)
    affine[:3, :3] = axes * spacing
    affine[:3, 3] = head_center + rng.uniform(-8, 8, 3) - affine[:3, :3] @ ((shape - 1) / 2.0)
    acquisition = {"axis_order": list(order), "signs": signs.tolist(), "spacing_mm": spacing.round(3).tolist(),
                   "shape": shape.tolist()}
    return ImageGeometry((int(shape[0]), int(shape[1]), int(shape[2])), affine), acquisition


def _sample(volume: Volume, world_to_template: np.ndarray, points_ras: np.ndarray, order: int = 1) -> np.ndarray:
    from scipy.ndimage import map_coordinates

    to_index = np.linalg.inv(volume.geometry.affine_ras) @ world_to_template  # world -> template voxel
    ijk = points_ras @ to_index[:3, :3].T + to_index[:3, 3]
    return map_coordinates(np.asarray(volume.array), ijk.reshape(-1, 3).T, order=order, mode="constant", cval=0.0).reshape(points_ras.shape[:-1])


def _bias_field(rng: np.random.Generator, points_ras: np.ndarray, center: np.ndarray, strength: float) -> np.ndarray:
    """A smooth multiplicative field: exp of a random quadratic polynomial over the head, +-strength."""
    x = (points_ras - center) / 100.0
    coefficients = rng.normal(0, 1, 9)
    terms = np.stack([x[..., 0], x[..., 1], x[..., 2], x[..., 0] ** 2, x[..., 1] ** 2, x[..., 2] ** 2,
                      x[..., 0] * x[..., 1], x[..., 1] * x[..., 2], x[..., 0] * x[..., 2]], axis=-1)
    field_ = terms @ coefficients
    field_ = field_ / max(float(np.abs(field_).max()), 1e-6)
    return np.exp(strength * field_).astype(np.float32)


def brain_mr_case(
    index: int,
    seed: int,
    *,
    positive_fraction: float = 0.5,
    diameter_range: tuple[float, float] = (6.0, 20.0),
    contrast_range: tuple[float, float] = (0.35, 0.8),
    resolution: int = 1,
    mask_grid: str = "scanner",
) -> AnatomyCase:
    """Case ``index`` of the cohort drawn with ``seed`` (the same pair gives the same case).

    ``mask_grid`` "scanner" puts the mask on the image's grid; "template" on a 1.5 mm grid of the
    template's own orientation (a mask from another tool, on another grid).
    """
    rng = np.random.default_rng([seed, index, 20261202])
    head, brain = template(resolution)
    # the subject: the template moved by a random rigid transform (subject world <- template world)
    rotation = _rotation(rng, 15.0)
    head_center = head.geometry.center_ras
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = head_center + rng.uniform(-10, 10, 3) - rotation @ head_center
    world_to_template = np.linalg.inv(pose)
    geometry, acquisition = _scanner_grid(rng, pose[:3, :3] @ head_center + pose[:3, 3])
    ijk = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in geometry.shape], indexing="ij"), axis=-1)
    points = ijk @ geometry.affine_ras[:3, :3].T.astype(np.float32) + geometry.affine_ras[:3, 3].astype(np.float32)
    image = _sample(head, world_to_template, points)
    inside_brain = _sample(brain, world_to_template, points) > 0.5

    lesions: list[AnatomyLesion] = []
    if rng.uniform() < positive_fraction:
        brain_points = np.argwhere(np.asarray(brain.array) > 0.5)
        for _ in range(2 if rng.uniform() < 0.2 else 1):
            for _attempt in range(50):  # a centre deep enough in the brain that the lesion stays inside
                voxel = brain_points[int(rng.integers(len(brain_points)))]
                centre_template = brain.geometry.voxel_to_world(voxel.astype(float))
                radius = rng.uniform(*diameter_range) / 2
                offsets = np.array(np.meshgrid(*[[-radius, radius]] * 3, indexing="ij")).reshape(3, -1).T * 0.7
                corners = brain.geometry.world_to_voxel(centre_template + offsets)
                idx = np.clip(np.rint(corners).astype(int), 0, np.array(brain.shape) - 1)
                if np.all(np.asarray(brain.array)[tuple(idx.T)] > 0.5):
                    break
            contrast = float(rng.uniform(*contrast_range)) * (1 if rng.uniform() < 0.5 else -1)
            lesions.append(AnatomyLesion(pose[:3, :3] @ centre_template + pose[:3, 3], float(radius), contrast))
    mask = np.zeros(geometry.shape, dtype=np.float32)
    for lesion in lesions:
        distance = np.linalg.norm(points - lesion.center_ras.astype(np.float32), axis=-1)
        profile = 1.0 / (1.0 + np.exp(np.minimum((distance - lesion.radius_mm) / 0.7, 50.0)))  # a soft 1-2 mm edge
        image = image * (1.0 + lesion.contrast * profile * inside_brain)
        mask = np.maximum(mask, (distance <= lesion.radius_mm).astype(np.float32))

    tissue = float(np.percentile(image[image > 0.2 * image.max()], 75)) if image.max() > 0 else 1.0
    image = image / tissue * rng.uniform(300.0, 1500.0)  # scanner units
    image = image * _bias_field(rng, points, head_center, strength=float(rng.uniform(0.1, 0.3)))
    sigma = float(rng.uniform(0.02, 0.05)) * float(np.percentile(image, 99))
    image = np.hypot(image + rng.normal(0, sigma, image.shape), rng.normal(0, sigma, image.shape)).astype(np.float32)
    acquisition.update(noise_sigma=round(sigma, 3), lesion_count=len(lesions), pose=pose.tolist())
    mask_volume = Volume(mask, geometry)
    if mask_grid == "template" and lesions:
        mask_volume = _mask_on_template_grid(lesions)
    elif mask_grid not in ("scanner", "template"):
        raise ConfigError(f"mask_grid must be 'scanner' or 'template', found {mask_grid!r}")
    return AnatomyCase(Volume(image, geometry), mask_volume, tuple(lesions), acquisition)


def _mask_on_template_grid(lesions: list[AnatomyLesion]) -> Volume:
    """The lesions' mask on a 1.5 mm RAS grid around them (another grid than the image's)."""
    centres = np.array([lesion.center_ras for lesion in lesions])
    reach = max(lesion.radius_mm for lesion in lesions) + 6.0
    low, high = centres.min(axis=0) - reach, centres.max(axis=0) + reach
    shape = tuple(int(n) for n in np.ceil((high - low) / 1.5) + 1)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = low
    geometry = ImageGeometry((int(shape[0]), int(shape[1]), int(shape[2])), affine)
    ijk = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij"), axis=-1)
    points = geometry.voxel_to_world(ijk)
    mask = np.zeros(shape, dtype=np.float32)
    for lesion in lesions:
        mask = np.maximum(mask, (np.linalg.norm(points - lesion.center_ras, axis=-1) <= lesion.radius_mm).astype(np.float32))
    return Volume(mask, geometry)


def write_brain_mr_cohort(folder: str | Path, n: int, seed: int) -> tuple[Path, Path]:
    """``n`` cases of :func:`brain_mr_case` as NIfTI files in ``folder``, with two manifests that
    ``medcam train``, cohort ``medcam explain`` and ``medcam evaluate`` read as they are:
    ``with_masks.csv`` (image, label, mask) and ``labels_only.csv`` (image, label). A quarter of
    the masks lie on the template's grid rather than the scanner's, as masks drawn elsewhere do."""
    import csv

    from medcam.io import write_nifti

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(n):
        case = brain_mr_case(index, seed, mask_grid="template" if index % 4 == 3 else "scanner")
        image = write_nifti(case.volume, folder / f"case{index:04d}.nii.gz")
        mask = write_nifti(case.mask, folder / f"case{index:04d}_mask.nii.gz").name if case.label else ""
        rows.append({"image": image.name, "label": case.label, "mask": mask})
    manifests = folder / "with_masks.csv", folder / "labels_only.csv"
    for manifest, columns in zip(manifests, (["image", "label", "mask"], ["image", "label"])):
        with open(manifest, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    return manifests
