"""Architecture builders: shapes, heads, Grad-CAM layer names, float32 output."""

from __future__ import annotations

import numpy as np
import pytest

from cxrviewer.model.build import BACKBONES, build_classifier, default_gradcam_layer


@pytest.mark.parametrize(
    "backbone, size, channels",
    [("densenet121", 64, 3), ("resnet50v2", 64, 1), ("efficientnetb0", 64, 3), ("tiny", 32, 1)],
)
def test_builder_shapes_and_gradcam_layer(backbone, size, channels):
    model = build_classifier(5, backbone=backbone, input_size=size, channels=channels)
    assert tuple(model.inputs[0].shape) == (None, size, size, channels)
    assert tuple(model.outputs[0].shape) == (None, 5)
    target = model.get_layer(default_gradcam_layer(backbone))
    assert len(target.output.shape) == 4  # spatial, as Grad-CAM needs
    # The Grad-CAM target feeds the pooling directly: backprop from the output is cheap.
    assert model.get_layer("avg_pool").input is target.output
    out = np.asarray(model(np.zeros((2, size, size, channels), np.float32)))
    assert out.shape == (2, 5) and np.all((out > 0) & (out < 1))


def test_densenet121_has_the_method_layout():
    model = build_classifier(14, input_size=None)  # course layout: any input size
    assert tuple(model.inputs[0].shape) == (None, None, None, 3)
    assert model.layers[-1].name == "predictions" and model.layers[-1].activation.__name__ == "sigmoid"
    assert model.layers[-2].__class__.__name__ == "GlobalAveragePooling2D"
    assert default_gradcam_layer("densenet121") == "relu"
    assert model.get_layer("relu").input is model.get_layer("bn").output
    # 7,037,504 DenseNet121 weights without top + 1024*14 + 14 for the head.
    assert model.count_params() == 7037504 + 1024 * 14 + 14


def test_multiclass_uses_softmax():
    model = build_classifier(3, task="multiclass", backbone="tiny", input_size=32)
    out = np.asarray(model(np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype(np.float32)))
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    assert model.layers[-1].activation.__name__ == "softmax"


def test_output_layer_stays_float32_under_mixed_precision():
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_classifier(2, backbone="tiny", input_size=32)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("features").compute_dtype == "float16"
    assert model.layers[-1].compute_dtype == "float32"
    assert model.outputs[0].dtype == "float32"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"task": "regression"}, "task"),
        ({"backbone": "vgg99"}, "unknown backbone"),
        ({"channels": 2}, "channels"),
        ({"input_size": 8}, "too small"),
        ({"weights": "imagenet"}, "download"),
        ({"weights": "/nonexistent/densenet.h5"}, "not found"),
    ],
)
def test_builder_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_classifier(3, **{"backbone": "tiny", "input_size": 32, **kwargs})


def test_multiclass_needs_two_outputs():
    with pytest.raises(ValueError, match="two"):
        build_classifier(1, task="multiclass", backbone="tiny", input_size=32)


def test_every_backbone_has_a_gradcam_layer():
    assert set(BACKBONES) == {"densenet121", "resnet50v2", "efficientnetb0", "tiny"}
    with pytest.raises(ValueError):
        default_gradcam_layer("nope")
