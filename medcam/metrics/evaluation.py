"""Measure explanation quality over a labelled set: localisation, faithfulness and the sanity check,
per case and summarised per method with 95% bootstrap confidence intervals (CheXlocalize style)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from medcam.errors import MedcamError
from medcam.explanation import as_model, explain
from medcam.metrics.faithfulness import deletion_insertion
from medcam.metrics.localisation import localisation_scores
from medcam.metrics.sanity import cascading_randomisation
from medcam.models.explainable import class_index
from medcam.progress import Progress, ProgressCallback
from medcam.study import Study

__all__ = ["EvaluationResult", "evaluate", "bootstrap_ci", "write_report"]


def bootstrap_ci(values: Sequence[float], *, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and its 95% percentile-bootstrap interval."""
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = array[rng.integers(0, array.size, size=(n_resamples, array.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(array.mean()), float(low), float(high)


@dataclass
class EvaluationResult:
    """Per-case localisation rows (positives), per-case predictions (every case), the
    randomisation steps, and the cases that could not be scored, with why."""

    rows: list[dict] = field(default_factory=list)
    randomisation: list[dict] = field(default_factory=list)
    predictions: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)

    def classification(self, *, n_resamples: int = 2000, seed: int = 0) -> dict | None:
        """ROC AUC of the target class's probability over every case, with a 95% bootstrap interval
        (None unless both negatives and positives were seen)."""
        from medcam.metrics.classification import roc_auc

        first: dict[str, dict] = {}
        for row in self.predictions:  # one prediction per case (every method predicts the same)
            first.setdefault(row["case_id"], row)
        labels = np.array([bool(row["positive"]) for row in first.values()])
        scores = np.array([float(row["probability"]) for row in first.values()])
        if labels.all() or not labels.any() or np.isnan(scores).any():
            return None
        rng = np.random.default_rng(seed)
        resampled = []
        for _ in range(n_resamples):
            pick = rng.integers(0, labels.size, labels.size)
            if labels[pick].any() and not labels[pick].all():
                resampled.append(roc_auc(labels[pick], scores[pick]))
        low, high = np.percentile(resampled, [2.5, 97.5])
        return {"auc": roc_auc(labels, scores), "auc_ci": (float(low), float(high)), "cases": int(labels.size),
                "positives": int(labels.sum())}

    def summary(self, *, gate: float = 0.5) -> list[dict]:
        """One entry per method: each localisation and faithfulness score's mean with its 95%
        bootstrap interval (``<score>_ci``), the hit rate of the cases whose probability reaches
        ``gate``, and the randomisation check's first and last rank correlations."""
        out = []
        for method in dict.fromkeys(row["method"] for row in self.rows):
            rows = [row for row in self.rows if row["method"] == method]
            entry = {"method": method, "cases": len(rows)}
            for key in ("hit", "hit_tolerant", "energy", "energy_dilated", "iou_otsu", "dice_otsu", "peak_distance_mm",
                        "deletion_auc", "insertion_auc"):
                mean, low, high = bootstrap_ci([float(row[key]) for row in rows])
                entry[key], entry[f"{key}_ci"] = mean, (low, high)
            gated = [float(row["hit"]) for row in rows if float(row["probability"]) >= gate]
            entry["gated_cases"], entry["gated_hit"] = len(gated), bootstrap_ci(gated)[0] if gated else float("nan")
            steps = [r for r in self.randomisation if r["method"] == method]
            if steps:
                last = max(r["step"] for r in steps)
                entry["randomised_spearman_first"] = float(np.mean([r["spearman"] for r in steps if r["step"] == 0]))
                entry["randomised_spearman_last"] = float(np.mean([r["spearman"] for r in steps if r["step"] == last]))
                entry["randomised_ssim_last"] = float(np.mean([r["ssim"] for r in steps if r["step"] == last]))
            out.append(entry)
        return out


def _is_positive(case: Study, mask, class_names: Sequence[str], target: int) -> bool:
    """A case's truth: its label (a class name or index) when the manifest gives one, else whether
    its mask holds a lesion."""
    if case.label is not None:
        label = case.label
        if label in class_names:
            return class_names.index(label) == target
        if label.isdigit():
            return int(label) == target
        raise MedcamError(f"case {case.case_id}: unknown label {label!r}; expected one of {list(class_names)} or a class index")
    return mask is not None and bool(np.asarray(mask.array).any())


def _map_on_file(case: Study):
    """The map already written for a case (its manifest's ``map`` column) and its sidecar."""
    import json

    from medcam.study import read_study

    path = case.map_source
    if path is None:
        raise MedcamError(f"case {case.case_id}: no 'map' in the manifest to score")
    heatmap = read_study(path).volume
    if not heatmap.geometry.is_close(case.volume.geometry, atol=1e-3):
        raise MedcamError(f"case {case.case_id}: the map {path} is not on the image's grid ({heatmap.geometry} vs {case.volume.geometry})")
    sidecar_path = Path(str(path).removesuffix(".gz").removesuffix(".nii") + ".json")
    sidecar = json.loads(sidecar_path.read_text()) if sidecar_path.is_file() else {}
    return heatmap, sidecar


def evaluate(
    model,
    cases: Iterable[Study],
    methods: Sequence[str],
    *,
    tolerance_mm: float = 10.0,
    energy_tolerance_mm: float | None = None,
    steps: int = 20,
    baseline: str = "blur",
    randomisation_cases: int = 5,
    target: int | str | None = None,
    layer: str | None = None,
    maps_on_file: bool = False,
    class_names: Sequence[str] | None = None,
    figures_dir: str | Path | None = None,
    figure_cases: int = 4,
    total: int | None = None,
    progress: ProgressCallback | None = None,
) -> EvaluationResult:
    """Score every method on every case: the prediction on every case (classification AUC over
    negatives and positives), localisation and faithfulness on the positives that have a mask,
    and the randomisation check on the first ``randomisation_cases`` positives. Maps explain class
    ``target`` (a name or an index; default: the last class, the lesion class of a "no lesion" /
    "lesion" model) at ``layer`` (default: the model's). ``tolerance_mm`` dilates the
    mask for the tolerant hit, ``energy_tolerance_mm`` (default the same) for the dilated energy.

    With ``maps_on_file`` the maps already written (each case's ``map``) are scored instead, with the
    probability their sidecar records; ``model`` may then be None and ``methods`` is ignored
    (``class_names`` then resolves label names; without them labels must be class indices).
    A case that cannot be scored (unreadable, a positive whose mask is empty...) is recorded in
    ``errors`` with the reason, and the evaluation goes on.

    With ``figures_dir``, the first ``figure_cases`` positives with a mask get one figure per
    method (``<case>_<method>.png``: the planes through the map's peak with the mask's contour).
    ``progress`` gets a :class:`~medcam.progress.Progress` after each case ("evaluating", i of ``total``, its id).
    """
    model = None if maps_on_file and model is None else as_model(model)
    class_names = list(class_names if class_names is not None else model.class_names if model is not None else [])
    target = max(len(class_names) - 1, 1) if target is None else class_index(class_names, target)
    result = EvaluationResult()
    randomised = figured = 0
    for done, case in enumerate(cases, start=1):
        try:
            mask = case.mask_on_image_grid()
            positive = _is_positive(case, mask, class_names, target)
            if positive and mask is not None and not np.asarray(mask.array).any():
                raise MedcamError(f"case {case.case_id}: its lesion mask {case.mask_source} is empty on the image's grid")
            scored = _score_case(case, model, methods, mask if positive else None, result, target=target, layer=layer,
                                 tolerance_mm=tolerance_mm, energy_tolerance_mm=energy_tolerance_mm, steps=steps,
                                 baseline=baseline, randomise=positive and randomised < randomisation_cases,
                                 maps_on_file=maps_on_file,
                                 figures=Path(figures_dir) if figures_dir is not None and figured < figure_cases else None)
            for row in scored:
                row["positive"] = positive
            result.predictions.extend(scored)
            randomised += int(positive and mask is not None and not maps_on_file)
            figured += int(positive and mask is not None)
        except MedcamError as exc:
            result.errors.append({"case_id": case.case_id, "source": str(case.source), "error": " ".join(str(exc).split())})
        finally:
            case.release()
        if progress is not None:
            progress(Progress("evaluating", done, total, "case", item=case.case_id))
    return result


def _case_figure(figures: Path, case: Study, heatmap, mask, *, method: str, target_name: str, probability: float,
                 window: tuple[float, float] | None = None) -> None:
    """One figure of a scored case: the source through the map's peak, the map, the mask's contour;
    the source in ``window`` (default: its DICOM window, else its modality's, else percentiles)."""
    from medcam.export.figures import map_label, write_figure
    from medcam.export.overlay import source_window

    figures.mkdir(parents=True, exist_ok=True)
    series = case.series
    window = window or source_window(series.datasets if series is not None else (), case.volume.array, modality=case.modality)
    write_figure(case.volume, heatmap, figures / f"{case.case_id}_{method}.png", window=window, overwrite=True,
                 title=f"{case.case_id}: {method} map of '{target_name}' (p={probability:.3f}), lesion mask in green",
                 label=map_label(method, target_name, heatmap.array), mask=mask)


def _score_case(case: Study, model, methods, mask, result: EvaluationResult, *, target, layer, tolerance_mm,
                energy_tolerance_mm, steps, baseline, randomise, maps_on_file, figures: Path | None) -> list[dict]:
    """Predictions of one case per method; localisation rows (into ``result``) and, with
    ``figures``, a figure per method when ``mask``."""
    predictions = []
    if maps_on_file:
        heatmap, sidecar = _map_on_file(case)
        probability = float(sidecar.get("probability", float("nan")))
        method = str(sidecar.get("method", "map"))
        predictions.append({"case_id": case.case_id, "method": method, "probability": probability})
        if mask is not None:
            scores = localisation_scores(heatmap, mask, case.lesion_centres_ras, tolerance_mm=tolerance_mm,
                                         energy_tolerance_mm=energy_tolerance_mm)
            result.rows.append({"case_id": case.case_id, "method": method, "probability": round(probability, 5),
                                **{k: (int(v) if isinstance(v, bool) else round(float(v), 5)) for k, v in asdict(scores).items()},
                                "deletion_auc": float("nan"), "insertion_auc": float("nan")})
            if figures is not None:
                _case_figure(figures, case, heatmap, mask, method=method, probability=probability,
                             target_name=str(sidecar.get("target_name", "the target class")))
        return predictions
    model_input, window = model.prepare(case.volume), None
    for method in methods:
        explanation = explain(model, case, method=method, target=target, layer=layer, model_input=model_input)
        predictions.append({"case_id": case.case_id, "method": method, "probability": explanation.probability})
        if mask is None:
            continue
        scores = localisation_scores(explanation.heatmap, mask, case.lesion_centres_ras, tolerance_mm=tolerance_mm,
                                     energy_tolerance_mm=energy_tolerance_mm)
        x = explanation.model_input.as_tensor()[None].to(model.device)
        curves = deletion_insertion(model.module, x, explanation.result.map[0], target, steps=steps, baseline=baseline)
        if figures is not None:
            window = window or explanation.display_window  # the model's window for a NIfTI source; once per case
            _case_figure(figures, case, explanation.heatmap, mask, method=method, target_name=explanation.target_name,
                         probability=explanation.probability, window=window)
        result.rows.append({
            "case_id": case.case_id, "method": method, "probability": round(explanation.probability, 5),
            **{k: (int(v) if isinstance(v, bool) else round(float(v), 5)) for k, v in asdict(scores).items()},
            "deletion_auc": round(curves.deletion_auc, 5), "insertion_auc": round(curves.insertion_auc, 5),
        })
        if randomise:
            fc_layer = model.gap_head(x).fc_layer if method == "cam" else None
            for step, item in enumerate(cascading_randomisation(model.module, x, target, method=method,
                                                                 layer=explanation.layer, fc_layer=fc_layer)):
                result.randomisation.append({"case_id": case.case_id, "method": method, "step": step, "layer": item.layer,
                                             "spearman": item.spearman, "ssim": item.ssim})
    return predictions


def _fmt(mean: float, ci: tuple[float, float]) -> str:
    return f"{mean:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def write_report(result: EvaluationResult, out_dir: str | Path, *, title: str, gate: float = 0.5,
                 tolerance_mm: float = 10.0) -> dict[str, Path]:
    """per_case.csv, predictions.csv, randomisation.csv, errors.csv, summary.csv, summary.md and
    summary.png in ``out_dir`` (each CSV when it has rows)."""
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in (("per_case", result.rows), ("predictions", result.predictions), ("randomisation", result.randomisation),
                       ("errors", result.errors)):
        if rows:
            paths[name] = out / f"{name}.csv"
            with open(paths[name], "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
    summary = result.summary(gate=gate)
    paths["summary_csv"] = out / "summary.csv"
    with open(paths["summary_csv"], "w", newline="") as handle:
        flat = [{k: (f"{v[0]:.4f}..{v[1]:.4f}" if isinstance(v, tuple) else v) for k, v in entry.items()} for entry in summary]
        writer = csv.DictWriter(handle, fieldnames=list(flat[0]) if flat else ["method", "cases"])
        writer.writeheader()
        writer.writerows(flat)
    classification = result.classification()
    lines = [f"# {title}", ""]
    if classification is not None:
        lines += [f"Classification: ROC AUC {_fmt(classification['auc'], classification['auc_ci'])} on {classification['cases']} "
                  f"cases ({classification['positives']} positive).", ""]
    if result.errors:
        lines += [f"{len(result.errors)} case(s) could not be scored (errors.csv): "
                  + "; ".join(f"{e['case_id']}: {e['error']}" for e in result.errors[:5]), ""]
    lines += ["Means with 95% bootstrap confidence intervals; localisation on lesion-positive cases only.", "",
             f"| method | cases | hit rate | hit rate ({tolerance_mm:g} mm) | energy in mask | energy in dilated mask | IoU (Otsu) | peak distance mm "
             "| deletion AUC | insertion AUC | hit rate, p >= gate (n) | randomised Spearman (last) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in summary:
        lines.append(
            f"| {e['method']} | {e['cases']} | {_fmt(e['hit'], e['hit_ci'])} | {_fmt(e['hit_tolerant'], e['hit_tolerant_ci'])} "
            f"| {_fmt(e['energy'], e['energy_ci'])} | {_fmt(e['energy_dilated'], e['energy_dilated_ci'])} "
            f"| {_fmt(e['iou_otsu'], e['iou_otsu_ci'])} | {_fmt(e['peak_distance_mm'], e['peak_distance_mm_ci'])} "
            f"| {_fmt(e['deletion_auc'], e['deletion_auc_ci'])} | {_fmt(e['insertion_auc'], e['insertion_auc_ci'])} "
            f"| {e['gated_hit']:.3f} ({e['gated_cases']}) | {e.get('randomised_spearman_last', float('nan')):.3f} |"
        )
    paths["summary_md"] = out / "summary.md"
    paths["summary_md"].write_text("\n".join(lines) + "\n")
    if not summary:
        return paths
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = [e["method"] for e in summary]
    for axis, key, label in ((left, "hit", "hit rate (pointing game)"), (right, "deletion_auc", "deletion AUC (lower is better)")):
        means = [e[key] for e in summary]
        errors = np.array([[m - e[f"{key}_ci"][0], e[f"{key}_ci"][1] - m] for m, e in zip(means, summary)]).T
        axis.bar(names, means, yerr=errors, capsize=4, color="tab:blue")
        axis.set_title(label)
        axis.tick_params(axis="x", rotation=30)
    figure.suptitle(title)
    figure.tight_layout()
    paths["plot"] = out / "summary.png"
    figure.savefig(paths["plot"], dpi=100)
    plt.close(figure)
    return paths
