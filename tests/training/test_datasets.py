"""Training datasets from the real NIH CSV + films, Kermany class folders, and their union."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from cxrviewer.findings import CXR14_LABELS
from cxrviewer.training.datasets import (
    DatasetError,
    combine,
    from_class_folders,
    from_csv,
)
from cxrviewer.training.split import check_split_leakage, split_from_values, LeakageError

KERMANY_PATIENT = r"^(person\d+|(?:NORMAL2-)?IM-\d+)"


@pytest.fixture(scope="module")
def nih_csv(data_dir):
    return data_dir / "nih" / "Data_Entry_2017_v2020.csv.gz"


def test_nih_csv_as_distributed_with_the_png_folder(nih_csv, nih_png_dir):
    ds = from_csv(nih_csv, nih_png_dir, CXR14_LABELS, name="nih")
    assert len(ds) == len(list(nih_png_dir.glob("*.png"))) == 101
    assert ds.label_names == list(CXR14_LABELS) and ds.task == "multilabel"
    # Rows of the 112,120-row CSV without a local film are counted, not fatal.
    assert ds.report.missing == 112_120 - 101
    assert any("112,019 of 112,120" in line for line in ds.report.lines())
    i = [p.name for p in ds.paths].index("00000001_000.png")
    row = dict(zip(ds.label_names, ds.labels[i]))
    assert row["Cardiomegaly"] == 1 and sum(row.values()) == 1  # CSV: "Cardiomegaly"
    assert ds.patients[i] == "1"
    assert not np.isnan(ds.labels).any()  # the NIH layout labels all 14 findings
    j = [p.name for p in ds.paths].index("00000003_001.png")
    assert ds.patients[j] == "3"


def test_films_without_label_rows_and_rows_without_films_are_reported(nih_csv, nih_png_dir, tmp_path):
    for name in ("00000001_000.png", "00000002_000.png"):
        shutil.copy(nih_png_dir / name, tmp_path / name)
    shutil.copy(nih_png_dir / "00000003_001.png", tmp_path / "not-in-csv.png")
    ds = from_csv(nih_csv, tmp_path, CXR14_LABELS)
    assert sorted(p.name for p in ds.paths) == ["00000001_000.png", "00000002_000.png"]
    assert ds.report.unlabelled == ["not-in-csv.png"]
    assert ds.report.missing == 112_120 - 2
    with pytest.raises(DatasetError, match="none of the"):
        empty = tmp_path / "other"
        empty.mkdir()
        shutil.copy(nih_png_dir / "00000003_001.png", empty / "x.png")
        from_csv(nih_csv, empty, CXR14_LABELS)


def test_per_label_csv_with_patient_and_split_columns(nih_png_dir, tmp_path):
    names = ["00000001_000.png", "00000002_000.png", "00000003_001.png"]
    for n in names:
        shutil.copy(nih_png_dir / n, tmp_path / n)
    csv = tmp_path / "labels.csv"
    csv.write_text("image,patient,Effusion,Pneumonia,fold\n"
                   "00000001_000.png,p1,1,,train\n"
                   "00000002_000.png,p2,0,1,valid\n"
                   "00000003_001.png,p1,0,0,test\n")
    ds = from_csv(csv, tmp_path, name="clinic", split_column="fold")
    assert ds.label_names == ["Effusion", "Pneumonia"]
    by_name = {p.name: k for k, p in enumerate(ds.paths)}
    assert np.isnan(ds.labels[by_name["00000001_000.png"], 1])  # blank = unknown, masked
    assert ds.splits[by_name["00000002_000.png"]] == "validation"
    split = split_from_values(ds.splits)
    with pytest.raises(LeakageError):  # p1 is in train and test
        check_split_leakage(split, ds.patients)


def test_csv_without_patient_column_is_noted(nih_png_dir, tmp_path):
    shutil.copy(nih_png_dir / "00000001_000.png", tmp_path / "a.png")
    (tmp_path / "labels.csv").write_text("file,Cardiomegaly\na.png,1\n")
    ds = from_csv(tmp_path / "labels.csv", tmp_path)
    assert ds.patients == ["film:a.png"]
    assert any("no patient column" in n for n in ds.report.notes)


def test_kermany_class_folders_multiclass_with_patients_and_folder_split(data_dir):
    root = data_dir / "kermany-pneumonia"
    ds = from_class_folders(root, name="kermany", patient_regex=KERMANY_PATIENT)
    assert ds.task == "multiclass" and ds.label_names == ["NORMAL", "PNEUMONIA"]
    assert len(ds) == 5840
    assert np.all(ds.labels.sum(axis=1) == 1)
    assert set(ds.splits) == {"train", "test"}
    pneu = [k for k, p in enumerate(ds.paths) if p.parent.name == "PNEUMONIA"]
    assert all(ds.labels[k, 1] == 1 for k in pneu[:50])
    # person1000_bacteria_2931.jpeg and person1000_virus_1681.jpeg are one patient.
    names = {p.name: k for k, p in enumerate(ds.paths)}
    assert ds.patients[names["person1000_bacteria_2931.jpeg"]] == ds.patients[names["person1000_virus_1681.jpeg"]]
    assert len(set(ds.patients)) < len(ds)


def test_kermany_mapped_to_findings_masks_every_other_label(data_dir):
    ds = from_class_folders(data_dir / "kermany-pneumonia", label_map={"PNEUMONIA": "Pneumonia", "NORMAL": ""},
                            labels=CXR14_LABELS, patient_regex=KERMANY_PATIENT)
    assert ds.task == "multilabel" and ds.label_names == list(CXR14_LABELS)
    j = ds.label_names.index("Pneumonia")
    is_pneu = np.array([p.parent.name == "PNEUMONIA" for p in ds.paths])
    assert (ds.labels[is_pneu, j] == 1).all() and (ds.labels[~is_pneu, j] == 0).all()
    others = np.delete(ds.labels, j, axis=1)
    assert np.isnan(others).all()
    with pytest.raises(DatasetError, match="do not exist"):
        from_class_folders(data_dir / "kermany-pneumonia", label_map={"COVID": "Pneumonia"})


def test_combining_sources_takes_the_union_of_labels_with_nan_where_unlabelled(data_dir, nih_csv, nih_png_dir):
    nih = from_csv(nih_csv, nih_png_dir, CXR14_LABELS, name="nih")
    thumbs = from_csv(nih_csv, data_dir / "nih" / "thumbs64", ["Effusion", "Hernia"], name="thumbs")
    kermany = from_class_folders(data_dir / "kermany-pneumonia", label_map={"PNEUMONIA": "Pneumonia"},
                                 patient_regex=KERMANY_PATIENT).limit(40, seed=1)
    both = combine([thumbs, kermany])
    assert both.label_names == ["Effusion", "Hernia", "Pneumonia"]
    src = np.array(both.sources)
    assert np.isnan(both.labels[src == "thumbs", 2]).all()
    assert np.isnan(both.labels[src == "kermany-pneumonia", :2]).all()
    assert not np.isnan(both.labels[src == "thumbs", :2]).any()
    # The same NIH film at 1024 px and as a thumbnail is kept once (the first source's).
    allc = combine([nih, thumbs], CXR14_LABELS)
    shared = {p.name for p in nih.paths} & {p.name for p in thumbs.paths}
    assert shared and allc.report.duplicates == len(shared)
    assert len(allc) == len(nih) + len(thumbs) - len(shared)
    summary = allc.summary()
    assert summary["sources"]["nih"]["images"] == 101
    # The thumbnails only label Effusion and Hernia: every other finding is unknown there.
    assert summary["labels"]["Hernia"]["unknown"] == 0
    assert summary["labels"]["Atelectasis"]["unknown"] == len(thumbs) - len(shared)
    with pytest.raises(DatasetError, match="multi-label and multi-class"):
        combine([nih, from_class_folders(data_dir / "kermany-pneumonia")])


def test_unreadable_films_are_dropped_and_reported(nih_csv, nih_png_dir):
    ds = from_csv(nih_csv, nih_png_dir, CXR14_LABELS)
    out = ds.without({0: f"{ds.paths[0].name}: not a PNG"})
    assert len(out) == len(ds) - 1 and ds.paths[0] not in out.paths
    assert any("could not be read" in line for line in out.report.lines())
    assert ds.report.unreadable == []  # the original is untouched
