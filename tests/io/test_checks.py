"""Header and size warnings: the shared doubtful films and each rule on its own."""

from __future__ import annotations

import pydicom
import pytest
from io_builders import save

from cxrviewer.io import FilmMeta, load_film
from cxrviewer.io.checks import film_warnings


@pytest.mark.parametrize(
    "rel, expected",
    [
        ("nih-dx/test4.dcm", "body part is RIBCAGE, not chest"),
        ("nih-dx/test5.dcm", "modality CT (computed tomography) is not a chest radiograph"),
        ("nih-dx/test6.dcm", "implausible patient position 'XX'"),
        ("misc/not-a-chest-ot.dcm", "modality OT (other) is not a chest radiograph"),
    ],
)
def test_shared_doubtful_films_get_their_warning(dicom_dir, rel, expected):
    film = load_film(dicom_dir / rel)
    assert len(film.warnings) == 1, film.warnings  # the right one, and only that one
    assert film.warnings[0].startswith(expected)
    assert "\n" not in film.warnings[0]


@pytest.mark.parametrize("rel", ["nih-dx/test1.dcm", "nih-dx/test2.dcm", "nih-dx/test3.dcm",
                                 "misc/siim-pneumothorax-cr.dcm", "misc/nih-google-dx.dcm"])  # fmt: skip
def test_plain_chest_films_have_no_warnings(dicom_dir, rel):
    assert load_film(dicom_dir / rel).warnings == []


@pytest.mark.parametrize("view", ["LL", "RL", "LATERAL", "XTABLE LATERAL"])
def test_lateral_view_position_is_flagged(nih_dx_path, tmp_path, view):
    ds = pydicom.dcmread(nih_dx_path)
    ds.ViewPosition = view
    film = load_film(save(ds, tmp_path / "lateral.dcm"))
    assert [w for w in film.warnings if w.startswith(f"lateral view ({view})")]


def _meta(**fields) -> FilmMeta:
    base = dict(source_format="dicom", rows=1024, columns=1024, modality="DX",
                body_part="CHEST", view_position="PA", patient_position="PA")  # fmt: skip
    base.update(fields)
    return FilmMeta(**base)


def test_plausible_header_has_no_warnings():
    assert film_warnings(_meta()) == []


@pytest.mark.parametrize(
    "fields, fragment",
    [
        ({"modality": "MG"}, "modality MG (mammography)"),
        ({"modality": "XC"}, "modality XC is not"),
        ({"body_part": "SKULL"}, "body part is SKULL"),
        ({"view_position": "LL"}, "lateral view (LL)"),
        ({"view_position": None, "patient_position": "RL"}, "lateral view (RL)"),
        ({"patient_position": "ZZ"}, "implausible patient position 'ZZ'"),
        ({"rows": 255}, "image is only 1024x255 px (under 256 px)"),
        ({"columns": 100, "rows": 2000}, "image is only 100x2000 px"),
    ],
)
def test_each_rule_warns(fields, fragment):
    warnings = film_warnings(_meta(**fields))
    assert len(warnings) == 1 and fragment in warnings[0]


@pytest.mark.parametrize(
    "fields",
    [
        {"modality": "CR"},
        {"modality": "dr"},
        {"body_part": "Chest"},
        {"body_part": "PORTABLE CHEST"},
        {"body_part": "THORAX"},
        {"patient_position": "HFS"},
        {"patient_position": "ERECT"},
        {"view_position": "AP"},
        {"rows": 256, "columns": 256},
        {"modality": None, "body_part": None, "view_position": None, "patient_position": None},
    ],
)
def test_acceptable_values_do_not_warn(fields):
    assert film_warnings(_meta(**fields)) == []


def test_several_problems_give_several_warnings():
    warnings = film_warnings(_meta(modality="CT", body_part="ABDOMEN", rows=128))
    assert len(warnings) == 3
