"""The batch panel in the real window: score a folder in the background, the results table,
CSV export in the ``cxrviewer score`` format, cancel, and the ROC panel against labels."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from cxrviewer.findings import CXR14_LABELS
from tests.gui.conftest import copy_films, wait_model


@pytest.fixture
def scored_folder(nih_png_dir, data_dir, tmp_path):
    """24 real NIH films, one damaged file, and their labels from the official NIH CSV."""
    names = sorted(p.name for p in nih_png_dir.glob("*.png"))[:24]
    folder = tmp_path / "batch"
    copy_films(nih_png_dir, folder, names)
    (folder / "zz-damaged.png").write_bytes((nih_png_dir / names[0]).read_bytes()[:5000])
    labels_csv = tmp_path / "labels.csv"
    with gzip.open(data_dir / "nih" / "Data_Entry_2017_v2020.csv.gz", "rt", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = [r for r in reader if r[0] in set(names)]
    with open(labels_csv, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    truth = {r[0]: set(r[1].split("|")) for r in rows}
    assert len(truth) == len(names)
    return folder, labels_csv, truth


def run_batch(qtbot, win, timeout=180_000):
    with qtbot.waitSignal(win.batch_done, timeout=timeout) as sig:
        qtbot.mouseClick(win.batch.score_button, Qt.MouseButton.LeftButton)
    return sig.args[0]


def test_batch_scores_folder_exports_csv_and_roc_matches_sklearn(qtbot, make_window, tiny_model, scored_folder,
                                                                  tmp_path, shots):
    from sklearn.metrics import roc_auc_score

    from cxrviewer.results import read_results

    folder, labels_csv, truth = scored_folder
    win = make_window(model=tiny_model, path=str(folder))
    wait_model(qtbot, win)
    qtbot.waitUntil(lambda: win.batch.score_button.isEnabled(), timeout=10_000)
    summary = run_batch(qtbot, win)
    assert not summary.cancelled and not summary.error
    assert summary.total == summary.done == 25 and summary.failed == 1
    rows = {r.rel: r for r in win.batch.model.rows}
    assert len(rows) == 25
    assert rows["zz-damaged.png"].status.startswith("error: ")  # the CSV's path column names the file
    assert rows["zz-damaged.png"].probabilities is None
    ok = [r for r in rows.values() if r.status == "ok"]
    assert len(ok) == 24 and all(sorted(r.probabilities) == sorted(CXR14_LABELS) for r in ok)
    # The browser's status icons follow the batch.
    statuses = {e.rel: e.status for e in win.state.folder.entries}
    assert statuses["zz-damaged.png"] == "error"
    damaged = win.state.folder.entries[win.state.folder.index_of[folder / "zz-damaged.png"]]
    assert damaged.message.startswith("zz-damaged.png: ")
    assert any("zz-damaged.png" in line for line in win.log_panel.lines)
    assert sum(s == "scored" for s in statuses.values()) == 24
    assert "25/25" in win.batch.progress_label.text()
    assert win.batch.progress.value() == 25

    # Sortable table: sort by the Effusion column, highest first.
    col = 3 + CXR14_LABELS.index("Effusion")
    win.batch.table.sortByColumn(col, Qt.SortOrder.DescendingOrder)
    proxy = win.batch.proxy
    values = [float(proxy.index(i, col).data() or -1) for i in range(proxy.rowCount())]
    assert values == sorted(values, reverse=True)

    # Export: the `cxrviewer score` results format, read back by cxrviewer.results.
    out = tmp_path / "exported.csv"
    with qtbot.waitSignal(win.export_done, timeout=30_000):
        win.export_results(out)
    table = read_results(out)
    assert table.labels == list(CXR14_LABELS)
    assert table.paths == sorted(rows)
    assert table.model_name == "tiny-cxr14"
    assert table.model_sha256 == win.state.model.info.checksum
    assert int(table.error_mask.sum()) == 1
    for i, p in enumerate(table.paths):
        if rows[p].probabilities:
            np.testing.assert_allclose(table.probabilities[i], [rows[p].probabilities[k] for k in CXR14_LABELS],
                                       atol=5e-7)
            assert table.calls[i] == rows[p].calls

    # ROC panel against the labels CSV: AUROC per class equals scikit-learn on the same numbers.
    with qtbot.waitSignal(win.roc_shown, timeout=120_000) as sig:
        win.compute_roc(labels_csv)
    report = sig.args[0]
    roc = win.batch.roc
    assert roc.report is report
    scored = [i for i, p in enumerate(table.paths) if not table.error_mask[i]]
    estimable = 0
    for j, lab in enumerate(CXR14_LABELS):
        y = np.array([lab in truth[table.paths[i]] for i in scored], dtype=int)
        s = table.probabilities[scored, j]
        c = report.by_label(lab)
        if 0 < y.sum() < len(y):
            estimable += 1
            assert c.estimable
            assert c.auroc == pytest.approx(roc_auc_score(y, s), abs=1e-6)
            # The legend names the class with its AUROC and CI; the operating point is drawn.
            legend_text = " ".join(item[1].text for item in roc.legend.items)
            assert f"{lab.replace('_', ' ')}  {c.auroc:.3f} ({c.ci_low:.3f}–{c.ci_high:.3f})" in legend_text
            assert lab in roc.points and c.threshold == pytest.approx(0.5)
            fpr, tpr = roc.curves[lab].getData()
            np.testing.assert_allclose(fpr, c.roc.fpr)
        else:
            assert not c.estimable and c.auroc is None
    assert estimable >= 8
    # The table shows the same numbers.
    for r in range(roc.table.rowCount()):
        lab = roc.table.item(r, 0).text().replace(" ", "_")
        c = report.by_label(lab)
        if c.estimable:
            assert roc.table.item(r, 3).text() == f"{c.auroc:.3f}"
            assert roc.table.item(r, 6).text() == f"{c.sensitivity:.3f}"
            assert roc.table.item(r, 7).text() == f"{c.specificity:.3f}"
        else:
            assert roc.table.item(r, 3).text() == "not estimable"
    assert win.batch.report_button.isEnabled()
    # The ROC curves get half the window to be read in.
    qtbot.waitUntil(lambda: win.docks["batch"].height() > 0.4 * win.height(), timeout=5000)
    win.grab().save(str(shots / "batch-roc.png"))
    win.batch.tabs.setCurrentIndex(0)
    win.grab().save(str(shots / "batch-results.png"))


def test_batch_cancel_stops_and_reader_keeps_reading(qtbot, make_window, tiny_model, nih_png_dir, tmp_path):
    # 300 films (links to the real NIH films): long enough to still be running when the
    # reader opens a film and then cancels, however fast the machine.
    sources = sorted(nih_png_dir.glob("*.png"))
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(300):
        (folder / f"{i:03d}-{sources[i % len(sources)].name}").symlink_to(sources[i % len(sources)])
    win = make_window(model=tiny_model, path=str(folder))
    wait_model(qtbot, win)
    qtbot.waitUntil(lambda: win.batch.score_button.isEnabled(), timeout=10_000)
    target = sorted(folder.iterdir())[250]
    during = []
    win.prediction_shown.connect(lambda p: during.append((Path(p), win.inference.batch_running)))
    with qtbot.waitSignal(win.batch_done, timeout=120_000) as sig:
        qtbot.mouseClick(win.batch.score_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: len(win.batch.model.rows) >= 4, timeout=60_000)
        assert win.batch.cancel_button.isEnabled()
        # While the batch runs, the reader still gets probabilities for the film on screen.
        with qtbot.waitSignal(win.prediction_shown, timeout=60_000,
                              check_params_cb=lambda p: Path(p) == target):
            win.browser.select_path(target)
        assert (target, True) in during
        qtbot.mouseClick(win.batch.cancel_button, Qt.MouseButton.LeftButton)
    summary = sig.args[0]
    assert summary.cancelled
    assert 4 <= summary.done < 300
    assert len(win.batch.model.rows) == summary.done
    assert "cancelled" in win.batch.progress_label.text()
    assert win.batch.score_button.isEnabled() and not win.batch.cancel_button.isEnabled()
    # What was scored before the cancel can still be exported, in the score format.
    from cxrviewer.results import read_results

    with qtbot.waitSignal(win.export_done, timeout=30_000):
        win.export_results(tmp_path / "partial.csv")
    assert len(read_results(tmp_path / "partial.csv")) == summary.done


def test_batch_without_model_explains(qtbot, make_window, nih_png_dir, tmp_path):
    folder = tmp_path / "few"
    copy_films(nih_png_dir, folder, sorted(p.name for p in nih_png_dir.glob("*.png"))[:2])
    win = make_window(model="/nonexistent/none.keras", path=str(folder))
    wait_model(qtbot, win)
    assert not win.batch.score_button.isEnabled()
    with qtbot.waitSignal(win.error_reported, timeout=5000) as sig:
        win.start_batch()
    assert "no model loaded" in sig.args[0]
    assert not win.inference.batch_running
