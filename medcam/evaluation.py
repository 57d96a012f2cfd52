"""Measure explanation quality over a labelled set: localisation, faithfulness and the sanity check,
per case and summarised per method with 95% bootstrap confidence intervals (CheXlocalize style)."""

from __future__ import annotations

import csv
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from medcam.errors import MedcamError
from medcam.explanation import as_model, explain
from medcam.metrics.faithfulness import deletion_insertion
from medcam.metrics.localisation import localisation_scores
from medcam.metrics.sanity import cascading_randomisation
from medcam.study import Study

__all__ = ["synthetic_cases", "manifest_cases", "evaluate", "bootstrap_ci", "write_report"]


def synthetic_cases(task_name: str, n: int, seed: int) -> Iterator[Study]:
    """``n`` lesion-positive studies of a synthetic task drawn with ``seed``."""
    from medcam.data.tasks import get_task

    task = get_task(task_name)
    for index in range(n):
        study, _ = task.matched_pair(index, seed)
        yield study.to_study(f"{task_name}-{seed}-{index}")


def manifest_cases(path: str | Path) -> Iterator[Study]:
    """Cases from a CSV with columns ``image`` and ``mask`` (paths relative to the CSV); lesion
    centres are the centroids of the mask's connected components."""
    from medcam.cohort import cases_from_csv

    for study in cases_from_csv(path):
        if study.mask_source is None:
            raise MedcamError(f"{path}: case {study.case_id} has no 'mask' (evaluation needs a lesion mask per case)")
        yield study


def bootstrap_ci(values: Sequence[float], *, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and its 95% percentile-bootstrap interval."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_resamples, values.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(low), float(high)


@dataclass
class EvaluationResult:
    rows: list[dict] = field(default_factory=list)
    randomisation: list[dict] = field(default_factory=list)

    def summary(self, *, gate: float = 0.5) -> list[dict]:
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


def evaluate(
    model,
    cases: Iterable[Study],
    methods: Sequence[str],
    *,
    tolerance_mm: float = 10.0,
    steps: int = 20,
    baseline: str = "blur",
    randomisation_cases: int = 5,
    target: int = 1,
    layer: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> EvaluationResult:
    """Localisation and faithfulness of every method on every case (studies with a lesion mask),
    and the randomisation check on the first ``randomisation_cases`` cases. Maps explain class
    ``target`` (the lesion class) at ``layer`` (default: the model's)."""
    model = as_model(model)
    result = EvaluationResult()
    for number, case in enumerate(cases):
        start = time.perf_counter()
        if case.mask is None:
            raise MedcamError(f"case {case.case_id}: no lesion mask; evaluation scores maps against one")
        model_input = model.prepare(case.volume)
        for method in methods:
            explanation = explain(model, case, method=method, target=target, layer=layer, model_input=model_input)
            scores = localisation_scores(explanation.heatmap, case.mask, case.lesion_centres_ras, tolerance_mm=tolerance_mm)
            x = explanation.model_input.as_tensor()[None].to(model.device)
            curves = deletion_insertion(model.module, x, explanation.result.map[0], target, steps=steps, baseline=baseline)
            result.rows.append({
                "case_id": case.case_id, "method": method, "probability": round(explanation.probability, 5),
                **{k: (int(v) if isinstance(v, bool) else round(float(v), 5)) for k, v in asdict(scores).items()},
                "deletion_auc": round(curves.deletion_auc, 5), "insertion_auc": round(curves.insertion_auc, 5),
            })
            if number < randomisation_cases:
                fc_layer = model.gap_head(x).fc_layer if method == "cam" else None
                steps_taken = cascading_randomisation(model.module, x, target, method=method, layer=explanation.layer, fc_layer=fc_layer)
                for step, item in enumerate(steps_taken):
                    result.randomisation.append({"case_id": case.case_id, "method": method, "step": step, "layer": item.layer,
                                                 "spearman": item.spearman, "ssim": item.ssim})
        if progress is not None:
            progress(f"{case.case_id}: {time.perf_counter() - start:.1f} s")
    return result


def _fmt(mean: float, ci: tuple[float, float]) -> str:
    return f"{mean:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def write_report(result: EvaluationResult, out_dir: str | Path, *, title: str, gate: float = 0.5) -> dict[str, Path]:
    """per_case.csv, randomisation.csv, summary.csv, summary.md and summary.png in ``out_dir``."""
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in (("per_case", result.rows), ("randomisation", result.randomisation)):
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
        writer = csv.DictWriter(handle, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)
    lines = [f"# {title}", "", "Means with 95% bootstrap confidence intervals; localisation on lesion-positive cases only.", "",
             "| method | cases | hit rate | hit rate (10 mm) | energy in mask | energy in dilated mask | IoU (Otsu) | peak distance mm "
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
