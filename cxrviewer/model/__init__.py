"""Model core: model card, architecture builders, Predictor, Grad-CAM, device setup.

Importing this package does not import TensorFlow; ``load_model`` does.
"""

from cxrviewer.model.card import ModelCard, ModelCardError, Preprocess, card_path_for
from cxrviewer.model.loading import ModelLoadError, load_model, save_model

__all__ = [
    "ModelCard",
    "ModelCardError",
    "ModelLoadError",
    "Prediction",
    "Predictor",
    "Preprocess",
    "card_path_for",
    "load_model",
    "save_model",
]


def __getattr__(name):
    # Predictor pulls in OpenCV; loaded on first use so `import cxrviewer.model` stays light.
    if name in ("Predictor", "Prediction"):
        from cxrviewer.model import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'cxrviewer.model' has no attribute {name!r}")
