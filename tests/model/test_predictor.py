"""Predictor on real films: probabilities, calls, warnings, identity, batching, threads."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest

from cxrviewer.findings import CXR14_LABELS
from cxrviewer.model import Prediction, load_model
from tests.model.films import film_from_pixels
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


def test_loader_warnings_are_carried_into_the_prediction(tiny_predictor, nih_films):
    film = nih_films[0]
    warned = film_from_pixels(film.pixels, "warned.png", warnings=["header says RIBCAGE, not CHEST"])
    pred = tiny_predictor.predict([warned])[0]
    assert pred.warnings == ["header says RIBCAGE, not CHEST"]
    plain = tiny_predictor.predict([film])[0]
    assert plain.warnings == list(film.warnings)
    assert pred.probabilities == pytest.approx(plain.probabilities, abs=1e-6)  # still predicted


def test_film_smaller_than_model_input_warns(tmp_path, nih_films):
    predictor = load_model(make_tiny_model(tmp_path, CXR14_LABELS, size=128))
    small = film_from_pixels(nih_films[0].pixels[::10, ::10], "small.png", warnings=["loader note"])
    pred = predictor.predict([small])[0]
    assert pred.warnings[0] == "loader note"
    assert any("smaller than the model input 128x128" in w for w in pred.warnings)
    assert not predictor.predict([nih_films[0]])[0].warnings


def test_very_non_square_film_warns(tiny_predictor, nih_films):
    strip = film_from_pixels(nih_films[0].pixels[:300, :], "strip.png")
    assert any("far from square" in w for w in tiny_predictor.predict([strip])[0].warnings)


def test_multiclass_call_is_the_argmax_above_its_threshold(tmp_path, nih_films):
    labels = ["NORMAL", "PNEUMONIA", "COVID"]
    path = make_tiny_model(tmp_path, labels, task="multiclass", name="mc",
                           thresholds={"NORMAL": 0.0, "PNEUMONIA": 0.0, "COVID": 0.0})
    predictor = load_model(path)
    preds = predictor.predict(nih_films)
    for pred in preds:
        assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert pred.calls == [max(pred.probabilities, key=pred.probabilities.get)]
    # A threshold above every softmax output: no call at all.
    predictor.card.thresholds = dict.fromkeys(labels, 0.99)
    assert all(p.calls == [] for p in predictor.predict(nih_films))


def test_untrained_labels_are_hidden(tmp_path, nih_films):
    labels = ["Atelectasis", "Lung Lesion", "Effusion", "Fracture"]
    path = make_tiny_model(tmp_path, labels, name="partial", untrained_labels=["Lung Lesion", "Fracture"],
                           thresholds={"Atelectasis": 0.0, "Effusion": 1.0})
    predictor = load_model(path)
    assert predictor.labels == ["Atelectasis", "Effusion"]
    pred = predictor.predict(nih_films[:1])[0]
    assert list(pred.probabilities) == ["Atelectasis", "Effusion"]
    assert pred.calls == ["Atelectasis"]
    assert predictor.predict_arrays(predictor.prepare(nih_films[0])).shape == (1, 4)
    with pytest.raises(ValueError, match="not trained"):
        predictor.gradcam(nih_films[0], "Fracture")
    with pytest.raises(ValueError, match="unknown label 'Covid'"):
        predictor.gradcam(nih_films[0], "Covid")


def test_repeated_calls_do_not_retrace(tiny_predictor, nih_films):
    for n in (1, 3, 6, 2):
        tiny_predictor.predict(nih_films[:n], batch_size=n)
    assert tiny_predictor._forward.experimental_get_tracing_count() == 1


def test_concurrent_predicts_from_threads_agree(tiny_predictor, nih_films):
    expected = [p.probabilities for p in tiny_predictor.predict(nih_films)]
    results, errors = {}, []

    def work(i):
        try:
            order = nih_films[i % len(nih_films):] + nih_films[: i % len(nih_films)]
            for _ in range(3):
                got = tiny_predictor.predict(order, batch_size=1 + i % 3)
                results.setdefault(i, []).append({p.path: p.probabilities for p in got})
            tiny_predictor.explain(nih_films[i % len(nih_films)])
        except Exception as exc:  # surfaced below; a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert len(results) == 6
    for runs in results.values():
        for run in runs:
            for film, probs in zip(nih_films, expected):
                assert run[film.path] == pytest.approx(probs, abs=1e-5)


def test_prediction_top(tiny_predictor, nih_films):
    pred = tiny_predictor.predict(nih_films[:1])[0]
    top = pred.top(3)
    assert len(top) == 3 and top[0][1] == max(pred.probabilities.values())
    assert [v for _, v in top] == sorted([v for _, v in top], reverse=True)


def test_warm_up_traces_once_and_later_calls_reuse_it(tmp_path, nih_films):
    predictor = load_model(make_tiny_model(tmp_path, CXR14_LABELS))
    predictor.warm_up()
    assert predictor._forward.experimental_get_tracing_count() == 1
    predictor.predict(nih_films[:3])
    predictor.explain(nih_films[0], ["Mass", "Edema"])
    predictor.explain(nih_films[1])
    assert predictor._forward.experimental_get_tracing_count() == 1
    assert predictor._gradcam._run.experimental_get_tracing_count() == 1


def test_predictor_on_a_training_runs_model_leaves_the_global_policy_alone(nih_films):
    """Training may hand its in-memory (mixed precision) model to a Predictor for evaluation."""
    import keras

    from cxrviewer.model.build import build_classifier
    from cxrviewer.model.predictor import Predictor
    from tests.model_helpers import tiny_card

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_classifier(14, backbone="tiny", input_size=32)
        predictor = Predictor(model, tiny_card(CXR14_LABELS))
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        assert predictor.device.mixed_precision is True
        assert predictor.identity == "tiny"  # no file, no checksum
        pred = predictor.predict(nih_films[:2])
        assert all(np.isfinite(list(p.probabilities.values())).all() for p in pred)
    finally:
        keras.mixed_precision.set_global_policy("float32")
