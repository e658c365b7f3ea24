"""Diagnostic-accuracy numbers for a set of predictions: ROC, AUROC with bootstrap CIs,
Youden thresholds and the confusion counts at an operating threshold.

Shared by ``cxrviewer evaluate``, ``score --labels``, the training report and the GUI's
ROC panel, so every place shows the same numbers. Point estimates come from scikit-learn
(``roc_curve``, ``roc_auc_score``, ``confusion_matrix``, ``precision_recall_fscore_support``).

Conventions:
* a case is called positive when its score is ``>= threshold`` (as ``roc_curve`` counts);
* cases whose label is unknown (NaN) or whose score is missing are left out per class;
* a class without a positive or without a negative case is *not estimable*: its AUROC,
  CI and Youden threshold are None with a reason, never an exception or a made-up 0.5;
* a number that is undefined (specificity with no negatives, precision with no positive
  calls) is None, never 0.
"""

from __future__ import annotations

import datetime as _dt
import math
import warnings as _warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from cxrviewer import NOT_FOR_DIAGNOSIS

CI_LEVEL = 0.95
DEFAULT_BOOTSTRAP = 1000
DEFAULT_SEED = 0
# Below this share of resamples with both classes the percentile interval describes a
# different population (resamples conditioned on containing the rare class); don't report it.
MIN_VALID_BOOTSTRAP_SHARE = 0.5
# Elements per vectorised bootstrap chunk (resamples x cases): bounds memory on big sets.
_CHUNK_ELEMENTS = 2_000_000
# Most ROC vertices written per class to report.json.
ROC_JSON_POINTS = 2000


