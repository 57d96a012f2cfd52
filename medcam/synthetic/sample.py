"""Regenerate the bundled sample studies deterministically: ``python -m medcam.synthetic.sample OUT_DIR``.

Studies (every UID, every voxel is a function of the fixed seeds below):

* ``ct_lesion_dicom/``   CT abdomen, axial, one lesion (DICOM CT Image Storage series)
* ``mr_oblique_dicom/``  MR head, oblique acquisition, one lesion (DICOM MR Image Storage series)
* ``ct_lesion.nii.gz``   CT abdomen of another patient, one lesion (NIfTI)
* ``ct_normal.nii.gz``   CT abdomen without lesion (NIfTI)
* ``cr_chest.dcm``       chest radiograph, one nodule (DICOM CR Image Storage)

Each lesion-bearing study has a ``*_mask.nii.gz`` ground-truth mask on its own voxel grid, and
``labels.csv`` lists label, mask and lesion centres (LPS mm) per study.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcam.io.nifti import write_nifti
from medcam.synthetic.dicom_writer import StudyInfo, write_dicom_image, write_dicom_series
from medcam.synthetic.phantoms import (
    SyntheticStudy,
    axial_geometry,
    chest_radiograph_scene,
    ct_abdomen_scene,
    make_study,
    mr_head_scene,
    radiograph_geometry,
)

__all__ = ["SAMPLE_STUDIES", "make_sample_data"]


@dataclass(frozen=True)
class SampleStudy:
    name: str
    path: str
    build: Callable[[], SyntheticStudy]
    write: Callable[[SyntheticStudy, Path, StudyInfo], object]
    patient_id: str


def _ct(seed: int, n_lesions: int) -> SyntheticStudy:
    scene = ct_abdomen_scene(np.random.default_rng(seed), n_lesions=n_lesions, radius_range=(10.0, 16.0))
    return make_study(scene, axial_geometry((96, 96, 40), (4.0, 4.0, 5.0), center_ras=(0, 0, 0)), seed=seed)


def _mr_oblique(seed: int) -> SyntheticStudy:
    scene = mr_head_scene(np.random.default_rng(seed), n_lesions=1, radius_range=(7.0, 10.0))
    geometry = axial_geometry((64, 64, 36), (3.5, 3.5, 4.0), rotation_deg=(15.0, 0.0, 10.0))
    return make_study(scene, geometry, seed=seed)


def _cr(seed: int) -> SyntheticStudy:
    geometry = radiograph_geometry((256, 256), 1.4)
    scene = chest_radiograph_scene(
        np.random.default_rng(seed), n_lesions=1, center_ras=tuple(geometry.center_ras), radius_range=(9.0, 13.0)
    )
    return make_study(scene, geometry, seed=seed)


SAMPLE_STUDIES: tuple[SampleStudy, ...] = (
    SampleStudy(
        "ct_lesion_dicom", "ct_lesion_dicom", lambda: _ct(1001, 1),
        lambda s, p, info: write_dicom_series(s.volume, p, modality="CT", study=info, series_description="CT abdomen"),
        "SYN1001",
    ),
    SampleStudy(
        "mr_oblique_dicom", "mr_oblique_dicom", lambda: _mr_oblique(1002),
        lambda s, p, info: write_dicom_series(
            s.volume, p, modality="MR", study=info, series_description="MR head oblique", body_part="HEAD"
        ),
        "SYN1002",
    ),
    SampleStudy("ct_lesion_nifti", "ct_lesion.nii.gz", lambda: _ct(1003, 1), lambda s, p, info: write_nifti(s.volume, p, dtype=np.int16), "SYN1003"),
    SampleStudy("ct_normal_nifti", "ct_normal.nii.gz", lambda: _ct(1004, 0), lambda s, p, info: write_nifti(s.volume, p, dtype=np.int16), "SYN1004"),
    SampleStudy(
        "cr_chest", "cr_chest.dcm", lambda: _cr(1005),
        lambda s, p, info: write_dicom_image(s.volume, p, study=info, series_description="Chest PA"),
        "SYN1005",
    ),
)


def _mask_name(path: str) -> str:
    stem = path.removesuffix(".nii.gz").removesuffix(".dcm")
    return f"{stem}_mask.nii.gz"


def make_sample_data(out_dir: str | Path) -> list[dict[str, str]]:
    """Write every sample study, its mask and ``labels.csv`` under ``out_dir``; return the rows."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for sample in SAMPLE_STUDIES:
        study = sample.build()
        info = StudyInfo(
            patient_name=f"Synthetic^{sample.patient_id}", patient_id=sample.patient_id,
            accession_number=f"ACC{sample.patient_id[3:]}", uid_seed=f"medcam-sample-{sample.name}",
        )
        sample.write(study, out_dir / sample.path, info)
        mask_path = ""
        if study.has_lesion:
            mask_path = _mask_name(sample.path)
            write_nifti(study.mask, out_dir / mask_path, dtype=np.uint8)
        centres = ";".join(" ".join(f"{v:.2f}" for v in lesion.center_lps) for lesion in study.lesions)
        rows.append(
            {
                "case": sample.name, "path": sample.path, "modality": study.modality,
                "label": str(int(study.has_lesion)), "mask": mask_path, "lesion_centers_lps_mm": centres,
            }
        )
    with open(out_dir / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Regenerate medcam's bundled sample studies.")
    parser.add_argument("out_dir", nargs="?", default="sample_data")
    args = parser.parse_args(argv)
    for row in make_sample_data(args.out_dir):
        print(f"{row['case']:18s} {row['path']:20s} label={row['label']} lesions(LPS mm)={row['lesion_centers_lps_mm']}")


if __name__ == "__main__":
    main()
