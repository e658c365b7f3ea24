"""Fixtures for the batch-scoring tests: a folder of real films with bad cases, tiny models.

The folder is built once per session from ``../shared/data`` (copies, so nothing there is
written): NIH PNGs, one of them cropped to a tall non-square film, the NIH DX DICOMs with
their bad-header cases (test4 RIBCAGE, test5 CT, test6 position XX), the modality-OT DICOM,
and generated corrupt files (a truncated DICOM, an empty file, text named .png).
"""

from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxrviewer.findings import CXR14_LABELS

N_NIH = 6
NARROW = "nih/narrow.png"  # 1024 rows x 600 columns: far from square
BAD = {"bad/truncated.dcm", "bad/empty.png", "bad/notes.png"}
WARNED = {"dicom/nih-dx/test4.dcm": "RIBCAGE", "dicom/nih-dx/test5.dcm": "CT",
          "dicom/nih-dx/test6.dcm": "XX", "dicom/misc/not-a-chest-ot.dcm": "OT",
          NARROW: "far from square"}


def build_film_folder(root: Path, data_dir: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    nih_src = sorted((data_dir / "nih" / "png1024").glob("*.png"))[:N_NIH]
    (root / "nih").mkdir()
    for p in nih_src:
        shutil.copy2(p, root / "nih" / p.name)
    tall = cv2.imread(str(nih_src[0]), cv2.IMREAD_GRAYSCALE)[:, 200:800]
    assert cv2.imwrite(str(root / NARROW), tall)
    dx = root / "dicom" / "nih-dx"
    dx.mkdir(parents=True)
    for k in range(1, 7):
        shutil.copy2(data_dir / "dicom" / "nih-dx" / f"test{k}.dcm", dx / f"test{k}.dcm")
    (root / "dicom" / "misc").mkdir()
    shutil.copy2(data_dir / "dicom" / "misc" / "not-a-chest-ot.dcm", root / "dicom" / "misc")
    bad = root / "bad"
    bad.mkdir()
    (bad / "truncated.dcm").write_bytes((data_dir / "dicom" / "nih-dx" / "test1.dcm").read_bytes()[:600_000])
    (bad / "empty.png").write_bytes(b"")
    (bad / "notes.png").write_text("reading list, not an image\n")
    (root / "readme.txt").write_text("not a film: never listed\n")
    return root


def expected_paths(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.suffix != ".txt"}


def nih_labels_csv(data_dir: Path, names, target: Path) -> Path:
    """The NIH Data_Entry rows of ``names`` (file names), in the NIH layout."""
    wanted = set(names)
    with gzip.open(data_dir / "nih" / "Data_Entry_2017_v2020.csv.gz", "rt", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = [r for r in reader if r[0] in wanted]
    assert len(rows) == len(wanted), "every NIH test film has a row in Data_Entry"
    with open(target, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return target


def rows_by_path(csv_path: Path) -> dict[str, dict[str, str]]:
    """Raw CSV rows keyed by path; fails if a path appears twice."""
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = {}
    for r in rows:
        assert r["path"] not in out, f"{r['path']} listed twice"
        out[r["path"]] = r
    return out


def probs_of(row: dict[str, str], labels) -> np.ndarray:
    return np.array([float(row[lab]) for lab in labels])


@pytest.fixture(scope="session")
def film_folder(tmp_path_factory, data_dir) -> Path:
    """Read-only folder of real and broken films (see module docstring)."""
    return build_film_folder(tmp_path_factory.mktemp("batch") / "films", data_dir)


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """Two tiny 14-label models with different weights (hence checksums)."""
    from tests.model_helpers import make_tiny_model

    d = tmp_path_factory.mktemp("models")
    return {"a": make_tiny_model(d, CXR14_LABELS, size=32, name="tiny-a", seed=0),
            "b": make_tiny_model(d, CXR14_LABELS, size=32, name="tiny-b", seed=1)}


@pytest.fixture(scope="session")
def predictor(models):
    from cxrviewer.model import load_model

    return load_model(models["a"])
