"""Folder listing: order, hidden entries, symlink loops, extension-less DICOM, laziness."""

from __future__ import annotations

import inspect
import os
import shutil
from pathlib import Path

import pytest

from cxrviewer.io import is_film_candidate, list_films, load_film


@pytest.fixture
def tree(tmp_path, data_dir, nih_png_dir) -> Path:
    """A small study folder built from real films, with the awkward cases."""
    root = tmp_path / "films"
    png = sorted(nih_png_dir.glob("*.png"))[0]
    dicom = data_dir / "dicom/nih-dx/test1.dcm"
    jpeg = data_dir / "misc/16747_3_1.jpg"
    for rel, src in [
        ("b.png", png),
        ("A.PNG", png),
        ("a/2.DCM", dicom),
        ("a/1.jpeg", jpeg),
        ("a/deeper/x.tif", png),  # a PNG named .tif: a candidate by name, load decides
        ("a/deeper/scan.dicom", dicom),
        ("c/IM0001", dicom),  # extension-less DICOM
        ("c/1.2.840.113619.2.55.3.42", dicom),  # UID-named DICOM
        ("c/README", None),  # extension-less text
        ("c/labels.csv", None),
        ("c/photo.jpg", jpeg),
        (".cache/hidden.png", png),
        ("a/.hidden.png", png),
    ]:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if src is None:
            path.write_text("not a film\n" * 20)
        else:
            shutil.copy(src, path)
    (root / "a" / "deeper" / "loop").symlink_to(root / "a", target_is_directory=True)
    (root / "d-link-to-c").symlink_to(root / "c", target_is_directory=True)
    (root / "self").symlink_to(root, target_is_directory=True)
    return root


EXPECTED = [
    "A.PNG",
    "a/1.jpeg",
    "a/2.DCM",
    "a/deeper/scan.dicom",
    "a/deeper/x.tif",
    "b.png",
    "c/1.2.840.113619.2.55.3.42",
    "c/IM0001",
    "c/photo.jpg",
]


def test_listing_is_sorted_skips_hidden_and_loops(tree):
    found = [p.relative_to(tree).as_posix() for p in list_films(tree)]
    assert found == EXPECTED  # "d-link-to-c" and "self" lead to folders already walked


def test_listing_is_deterministic(tree):
    assert list(list_films(tree)) == list(list_films(tree))


def test_every_listed_film_loads(tree):
    for path in list_films(tree):
        assert load_film(path).pixels.size > 0


def test_listing_is_lazy(tree):
    films = list_films(tree)
    assert inspect.isgenerator(films)
    assert next(films).name == "A.PNG"
    # A film added to a folder the walk has not reached yet still shows up.
    shutil.copy(tree / "b.png", tree / "c" / "added.png")
    rest = [p.relative_to(tree).as_posix() for p in films]
    assert "c/added.png" in rest


def test_single_file_yields_itself(tree):
    assert list(list_films(tree / "c" / "README")) == [tree / "c" / "README"]
    assert list(list_films(tree / "b.png")) == [tree / "b.png"]


def test_missing_root_yields_nothing(tmp_path):
    assert list(list_films(tmp_path / "nowhere")) == []


def test_unreadable_subfolder_is_skipped(tree):
    if not hasattr(os, "geteuid") or os.geteuid() == 0:
        pytest.skip("root reads every folder")
    locked = tree / "a" / "deeper"
    locked.chmod(0)
    try:
        found = [p.relative_to(tree).as_posix() for p in list_films(tree)]
    finally:
        locked.chmod(0o755)
    assert found == [p for p in EXPECTED if not p.startswith("a/deeper/")]


@pytest.mark.parametrize(
    "rel, expected",
    [
        ("b.png", True),
        ("A.PNG", True),
        ("a/2.DCM", True),
        ("c/IM0001", True),
        ("c/1.2.840.113619.2.55.3.42", True),
        ("c/README", False),
        ("c/labels.csv", False),
    ],
)
def test_is_film_candidate(tree, rel, expected):
    assert is_film_candidate(tree / rel) is expected


def test_shared_dicom_folder_lists_every_dicom_and_no_csv(dicom_dir):
    found = list(list_films(dicom_dir))
    assert found == sorted(dicom_dir.rglob("*.dcm"), key=lambda p: p.relative_to(dicom_dir).parts)
    assert not [p for p in found if p.suffix == ".csv"]


def test_kermany_tree_lists_every_jpeg(data_dir):
    """Nearly 6,000 films in four folders: all listed, none twice."""
    found = list(list_films(data_dir / "kermany-pneumonia"))
    expected = [p for p in (data_dir / "kermany-pneumonia").rglob("*") if p.suffix == ".jpeg"]
    assert len(found) == len(set(found)) == len(expected)
    assert set(found) == set(expected)
