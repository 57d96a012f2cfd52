"""Explain one study: preprocess, predict, compute a CAM, and put it back on the scanner grid.

The one path every user of medcam takes (the CLI, the cohort runner, the evaluation, the notebook)::

    model = load_model("sample_data/models/ct3d.pt")        # or a MONAI Bundle, or from_module(...)
    explanation = explain(model, read_study("study/"), method="gradcam")
    explanation.heatmap                                     # raw map on the source's own voxel grid
    explanation.save("out/", formats=("nifti", "pm", "sc"))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from medcam.backproject import to_source_grid
from medcam.cam import CamMethod, CamResult, create_extractor
from medcam.errors import GeometryError, InputTypeError
from medcam.geometry import Volume, ras_to_lps
from medcam.io.dicom import DicomSeries
from medcam.models.explainable import ExplainableModel, from_checkpoint
from medcam.study import Study, read_study

if TYPE_CHECKING:
    from monai.data import MetaTensor

    from medcam.models.checkpoint import Checkpoint

__all__ = ["Explanation", "explain", "as_model", "as_study"]


@dataclass(frozen=True, eq=False)
class Explanation:
    """The prediction and map of one study; ``heatmap`` lies on the source's own voxel grid.

    Attributes
    ----------
    study : Study
        What was explained (its volume, DICOM headers and mask).
    model : ExplainableModel
        Who explained it (``model.provenance``: format, name, file and SHA-256).
    model_input : MetaTensor ``(C, *model spatial)``
        The preprocessed input, with its model-grid affine.
    result : CamResult
        Batch of one, on the model grid.
    heatmap : Volume
        The raw map on the study's grid (not normalised: higher = more evidence for the target).
    predicted : int or None
        The class the model predicts, where it is known: always for a two-class model, and when
        the predicted class was the one explained.
    """

    study: Study
    model: ExplainableModel
    model_input: MetaTensor
    result: CamResult
    heatmap: Volume
    predicted: int | None = None

    @property
    def source(self) -> Volume:
        """The study's image on the scanner's own grid (the grid of ``heatmap``)."""
        return self.study.volume

    @property
    def class_names(self) -> tuple[str, ...]:
        """The model's class names, in output order."""
        return self.model.class_names

    @property
    def method(self) -> str:
        """The CAM method that made the map (``cam``, ``gradcam``...)."""
        return self.result.method

    @property
    def layer(self) -> str:
        """The name of the layer whose activations the map weighs."""
        return self.result.layer

    @property
    def target(self) -> int:
        """The index of the class the map explains."""
        return int(self.result.target[0])

    @property
    def target_name(self) -> str:
        """The name of the class the map explains."""
        return self.model.class_name(self.target)

    @property
    def predicted_name(self) -> str | None:
        """The name of the predicted class, or None when the prediction was not computed."""
        return self.model.class_name(self.predicted) if self.predicted is not None else None

    @property
    def display_window(self) -> tuple[float, float]:
        """The gray-scale range figures show the source in: the DICOM window, else the model's
        intensity window, else the modality's usual one, else percentiles 1..99."""
        from medcam.export.overlay import source_window

        series = self.study.series
        modality = self.study.modality or (self.model.modalities[0] if len(self.model.modalities) == 1 else None)
        return source_window(series.datasets if series is not None else (), self.source.array,
                             model_window=self.model.intensity_window, modality=modality)

    @property
    def probability(self) -> float:
        """The model's probability of the explained class."""
        return float(self.result.probability[0])

    @property
    def score(self) -> float:
        """The model's logit of the explained class."""
        return float(self.result.score[0])

    @property
    def peak_index(self) -> tuple[int, int, int]:
        """Source voxel ``(i, j, k)`` of the map's maximum."""
        return tuple(int(v) for v in np.unravel_index(int(np.argmax(self.heatmap.array)), self.heatmap.shape))  # type: ignore[return-value]

    @property
    def peak_ras(self) -> np.ndarray:
        """RAS millimetres of the map's maximum."""
        return self.heatmap.geometry.voxel_to_world(np.asarray(self.peak_index, dtype=float))

    @property
    def peak_lps(self) -> np.ndarray:
        """Where the map peaks, in DICOM patient coordinates (mm)."""
        return ras_to_lps(self.peak_ras)

    def save(self, out_dir: str | Path, *, formats: Sequence[str] | None = None, threshold: float | str | None = None,
             deterministic_uids: bool = False, overwrite: bool = False, name: str | None = None, executor=None):
        """Write the outputs into ``out_dir`` (see :func:`medcam.export.case.write_case_outputs`).

        ``formats`` from "nifti" (.nii.gz), "nii", "pm", "sc", "seg" (needs ``threshold``: raw map
        units, a share of the maximum "50%" or a percentile "p99") and "png"; DICOM outputs need a DICOM study. Files are named after the method
        (``gradcam.nii.gz``...) unless ``name``. With an ``executor`` (a thread pool, say) the
        writers run on it side by side. Returns the paths written per format and notes.
        """
        from medcam.export.case import DEFAULT_FORMATS, write_case_outputs

        return write_case_outputs(
            self, out_dir, formats=DEFAULT_FORMATS if formats is None else tuple(formats), threshold=threshold,
            deterministic_uids=deterministic_uids, overwrite=overwrite, name=name or output_name(self.method),
            executor=executor,
        )


