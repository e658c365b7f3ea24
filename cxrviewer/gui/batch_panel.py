"""Batch panel: score the open folder in the background, a sortable results table, CSV
export in the ``cxrviewer score`` format, and the ROC panel against a labels CSV.

The panel only shows and asks: scoring runs in the inference worker, CSV writing and the
evaluation run on the I/O pool, both driven by the main window.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QBrush, QColor
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


class ResultsModel(QAbstractTableModel):
    """Batch rows: file, status, calls, one probability column per label."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.labels: list[str] = []
        self.rows: list[BatchRow] = []

    def reset(self, labels: list[str]) -> None:
        self.beginResetModel()
        self.labels = list(labels)
        self.rows = []
        self.endResetModel()

    def add(self, rows: list[BatchRow]) -> None:
        if not rows:
            return
        first = len(self.rows)
        self.beginInsertRows(QModelIndex(), first, first + len(rows) - 1)
        self.rows.extend(rows)
        self.endInsertRows()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(FIXED) + len(self.labels)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if role != Qt.ItemDataRole.DisplayRole or orientation != Qt.Orientation.Horizontal:
            return None
        if section < len(FIXED):
            return FIXED[section]
        return self.labels[section - len(FIXED)].replace("_", " ")

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        col = index.column()
        if col >= len(FIXED):
            label = self.labels[col - len(FIXED)]
            p = None if row.probabilities is None else row.probabilities.get(label)
            if role == Qt.ItemDataRole.DisplayRole:
                return "" if p is None else f"{p:.3f}"
            if role == SORT_ROLE:
                return -1.0 if p is None else float(p)
            if role == Qt.ItemDataRole.ForegroundRole and label in row.calls:
                return QBrush(QColor("#e3a72f"))
            if role == Qt.ItemDataRole.TextAlignmentRole:
                return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            return None
        value = (row.rel, row.status, ", ".join(row.calls))[col]
        if role in (Qt.ItemDataRole.DisplayRole, SORT_ROLE):
            return value
        if role == Qt.ItemDataRole.ToolTipRole:
            return value
        if role == Qt.ItemDataRole.ForegroundRole and col == 1 and row.kind != "ok":
            return QBrush(QColor("#ef6a5a" if row.kind == "error" else "#e3a72f"))
        return None


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
        self.model_sha256 = ""
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

    def begin(self, job_id: int, folder: Path, labels: list[str], model_name: str, model_sha256: str) -> None:
        self.job_id = job_id
        self.folder = Path(folder)
        self.model_name, self.model_sha256 = model_name, model_sha256
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

    def set_total(self, total: int) -> None:
        self.total = total
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(0)
        self._update_label()

    def add_rows(self, rows: list[BatchRow]) -> None:
        self.model.add(rows)
        self.progress.setValue(len(self.model.rows))
        self._update_label()

    def _update_label(self) -> None:
        done = len(self.model.rows)
        elapsed = max(time.perf_counter() - self._t0, 1e-6)
        rate = done / elapsed
        eta = (self.total - done) / rate if rate > 0 and self.total else 0
        self.progress_label.setText(f"{done}/{self.total} films · {rate:.1f}/s · ETA {int(eta) // 60}:{int(eta) % 60:02d}")

    def finish(self, summary) -> None:
        self.summary = summary
        self.score_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        has_rows = bool(self.model.rows)
        self.export_button.setEnabled(has_rows)
        self.labels_button.setEnabled(has_rows)
        self.progress.setRange(0, max(summary.total, 1))
        self.progress.setValue(summary.done)
        state = "cancelled" if summary.cancelled else ("failed: " + summary.error if summary.error else "done")
        failed = f", {summary.failed} could not be scored" if summary.failed else ""
        self.progress_label.setText(f"{state}: {summary.done}/{summary.total} films in {summary.seconds:.1f} s{failed}")

    def set_model_ready(self, ready: bool) -> None:
        if not self.running:
            self.score_button.setEnabled(ready)

    # ---- rows -------------------------------------------------------------------------
    def result_fields(self) -> tuple[list[str], list[list[str]]]:
        """(labels, rows as results-CSV fields sorted by path) via cxrviewer.results."""
        from cxrviewer.results import format_row

        labels = self.model.labels
        rows = sorted(self.model.rows, key=lambda r: r.rel)
        fields = [
            format_row(r.rel, r.status, r.probabilities, r.calls, self.model_name, self.model_sha256, labels)
            for r in rows
        ]
        return labels, fields

    def _double_clicked(self, index) -> None:
        src = self.proxy.mapToSource(index)
        if src.isValid():
            self.film_activated.emit(self.model.rows[src.row()].path)
