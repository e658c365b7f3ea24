"""Predictor on real films: probabilities, calls, warnings, identity, batching, threads."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest

from cxrviewer.findings import CXR14_LABELS
from cxrviewer.model import Prediction, load_model
from tests.model.films import film_from_pixels, load_real_film
from tests.model_helpers import make_tiny_model


def test_predictor_identity_and_labels(tiny_predictor, tiny_model_path):
    p = tiny_predictor
    assert p.labels == list(CXR14_LABELS)
    assert p.name == "tiny-cxr14"
    assert p.checksum == hashlib.sha256(tiny_model_path.read_bytes()).hexdigest()
    assert p.identity == f"tiny-cxr14@{p.checksum[:12]}"
    assert p.model_path == tiny_model_path
    assert p.device.kind in ("CPU", "GPU") and p.device.name


def test_predict_real_films_gives_probabilities_and_calls(tiny_predictor, nih_films):
    preds = tiny_predictor.predict(nih_films, batch_size=4)
    assert len(preds) == len(nih_films)
    for film, pred in zip(nih_films, preds):
        assert isinstance(pred, Prediction)
        assert pred.path == film.path
        assert list(pred.probabilities) == list(CXR14_LABELS)
        assert all(0.0 <= v <= 1.0 for v in pred.probabilities.values())
        thr = tiny_predictor.card.thresholds
        assert pred.calls == [lab for lab in CXR14_LABELS if pred.probabilities[lab] >= thr[lab]]
    # Different films give different outputs (the model really looked at the pixels).
    first = np.array([list(p.probabilities.values()) for p in preds])
    assert np.ptp(first, axis=0).max() > 1e-4


def test_predict_matches_predict_arrays_and_batch_size_does_not_matter(tiny_predictor, nih_films):
    x = np.stack([tiny_predictor.prepare(f) for f in nih_films])
    rows = tiny_predictor.predict_arrays(x)
    assert rows.shape == (len(nih_films), 14) and rows.dtype == np.float32
    for bs in (1, 5):
        preds = tiny_predictor.predict(nih_films, batch_size=bs)
        got = np.array([[p.probabilities[lab] for lab in CXR14_LABELS] for p in preds])
        np.testing.assert_allclose(got, rows, rtol=1e-5, atol=1e-6)


def test_predict_arrays_rejects_wrong_shape(tiny_predictor):
    with pytest.raises(ValueError, match="shape"):
        tiny_predictor.predict_arrays(np.zeros((2, 64, 64, 3), np.float32))
    assert tiny_predictor.predict_arrays(np.zeros((0, 32, 32, 3), np.float32)).shape == (0, 14)
