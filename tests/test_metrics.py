"""ROC/AUROC, bootstrap CIs, Youden thresholds and operating points against scikit-learn."""

from __future__ import annotations

import json
import warnings

import cv2
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from cxrviewer.metrics import (
    bootstrap_aurocs,
    evaluate,
    evaluate_class,
    operating_point,
    youden_threshold,
)

# Toy case worked by hand. Sorted by score: 0.8(-) 0.7(+) 0.6(+) 0.4(+) 0.35(-) 0.3(-) 0.2(+) 0.1(-)
# J = tpr - fpr per threshold: -.25 0 .25 .5 .25 0 .25 0 -> best 0.5 at threshold 0.4.
TOY_Y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
TOY_S = np.array([0.1, 0.3, 0.35, 0.8, 0.4, 0.6, 0.7, 0.2])


@pytest.fixture(scope="module")
def thumbs(data_dir):
    """Real films: NIH 64-px thumbnails, label abnormal by folder, score = a crude image
    statistic (a real, weak, tie-prone signal rather than a synthetic one)."""
    root = data_dir / "nih" / "thumbs64"
    ys, ss = [], []
    for path in sorted(root.glob("*/*/*.png")):
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        ys.append(1 if path.parent.name == "1_abnormal" else 0)
        ss.append(round(float(img[16:48, 16:48].mean()) / 255, 2))  # rounded: many ties
    return np.array(ys), np.array(ss)


def test_auroc_and_roc_equal_sklearn_on_real_films(thumbs):
    y, s = thumbs
    assert len(y) > 900 and 0 < y.sum() < len(y)
    m = evaluate_class("Abnormal", y, s, n_bootstrap=200)
    assert m.estimable and m.n == len(y) and m.n_positive == int(y.sum())
    assert m.auroc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, thr = roc_curve(y, s)
    np.testing.assert_array_equal(m.roc.fpr, fpr)
    np.testing.assert_array_equal(m.roc.tpr, tpr)


def test_bootstrap_resample_aurocs_equal_sklearn_per_resample(thumbs):
    y, s = thumbs
    aucs = bootstrap_aurocs(y, s, 40, seed=7)
    # The same resamples (positions in stable score order), each scored by scikit-learn.
    order = np.argsort(s, kind="stable")
    idx = order[np.random.default_rng(7).integers(0, len(y), size=(40, len(y)))]
    expected = [roc_auc_score(y[i], s[i]) for i in idx]
    np.testing.assert_allclose(aucs, expected, rtol=0, atol=1e-12)


def test_bootstrap_ci_brackets_auroc_and_is_reproducible(thumbs):
    y, s = thumbs
    a = evaluate_class("Abnormal", y, s, n_bootstrap=500, seed=3)
    b = evaluate_class("Abnormal", y, s, n_bootstrap=500, seed=3)
    c = evaluate_class("Abnormal", y, s, n_bootstrap=500, seed=4)
    assert a.ci_low < a.auroc < a.ci_high
    assert a.ci_high - a.ci_low < 0.2
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)
    assert a.n_bootstrap == 500 and a.n_bootstrap_valid == 500
    # Percentile interval of exactly those resamples.
    lo, hi = np.percentile(bootstrap_aurocs(y, s, 500, seed=3), [2.5, 97.5])
    assert (a.ci_low, a.ci_high) == (pytest.approx(lo), pytest.approx(hi))


def test_resamples_with_one_class_are_skipped_and_counted():
    y = np.array([1] + [0] * 9)
    s = np.linspace(0.9, 0.0, 10)
    m = evaluate_class("Rare", y, s, n_bootstrap=300, seed=1)
    idx = np.argsort(s, kind="stable")[np.random.default_rng(1).integers(0, 10, size=(300, 10))]
    with_positive = int((y[idx].sum(axis=1) > 0).sum())
    assert 0 < m.n_bootstrap_valid == with_positive < 300
    aucs = bootstrap_aurocs(y, s, 300, seed=1)
    assert int(np.isfinite(aucs).sum()) == with_positive


def test_no_bootstrap_means_no_interval():
    m = evaluate_class("A", TOY_Y, TOY_S, n_bootstrap=0)
    assert m.auroc is not None and m.ci_low is None and m.ci_high is None and m.n_bootstrap_valid == 0


def test_youden_threshold_on_hand_worked_case():
    thr, j = youden_threshold(TOY_Y, TOY_S)
    assert thr == 0.4 and j == pytest.approx(0.5)
    m = evaluate_class("A", TOY_Y, TOY_S, n_bootstrap=0)
    assert m.youden_threshold == 0.4
    assert m.threshold == 0.4 and m.threshold_source == "youden"
    assert (m.tn, m.fp, m.fn, m.tp) == (3, 1, 1, 3)
    assert m.sensitivity == 0.75 and m.specificity == 0.75 and m.precision == 0.75 and m.f1 == 0.75


