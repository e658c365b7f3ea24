"""Label files: the real NIH and RSNA CSVs, plain per-label CSVs, matching to films."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest

from cxrviewer.findings import CXR14_LABELS
from cxrviewer.labels import LabelFileError, read_label_table


@pytest.fixture(scope="module")
def nih_table(data_dir):
    return read_label_table(data_dir / "nih" / "Data_Entry_2017_v2020.csv.gz")


def _row(table, key):
    return dict(zip(table.labels, table.matrix[table.keys.index(key)]))


def test_nih_layout_reads_all_rows_and_the_14_findings(nih_table):
    assert nih_table.layout == "nih"
    assert len(nih_table) == 112_120
    assert nih_table.labels == list(CXR14_LABELS)
    assert not np.isnan(nih_table.matrix).any()  # every NIH film is annotated for all 14


def test_nih_known_rows(nih_table):
    first = _row(nih_table, "00000001_000.png")
    assert first["Cardiomegaly"] == 1 and sum(first.values()) == 1
    second = _row(nih_table, "00000001_001.png")
    assert {k for k, v in second.items() if v} == {"Cardiomegaly", "Emphysema"}
    i = nih_table.keys.index("00000001_000.png")
    assert nih_table.patients[i] == "1"


def test_nih_no_finding_rows_are_all_zero(data_dir, nih_table):
    with gzip.open(data_dir / "nih" / "Data_Entry_2017_v2020.csv.gz", "rt") as fh:
        next(fh)
        normal = [line.split(",", 1)[0] for line in fh if line.split(",")[1] == "No Finding"]
    assert len(normal) > 50_000
    rows, found = nih_table.match(normal)
    assert found.all()
    assert (rows == 0).all()
    # ... and every other row has at least one finding
    assert (nih_table.matrix.sum(axis=1) > 0).sum() == len(nih_table) - len(normal)


def test_nih_subset_keeps_full_vocabulary(tmp_path, data_dir):
    # A 3-row extract never mentions Hernia, but NIH annotated it: negative, not unknown.
    with gzip.open(data_dir / "nih" / "Data_Entry_2017_v2020.csv.gz", "rt") as fh:
        lines = [next(fh) for _ in range(4)]
    f = tmp_path / "extract.csv"
    f.write_text("".join(lines))
    t = read_label_table(f, labels=["Hernia", "Cardiomegaly", "Lung Opacity"])
    assert t.matrix[:, 0].tolist() == [0, 0, 0]
    assert t.matrix[:, 1].tolist() == [1, 1, 1]
    assert np.isnan(t.matrix[:, 2]).all()  # not an NIH finding: unknown
    assert any("Lung Opacity" in w for w in t.warnings)


def test_labels_argument_orders_and_matches_names_loosely(nih_table, data_dir):
    t = read_label_table(data_dir / "nih" / "Data_Entry_2017_v2020.csv.gz",
                         labels=["pleural thickening", "Cardiomegaly"])
    assert t.labels == ["pleural thickening", "Cardiomegaly"]
    np.testing.assert_array_equal(t.matrix[:, 0], nih_table.column("Pleural_Thickening"))


def test_plain_layout_with_missing_values(tmp_path):
    f = tmp_path / "labels.csv"
    f.write_text(
        "filename,PatientID,Effusion,Mass,age\n"
        "a.png,p1,1,0,40\n"
        "sub/b.png,p2,0,,51\n"
        "c.png,p2,true,unknown,60\n"
        "d.png,p3,-1,FALSE,70\n"
    )
    t = read_label_table(f)
    assert t.layout == "columns"
    assert t.labels == ["Effusion", "Mass"]  # 'age' is not a label column
    assert t.keys == ["a.png", "sub/b.png", "c.png", "d.png"]
    assert t.patients == ["p1", "p2", "p2", "p3"]
    eff, mass = t.matrix[:, 0], t.matrix[:, 1]
    assert eff[:3].tolist() == [1, 0, 1] and math.isnan(eff[3])
    assert mass[0] == 0 and math.isnan(mass[1]) and math.isnan(mass[2]) and mass[3] == 0


def test_plain_layout_bad_value_in_a_wanted_column_names_file_and_row(tmp_path):
    f = tmp_path / "labels.csv"
    f.write_text("image,Effusion\na.png,1\nb.png,maybe\n")
    with pytest.raises(LabelFileError) as err:
        read_label_table(f, labels=["Effusion"])
    assert str(err.value).startswith("labels.csv: ")
    assert "row 3" in str(err.value) and "maybe" in str(err.value)
    assert "\n" not in str(err.value)


def test_semicolon_delimited_export(tmp_path):
    f = tmp_path / "export.csv"
    f.write_text("path;Nodule\nx/a.png;1\nx/b.png;0\n")
    t = read_label_table(f)
    assert t.labels == ["Nodule"] and t.matrix[:, 0].tolist() == [1, 0]


def test_findings_column_layout(tmp_path):
    f = tmp_path / "f.csv"
    f.write_text("image_id,findings\na.png,Mass|Nodule\nb.png,No Finding\nc.png,\nd.png,Nodule\n")
    t = read_label_table(f)
    assert t.layout == "findings"
    assert t.labels == ["Mass", "Nodule"]
    assert t.matrix[0].tolist() == [1, 1] and t.matrix[1].tolist() == [0, 0]
    assert np.isnan(t.matrix[2]).all()  # no finding list at all: unknown
    assert t.matrix[3].tolist() == [0, 1]


def test_rsna_boxes_combine_per_patient(dicom_dir):
    t = read_label_table(dicom_dir / "rsna-cr" / "example_train_labels.csv")
    assert t.labels == ["Target"]
    assert len(t) == 16  # 16 films, some with two box rows
    assert t.patients == t.keys  # patientId is both the image stem and the patient
    assert _row(t, "00436515-870c-4b36-a041-de91049b9ab4")["Target"] == 1
    assert _row(t, "0004cfab-14fd-4e49-80ba-63a80b6bddd6")["Target"] == 0
    # Positive films are exactly the "Lung Opacity" ones of the class-info file.
    info = read_label_table(dicom_dir / "rsna-cr" / "example_detailed_class_info.csv")
    opacity = [k for k, v in zip(info.keys, info.column("Lung Opacity")) if v == 1]
    assert sorted(k for k, v in zip(t.keys, t.column("Target")) if v == 1) == sorted(opacity)
    assert len(opacity) == 5


def test_rsna_target_as_user_chosen_label_matches_dicom_files_by_stem(dicom_dir):
    t = read_label_table(dicom_dir / "rsna-cr" / "example_train_labels.csv",
                         labels=["Pneumonia", "Effusion"], label_map={"Target": "Pneumonia"})
    assert t.labels == ["Pneumonia", "Effusion"]
    files = sorted(p.name for p in (dicom_dir / "rsna-cr").glob("*.dcm"))
    rows, found = t.match(files)
    assert found.all() and len(files) == 16
    assert rows[:, 0].sum() == 5
    assert np.isnan(rows[:, 1]).all()


def test_rsna_class_info_is_a_one_class_per_row_findings_file(dicom_dir):
    t = read_label_table(dicom_dir / "rsna-cr" / "example_detailed_class_info.csv")
    assert t.labels == ["Lung Opacity", "No Lung Opacity / Not Normal", "Normal"]
    assert (t.matrix.sum(axis=1) == 1).all()


def test_match_by_path_then_name_then_stem(tmp_path):
    f = tmp_path / "l.csv"
    f.write_text("path,A\nleft/x.png,1\nright/x.png,0\nonly.png,1\nstemonly,0\n")
    t = read_label_table(f)
    rows, found = t.match(["left/x.png", "right\\x.png", "other/x.png", "deep/dir/only.png",
                           "stemonly.dcm", "./left/x.png", "missing.png"])
    assert found.tolist() == [True, True, False, True, True, True, False]
    assert rows[0, 0] == 1 and rows[1, 0] == 0
    assert np.isnan(rows[2, 0])  # x.png is in two folders: ambiguous by name, not guessed
    assert rows[3, 0] == 1 and rows[4, 0] == 0 and rows[5, 0] == 1


def test_match_real_nih_films(nih_png_dir, nih_table):
    films = sorted(p.name for p in nih_png_dir.glob("*.png"))
    rows, found = nih_table.match([f"png1024/{name}" for name in films])
    assert found.all() and len(films) == 101
    assert rows.shape == (101, 14)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty file"),
        (b"path,A\n", "no rows"),
        (b"age,sex\n40,M\n", "no image column"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "not a text CSV"),
        (b"path,age\na.png,40\n", "no label columns"),
    ],
)
def test_unusable_files_raise_one_line_error_with_file_name(tmp_path, content, reason):
    f = tmp_path / "bad.csv"
    f.write_bytes(content)
    with pytest.raises(LabelFileError) as err:
        read_label_table(f)
    msg = str(err.value)
    assert msg.startswith("bad.csv: ") and reason in msg and "\n" not in msg


def test_missing_and_folder_inputs(tmp_path):
    with pytest.raises(LabelFileError, match="nothere.csv: file not found"):
        read_label_table(tmp_path / "nothere.csv")
    with pytest.raises(LabelFileError, match="folder"):
        read_label_table(tmp_path)


def test_explicit_columns(tmp_path):
    f = tmp_path / "l.csv"
    f.write_text("scan,who,Result\na.dcm,p9,Effusion\nb.dcm,p8,No Finding\n")
    t = read_label_table(f, image_column="scan", patient_column="who", findings_column="Result")
    assert t.keys == ["a.dcm", "b.dcm"] and t.patients == ["p9", "p8"]
    assert t.labels == ["Effusion"] and t.matrix[:, 0].tolist() == [1, 0]
    with pytest.raises(LabelFileError, match="no image column 'nope'"):
        read_label_table(f, image_column="nope")
