"""Class frequencies and the class weights that balance them (NumPy only).

Chest findings are rare: with 2 % positives, a loss that counts every example the same is
minimised by calling everything negative. The method weights each class's positive term
by the negative frequency and the negative term by the positive frequency, so positives
and negatives contribute equally to the loss:

    p      = fraction of positive training labels of the class (unknown labels ignored)
    w_pos  = 1 - p
    w_neg  = p

The GUI wizard imports this module to draw the contribution chart before TensorFlow is
loaded, so it must not import TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassFrequencies:
    """Per-class counts on the training labels; NaN (unknown) labels are not counted."""

    labels: tuple[str, ...]
    positives: np.ndarray  # (k,) int
    negatives: np.ndarray  # (k,) int

    @property
    def known(self) -> np.ndarray:
        return self.positives + self.negatives

    @property
    def positive_frequency(self) -> np.ndarray:
        """p per class; NaN for a class with no known label at all."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.known > 0, self.positives / np.maximum(self.known, 1), np.nan)

    def untrainable(self) -> list[str]:
        """Classes without both a positive and a negative example: nothing to learn from."""
        return [lab for lab, pos, neg in zip(self.labels, self.positives, self.negatives) if pos == 0 or neg == 0]


def class_frequencies(labels: np.ndarray, label_names) -> ClassFrequencies:
    """Count positives (>= 0.5) and negatives per column of an (n, k) matrix with NaN = unknown."""
    y = np.asarray(labels, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] != len(label_names):
        raise ValueError(f"label matrix shape {y.shape} does not match {len(label_names)} label names")
    known = ~np.isnan(y)
    pos = np.sum(known & (np.nan_to_num(y) >= 0.5), axis=0).astype(np.int64)
    neg = np.sum(known, axis=0).astype(np.int64) - pos
    return ClassFrequencies(tuple(label_names), pos, neg)


@dataclass(frozen=True)
class BinaryClassWeights:
    """The method's weights for a multi-label head: w_pos = 1 - p, w_neg = p."""

    labels: tuple[str, ...]
    w_pos: np.ndarray  # (k,) float32
    w_neg: np.ndarray  # (k,) float32

    def contributions(self, freqs: ClassFrequencies) -> dict[str, np.ndarray]:
        """Positive and negative loss contribution per class, before and after weighting.

        Before: the frequencies themselves; after: frequency x weight, equal for both sides
        when the weights come from the same frequencies (the method's chart).
        """
        p = np.nan_to_num(freqs.positive_frequency)
        return {
            "positive_before": p,
            "negative_before": 1.0 - p,
            "positive_after": p * self.w_pos,
            "negative_after": (1.0 - p) * self.w_neg,
        }

    def to_dict(self) -> dict:
        return {lab: {"w_pos": float(wp), "w_neg": float(wn)}
                for lab, wp, wn in zip(self.labels, self.w_pos, self.w_neg)}


def binary_class_weights(freqs: ClassFrequencies) -> BinaryClassWeights:
    """w_pos = 1 - p, w_neg = p per class.

    A class with no known label in training (p undefined) gets 0.5/0.5, so it neither
    dominates nor vanishes if a later batch does label it; such a class is reported as
    untrainable anyway.
    """
    p = freqs.positive_frequency
    p = np.where(np.isnan(p), 0.5, p)
    return BinaryClassWeights(freqs.labels, (1.0 - p).astype(np.float32), p.astype(np.float32))


def multiclass_class_weights(freqs: ClassFrequencies) -> np.ndarray:
    """Inverse-frequency weights for a single-label (softmax) head, normalised to mean 1 per example.

    w_c = n / (k * n_c): every class then carries the same total weight, and the weighted
    average over the training examples is 1 so the loss scale and learning rate stay
    comparable to the unweighted loss. A class absent from training gets weight 0.
    """
    counts = freqs.positives.astype(np.float64)
    present = counts > 0
    k = int(np.sum(present))
    if k == 0:
        raise ValueError("no class has a training example")
    n = float(np.sum(counts))
    w = np.zeros_like(counts)
    w[present] = n / (k * counts[present])
    return w.astype(np.float32)