def _num(x) -> float | None:
    """Plain float for JSON, None for undefined (NaN/None)."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


@dataclass
class RocCurve:
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray  # first is +inf in scikit-learn: "call nothing positive"

    def to_dict(self, max_points: int = ROC_JSON_POINTS) -> dict:
        """Curve points for JSON. A curve of a large set (tens of thousands of vertices
        over 112k films) is thinned to ``max_points`` vertices, ends kept, which draws the
        same; the AUROC is always computed on the full curve."""
        keep = np.arange(len(self.fpr))
        if len(keep) > max_points:
            keep = np.unique(np.linspace(0, len(keep) - 1, max_points).round().astype(int))
        return {
            "fpr": [float(v) for v in self.fpr[keep]],
            "tpr": [float(v) for v in self.tpr[keep]],
            # JSON has no infinity; null marks the "nothing called positive" corner.
            "thresholds": [float(v) if math.isfinite(v) else None for v in self.thresholds[keep]],
            "points": int(len(keep)),
            "thinned_from": int(len(self.fpr)) if len(keep) < len(self.fpr) else None,
        }


@dataclass
class ClassMetrics:
    label: str
    n: int  # cases with a label and a score
    n_positive: int
    n_negative: int
    n_excluded: int  # cases left out: label unknown or score missing
    estimable: bool
    reason: str | None = None  # why not estimable
    auroc: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    ci_level: float = CI_LEVEL
    n_bootstrap: int = 0
    n_bootstrap_valid: int = 0  # resamples that held both classes
    ci_note: str | None = None
    roc: RocCurve | None = None
    youden_threshold: float | None = None
    youden_j: float | None = None
    # Operating point: where the calls are made and what they give.
    threshold: float | None = None
    threshold_source: str | None = None  # "card", "youden", "given", "argmax"
    tn: int | None = None
    fp: int | None = None
    fn: int | None = None
    tp: int | None = None
    sensitivity: float | None = None
    specificity: float | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None

    @property
    def status(self) -> str:
        return "estimable" if self.estimable else f"not estimable: {self.reason}"

    def to_dict(self, with_curve: bool = True) -> dict:
        d = asdict(self)
        d.pop("roc")
        d["status"] = self.status
        if with_curve:
            d["roc"] = self.roc.to_dict() if self.roc is not None else None
        return d


@dataclass
class MulticlassSummary:
    """Softmax models: the call is the arg-max class; rows are true, columns called."""

    labels: list[str]
    confusion: list[list[int]]
    n: int
    n_excluded: int  # rows without exactly one known true class, or without scores
    accuracy: float | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EvaluationReport:
    task: str
    labels: list[str]
    classes: list[ClassMetrics]
    n_cases: int
    n_bootstrap: int = DEFAULT_BOOTSTRAP
    seed: int = DEFAULT_SEED
    ci_level: float = CI_LEVEL
    threshold_note: str = ""
    multiclass: MulticlassSummary | None = None
    model_name: str | None = None
    model_sha256: str | None = None
    source: dict = field(default_factory=dict)  # files, matched/unmatched counts...
    warnings: list[str] = field(default_factory=list)
    created: str = field(default_factory=lambda: _dt.datetime.now().astimezone().isoformat(timespec="seconds"))
    intended_use: str = NOT_FOR_DIAGNOSIS

    def by_label(self, label: str) -> ClassMetrics:
        for c in self.classes:
            if c.label == label:
                return c
        raise KeyError(label)

    @property
    def not_estimable(self) -> list[ClassMetrics]:
        return [c for c in self.classes if not c.estimable]

    @property
    def model_identity(self) -> str | None:
        if self.model_name and self.model_sha256:
            return f"{self.model_name}@{self.model_sha256[:12]}"
        return self.model_name

    @property
    def mean_auroc(self) -> float | None:
        vals = [c.auroc for c in self.classes if c.auroc is not None]
        return float(np.mean(vals)) if vals else None

    def to_dict(self, with_curves: bool = True) -> dict:
        return {
            "intended_use": self.intended_use,
            "created": self.created,
            "task": self.task,
            "model": {"name": self.model_name, "sha256": self.model_sha256, "identity": self.model_identity},
            "n_cases": self.n_cases,
            "labels": list(self.labels),
            "bootstrap": {"n": self.n_bootstrap, "seed": self.seed, "ci_level": self.ci_level,
                          "method": "percentile bootstrap over cases"},
            "threshold_note": self.threshold_note,
            "call_rule": "argmax class" if self.task == "multiclass" else "score >= threshold",
            "mean_auroc": self.mean_auroc,
            "not_estimable": {c.label: c.reason for c in self.not_estimable},
            "source": dict(self.source),
            "warnings": list(self.warnings),
            "classes": [c.to_dict(with_curves) for c in self.classes],
            "multiclass": self.multiclass.to_dict() if self.multiclass else None,
        }


# ---- building blocks -----------------------------------------------------------------
def bootstrap_aurocs(y: np.ndarray, s: np.ndarray, n_bootstrap: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """AUROC of each percentile-bootstrap resample of cases; NaN where a resample has one class.

    Cases are put in score order once (``argsort(s, kind="stable")``); resample ``b`` is
    the cases at sorted positions ``default_rng(seed).integers(0, n, (B, n))[b]``. Its
    AUROC is the Mann-Whitney statistic with ties counted one half, which equals
    ``roc_auc_score`` on those cases exactly; a resample only re-weights the sorted cases
    by how often it drew them, so it costs O(n) instead of a sort (1000 resamples of the
    112,120 NIH films take seconds per class, not a minute).
    """
    y = np.asarray(y, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    n = len(y)
    rng = np.random.default_rng(seed)
    out = np.full(n_bootstrap, np.nan)
    if n == 0 or n_bootstrap <= 0:
        return out
    order = np.argsort(s, kind="stable")
    s_sorted, positive = s[order], y[order] > 0.5
    # first sorted position of each distinct score: tied cases form one group
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    ties = len(starts) < n
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for first in range(0, n_bootstrap, chunk):
        rows = min(n_bootstrap, first + chunk) - first
        idx = rng.integers(0, n, size=(rows, n))
        # how often each sorted position was drawn, per resample (integers: exact sums)
        counts = np.bincount((idx + (np.arange(rows) * n)[:, None]).ravel(), minlength=rows * n).reshape(rows, n)
        pos = np.where(positive, counts, 0)
        neg = counts - pos
        if ties:
            pos = np.add.reduceat(pos, starts, axis=1)
            neg = np.add.reduceat(neg, starts, axis=1)
        # each positive beats the negatives below its score and half of those tied with it
        twice_u = (pos * (2 * np.cumsum(neg, axis=1) - neg)).sum(axis=1)
        n1, n0 = pos.sum(axis=1), neg.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            auc = twice_u / (2.0 * n1 * n0)
        auc[(n1 == 0) | (n0 == 0)] = np.nan
        out[first:first + rows] = auc
    return out


def youden_threshold(y, s) -> tuple[float, float]:
    """(threshold, J) maximising sensitivity + specificity - 1 on these cases.

    Ties go to the highest threshold (fewest positive calls). The threshold is clipped
    into 0..1: scikit-learn's first ROC point has threshold +inf ("call nothing").
    """
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    j = tpr - fpr
    best = int(np.argmax(j))
    return float(min(thr[best], 1.0)), float(j[best])


def operating_point(y, s, threshold: float) -> dict:
    """Confusion counts and rates when ``s >= threshold`` is called positive."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y = np.asarray(y).astype(int)
    pred = (np.asarray(s) >= threshold).astype(int)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, pred, labels=[0, 1]).ravel())
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")  # undefined ratios come back as NaN -> None
        precision, recall, f1, _ = precision_recall_fscore_support(
            y, pred, labels=[1], average="binary", pos_label=1, zero_division=np.nan)
    return {
        "tn": tn, "fp": fp, "fn": fn, "tp": tp,
        "sensitivity": tp / (tp + fn) if tp + fn else None,
        "specificity": tn / (tn + fp) if tn + fp else None,
        "precision": _num(precision) if tp + fp else None,
        "recall": _num(recall) if tp + fn else None,
        "f1": _num(f1) if tp + fn and tp + fp else None,
    }


