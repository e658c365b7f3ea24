"""The shipped demo films: all load, each is documented, the MONOCHROME1 twin matches."""

from __future__ import annotations

import csv

import numpy as np

from cxrviewer.io import list_films, load_film
from cxrviewer.resources import samples_dir


def test_every_sample_loads_and_is_documented():
    folder = samples_dir()
    readme = (folder / "README.md").read_text(encoding="utf-8")
    films = list(list_films(folder))
    assert len(films) >= 8
    for path in films:
        film = load_film(path)
        assert film.pixels.std() > 0.05
        assert path.relative_to(folder).as_posix() in readme
    kinds = {load_film(p).meta.source_format for p in films}
    assert kinds == {"png", "jpeg", "dicom"}
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert total < 5 * 1024 * 1024


def test_monochrome1_sample_looks_like_its_original():
    """JPEG re-encoding tolerance as in test_dicom: 8/255 per pixel, 0.5/255 mean."""
    folder = samples_dir() / "siim"
    original = load_film(folder / "siim-pneumothorax-cr.dcm")
    twin = load_film(folder / "siim-pneumothorax-cr-monochrome1.dcm")
    assert twin.meta.photometric == "MONOCHROME1"
    difference = np.abs(twin.pixels - original.pixels)
    assert difference.max() <= 8 / 255 and difference.mean() <= 0.5 / 255


def test_sample_labels_name_the_nih_films():
    folder = samples_dir()
    with open(folder / "labels.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["Image Index"] for row in rows} == {p.name for p in (folder / "nih").glob("*.png")}
    assert all(row["Finding Labels"] for row in rows)