def test_confusion_counts_at_a_given_threshold():
    op = operating_point(TOY_Y, TOY_S, 0.5)
    # called: 0.8(-) 0.7(+) 0.6(+); missed positives 0.4 and 0.2
    assert (op["tn"], op["fp"], op["fn"], op["tp"]) == (3, 1, 2, 2)
    assert op["sensitivity"] == 0.5 and op["specificity"] == 0.75
    assert op["precision"] == pytest.approx(2 / 3) and op["recall"] == 0.5
    assert op["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    tn, fp, fn, tp = confusion_matrix(TOY_Y, TOY_S >= 0.5).ravel()
    assert (tn, fp, fn, tp) == (3, 1, 2, 2)
    # A score equal to the threshold is a positive call.
    assert operating_point(TOY_Y, TOY_S, 0.4)["tp"] == 3


def test_no_positive_calls_gives_undefined_precision_not_zero():
    op = operating_point(TOY_Y, TOY_S, 0.95)
    assert op["tp"] == 0 and op["fp"] == 0
    assert op["precision"] is None and op["f1"] is None and op["sensitivity"] == 0.0


@pytest.mark.parametrize(
    "y, reason",
    [
        ([0, 0, 0, 0], "no positive case among 4 labelled cases"),
        ([1, 1, 1, np.nan], "no negative case among 3 labelled cases"),
        ([np.nan] * 4, "no case has a known label"),
    ],
)
def test_not_estimable_classes_never_raise_or_invent_numbers(y, reason):
    s = np.array([0.2, 0.4, 0.6, 0.8])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no sklearn UndefinedMetricWarning either
        m = evaluate_class("X", np.array(y, dtype=float), s, threshold=0.5, threshold_source="card")
    assert not m.estimable and m.reason.startswith(reason)
    assert m.status == f"not estimable: {m.reason}"
    assert m.auroc is None and m.ci_low is None and m.roc is None and m.youden_threshold is None
    d = m.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["auroc"] is None and d["status"].startswith("not estimable")


def test_not_estimable_class_still_reports_what_is_defined_at_a_card_threshold():
    m = evaluate_class("X", np.zeros(4), np.array([0.2, 0.4, 0.6, 0.8]), threshold=0.5, threshold_source="card")
    assert m.threshold == 0.5 and m.threshold_source == "card"
    assert (m.tn, m.fp, m.fn, m.tp) == (2, 2, 0, 0)
    assert m.specificity == 0.5 and m.sensitivity is None and m.recall is None
    assert m.precision == 0.0  # two positive calls, both wrong: defined, and zero
    # without a threshold there is nothing to count at
    m = evaluate_class("X", np.zeros(4), np.array([0.2, 0.4, 0.6, 0.8]))
    assert m.threshold is None and m.tp is None


def test_unknown_labels_and_missing_scores_are_excluded_per_class():
    y = np.array([0, 1, np.nan, 1, 0, 1])
    s = np.array([0.1, 0.9, 0.5, np.nan, 0.3, 0.6])
    m = evaluate_class("A", y, s, n_bootstrap=0)
    assert m.n == 4 and m.n_excluded == 2 and m.n_positive == 2
    assert m.auroc == roc_auc_score([0, 1, 0, 1], [0.1, 0.9, 0.3, 0.6])


def test_multilabel_report_uses_card_thresholds_and_youden_for_the_rest(thumbs):
    y, s = thumbs
    y2 = np.stack([y, 1 - y, np.zeros_like(y)], axis=1).astype(float)
    s2 = np.stack([s, 1 - s, s], axis=1)
    r = evaluate(y2, s2, ["Abnormal", "Normal", "Never"], thresholds={"Abnormal": 0.5},
                 threshold_source="card", n_bootstrap=100)
    a, n, never = r.classes
    assert (a.threshold, a.threshold_source) == (0.5, "card")
    assert n.threshold_source == "youden" and n.threshold == n.youden_threshold
    assert a.auroc == pytest.approx(roc_auc_score(y, s)) and n.auroc == pytest.approx(roc_auc_score(1 - y, 1 - s))
    assert [c.label for c in r.not_estimable] == ["Never"]
    assert r.mean_auroc == pytest.approx((a.auroc + n.auroc) / 2)
    d = r.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["not_estimable"] == {"Never": never.reason}
    assert d["classes"][0]["roc"]["thresholds"][0] is None  # sklearn's +inf corner


def test_multiclass_one_vs_rest_and_argmax_confusion_matrix():
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3)) + 1.5 * np.eye(3)[truth]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.eye(3)[truth]
    r = evaluate(y, p, ["A", "B", "C"], task="multiclass", n_bootstrap=50)
    for k, c in enumerate(r.classes):
        assert c.auroc == pytest.approx(roc_auc_score(truth == k, p[:, k]))
        assert c.threshold_source == "argmax" and c.threshold is None
        called = p.argmax(axis=1) == k
        assert c.tp == int((called & (truth == k)).sum()) and c.fp == int((called & (truth != k)).sum())
    cm = confusion_matrix(truth, p.argmax(axis=1), labels=[0, 1, 2])
    assert r.multiclass.confusion == cm.tolist()
    assert r.multiclass.accuracy == pytest.approx(np.trace(cm) / 300)
    assert r.multiclass.n == 300 and r.multiclass.n_excluded == 0
    json.dumps(r.to_dict(), allow_nan=False)


def test_shape_mismatch_is_a_programming_error():
    with pytest.raises(ValueError):
        evaluate(np.zeros((4, 2)), np.zeros((5, 2)), ["A", "B"])


def test_roc_json_is_thinned_for_large_sets_but_keeps_its_ends():
    rng = np.random.default_rng(9)
    y = rng.integers(0, 2, 20_000)
    s = rng.random(20_000) + 0.2 * y
    m = evaluate_class("Big", y, s, n_bootstrap=0)
    d = m.roc.to_dict(max_points=500)
    assert len(m.roc.fpr) > 500 and d["points"] == len(d["fpr"]) == len(d["tpr"]) <= 500
    assert d["thinned_from"] == len(m.roc.fpr)
    assert (d["fpr"][0], d["tpr"][0], d["fpr"][-1], d["tpr"][-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(d["fpr"]) >= 0) and np.all(np.diff(d["tpr"]) >= 0)
    # the thinned curve still integrates to the AUROC within plotting accuracy
    assert np.trapezoid(d["tpr"], d["fpr"]) == pytest.approx(m.auroc, abs=0.01)
