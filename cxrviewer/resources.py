"""Where shipped files live: the repository in development, the bundle in a frozen app."""

from __future__ import annotations

import sys
from pathlib import Path

DEFAULT_MODEL_NAME = "cxr14-densenet121.keras"


def app_root() -> Path:
    """Folder holding ``models/`` and ``resources/``.

    PyInstaller unpacks data beside the executable (``sys._MEIPASS``); otherwise the
    package sits in the source checkout (installed editable, as the README does).
    """
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen)
    return Path(__file__).resolve().parents[1]


def models_dir() -> Path:
    return app_root() / "models"


def default_model_path() -> Path:
    return models_dir() / DEFAULT_MODEL_NAME


def resources_dir() -> Path:
    return app_root() / "resources"


def samples_dir() -> Path:
    return resources_dir() / "samples"
