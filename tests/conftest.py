"""Shared test fixtures: where the real films are, and a tidy offscreen Qt."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Offscreen Qt for every test run; CI has no display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Quieter TensorFlow and the same thread budget CI has, so timings are comparable.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    env = os.environ.get("CXR_DATA")
    return Path(env) if env else (REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Root of the shared real films (``../shared/data``; override with CXR_DATA)."""
    d = _data_dir()
    if not (d / "README.md").exists():
        pytest.fail(f"real test films not found at {d}; set CXR_DATA to the shared data folder")
    return d


@pytest.fixture(scope="session")
def dicom_dir(data_dir) -> Path:
    return data_dir / "dicom"


@pytest.fixture(scope="session")
def nih_png_dir(data_dir) -> Path:
    return data_dir / "nih" / "png1024"


@pytest.fixture(scope="session")
def test_output_dir() -> Path:
    """Where tests leave artefacts for review (screenshots, reports); not committed."""
    d = REPO / "test-output"
    d.mkdir(exist_ok=True)
    return d
