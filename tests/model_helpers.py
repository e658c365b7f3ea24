"""Small real models for tests of every part (GUI, batch, training, import).

``make_tiny_model`` builds the tiny conv backbone through the real builder and saves it
through the real save path (``cxrviewer.model.save_model``) with a complete, valid card,
so tests exercise exactly what ``load_model`` will meet in the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from cxrviewer import NOT_FOR_DIAGNOSIS
from cxrviewer.model.card import ModelCard, Preprocess


def tiny_card(labels: Sequence[str], size: int = 32, task: str = "multilabel", name: str = "tiny",
              channels: int = 3, **overrides) -> ModelCard:
    """A complete card for a tiny untrained test model; override any field by keyword."""
    from cxrviewer.model.build import default_gradcam_layer

    labels = list(labels)
    fields = dict(
        name=name,
        task=task,
        labels=labels,
        input_size=size,
        input_channels=channels,
        preprocess=Preprocess(resize="area", crop="none", clahe=False, mean=0.5, std=0.25),
        gradcam_layer=default_gradcam_layer("tiny"),
        thresholds={lab: 0.5 for lab in labels},
        threshold_rule="fixed 0.5 (untrained test model)",
        training={"data": "none: randomly initialised test model", "patients": 0, "images": 0, "epochs": 0},
        metrics={"validation_auroc": {lab: None for lab in labels}},
        intended_use=f"Software tests only. {NOT_FOR_DIAGNOSIS}",
        architecture={"backbone": "tiny", "input_size": size, "channels": channels},
    )
    fields.update(overrides)
    return ModelCard(**fields)


def make_tiny_model(dir, labels: Sequence[str], size: int = 32, task: str = "multilabel",
                    name: str = "tiny", seed: int = 0, **card_overrides) -> Path:
    """Save a tiny conv classifier as ``dir/<name>.keras`` with its card; return the path.

    Weights are random but reproducible (``seed``). Builds and saves in well under a second
    once TensorFlow is imported.
    """
    from cxrviewer.model.build import build_classifier
    from cxrviewer.model.loading import save_model

    card = tiny_card(labels, size=size, task=task, name=name, **card_overrides)
    model = build_classifier(len(card.labels), task=task, backbone="tiny", input_size=size,
                             channels=card.input_channels, name=name.replace(" ", "_"))
    randomise_weights(model, seed)
    return save_model(model, card, Path(dir) / f"{name}.keras")


def randomise_weights(model, seed: int = 0) -> None:
    """Reproducible random weights without touching global RNG state.

    Batch-norm statistics are randomised too (not 0/1), so weight-transfer tests notice
    a mean or variance that went to the wrong place.
    """
    rng = np.random.default_rng(seed)
    for var in model.weights:
        kind = var.path.split("/")[-1]
        shape = tuple(var.shape)
        if kind == "kernel":
            fan_in = int(np.prod(shape[:-1])) or 1
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        elif kind == "gamma":
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        elif kind == "moving_variance":
            value = rng.uniform(0.5, 1.5, shape)
        else:  # bias, beta, moving_mean
            value = 0.1 * rng.standard_normal(shape)
        var.assign(value.astype(var.dtype))
