"""The training wizard (Model ▸ Train a model…): data, checks, model, training, results.

It drives the training pipeline (``cxrviewer.training``) with a recipe built from its
pages; nothing here trains or evaluates by itself. ``plan``, ``analysis`` and ``eta`` hold
no Qt; the pages, the charts and the worker thread do.
"""

from cxrviewer.gui.wizard.wizard import TrainingWizard

__all__ = ["TrainingWizard"]
