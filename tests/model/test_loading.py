"""Safe model loading: refusals, card/model agreement, missing model, atomic saving."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from cxrviewer.model import ModelLoadError, load_model, save_model
from cxrviewer.model.card import ModelCardError, card_path_for
from cxrviewer.fsutil import file_sha256
from cxrviewer.model.loading import to_mixed_precision
from tests.model_helpers import make_tiny_model, tiny_card

LABELS = ["Atelectasis", "Effusion", "Mass"]


def small_model(middle=None, n_out=3, activation="sigmoid"):
    """Input -> [middle layer] -> conv 'features' -> GAP -> Dense: the shape our cards describe."""
    import keras
    from keras import layers

    inp = keras.Input((32, 32, 3))
    x = middle(inp) if middle is not None else inp
    x = layers.Conv2D(4, 3, activation="relu", name="features")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(n_out, activation=activation, name="predictions")(x))


def rewrite_keras_file(path, edit) -> None:
    """Apply ``edit`` to the {member name: bytes} of a .keras zip, as a tampered file would be."""
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    edit(members)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_missing_model_says_how_to_get_one(tmp_path):
    with pytest.raises(ModelLoadError) as err:
        load_model(tmp_path / "models" / "cxr14-densenet121.keras")
    msg = one_line(err)
    assert "no model at" in msg and "cxr14-densenet121.keras" in msg
    assert "cxrviewer train training/cxr14_densenet121.toml" in msg and "cxrviewer import-weights" in msg


def test_no_path_loads_the_shipped_model_location(tmp_path, monkeypatch):
    import cxrviewer.resources as resources

    missing = tmp_path / "models" / "cxr14-densenet121.keras"
    monkeypatch.setattr(resources, "default_model_path", lambda: missing)
    with pytest.raises(ModelLoadError, match="no model at .*cxr14-densenet121.keras"):
        load_model()
    shipped = make_tiny_model(tmp_path, LABELS, name="shipped")
    monkeypatch.setattr(resources, "default_model_path", lambda: shipped)
    assert load_model().model_path == shipped


def test_missing_card_is_refused(tmp_path):
    path = make_tiny_model(tmp_path, LABELS)
    card_path_for(path).unlink()
    with pytest.raises(ModelLoadError, match="tiny.card.json: model card not found"):
        load_model(path)


def test_broken_card_is_refused_with_the_field(tmp_path):
    path = make_tiny_model(tmp_path, LABELS)
    d = json.loads(card_path_for(path).read_text())
    del d["intended_use"]
    card_path_for(path).write_text(json.dumps(d))
    with pytest.raises(ModelLoadError, match="missing field 'intended_use'"):
        load_model(path)


def test_legacy_h5_and_non_keras_files_are_refused(tmp_path):
    for name, message in [("m.h5", "legacy .h5 model files are not loaded"), ("m.pb", "not a .keras model file")]:
        (tmp_path / name).write_bytes(b"\x89HDF\r\n")
        with pytest.raises(ModelLoadError, match=message):
            load_model(tmp_path / name)
    fake = tmp_path / "fake.keras"
    fake.write_bytes(b"this is not a zip")
    tiny_card(LABELS).save(card_path_for(fake))
    with pytest.raises(ModelLoadError, match="fake.keras: not a Keras 3 .keras file"):
        load_model(fake)


def test_lambda_layer_is_refused(tmp_path):
    import keras

    path = save_model(small_model(keras.layers.Lambda(lambda t: t * 2.0, name="doubler")),
                      tiny_card(LABELS), tmp_path / "lam.keras")
    with pytest.raises(ModelLoadError) as err:
        load_model(path)
    assert "lam.keras: refused to load: the model contains a Lambda layer" in one_line(err)
    assert "'doubler'" in str(err.value)


def test_registered_custom_object_is_refused_even_though_this_process_knows_it(tmp_path):
    import keras

    @keras.saving.register_keras_serializable(package="cxrtest")
    class Twice(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    path = save_model(small_model(Twice(name="twice")), tiny_card(LABELS), tmp_path / "custom.keras")
    with pytest.raises(ModelLoadError, match="refused to load: the model contains a custom object 'cxrtest>Twice'"):
        load_model(path)


def test_unregistered_custom_object_is_refused(tmp_path):
    import keras

    class Halve(keras.layers.Layer):
        def call(self, x):
            return x * 0.5

    path = save_model(small_model(Halve(name="halve")), tiny_card(LABELS), tmp_path / "custom.keras")
    with pytest.raises(ModelLoadError, match="refused to load: the model contains .*Halve"):
        load_model(path)


def test_tampered_config_pointing_at_other_modules_is_refused(tmp_path):
    """A config naming ``os``/``subprocess`` never reaches Keras's deserializer."""
    path = make_tiny_model(tmp_path, LABELS)

    def point_at_subprocess(members):
        config = json.loads(members["config.json"])
        dense = config["config"]["layers"][-1]
        dense["config"]["kernel_initializer"] = {"module": "subprocess", "class_name": "function",
                                                 "config": "run", "registered_name": "function"}
        members["config.json"] = json.dumps(config).encode()

    rewrite_keras_file(path, point_at_subprocess)
    with pytest.raises(ModelLoadError, match="from module 'subprocess'"):
        load_model(path)


