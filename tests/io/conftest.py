"""io test fixtures: the real films the builders start from, and the shared-DICOM parameter."""

from __future__ import annotations

from pathlib import Path

import pytest
from io_builders import DATA, NIH_DX, RSNA_DIR, SIIM, shared_dicoms


def pytest_generate_tests(metafunc):
    if "shared_dicom" in metafunc.fixturenames:
        paths = shared_dicoms()
        metafunc.parametrize(
            "shared_dicom", paths, ids=[str(p.relative_to(DATA / "dicom")) for p in paths]
        )


@pytest.fixture
def siim_path(data_dir) -> Path:
    return data_dir / SIIM


@pytest.fixture
def nih_dx_path(data_dir) -> Path:
    return data_dir / NIH_DX


@pytest.fixture
def rsna_path(data_dir) -> Path:
    return sorted((data_dir / RSNA_DIR).glob("*.dcm"))[0]
