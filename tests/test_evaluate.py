"""``cxrviewer evaluate`` end to end on real NIH and RSNA file names and their real labels."""

from __future__ import annotations

import csv
import gzip
import json
import shutil

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score

import cxrviewer.resources
from cxrviewer import NOT_FOR_DIAGNOSIS
from cxrviewer.cli import main as cli_main
from cxrviewer.evaluate import OPTIMISTIC_NOTE, evaluate_results, write_report
from cxrviewer.fsutil import file_sha256
from cxrviewer.findings import CXR14_LABELS
from cxrviewer.model.card import ModelCard, Preprocess, card_path_for
from cxrviewer.results import format_row, status_error, status_warning, write_results

LABELS = list(CXR14_LABELS)
SHA = "5e" * 32


def _nih_truth(data_dir) -> dict[str, set[str]]:
    """Findings per NIH file name, parsed here independently of cxrviewer.labels."""
    with gzip.open(data_dir / "nih" / "Data_Entry_2017_v2020.csv.gz", "rt", newline="") as fh:
        return {r["Image Index"]: set(r["Finding Labels"].split("|")) for r in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def nih_case(data_dir, tmp_path_factory):
    """Results for the real NIH films without Hernia (so Hernia is not estimable), with
    probabilities that carry some signal, one error row and one film without labels."""
    truth = _nih_truth(data_dir)
    films = sorted(p.name for p in (data_dir / "nih" / "png1024").glob("*.png"))
    films = [f for f in films if "Hernia" not in truth[f]]
    rng = np.random.default_rng(11)
    y = np.array([[lab in truth[f] for lab in LABELS] for f in films], dtype=float)
    p = np.clip(0.3 * y + 0.7 * rng.random(y.shape), 0, 1)
    rows = [format_row(f"png1024/{f}", "ok", p[i], [], "demo-cxr14", SHA, LABELS) for i, f in enumerate(films)]
    rows[0] = format_row(f"png1024/{films[0]}", status_error("cannot decode"), None, None, "demo-cxr14", SHA, LABELS)
    rows[1][1] = status_warning("lateral view?")
    rows.append(format_row("other/not_in_nih.png", "ok", [0.5] * 14, [], "demo-cxr14", SHA, LABELS))
    d = tmp_path_factory.mktemp("nih_eval")
    write_results(d / "results.csv", LABELS, rows)
    # what a correct evaluation must use: rows 1.. of films (row 0 errored)
    expected = {"y": y[1:], "p": np.round(p[1:], 6), "n": len(films) - 1}
    return d / "results.csv", data_dir / "nih" / "Data_Entry_2017_v2020.csv.gz", expected


@pytest.fixture(scope="module")
def nih_report(nih_case):
    results, labels, _ = nih_case
    return evaluate_results(results, labels, n_bootstrap=200)


def test_matching_counts_and_dropped_rows(nih_case, nih_report):
    _, _, exp = nih_case
    s = nih_report.source
    assert s["matched"] == exp["n"] == nih_report.n_cases
    assert s["unmatched"] == 1 and s["unmatched_examples"] == ["other/not_in_nih.png"]
    assert s["error_rows"] == 1 and s["labels_layout"] == "nih"
    assert nih_report.model_identity == "demo-cxr14@" + SHA[:12]
    assert nih_report.task == "multilabel"
    assert any("1 film without a row" in w for w in nih_report.warnings)


def test_report_numbers_equal_sklearn(nih_case, nih_report):
    _, _, exp = nih_case
    for j, lab in enumerate(LABELS):
        c = nih_report.by_label(lab)
        if lab == "Hernia":
            continue
        assert c.estimable, lab
        assert c.auroc == pytest.approx(roc_auc_score(exp["y"][:, j], exp["p"][:, j]), abs=1e-12)
        assert c.ci_low <= c.auroc <= c.ci_high
        assert c.threshold_source == "youden"
    assert nih_report.threshold_note == OPTIMISTIC_NOTE


def test_hernia_is_not_estimable(nih_report):
    h = nih_report.by_label("Hernia")
    assert not h.estimable and h.auroc is None and h.reason.startswith("no positive case")


def test_write_report_files(nih_case, nih_report, tmp_path, test_output_dir):
    _, _, exp = nih_case
    written = write_report(nih_report, tmp_path / "report")
    out = tmp_path / "report"
    for name in ("report.json", "per_class.csv", "summary.md", "summary.html", "roc_overview.png",
                 "roc_Cardiomegaly.png", "roc_Pleural_Thickening.png", "roc_Hernia.png"):
        assert (out / name).is_file(), name
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 15
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert not list(out.glob(".*"))  # no temp files left behind
    assert written["json"] == out / "report.json"

    def no_nan(token):
        raise AssertionError(f"{token} in report.json")

    data = json.loads((out / "report.json").read_text(), parse_constant=no_nan)
    assert data["intended_use"] == NOT_FOR_DIAGNOSIS
    assert data["model"]["sha256"] == SHA and data["n_cases"] == exp["n"]
    by = {c["label"]: c for c in data["classes"]}
    j = LABELS.index("Effusion")
    assert by["Effusion"]["auroc"] == pytest.approx(roc_auc_score(exp["y"][:, j], exp["p"][:, j]), abs=1e-12)
    assert by["Hernia"]["auroc"] is None and by["Hernia"]["status"].startswith("not estimable")
    assert "Hernia" in data["not_estimable"]
    assert len(by["Effusion"]["roc"]["fpr"]) == len(by["Effusion"]["roc"]["tpr"]) > 2

    with open(out / "per_class.csv", newline="") as fh:
        rows = {r["label"]: r for r in csv.DictReader(fh)}
    assert set(rows) == set(LABELS)
    assert rows["Hernia"]["auroc"] == "" and rows["Hernia"]["status"].startswith("not estimable: no positive")
    assert float(rows["Effusion"]["auroc"]) == pytest.approx(by["Effusion"]["auroc"], abs=1e-6)
    c = nih_report.by_label("Effusion")
    assert [int(rows["Effusion"][k]) for k in ("tn", "fp", "fn", "tp")] == [c.tn, c.fp, c.fn, c.tp]
    assert c.tn + c.fp + c.fn + c.tp == exp["n"]

    for name in ("summary.md", "summary.html"):
        text = (out / name).read_text()
        assert NOT_FOR_DIAGNOSIS in text and "demo-cxr14@" + SHA[:12] in text
        assert "Hernia: not estimable (no positive case" in text
        assert f"Cases evaluated: {exp['n']}" in text and "optimistic" in text
    shutil.copytree(out, test_output_dir / "evaluate-nih", dirs_exist_ok=True)


def _card(labels, thresholds, name="demo-cxr14", task="multilabel") -> ModelCard:
    return ModelCard(
        name=name, task=task, labels=list(labels), input_size=32, input_channels=1,
        preprocess=Preprocess(), gradcam_layer="conv", thresholds=thresholds,
        threshold_rule="Youden J on validation", training={}, metrics={"validation_auroc": {}},
        intended_use="Test model. " + NOT_FOR_DIAGNOSIS)


def test_cli_uses_model_card_thresholds(nih_case, tmp_path, capsys):
    results, labels, _ = nih_case
    model = tmp_path / "m.keras"
    model.write_bytes(b"not really a model, only its checksum matters here")
    _card(LABELS, {lab: 0.55 for lab in LABELS}).save(card_path_for(model))
    rc = cli_main(["evaluate", str(results), "--labels", str(labels), "--out", str(tmp_path / "r"),
                   "--model", str(model), "--bootstrap", "50"])
    out = capsys.readouterr().out
    assert rc == 0
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    c = next(c for c in data["classes"] if c["label"] == "Effusion")
    assert c["threshold"] == 0.55 and c["threshold_source"] == "card"
    assert "model card of demo-cxr14" in data["threshold_note"]
    # the dummy file is not the model that scored the results: say so
    assert any("scored by another model" in w for w in data["warnings"])
    assert "Effusion" in out and "report:" in out
    hernia = next(c for c in data["classes"] if c["label"] == "Hernia")
    assert hernia["auroc"] is None and hernia["specificity"] is not None  # counts at the card threshold


def test_shipped_model_card_is_used_when_checksums_match(tmp_path, monkeypatch, data_dir):
    shipped = tmp_path / "models" / "cxr14-densenet121.keras"
    shipped.parent.mkdir()
    shipped.write_bytes(b"stand-in for the shipped model file")
    _card(LABELS, {lab: 0.3 for lab in LABELS}, name="shipped").save(card_path_for(shipped))
    monkeypatch.setattr(cxrviewer.resources, "default_model_path", lambda: shipped)
    rows = [format_row(f, "ok", [0.2 + 0.6 * (i % 2)] * 14, [], "shipped", file_sha256(shipped), LABELS)
            for i, f in enumerate(["00000001_000.png", "00000002_000.png", "00000003_001.png", "00000013_003.png"])]
    write_results(tmp_path / "r.csv", LABELS, rows)
    assert cli_main(["evaluate", str(tmp_path / "r.csv"), "--labels",
                     str(data_dir / "nih" / "Data_Entry_2017_v2020.csv.gz"), "--out", str(tmp_path / "rep")]) == 0
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["classes"][0]["threshold"] == 0.3 and data["classes"][0]["threshold_source"] == "card"
    assert "model card of shipped" in data["threshold_note"]


def test_truncated_results_file_is_tolerated(nih_case, tmp_path):
    results, labels, exp = nih_case
    cut = tmp_path / "killed.csv"
    text = results.read_text()
    cut.write_text(text[: len(text) - 30])  # the kill hit the last row (the unlabelled one)
    r = evaluate_results(cut, labels, n_bootstrap=0)
    assert r.source["results_truncated"] and r.source["matched"] == exp["n"] and r.source["unmatched"] == 0
    assert any("incomplete" in w for w in r.warnings)


def test_rsna_target_mapped_to_a_model_label(dicom_dir, tmp_path, capsys):
    ids = sorted(p.stem for p in (dicom_dir / "rsna-cr").glob("*.dcm"))
    labels = ["Pneumonia", "Effusion"]
    with open(dicom_dir / "rsna-cr" / "example_train_labels.csv", newline="") as fh:
        positive = {r["patientId"] for r in csv.DictReader(fh) if r["Target"] == "1"}
    rng = np.random.default_rng(2)
    p = rng.random((len(ids), 2)).round(6)
    write_results(tmp_path / "r.csv", labels,
                  [format_row(f"rsna-cr/{i}.dcm", "ok", p[k], [], "demo", SHA, labels) for k, i in enumerate(ids)])
    args = ["evaluate", str(tmp_path / "r.csv"), "--labels", str(dicom_dir / "rsna-cr" / "example_train_labels.csv"),
            "--out", str(tmp_path / "rep"), "--bootstrap", "100"]
    assert cli_main(args) == 2  # neither model label is in the file: explain, don't guess
    err = capsys.readouterr().err
    assert "example_train_labels.csv" in err and "Target" in err and "--label-map" in err
    assert len(err.strip().splitlines()) == 1
    assert cli_main(args + ["--label-map", "Target=Pneumonia"]) == 0
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    pn, ef = data["classes"]
    y = np.array([i in positive for i in ids], dtype=int)
    assert pn["auroc"] == pytest.approx(roc_auc_score(y, p[:, 0]), abs=1e-12) and pn["n"] == 16
    assert ef["auroc"] is None and "no case has a known label" in ef["status"]


def test_multiclass_results_with_a_class_column(data_dir, tmp_path):
    root = data_dir / "kermany-pneumonia" / "test"
    films = sorted(root.glob("*/*.jpeg"))[::20]
    labels = ["NORMAL", "PNEUMONIA"]
    truth = np.array([labels.index(f.parent.name) for f in films])
    rng = np.random.default_rng(4)
    z = rng.normal(size=(len(films), 2)) + np.eye(2)[truth]
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    write_results(tmp_path / "r.csv", labels,
                  [format_row(f.relative_to(root).as_posix(), "ok", p[k], [], "kermany", SHA, labels)
                   for k, f in enumerate(films)])
    (tmp_path / "labels.csv").write_text("image,class\n" + "".join(f"{f.name},{f.parent.name}\n" for f in films))
    r = evaluate_results(tmp_path / "r.csv", tmp_path / "labels.csv", n_bootstrap=50)
    p6 = np.round(p, 6)
    assert r.task == "multiclass" and r.source["matched"] == len(films)
    assert r.multiclass.confusion == confusion_matrix(truth, p6.argmax(axis=1), labels=[0, 1]).tolist()
    assert r.by_label("PNEUMONIA").auroc == pytest.approx(roc_auc_score(truth == 1, p6[:, 1]))
    written = write_report(r, tmp_path / "rep")
    assert "Confusion matrix" in written["markdown"].read_text()


@pytest.mark.parametrize("case", ["missing_results", "no_image_column", "mixed_models", "nothing_matches", "bad_map"])
def test_bad_input_exits_2_with_one_line(case, tmp_path, nih_case, capsys):
    results, labels, _ = nih_case
    extra = []
    if case == "missing_results":
        results = tmp_path / "nope.csv"
    elif case == "no_image_column":
        labels = tmp_path / "labels.csv"
        labels.write_text("age,sex\n3,F\n")
    elif case == "mixed_models":
        rows = [format_row("a.png", "ok", [0.1] * 14, [], "m1", SHA, LABELS),
                format_row("b.png", "ok", [0.1] * 14, [], "m2", "ff" * 32, LABELS)]
        results = tmp_path / "mixed.csv"
        write_results(results, LABELS, rows)
    elif case == "nothing_matches":
        results = tmp_path / "elsewhere.csv"
        write_results(results, LABELS, [format_row("x/unknown.png", "ok", [0.1] * 14, [], "m", SHA, LABELS)])
    elif case == "bad_map":
        extra = ["--label-map", "Target"]
    rc = cli_main(["evaluate", str(results), "--labels", str(labels), "--out", str(tmp_path / "rep"), *extra])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("cxrviewer evaluate: ")
    assert not (tmp_path / "rep").exists()


def test_all_error_rows_is_bad_input(tmp_path, nih_case, capsys):
    _, labels, _ = nih_case
    write_results(tmp_path / "r.csv", LABELS,
                  [format_row("a.png", status_error("unreadable"), None, None, "m", SHA, LABELS)])
    assert cli_main(["evaluate", str(tmp_path / "r.csv"), "--labels", str(labels), "--out", str(tmp_path / "o")]) == 2
    assert "no film was scored (error rows: 1 of 1)" in capsys.readouterr().err


def test_write_report_for_in_memory_evaluation(tmp_path):
    """The training pipeline and the GUI evaluate arrays directly, without CSV files."""
    from cxrviewer.metrics import evaluate

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, (60, 2)).astype(float)
    y[:, 1] = 0
    r = evaluate(y, rng.random((60, 2)), ["Effusion", "Hernia"], thresholds={"Effusion": 0.5, "Hernia": 0.5},
                 threshold_source="card", n_bootstrap=20)
    r.model_name, r.threshold_note = "validation run", "Youden J on validation"
    written = write_report(r, tmp_path / "val")
    md = written["markdown"].read_text()
    assert "Hernia: not estimable (no positive case among 60" in md and NOT_FOR_DIAGNOSIS in md
    assert json.loads(written["json"].read_text())["source"] == {}
    assert written["png:overview"].is_file() and written["png:Effusion"].is_file()


def test_in_memory_report_describes_its_own_data_source(tmp_path):
    """A training split is not a results CSV: its source dict is written as given."""
    from cxrviewer.metrics import evaluate

    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, (40, 1)).astype(float)
    r = evaluate(y, rng.random((40, 1)), ["Effusion"], n_bootstrap=10)
    r.source = {"split": "validation", "films": 40, "patients": 31}
    written = write_report(r, tmp_path / "val")
    assert "Data: split: validation; films: 40; patients: 31." in written["markdown"].read_text()
    assert "Data: split: validation; films: 40; patients: 31." in written["html"].read_text()
    assert json.loads(written["json"].read_text())["source"]["patients"] == 31
