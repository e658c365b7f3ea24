"""Class frequencies, the method's weights and the weighted losses (masking, mixed precision)."""

from __future__ import annotations

import numpy as np
import pytest

from cxrviewer.training.weights import (
    binary_class_weights,
    class_frequencies,
    multiclass_class_weights,
)

NAN = np.nan
WORKED_LABELS = np.array([[1, 1, 1], [1, 1, 0], [0, 1, 0], [1, 0, 1]], dtype=np.float32)


def test_worked_example_epsilon_one_gives_equal_losses_for_0_7_and_0_3():
    from cxrviewer.training.loss import WeightedBinaryCrossentropy

    loss = WeightedBinaryCrossentropy([0.25, 0.25, 0.5], [0.75, 0.75, 0.5], epsilon=1.0)
    high = float(loss(WORKED_LABELS, np.full((4, 3), 0.7, np.float32)))
    low = float(loss(WORKED_LABELS, np.full((4, 3), 0.3, np.float32)))
    assert round(high, 4) == -0.4956
    assert round(low, 4) == -0.4956


def test_worked_example_small_epsilon_is_positive_and_symmetric():
    from cxrviewer.training.loss import WeightedBinaryCrossentropy

    loss = WeightedBinaryCrossentropy([0.25, 0.25, 0.5], [0.75, 0.75, 0.5], epsilon=1e-7)
    high = float(loss(WORKED_LABELS, np.full((4, 3), 0.7, np.float32)))
    low = float(loss(WORKED_LABELS, np.full((4, 3), 0.3, np.float32)))
    assert high > 0 and low > 0
    # The weights balance the classes, so a constant guess is not rewarded either way.
    assert high == pytest.approx(low, abs=1e-5)


def test_weights_from_the_worked_example_labels_are_the_methods():
    freqs = class_frequencies(WORKED_LABELS, ["a", "b", "c"])
    w = binary_class_weights(freqs)
    np.testing.assert_allclose(freqs.positive_frequency, [0.75, 0.75, 0.5])
    np.testing.assert_allclose(w.w_pos, [0.25, 0.25, 0.5])
    np.testing.assert_allclose(w.w_neg, [0.75, 0.75, 0.5])
    c = w.contributions(freqs)
    np.testing.assert_allclose(c["positive_after"], c["negative_after"])
    np.testing.assert_allclose(c["positive_before"], [0.75, 0.75, 0.5])


def test_frequencies_ignore_unknown_labels():
    y = np.array([[1, NAN], [0, NAN], [0, 1], [0, 0]], dtype=np.float32)
    freqs = class_frequencies(y, ["a", "b"])
    assert freqs.positives.tolist() == [1, 1]
    assert freqs.negatives.tolist() == [3, 1]
    np.testing.assert_allclose(freqs.positive_frequency, [0.25, 0.5])
    assert freqs.untrainable() == []
    only_neg = class_frequencies(np.array([[0.0], [NAN]]), ["x"])
    assert only_neg.untrainable() == ["x"]


def test_masked_labels_contribute_nothing():
    from cxrviewer.training.loss import WeightedBinaryCrossentropy

    loss = WeightedBinaryCrossentropy([0.3, 0.6], [0.7, 0.4])
    y = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    pred = np.array([[0.8, 0.1], [0.4, 0.7], [0.6, 0.9]], dtype=np.float32)
    base = float(loss(y, pred))
    # Mask class b of the last example: whatever the model says there no longer matters.
    y_masked = y.copy()
    y_masked[2, 1] = NAN
    a = float(loss(y_masked, pred))
    pred2 = pred.copy()
    pred2[2, 1] = 0.001  # a terrible prediction for the masked label
    b = float(loss(y_masked, pred2))
    assert a == pytest.approx(b, rel=1e-6)
    assert np.isfinite(a) and a != pytest.approx(base)
    # And equals the loss computed without that example for class b.
    ref_b = float(WeightedBinaryCrossentropy([0.6], [0.4])(y[:2, 1:], pred[:2, 1:]))
    ref_a = float(WeightedBinaryCrossentropy([0.3], [0.7])(y[:, :1], pred[:, :1]))
    assert a == pytest.approx(ref_a + ref_b, rel=1e-5)
    # A class with no known label in the batch contributes 0, not NaN.
    all_unknown = np.array([[1, NAN], [0, NAN]], dtype=np.float32)
    only_a = float(loss(all_unknown, pred[:2]))
    assert only_a == pytest.approx(float(WeightedBinaryCrossentropy([0.3], [0.7])(y[:2, :1], pred[:2, :1])))


def test_loss_casts_half_precision_predictions_to_float32():
    import tensorflow as tf

    from cxrviewer.training.loss import WeightedBinaryCrossentropy

    loss = WeightedBinaryCrossentropy([0.25, 0.25, 0.5], [0.75, 0.75, 0.5])
    pred16 = tf.constant(np.full((4, 3), 0.7), dtype=tf.float16)
    pred32 = np.full((4, 3), 0.7, np.float32)
    v16 = loss(WORKED_LABELS, pred16)
    assert v16.dtype == tf.float32
    assert float(v16) == pytest.approx(float(loss(WORKED_LABELS, pred32)), rel=1e-3)
    # An output of exactly 1.0 in float16 still gives a finite loss thanks to eps in float32.
    ones = tf.ones((4, 3), dtype=tf.float16)
    assert np.isfinite(float(loss(WORKED_LABELS, ones)))


def test_multiclass_weights_are_inverse_frequency_with_mean_one():
    y = np.array([[1, 0, 0]] * 6 + [[0, 1, 0]] * 3 + [[0, 0, 1]] * 1, dtype=np.float32)
    w = multiclass_class_weights(class_frequencies(y, ["a", "b", "c"]))
    np.testing.assert_allclose(w, [10 / 18, 10 / 9, 10 / 3], rtol=1e-6)
    assert float(np.mean(y @ w)) == pytest.approx(1.0)


def test_weighted_categorical_crossentropy_masks_unknown_rows():
    from cxrviewer.training.loss import WeightedCategoricalCrossentropy

    loss = WeightedCategoricalCrossentropy([1.0, 2.0])
    y = np.array([[1, 0], [0, 1], [NAN, NAN]], dtype=np.float32)
    pred = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]], dtype=np.float32)
    expected = (-np.log(0.9 + 1e-7) - 2.0 * np.log(0.8 + 1e-7)) / 2
    assert float(loss(y, pred)) == pytest.approx(expected, rel=1e-5)
