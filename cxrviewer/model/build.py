"""Architecture builders: a backbone, global average pooling, one Dense output layer.

The layout is the method's (DenseNet121 without its ImageNet top, GAP, Dense with sigmoid
for multi-label findings or softmax for exclusive classes), flattened into one functional
model so the Grad-CAM target layer and the output are reachable by name. Backbone weights
are never downloaded: ``weights`` is None (random initialisation) or a local file.
"""

from __future__ import annotations

from pathlib import Path

from cxrviewer.model.legacy_h5 import LegacyWeightsError, load_legacy_h5_weights

__all__ = [
    "BACKBONES",
    "LegacyWeightsError",
    "build_classifier",
    "default_gradcam_layer",
    "load_legacy_h5_weights",
]

# backbone -> the layer Grad-CAM reads: the last activation before global pooling, where
# the features are still spatial and backprop from the output only crosses GAP + Dense.
_GRADCAM_LAYERS = {
    "densenet121": "relu",
    "resnet50v2": "post_relu",
    "efficientnetb0": "top_activation",
    "tiny": "features",
}
BACKBONES = tuple(_GRADCAM_LAYERS)
TASK_ACTIVATIONS = {"multilabel": "sigmoid", "multiclass": "softmax"}
OUTPUT_LAYER = "predictions"
POOL_LAYER = "avg_pool"


def default_gradcam_layer(backbone: str) -> str:
    """Name of the Grad-CAM target layer for a backbone built by ``build_classifier``."""
    try:
        return _GRADCAM_LAYERS[backbone]
    except KeyError:
        raise ValueError(f"unknown backbone '{backbone}' (known: {', '.join(BACKBONES)})") from None


def _tiny_backbone(inputs):
    """A few-thousand-parameter conv net for tests and smoke runs (builds in well under 1 s).

    Stride 4 overall, with a BatchNormalization so training code meets the same layer
    kinds (frozen statistics, moving averages) it meets in DenseNet121.
    """
    import keras
    from keras import layers

    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="tiny_conv1")(inputs)
    x = layers.BatchNormalization(name="tiny_bn1")(x)
    x = layers.Activation("relu", name="tiny_relu1")(x)
    x = layers.Conv2D(16, 3, strides=2, padding="same", name="tiny_conv2")(x)
    x = layers.Activation("relu", name="features")(x)
    return keras.Model(inputs, x, name="tiny")


def _backbone_model(backbone: str, input_shape, weights):
    import keras

    if weights is not None:
        if str(weights).lower() == "imagenet":
            raise ValueError("weights='imagenet' would need a download; pass None or a local weights file")
        if not Path(weights).is_file():
            raise ValueError(f"backbone weights file not found: {weights}")
        weights = str(weights)
    apps = {
        "densenet121": keras.applications.DenseNet121,
        "resnet50v2": keras.applications.ResNet50V2,
        "efficientnetb0": keras.applications.EfficientNetB0,
    }
    if backbone == "tiny":
        if weights is not None:
            raise ValueError("the tiny backbone has no pretrained weights")
        return _tiny_backbone(keras.Input(input_shape, name="image"))
    if backbone not in apps:
        raise ValueError(f"unknown backbone '{backbone}' (known: {', '.join(BACKBONES)})")
    return apps[backbone](include_top=False, weights=weights, input_shape=input_shape)


def build_classifier(
    n_outputs: int,
    *,
    task: str = "multilabel",
    backbone: str = "densenet121",
    input_size: int | None = 320,
    channels: int = 3,
    weights: str | Path | None = None,
    name: str | None = None,
):
    """Backbone (no top) -> GlobalAveragePooling2D -> Dense(n, sigmoid|softmax).

    n_outputs: number of labels. task: "multilabel" (independent sigmoids) or "multiclass"
    (softmax over exclusive classes). input_size: square input side, or None for a fully
    convolutional model (the course model's (None, None, 3) layout). weights: None for
    random initialisation or a local file of backbone weights without top (the Keras
    ImageNet "notop" layout); nothing is downloaded.

    The Dense output is float32 even under a mixed_float16 policy, so sigmoid/softmax and
    the loss are computed at full precision. Layers keep the Keras application names
    (e.g. DenseNet121's final ``relu``), so ``default_gradcam_layer`` and legacy weight files
    find them.
    """
    import keras
    from keras import layers

    if task not in TASK_ACTIVATIONS:
        raise ValueError(f"task must be one of {', '.join(TASK_ACTIVATIONS)}, got '{task}'")
    if int(n_outputs) < 1 or (task == "multiclass" and int(n_outputs) < 2):
        raise ValueError(f"{task} needs {'two' if task == 'multiclass' else 'one'} or more outputs, got {n_outputs}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if input_size is not None and int(input_size) < 32:
        raise ValueError(f"input_size {input_size} is too small (32 or more)")
    side = None if input_size is None else int(input_size)

    base = _backbone_model(backbone, (side, side, channels), weights)
    x = layers.GlobalAveragePooling2D(name=POOL_LAYER)(base.output)
    out = layers.Dense(int(n_outputs), activation=TASK_ACTIVATIONS[task], dtype="float32", name=OUTPUT_LAYER)(x)
    return keras.Model(base.input, out, name=name or f"{backbone}_{task}")