def output_name(method: str) -> str:
    """The file stem of a method's outputs: ``gradcam++`` -> ``gradcampp``."""
    return method.replace("+", "p")


def as_model(model: ExplainableModel | Checkpoint | str | Path) -> ExplainableModel:
    """An :class:`ExplainableModel` of a model, a medcam Checkpoint, or a path (:func:`load_model`)."""
    if isinstance(model, ExplainableModel):
        return model
    if isinstance(model, (str, Path)):
        from medcam.models.explainable import load_model

        return load_model(model)
    from medcam.models.checkpoint import Checkpoint

    if isinstance(model, Checkpoint):
        return from_checkpoint(model)
    raise InputTypeError(
        f"explain() takes an ExplainableModel (medcam.load_model, medcam.from_module), a Checkpoint or a path, "
        f"found {type(model).__name__}; wrap an nn.Module with medcam.from_module(module, transform, class_names)"
    )


def as_study(study: Study | DicomSeries | Volume | str | Path) -> Study:
    """A :class:`Study` of a Study, a path, a DicomSeries or a Volume."""
    if isinstance(study, Study):
        return study
    if isinstance(study, (str, Path)):
        return read_study(study)
    if isinstance(study, DicomSeries):
        return Study.from_series(study)
    if isinstance(study, Volume):
        return Study.from_volume(study)
    raise InputTypeError(f"explain() takes a Study, a path, a DicomSeries or a Volume, found {type(study).__name__}")


def explain(
    model: ExplainableModel | Checkpoint | str | Path,
    study: Study | DicomSeries | Volume | str | Path,
    *,
    method: str = "cam",
    target: int | str | None = None,
    layer: str | None = None,
    fc_layer: str | None = None,
    model_input: MetaTensor | None = None,
    allow_modality_mismatch: bool = False,
) -> Explanation:
    """Predict and explain one study with ``model``'s network and preprocessing.

    Parameters
    ----------
    model : ExplainableModel, Checkpoint or a path
        :func:`medcam.load_model` (medcam checkpoint, MONAI Bundle) or :func:`medcam.from_module`.
    study : Study, a path, DicomSeries or Volume
    method : str
        "cam" (exact, for a global-average-pooling + linear head), "gradcam", "gradcam++",
        "xgradcam", "layercam", "hirescam" or "scorecam".
    target : int or str, optional
        Class to explain (index or name). None: for a two-class model, class 1 (the finding, such
        as "lesion"), whatever the prediction, so that a negative study shows where the little
        evidence for a lesion lies, with its probability; for more classes, the predicted class.
    layer, fc_layer : str, optional
        Target layer (and CAM's linear layer); default: the model's, or the layer that feeds its
        global average pooling, found from the model.
    model_input : MetaTensor, optional
        ``model.prepare(study.volume)`` computed once when one study is explained several times.
    allow_modality_mismatch : bool
        Explain a study of another modality than the model records.

    Raises
    ------
    ModalityError
        The study's modality differs from the model's (unless ``allow_modality_mismatch``).
    CamError
        Unknown method, layer or class; ``cam`` on a model without a GAP + linear head.
    """
    model, study = as_model(model), as_study(study)
    method = CamMethod.from_name(method).value
    if not allow_modality_mismatch:
        model.check_modality(study.modality, str(study.source or study.case_id))
    if model_input is None:
        try:
            model_input = model.prepare(study.volume)
        except GeometryError as exc:  # the volume does not suit the model (a single slice for a 3D model, say)
            raise GeometryError(f"{study.source or study.case_id}: {exc}") from None
    x = model_input.as_tensor().unsqueeze(0).to(model.device)
    target_index = model.class_index(target) if isinstance(target, str) else target
    binary = len(model.class_names) == 2
    if target_index is None:
        target_index = default_target(model)
    layer, fc_layer = _layers(model, x, method, layer, fc_layer)
    with create_extractor(method, model.module, layer, fc_layer=fc_layer) as extractor:
        result = extractor(x, target=target_index)
    heatmap = to_source_grid(result.map[0], model_input, study.volume.geometry)
    explained, probability = int(result.target[0]), float(result.probability[0])
    predicted: int | None
    if binary:  # softmax over two classes: the other one is predicted when this one is below one half
        predicted = explained if probability >= 0.5 else 1 - explained
    else:
        predicted = explained if target_index is None else None
    return Explanation(study, model, model_input, result, heatmap, predicted)


def default_target(model: ExplainableModel) -> int | None:
    """The class :func:`explain` maps when none is asked for: a two-class model's class 1 (the
    finding), else None (the predicted class)."""
    return 1 if len(model.class_names) == 2 else None


def _layers(model: ExplainableModel, x: torch.Tensor, method: str, layer: str | None, fc_layer: str | None):
    """The target layer (and CAM's linear layer): as asked, else the model's, else its GAP head's."""
    layer = layer or model.layer
    fc_layer = fc_layer or model.fc_layer
    if method == "cam" and (layer is None or fc_layer is None):
        head = model.gap_head(x)
        return layer or head.feature_layer, fc_layer or head.fc_layer
    if layer is None:
        from medcam.cam import CamError

        try:
            layer = model.gap_head(x).feature_layer
        except CamError as exc:
            raise CamError(f"{model.provenance.name}: no default layer for {method} ({exc}); name one with layer=... (--layer)") from exc
    return layer, fc_layer
