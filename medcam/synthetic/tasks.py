"""Synthetic lesion-detection tasks: the studies the bundled models are trained and tested on.

A task draws study ``i`` of a cohort from ``numpy.random.default_rng([seed, i])``, so any study
of any cohort can be regenerated alone, and cohorts with different seeds do not overlap. About
half the studies hold lesions; sizes and contrasts span small and faint to large and obvious.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from medcam.errors import ConfigError
from medcam.synthetic.phantoms import (
    SyntheticStudy,
    axial_geometry,
    chest_radiograph_scene,
    ct_abdomen_scene,
    make_study,
    radiograph_geometry,
)

__all__ = ["SyntheticTask", "TASKS", "get_task"]


@dataclass(frozen=True)
class SyntheticTask:
    """A named generator of labelled synthetic studies.

    ``radius_range`` (mm) and ``contrast_range`` (image units: HU for CT) bound the lesions.
    """

    name: str
    description: str
    spatial_dims: int
    radius_range: tuple[float, float]
    contrast_range: tuple[float, float]
    _draw: Callable[[SyntheticTask, np.random.Generator, int, int], SyntheticStudy]
    positive_fraction: float = 0.5

    def study(self, index: int, seed: int) -> SyntheticStudy:
        """Study ``index`` of the cohort drawn with ``seed``."""
        rng = np.random.default_rng([seed, index])
        n_lesions = 0
        if rng.uniform() < self.positive_fraction:
            n_lesions = 2 if rng.uniform() < 0.15 else 1
        return self._draw(self, rng, n_lesions, int(rng.integers(2**31)))

    def label(self, index: int, seed: int) -> int:
        """The class index of study ``index`` drawn with ``seed``: 1 with a lesion, 0 without."""
        return int(self.study(index, seed).has_lesion)

    def matched_pair(self, index: int, seed: int) -> tuple[SyntheticStudy, SyntheticStudy]:
        """Study ``index`` with 1-2 lesions, and the same patient and noise without them.

        The two differ only by the lesions, which makes training signal clean: a classifier
        cannot separate a pair by anatomy or noise, only by the lesion.
        """
        rng = np.random.default_rng([seed, index])
        n_lesions = 2 if rng.uniform() < 0.15 else 1
        noise_seed = int(rng.integers(2**31))
        positive = self._draw(self, rng, n_lesions, noise_seed)
        negative = make_study(replace(positive.scene, lesions=()), positive.volume.geometry, seed=noise_seed)
        return positive, negative


def _draw_ct(task: SyntheticTask, rng: np.random.Generator, n_lesions: int, noise_seed: int) -> SyntheticStudy:
    shift = rng.uniform([-15.0, -15.0, -10.0], [15.0, 15.0, 10.0])
    scene = ct_abdomen_scene(
        rng, n_lesions=n_lesions, center_ras=tuple(shift),
        radius_range=task.radius_range, contrast_range=task.contrast_range,
    )
    return make_study(scene, axial_geometry((96, 96, 40), (4.0, 4.0, 5.0)), seed=noise_seed)


def _draw_cr(task: SyntheticTask, rng: np.random.Generator, n_lesions: int, noise_seed: int) -> SyntheticStudy:
    geometry = radiograph_geometry((256, 256), 1.4)
    centre = geometry.center_ras + np.append(rng.uniform(-10.0, 10.0, size=2), 0.0)
    scene = chest_radiograph_scene(
        rng, n_lesions=n_lesions, center_ras=tuple(centre),
        radius_range=task.radius_range, contrast_range=task.contrast_range,
    )
    return make_study(scene, geometry, seed=noise_seed)


TASKS: dict[str, SyntheticTask] = {
    "ct3d": SyntheticTask(
        "ct3d", "CT abdomen, 96x96x40 at 4x4x5 mm; liver/spleen/kidney lesions of radius 5-16 mm, +-25-80 HU",
        3, (5.0, 16.0), (25.0, 80.0), _draw_ct,
    ),
    "cr2d": SyntheticTask(
        "cr2d", "chest radiograph, 256x256 at 1.4 mm; lung nodules of radius 5-14 mm, +120-400 units",
        2, (5.0, 14.0), (120.0, 400.0), _draw_cr,
    ),
}


def get_task(name: str) -> SyntheticTask:
    """The synthetic task named ``name`` (ct3d, cr2d); ConfigError for another name."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown synthetic task {name!r}; choose one of {sorted(TASKS)}") from None
