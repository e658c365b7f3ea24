"""Export a trained model for inference: a clean ``.keras`` file and its complete card.

The exported network is rebuilt from the builder and given the trained weights, so the
file holds no optimizer state, no training loss and no mixed-precision policy: just the
float32 classifier that ``cxrviewer.model.load_model`` accepts. Model and card are written
together atomically by ``cxrviewer.model.save_model`` (temp files, then rename), and an
existing model is never replaced unless the caller says ``overwrite=True``.
"""

from __future__ import annotations

from pathlib import Path

from cxrviewer import NOT_FOR_DIAGNOSIS
from cxrviewer.model.card import ModelCard, card_path_for

INTENDED_USE = f"Demonstration model. {NOT_FOR_DIAGNOSIS}"


class ExportError(RuntimeError):
    """The model cannot be written where asked (exists, bad name...)."""


def check_target(path: str | Path, overwrite: bool = False) -> Path:
    """Raise ExportError when ``path`` (or its card) exists and ``overwrite`` is False.

    Called before training too, so a long run does not end on a refusal.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ExportError(f"{path.name}: model files end in .keras")
    if not overwrite:
        for p in (path, card_path_for(path)):
            if p.exists():
                raise ExportError(f"{p} already exists; choose another name or allow overwriting "
                                  "(recipe output.overwrite = true, or --overwrite)")
    return path


def inference_copy(model, card: ModelCard):
    """A fresh float32 build of the same architecture holding ``model``'s weights."""
    import keras

    from cxrviewer.model.build import build_classifier

    backbone = card.architecture.get("backbone")
    if not backbone:
        raise ExportError("the card does not name the backbone (architecture.backbone)")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        clean = build_classifier(len(card.labels), task=card.task, backbone=backbone,
                                 input_size=card.input_size, channels=card.input_channels,
                                 name=card.name.replace(" ", "_"))
    finally:
        keras.config.set_dtype_policy(previous)
    clean.set_weights(model.get_weights())
    return clean


def export_model(model, card: ModelCard, path: str | Path, *, overwrite: bool = False,
                 verify: bool = True) -> Path:
    """Write ``path`` (.keras) + its card atomically; with ``verify``, load it back with
    ``cxrviewer.model.load_model`` and check it gives the same outputs as ``model``."""
    import numpy as np

    from cxrviewer.model.loading import load_model, save_model

    path = check_target(path, overwrite)
    card.validate(card_path_for(path).name)
    clean = inference_copy(model, card)
    save_model(clean, card, path)
    if verify:
        predictor = load_model(path)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((2, card.input_size, card.input_size, card.input_channels)).astype(np.float32)
        a = np.asarray(predictor.predict_arrays(x), dtype=np.float32)
        b = np.asarray(model(x, training=False), dtype=np.float32)
        if not np.allclose(a, b, atol=2e-3):
            raise ExportError(f"{path.name}: the exported model does not reproduce the trained one "
                              f"(max difference {np.abs(a - b).max():.4f})")
    return path


def publish_model(exported: str | Path, target: str | Path, *, overwrite: bool = False) -> Path:
    """Copy an exported model and its card to ``target`` (e.g. ``models/``), atomically.

    A byte-for-byte copy, so the published file has the checksum the run reported and
    ``name@sha`` identities in results CSVs match either copy.
    """
    import shutil

    from cxrviewer.fsutil import atomic_path

    exported, target = Path(exported), check_target(target, overwrite)
    with atomic_path(target) as tmp_model, atomic_path(card_path_for(target)) as tmp_card:
        shutil.copyfile(exported, tmp_model)
        shutil.copyfile(card_path_for(exported), tmp_card)
    return target
