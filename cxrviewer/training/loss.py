"""The weighted losses the method trains with, with unknown labels masked out.

Multi-label (sigmoid head), exactly the method's formula, per class c and example i:

    L = sum_c  mean_i  -( w_pos[c] * y[i,c] * log(f[i,c] + eps)
                        + w_neg[c] * (1 - y[i,c]) * log(1 - f[i,c] + eps) )

A label that is NaN (the source does not say whether the finding is present) is left out
of its class's mean, so a film from a set that only labels pneumonia teaches the pneumonia
output and nothing else. With no NaN in the batch this is the formula above to the digit.

Multi-class (softmax head): inverse-frequency weighted categorical cross-entropy, averaged
over the examples whose class is known.

Both cast to float32 first: under mixed precision the head's output may arrive as float16,
where log(1 - f + 1e-7) rounds to log(1) and gradients underflow.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def _replica_scale(value):
    """Divide a per-replica mean by the replica count.

    Keras sums gradients across replicas; a loss that is already a scalar mean per replica
    must be scaled so the sum is the global mean (Keras does this for its own reductions,
    but not for a loss that reduces itself). Keras unscales again for the reported value.
    """
    n = tf.distribute.get_strategy().num_replicas_in_sync
    return value / tf.cast(n, value.dtype) if n > 1 else value


class WeightedBinaryCrossentropy(keras.losses.Loss):
    """The method's weighted binary cross-entropy for a multi-label head, NaN labels masked."""

    def __init__(self, w_pos, w_neg, epsilon: float = 1e-7, name: str = "weighted_bce"):
        super().__init__(name=name, reduction="sum", dtype="float32")
        self.w_pos = np.asarray(w_pos, dtype=np.float32).reshape(-1)
        self.w_neg = np.asarray(w_neg, dtype=np.float32).reshape(-1)
        if self.w_pos.shape != self.w_neg.shape:
            raise ValueError("w_pos and w_neg need one value per class")
        self.epsilon = float(epsilon)

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, tf.float32)
        y_pred = tf.cast(y_pred, tf.float32)
        known = tf.logical_not(tf.math.is_nan(y_true))
        y = tf.where(known, y_true, 0.0)
        w_pos = tf.constant(self.w_pos)
        w_neg = tf.constant(self.w_neg)
        term = -(w_pos * y * tf.math.log(y_pred + self.epsilon)
                 + w_neg * (1.0 - y) * tf.math.log(1.0 - y_pred + self.epsilon))
        term = tf.where(known, term, 0.0)
        n_known = tf.reduce_sum(tf.cast(known, tf.float32), axis=0)
        # A class with no known label in this batch contributes 0, not NaN.
        per_class = tf.math.divide_no_nan(tf.reduce_sum(term, axis=0), n_known)
        return _replica_scale(tf.reduce_sum(per_class))

    def get_config(self):
        return {"name": self.name, "w_pos": self.w_pos.tolist(), "w_neg": self.w_neg.tolist(),
                "epsilon": self.epsilon}


class WeightedCategoricalCrossentropy(keras.losses.Loss):
    """Class-weighted categorical cross-entropy for a softmax head; rows with NaN are masked."""

    def __init__(self, class_weights, epsilon: float = 1e-7, name: str = "weighted_cce"):
        super().__init__(name=name, reduction="sum", dtype="float32")
        self.class_weights = np.asarray(class_weights, dtype=np.float32).reshape(-1)
        self.epsilon = float(epsilon)

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, tf.float32)
        y_pred = tf.cast(y_pred, tf.float32)
        known = tf.logical_not(tf.reduce_any(tf.math.is_nan(y_true), axis=-1))
        y = tf.where(tf.math.is_nan(y_true), 0.0, y_true)
        per_example = -tf.reduce_sum(
            tf.constant(self.class_weights) * y * tf.math.log(y_pred + self.epsilon), axis=-1)
        per_example = tf.where(known, per_example, 0.0)
        n_known = tf.reduce_sum(tf.cast(known, tf.float32))
        return _replica_scale(tf.math.divide_no_nan(tf.reduce_sum(per_example), n_known))

    def get_config(self):
        return {"name": self.name, "class_weights": self.class_weights.tolist(), "epsilon": self.epsilon}


def loss_for(task: str, labels: np.ndarray, label_names, epsilon: float = 1e-7) -> keras.losses.Loss:
    """The weighted loss for ``task`` with weights from the training label matrix."""
    from cxrviewer.training.weights import (
        binary_class_weights,
        class_frequencies,
        multiclass_class_weights,
    )

    freqs = class_frequencies(labels, label_names)
    if task == "multilabel":
        w = binary_class_weights(freqs)
        return WeightedBinaryCrossentropy(w.w_pos, w.w_neg, epsilon)
    if task == "multiclass":
        return WeightedCategoricalCrossentropy(multiclass_class_weights(freqs), epsilon)
    raise ValueError(f"unknown task '{task}' (multilabel or multiclass)")