def evaluate_class(
    label: str,
    y_true,
    y_score,
    *,
    threshold: float | None = None,
    threshold_source: str = "given",
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    ci_level: float = CI_LEVEL,
    called=None,
) -> ClassMetrics:
    """All numbers for one class. ``y_true`` 1/0/NaN, ``y_score`` probabilities (NaN = missing).

    ``threshold`` None: the operating point is Youden's J on these data. ``called``: a
    boolean array of calls made elsewhere (multiclass arg-max) used instead of a threshold.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    y_true = np.asarray(y_true, dtype=np.float64)
    y_score = np.asarray(y_score, dtype=np.float64)
    keep = np.isfinite(y_true) & np.isfinite(y_score)
    y = (y_true[keep] > 0.5).astype(int)
    s = y_score[keep]
    n, n_pos = int(keep.sum()), int(y.sum())
    m = ClassMetrics(label=label, n=n, n_positive=n_pos, n_negative=n - n_pos,
                     n_excluded=int((~keep).sum()), estimable=False, ci_level=ci_level,
                     n_bootstrap=max(0, int(n_bootstrap)))
    if n == 0:
        m.reason = ("no case has a known label for this class" if len(y_true)
                    else "no cases")
    elif n_pos == 0:
        m.reason = f"no positive case among {n} labelled cases"
    elif n_pos == n:
        m.reason = f"no negative case among {n} labelled cases"
    else:
        m.estimable = True
        m.auroc = float(roc_auc_score(y, s))
        fpr, tpr, thr = roc_curve(y, s)
        m.roc = RocCurve(fpr, tpr, thr)
        m.youden_threshold, m.youden_j = youden_threshold(y, s)
        if m.n_bootstrap:
            aucs = bootstrap_aurocs(y, s, m.n_bootstrap, seed)
            valid = aucs[np.isfinite(aucs)]
            m.n_bootstrap_valid = int(valid.size)
            if valid.size and valid.size >= MIN_VALID_BOOTSTRAP_SHARE * m.n_bootstrap:
                tail = (1.0 - ci_level) / 2 * 100
                lo, hi = np.percentile(valid, [tail, 100 - tail])
                m.ci_low, m.ci_high = float(lo), float(hi)
            else:
                m.ci_note = (f"only {valid.size} of {m.n_bootstrap} resamples held both classes; "
                             "too few positives or negatives for an interval")
    if n == 0:
        return m

    if called is not None:
        pred = np.asarray(called, dtype=bool)[keep]
        op = operating_point(y, pred.astype(float), 0.5)
        m.threshold_source = "argmax"
    else:
        if threshold is None and m.youden_threshold is not None:
            threshold, threshold_source = m.youden_threshold, "youden"
        if threshold is None:
            return m  # not estimable and no threshold to report counts at
        op = operating_point(y, s, float(threshold))
        m.threshold, m.threshold_source = float(threshold), threshold_source
    for k, v in op.items():
        setattr(m, k, v)
    return m


def evaluate(
    y_true,
    y_score,
    labels,
    *,
    task: str = "multilabel",
    thresholds: dict | None = None,
    threshold_source: str = "given",
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    ci_level: float = CI_LEVEL,
) -> EvaluationReport:
    """Evaluate scores ``(n, k)`` against labels ``(n, k)`` (1/0/NaN), one column per label.

    multilabel: each class on its own, called at ``thresholds[label]`` (Youden J on these
    data for a label without one). multiclass: one-vs-rest ROC per class, calls by arg-max,
    plus the k x k confusion matrix.
    """
    labels = list(labels)
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1, len(labels))
    y_score = np.asarray(y_score, dtype=np.float64).reshape(-1, len(labels))
    if y_true.shape != y_score.shape:
        raise ValueError(f"labels {y_true.shape} and scores {y_score.shape} differ in shape")
    if task not in ("multilabel", "multiclass"):
        raise ValueError(f"task must be multilabel or multiclass, got {task!r}")
    thresholds = dict(thresholds or {})
    report = EvaluationReport(task=task, labels=labels, classes=[], n_cases=len(y_true),
                              n_bootstrap=max(0, int(n_bootstrap)), seed=seed, ci_level=ci_level)

    called = None
    if task == "multiclass":
        scored = np.isfinite(y_score).all(axis=1)
        one_true = (np.nan_to_num(y_true) > 0.5).sum(axis=1) == 1
        rows = scored & one_true
        arg = np.argmax(np.where(np.isfinite(y_score), y_score, -np.inf), axis=1)
        called = np.zeros_like(y_score, dtype=bool)
        called[np.arange(len(arg)), arg] = True
        from sklearn.metrics import confusion_matrix

        t = np.argmax(np.nan_to_num(y_true[rows]), axis=1)
        cm = confusion_matrix(t, arg[rows], labels=list(range(len(labels))))
        n = int(rows.sum())
        report.multiclass = MulticlassSummary(
            labels=labels, confusion=cm.astype(int).tolist(), n=n,
            n_excluded=int(len(rows) - n), accuracy=float(np.trace(cm) / n) if n else None)

    for j, lab in enumerate(labels):
        thr = thresholds.get(lab)
        report.classes.append(evaluate_class(
            lab, y_true[:, j], y_score[:, j],
            threshold=thr, threshold_source=threshold_source if thr is not None else "youden",
            n_bootstrap=n_bootstrap, seed=seed, ci_level=ci_level,
            called=None if called is None else called[:, j]))
    return report
