"""The training wizard (Model ▸ Train a model…): data, checks, model, training, results.

It drives the training pipeline (``cxrviewer.training``) with a recipe built from its
pages; nothing here trains or evaluates by itself. ``plan``, ``analysis``, ``eta`` and
``child`` hold no Qt (the training process imports them without PySide6); the pages, the
charts and the worker thread do.
"""

__all__ = ["TrainingWizard"]


def __getattr__(name):
    # Lazy, so that the training process importing ``child``/``analysis`` never loads Qt.
    if name == "TrainingWizard":
        from cxrviewer.gui.wizard.wizard import TrainingWizard

        return TrainingWizard
    raise AttributeError(name)
