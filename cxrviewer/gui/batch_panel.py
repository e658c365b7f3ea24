"""Batch panel: score the open folder in the background, a sortable results table, CSV
export in the ``cxrviewer score`` format, and the ROC panel against a labels CSV.

The panel only shows and asks: scoring runs in the inference worker, CSV writing and the
evaluation run on the I/O pool, both driven by the main window.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from cxrviewer import NOT_FOR_DIAGNOSIS
from cxrviewer.gui.roc_panel import RocPanel
from cxrviewer.gui.theme import icon
from cxrviewer.gui.workers import BatchRow

SORT_ROLE = Qt.ItemDataRole.UserRole + 10
FIXED = ["File", "Status", "Calls"]


class ResultsModel(QStandardItemModel):
    """Batch rows: file, status, calls, one probability column per label.

    The cells live in Qt's own item storage (not a Python ``data()``): while a batch runs,
    every repaint of the table would otherwise call into Python once per cell and role,
    and each such call waits for the GIL the worker threads are using.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.labels: list[str] = []
        self.rows: list[BatchRow] = []

    def reset(self, labels: list[str]) -> None:
        self.clear()
        self.labels = list(labels)
        self.rows = []
        self.setColumnCount(len(FIXED) + len(self.labels))
        self.setHorizontalHeaderLabels(FIXED + [lab.replace("_", " ") for lab in self.labels])

    def add(self, rows: list[BatchRow]) -> None:
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        amber, red = QBrush(QColor("#e3a72f")), QBrush(QColor("#ef6a5a"))
        for row in rows:
            items = []
            for col, text in enumerate((row.rel, row.status, ", ".join(row.calls))):
                it = QStandardItem(text)
                it.setData(text, SORT_ROLE)
                it.setToolTip(text)
                it.setEditable(False)
                if col == 1 and row.kind != "ok":
                    it.setForeground(red if row.kind == "error" else amber)
                items.append(it)
            for label in self.labels:
                p = None if row.probabilities is None else row.probabilities.get(label)
                it = QStandardItem("" if p is None else f"{p:.3f}")
                it.setData(-1.0 if p is None else float(p), SORT_ROLE)
                it.setTextAlignment(right)
                it.setEditable(False)
                if label in row.calls:
                    it.setForeground(amber)
                items.append(it)
            self.appendRow(items)
            self.rows.append(row)


class BatchPanel(QWidget):
    score_requested = Signal()
    cancel_requested = Signal()
    export_requested = Signal()
    labels_requested = Signal()
    report_requested = Signal()
    film_activated = Signal(object)  # Path: double-clicked row

    def __init__(self, parent=None):
        super().__init__(parent)
        self.job_id = 0
        self.folder: Path | None = None
        self.total = 0
        self.summary = None
        self.model_name = ""
        self._t0 = 0.0

        self.score_button = QPushButton(icon("score"), "Score folder")
        self.score_button.setToolTip("Score every film in the open folder with the loaded model")
        self.cancel_button = QPushButton(icon("stop"), "Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress_label = QLabel("")
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setEnabled(False)
        self.labels_button = QPushButton("ROC from labels CSV…")
        self.labels_button.setEnabled(False)
        self.report_button = QPushButton("Save report…")
        self.report_button.setEnabled(False)
        self.report_button.setToolTip("Write the evaluation report folder (JSON, CSV, ROC PNGs, summary)")

        self.model = ResultsModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.doubleClicked.connect(self._double_clicked)
        self.roc = RocPanel()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.table, "Results")
        self.tabs.addTab(self.roc, "ROC")

        top = QHBoxLayout()
        top.addWidget(self.score_button)
        top.addWidget(self.cancel_button)
        top.addWidget(self.progress, 1)
        top.addWidget(self.progress_label)
        top.addWidget(self.export_button)
        top.addWidget(self.labels_button)
        top.addWidget(self.report_button)
        disclaimer = QLabel(NOT_FOR_DIAGNOSIS)
        disclaimer.setObjectName("disclaimer")
        top.addWidget(disclaimer)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addWidget(self.tabs, 1)

        self.score_button.clicked.connect(self.score_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.export_button.clicked.connect(self.export_requested)
        self.labels_button.clicked.connect(self.labels_requested)
        self.report_button.clicked.connect(self.report_requested)

    # ---- run --------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.cancel_button.isEnabled()

    def begin(self, job_id: int, folder: Path, labels: list[str], model_name: str) -> None:
        self.job_id = job_id
        self.folder = Path(folder)
        self.model_name = model_name
        self.summary = None
        self.total = 0
        self._t0 = time.perf_counter()
        self.model.reset(labels)
        self.roc.clear("Score a folder, then choose its labels CSV to see ROC curves.")
        self.progress.setRange(0, 0)  # busy until the folder is listed
        self.progress_label.setText("listing films…")
        self.score_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.export_button.setEnabled(False)
        self.labels_button.setEnabled(False)
        self.report_button.setEnabled(False)
        self.tabs.setCurrentWidget(self.table)

    def set_progress(self, done: int, total: int) -> None:
        """``total`` is -1 while the folder is still being counted."""
        if total >= 0 and total != self.total:
            self.total = total
            self.progress.setRange(0, max(total, 1))
        if self.total:
            self.progress.setValue(min(done, self.total))
        elapsed = max(time.perf_counter() - self._t0, 1e-6)
        rate = done / elapsed
        if self.total and rate > 0:
            eta = (self.total - done) / rate
            self.progress_label.setText(
                f"{done}/{self.total} films · {rate:.1f}/s · ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        else:
            self.progress_label.setText(f"{done} films · {rate:.1f}/s · counting…")

    def add_rows(self, rows: list[BatchRow]) -> None:
        # Sorting on every insert re-asks the model for every cell; sort once per chunk.
        sorting = self.table.isSortingEnabled()
        self.table.setSortingEnabled(False)
        self.model.add(rows)
        self.table.setSortingEnabled(sorting)

    def finish(self, summary) -> None:
        self.summary = summary
        self.score_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        has_rows = bool(self.model.rows)
        self.export_button.setEnabled(has_rows)
        self.labels_button.setEnabled(has_rows)
        total = max(summary.total, self.total if summary.cancelled else 0)
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(summary.done)
        state = "cancelled" if summary.cancelled else ("failed: " + summary.error if summary.error else "done")
        failed = f", {summary.failed} could not be scored" if summary.failed else ""
        self.progress_label.setText(f"{state}: {summary.done}/{total} films in {summary.seconds:.1f} s{failed}")

    def set_model_ready(self, ready: bool) -> None:
        if not self.running:
            self.score_button.setEnabled(ready)

    # ---- rows -------------------------------------------------------------------------
    def _double_clicked(self, index) -> None:
        src = self.proxy.mapToSource(index)
        if src.isValid():
            self.film_activated.emit(self.model.rows[src.row()].path)
