"""Loading legacy .h5 weights (the course ``pretrained_model.h5`` layout) into a built model."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from cxrviewer.findings import COURSE_H5_LABELS, CXR14_LABELS
from cxrviewer.model.build import LegacyWeightsError, build_classifier, load_legacy_h5_weights
from cxrviewer.model.card import Preprocess
from cxrviewer.model.preprocess import prepare
from tests.model.films import load_real_film
from tests.model_helpers import randomise_weights, tiny_card

SIZE = 64  # weights do not depend on the input size; small keeps the test fast


def build_course_model():
    """The course model exactly as its notebook builds it (Keras 3 spelling)."""
    import keras

    base = keras.applications.DenseNet121(weights=None, include_top=False, input_shape=(None, None, 3))
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    predictions = keras.layers.Dense(len(COURSE_H5_LABELS), activation="sigmoid")(x)
    return keras.Model(inputs=base.input, outputs=predictions)


def keras2_layer_name(name: str) -> str:
    """Keras 2 spelled DenseNet's stem layers with a slash (conv1/conv), Keras 3 cannot."""
    for part in ("conv", "bn", "relu"):
        if name == f"conv1_{part}":
            return f"conv1/{part}"
    return {"input_layer": "input_1", "dense": "dense_1",
            "global_average_pooling2d": "global_average_pooling2d_1"}.get(name, name)


def write_keras2_weights(model, path, group: str | None = None):
    """Write ``model``'s weights in the legacy Keras 2 HDF5 layout (as ``save_weights("x.h5")``
    did in Keras 2 / tf.keras), optionally inside a full-model file's ``model_weights`` group."""
    with h5py.File(path, "w") as f:
        root = f.create_group(group) if group else f
        names = [keras2_layer_name(layer.name) for layer in model.layers]
        root.attrs["layer_names"] = [n.encode() for n in names]
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.3.1"
        for layer, name in zip(model.layers, names):
            g = root.create_group(name)
            weight_names = [f"{name}/{w.path.split('/')[-1]}:0".encode() for w in layer.weights]
            g.attrs["weight_names"] = weight_names
            for wname, w in zip(weight_names, layer.weights):
                g.create_dataset(wname.decode(), data=np.asarray(w))


@pytest.fixture(scope="module")
def course_model():
    model = build_course_model()
    randomise_weights(model, seed=3)  # batch-norm statistics too, so order mistakes show
    return model


@pytest.fixture(scope="module")
def film_input(nih_paths):
    film = load_real_film(nih_paths[0])
    card = tiny_card(CXR14_LABELS, size=SIZE, preprocess=Preprocess(mean=0.5, std=0.25))
    return prepare(film.pixels, card)[None]


@pytest.mark.parametrize("layout", ["keras2", "keras2-full-model", "keras3"])
def test_course_weights_round_trip(course_model, film_input, tmp_path, layout):
    if layout == "keras3":
        path = tmp_path / "course.weights.h5"
        course_model.save_weights(path)
    else:
        path = tmp_path / "pretrained_model.h5"
        write_keras2_weights(course_model, path, group="model_weights" if layout.endswith("full-model") else None)
    fresh = build_classifier(len(COURSE_H5_LABELS), input_size=SIZE)
    before = np.asarray(fresh(film_input))
    load_legacy_h5_weights(fresh, path)
    expected = np.asarray(course_model(film_input))
    got = np.asarray(fresh(film_input))
    assert not np.allclose(before, expected, atol=1e-3)  # the load really changed the model
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_course_label_order_is_reordered_to_the_card(course_model, film_input, tmp_path):
    path = tmp_path / "pretrained_model.h5"
    write_keras2_weights(course_model, path)
    fresh = build_classifier(14, input_size=SIZE)
    load_legacy_h5_weights(fresh, path, file_labels=COURSE_H5_LABELS, model_labels=CXR14_LABELS)
    course_out = np.asarray(course_model(film_input))[0]
    ours = np.asarray(fresh(film_input))[0]
    for j, label in enumerate(CXR14_LABELS):
        assert ours[j] == pytest.approx(course_out[COURSE_H5_LABELS.index(label)], rel=1e-5, abs=1e-6)


def test_wrong_architecture_is_refused_and_model_untouched(course_model, tmp_path):
    path = tmp_path / "pretrained_model.h5"
    write_keras2_weights(course_model, path)
    tiny = build_classifier(14, backbone="tiny", input_size=32)
    before = [w.copy() for w in tiny.get_weights()]
    with pytest.raises(LegacyWeightsError, match="not the same architecture"):
        load_legacy_h5_weights(tiny, path)
    for a, b in zip(before, tiny.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_shape_mismatch_names_the_weight(tmp_path):
    donor = build_classifier(3, backbone="tiny", input_size=32)
    write_keras2_weights(donor, tmp_path / "w.h5")
    other = build_classifier(4, backbone="tiny", input_size=32)
    with pytest.raises(LegacyWeightsError, match=r"predictions/kernel:0.*\(16, 3\).*\(16, 4\)"):
        load_legacy_h5_weights(other, tmp_path / "w.h5")


def test_keras3_weights_of_another_architecture_are_refused(tmp_path):
    donor = build_classifier(3, backbone="tiny", input_size=32)
    donor.save_weights(tmp_path / "w.weights.h5")
    other = build_classifier(3, backbone="resnet50v2", input_size=32)
    with pytest.raises(LegacyWeightsError, match="do not fit"):
        load_legacy_h5_weights(other, tmp_path / "w.weights.h5")


def test_label_lists_must_match(tmp_path):
    model = build_classifier(14, backbone="tiny", input_size=32)
    write_keras2_weights(model, tmp_path / "w.h5")
    wrong = list(CXR14_LABELS[:-1]) + ["Covid"]
    with pytest.raises(LegacyWeightsError, match="Covid"):
        load_legacy_h5_weights(model, tmp_path / "w.h5", file_labels=COURSE_H5_LABELS, model_labels=wrong)


def test_not_a_weight_file(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_bytes(b"not hdf5 at all")
    model = build_classifier(2, backbone="tiny", input_size=32)
    with pytest.raises(LegacyWeightsError, match="not an HDF5"):
        load_legacy_h5_weights(model, bad)
    with pytest.raises(LegacyWeightsError, match="not found"):
        load_legacy_h5_weights(model, tmp_path / "missing.h5")
