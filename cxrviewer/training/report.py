"""Evaluation of a trained model on its validation and test splits.

Operating thresholds come from the validation split (Youden's J per class) and are then
applied unchanged to the test split, so the test numbers are an honest estimate of the
operating point the card ships. Numbers come from ``cxrviewer.metrics`` and are written
by ``cxrviewer.evaluate.write_report`` (JSON + CSV + ROC PNGs + summary), the same code
``cxrviewer evaluate`` and the GUI use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from cxrviewer.metrics import EvaluationReport, evaluate

YOUDEN_RULE = "Youden's J on the validation split"
FALLBACK_THRESHOLD = 0.5


@dataclass
class Thresholds:
    values: dict[str, float]
    rule: str
    fallback: list[str]  # labels without a validation estimate (kept at 0.5)


def predict_split(model, ds) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) for an evaluation dataset, in its order."""
    from cxrviewer.training.fit import _images_only, _labels_only, quiet_dataset_warnings

    with quiet_dataset_warnings():
        scores = np.asarray(model.predict(ds.map(_images_only), verbose=0), dtype=np.float64)
    y = np.concatenate([b.numpy() for b in ds.map(_labels_only)]).astype(np.float64)
    return y, scores.reshape(len(y), -1)


def thresholds_from_validation(report: EvaluationReport, labels: Sequence[str]) -> Thresholds:
    """Youden's J threshold per class; 0.5 where validation could not estimate one."""
    values, fallback = {}, []
    for lab in labels:
        c = report.by_label(lab)
        thr = c.youden_threshold
        if thr is None or not np.isfinite(thr):
            values[lab] = FALLBACK_THRESHOLD
            fallback.append(lab)
        else:
            values[lab] = round(float(min(1.0, max(0.0, thr))), 6)
    rule = YOUDEN_RULE
    if fallback:
        rule += f"; {FALLBACK_THRESHOLD} for {', '.join(fallback)} (not estimable on validation)"
    return Thresholds(values, rule, fallback)


def evaluate_splits(model, val_ds, test_ds, labels: Sequence[str], task: str, out_dir: str | Path, *,
                    n_bootstrap: int = 1000, seed: int = 0, model_name: str | None = None) -> tuple[EvaluationReport, EvaluationReport | None, Thresholds]:
    """Validation report (thresholds = Youden J there), test report at those thresholds,
    both written under ``out_dir/validation`` and ``out_dir/test``."""
    from cxrviewer.evaluate import write_report

    out_dir = Path(out_dir)
    labels = list(labels)
    y, s = predict_split(model, val_ds)
    val = evaluate(y, s, labels, task=task, n_bootstrap=n_bootstrap, seed=seed)
    thresholds = thresholds_from_validation(val, labels)
    val.threshold_note = f"thresholds: {thresholds.rule}"
    val.model_name = model_name
    val.source = {"split": "validation", "films": len(y)}
    write_report(val, out_dir / "validation")
    test = None
    if test_ds is not None:
        y, s = predict_split(model, test_ds)
        if len(y):
            test = evaluate(y, s, labels, task=task, thresholds=thresholds.values,
                            threshold_source="validation Youden", n_bootstrap=n_bootstrap, seed=seed)
            test.threshold_note = f"thresholds from the validation split ({thresholds.rule})"
            test.model_name = model_name
            test.source = {"split": "test", "films": len(y)}
            write_report(test, out_dir / "test")
    return val, test, thresholds
