"""The demo: every bundled sample study that a bundled model can read, explained and written out,
with how far each map's peak lies from the lesion (``medcam demo`` prints it as a table).

The sample data (``sample_data/`` of the repository: studies, lesion masks, ``labels.csv`` and
the trained models, see its README) is not part of the installed package.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from medcam.errors import MedcamError
from medcam.explanation import Explanation, explain
from medcam.export.case import CaseOutputs
from medcam.metrics.localisation import peak_distance_mm

__all__ = ["DemoCase", "DEMO_FORMATS", "sample_data_root", "run_demo"]

#: What the demo writes for each study.
DEMO_FORMATS = ("nifti", "pm", "sc", "png")

#: The bundled model of each modality, under ``sample_data/models``.
_MODELS = {"CT": "ct3d.pt", "CR": "cr2d.pt"}


@dataclass(frozen=True)
class DemoCase:
    """One explained sample study: its labelled truth, the explanation, what was written where,
    and the distance from the map's peak to the nearest true lesion centre (None without a lesion)."""

    case_id: str
    truth: str
    explanation: Explanation
    outputs: CaseOutputs
    out_dir: Path
    distance_mm: float | None


def sample_data_root(path: str | Path | None = None) -> Path:
    """``path``, or the repository's ``sample_data`` folder: a folder with ``labels.csv``.

    Raises
    ------
    MedcamError
        No ``labels.csv`` there.
    """
    root = Path(path) if path is not None else Path(__file__).resolve().parents[1] / "sample_data"
    if not (root / "labels.csv").is_file():
        raise MedcamError(f"{root}: no bundled sample data (labels.csv) there; pass --data DIR")
    return root


def run_demo(out: str | Path, *, data: str | Path | None = None) -> Iterator[DemoCase]:
    """Explain (exact CAM, the class mapped by default) and write :data:`DEMO_FORMATS` for every
    study of ``labels.csv`` whose modality has a bundled model, into ``out/<case>/``, one after
    another (deterministic UIDs, replacing a previous demo's outputs); each is yielded when done.
    """
    from medcam.models import load_model
    from medcam.study import read_study

    root = sample_data_root(data)
    models = {modality: load_model(root / "models" / name) for modality, name in _MODELS.items()}
    with open(root / "labels.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["modality"] in models]  # the studies a bundled model reads
    for row in rows:
        study = read_study(root / row["path"], case_id=row["case"], mask=root / row["mask"] if row["mask"] else None)
        explanation = explain(models[row["modality"]], study, method="cam")
        case_out = Path(out) / row["case"]
        outputs = explanation.save(case_out, formats=DEMO_FORMATS, deterministic_uids=True, overwrite=True)
        centres = study.lesion_centres_ras
        distance = peak_distance_mm(explanation.heatmap, centres) if len(centres) else None
        yield DemoCase(row["case"], "lesion" if row["label"] == "1" else "none", explanation, outputs, case_out, distance)
