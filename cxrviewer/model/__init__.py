"""Model core: model card, architecture builders, Predictor, Grad-CAM, device setup.

Importing this package does not import TensorFlow; ``load_model`` does.
"""

from cxrviewer.model.card import ModelCard, ModelCardError, Preprocess, card_path_for

__all__ = ["ModelCard", "ModelCardError", "Preprocess", "card_path_for"]