def test_python_lambda_marker_is_refused(tmp_path):
    path = make_tiny_model(tmp_path, LABELS)

    def lambda_activation(members):
        config = json.loads(members["config.json"])
        config["config"]["layers"][-1]["config"]["activation"] = {"class_name": "__lambda__",
                                                                  "config": {"value": "AAAA"}}
        members["config.json"] = json.dumps(config).encode()

    rewrite_keras_file(path, lambda_activation)
    with pytest.raises(ModelLoadError, match="a Python lambda"):
        load_model(path)


def test_damaged_weights_are_a_clear_error(tmp_path):
    path = make_tiny_model(tmp_path, LABELS)

    def truncate_weights(members):
        members["model.weights.h5"] = members["model.weights.h5"][:200]

    rewrite_keras_file(path, truncate_weights)
    with pytest.raises(ModelLoadError, match="tiny.keras: cannot load the model"):
        load_model(path)


@pytest.mark.parametrize(
    "card_change, message",
    [
        ({"input_channels": 1}, "the card says 1 input channels, the model takes 3"),
        ({"input_size": 64}, "the card says input size 64, the model takes 32x32"),
        ({"gradcam_layer": "conv5_block16_concat"}, "Grad-CAM layer 'conv5_block16_concat' is not in the model"),
        ({"gradcam_layer": "predictions"}, "is not a spatial (4-D) layer"),
        ({"_labels": LABELS + ["Nodule"]}, "the card lists 4 labels, the model output has shape (None, 3)"),
        ({"task": "multiclass"}, "the card says multiclass but the output layer uses sigmoid"),
    ],
)
def test_card_that_does_not_describe_the_model_is_refused(tmp_path, card_change, message):
    path = make_tiny_model(tmp_path, LABELS)
    card_change = dict(card_change)
    card = tiny_card(card_change.pop("_labels", LABELS), **card_change)
    card_path_for(path).write_text(json.dumps(card.to_dict()))
    with pytest.raises(ModelLoadError) as err:
        load_model(path)
    assert "the card does not match the model" in one_line(err) and message in str(err.value)
    # The save path refuses the same pair before writing anything.
    with pytest.raises(ModelCardError, match=message.replace("(", r"\(").replace(")", r"\)")):
        save_model(small_model(), card, tmp_path / "other.keras")
    assert not (tmp_path / "other.keras").exists()


def test_checksum_is_sha256_of_the_file(tmp_path):
    path = make_tiny_model(tmp_path, LABELS)
    import hashlib

    assert load_model(path).checksum == hashlib.sha256(path.read_bytes()).hexdigest() == file_sha256(path)


def test_failed_save_leaves_previous_model_and_card(tmp_path):
    path = make_tiny_model(tmp_path, LABELS)
    before = (path.read_bytes(), card_path_for(path).read_bytes())

    class Exploding(Exception):
        pass

    model = small_model()

    def boom(*_a, **_k):
        raise Exploding()

    model.save = boom
    with pytest.raises(Exploding):
        save_model(model, tiny_card(LABELS), path)
    assert (path.read_bytes(), card_path_for(path).read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.card.json", "tiny.keras"]


def test_mixed_precision_copy_keeps_outputs_and_float32_head(tmp_path, nih_films):
    predictor = load_model(make_tiny_model(tmp_path, LABELS, size=64))
    mixed = to_mixed_precision(predictor.model)
    assert mixed.get_layer("features").compute_dtype == "float16"
    assert mixed.layers[-1].compute_dtype == "float32"
    x = np.stack([predictor.prepare(f) for f in nih_films[:2]])
    np.testing.assert_allclose(np.asarray(mixed(x)), predictor.predict_arrays(x), atol=2e-2)


def test_mixed_precision_request_on_cpu_runs_float32(tmp_path):
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this checks the CPU fallback")
    predictor = load_model(make_tiny_model(tmp_path, LABELS), mixed_precision=True)
    assert predictor.device.kind == "CPU" and predictor.device.mixed_precision is False
    assert any("no GPU" in n for n in predictor.device.notes)
    assert predictor.model.get_layer("features").compute_dtype == "float32"


def test_compiled_mixed_precision_model_is_saved_as_a_float32_inference_model(tmp_path, nih_films):
    import keras

    from cxrviewer.model.build import build_classifier

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_classifier(len(LABELS), backbone="tiny", input_size=32)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.compile(optimizer="adam", loss="binary_crossentropy")
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype(np.float32)
    model.fit(x, np.ones((4, len(LABELS)), np.float32), epochs=1, verbose=0)  # builds optimizer state
    path = save_model(model, tiny_card(LABELS), tmp_path / "trained.keras")
    import io

    import h5py

    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("config.json"))
        with h5py.File(io.BytesIO(zf.read("model.weights.h5")), "r") as h5:
            assert list(h5) == ["layers", "vars"]  # no optimizer state
    assert not config.get("compile_config")
    predictor = load_model(path)
    assert {layer.dtype_policy.name for layer in predictor.model.layers} == {"float32"}
    np.testing.assert_allclose(predictor.predict_arrays(x), np.asarray(model(x)), atol=2e-2)
