"""Fixtures for the model-core tests: real films and small saved models."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxrviewer.findings import CXR14_LABELS
from tests.model.films import load_real_film


@pytest.fixture(scope="session")
def nih_paths(nih_png_dir) -> list[Path]:
    paths = sorted(nih_png_dir.glob("*.png"))
    assert len(paths) >= 8, f"expected real NIH films in {nih_png_dir}"
    return paths


@pytest.fixture(scope="session")
def nih_films(nih_paths):
    """Six real NIH films (1024x1024)."""
    return [load_real_film(p) for p in nih_paths[:6]]


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A tiny 14-label multilabel model saved through the real save path (read-only use)."""
    from tests.model_helpers import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny"), CXR14_LABELS, size=32, name="tiny-cxr14")


@pytest.fixture(scope="session")
def tiny_predictor(tiny_model_path):
    from cxrviewer.model import load_model

    return load_model(tiny_model_path)
