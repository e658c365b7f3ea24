"""ROC panel: one curve per class with AUROC and 95% CI, the operating point, a table.

Draws a ``cxrviewer.metrics.EvaluationReport``; every number comes from that module
(the same code ``cxrviewer evaluate`` runs), none is computed here.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSplitter,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from cxrviewer import NOT_FOR_DIAGNOSIS
from cxrviewer.gui.tables import fmt_number, set_class_row

# Okabe-Ito and friends: distinguishable on a dark background and for colour-blind readers.
PALETTE = ["#56b4e9", "#e69f00", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7",
           "#9ad0f5", "#ffcf70", "#6fd3b4", "#c9c9c9", "#ff9a7a", "#b99be8", "#7fd65f"]
ALL = "All classes"
COLUMNS = ["Finding", "Positives", "Negatives", "AUROC", "95% CI", "Threshold", "Sensitivity", "Specificity"]


def auroc_text(c) -> str:
    """'0.812 (0.741–0.873)' or 'not estimable: <reason>'."""
    if not c.estimable or c.auroc is None:
        return f"not estimable: {c.reason}"
    ci = f" ({c.ci_low:.3f}–{c.ci_high:.3f})" if c.ci_low is not None and c.ci_high is not None else ""
    return f"{c.auroc:.3f}{ci}"


class RocPanel(QWidget):
    shown = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.report = None
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.points: dict[str, pg.ScatterPlotItem] = {}

        self.title = QLabel("Score a folder, then choose its labels CSV to see ROC curves.")
        self.title.setWordWrap(True)
        self.choose = QComboBox()
        self.choose.addItem(ALL)
        self.choose.currentTextChanged.connect(self._focus)
        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.setMinimumSize(200, 90)
        pi = self.plot.getPlotItem()
        pi.setXRange(0, 1, padding=0.02)
        pi.setYRange(0, 1, padding=0.02)
        pi.getViewBox().setLimits(xMin=-0.02, xMax=1.02, yMin=-0.02, yMax=1.02)
        pi.setLabel("bottom", "1 − specificity (false positive rate)")
        pi.setLabel("left", "sensitivity (true positive rate)")
        pi.showGrid(x=True, y=True, alpha=0.12)
        self.legend = pi.addLegend(offset=(-6, -6), labelTextSize="8pt", verSpacing=-8, colCount=2)
        self.legend.setBrush(pg.mkBrush(16, 19, 22, 200))
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._table_selected)
        self.notes = QLabel("")
        self.notes.setWordWrap(True)
        self.notes.setObjectName("rocNotes")
        disclaimer = QLabel(NOT_FOR_DIAGNOSIS)
        disclaimer.setObjectName("disclaimer")

        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(QLabel("Show:"))
        top.addWidget(self.choose)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.plot)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.table, 1)
        rl.addWidget(self.notes)
        rl.addWidget(disclaimer)
        split.addWidget(right)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addWidget(split, 1)

    def clear(self, message: str = "") -> None:
        self.report = None
        pi = self.plot.getPlotItem()
        pi.clear()
        pi.setXRange(0, 1, padding=0.02)
        pi.setYRange(0, 1, padding=0.02)
        self.legend.clear()
        self.curves.clear()
        self.points.clear()
        self.table.setRowCount(0)
        self.notes.setText("")
        self.choose.blockSignals(True)
        self.choose.clear()
        self.choose.addItem(ALL)
        self.choose.blockSignals(False)
        if message:
            self.title.setText(message)

    def show_report(self, report, title: str = "") -> None:
        self.clear()
        self.report = report
        pi = self.plot.getPlotItem()
        pi.plot([0, 1], [0, 1], pen=pg.mkPen("#5d6873", width=1, style=Qt.PenStyle.DashLine))
        for i, c in enumerate(report.classes):
            colour = PALETTE[i % len(PALETTE)]
            self.choose.addItem(c.label)
            if not c.estimable or c.roc is None:
                continue
            curve = pi.plot(c.roc.fpr, c.roc.tpr, pen=pg.mkPen(colour, width=2),
                            name=f"{c.label.replace('_', ' ')}  {auroc_text(c)}")
            self.curves[c.label] = curve
            if c.sensitivity is not None and c.specificity is not None:
                pt = pg.ScatterPlotItem([1.0 - c.specificity], [c.sensitivity], symbol="o", size=9,
                                        pen=pg.mkPen("#ffffff", width=1.5), brush=pg.mkBrush(colour))
                pi.addItem(pt)
                self.points[c.label] = pt
        self._fill_table(report)
        notes = []
        if report.threshold_note:
            notes.append("Operating points (dots): " + report.threshold_note)
        src = report.source or {}
        if "matched" in src:  # a results CSV against a labels CSV
            notes.append(f"{src.get('matched', '?')} of {src.get('films', '?')} films matched a label row; "
                         f"{src.get('error_rows', 0)} could not be scored.")
        elif src:  # an in-memory evaluation (e.g. a training split) says what it describes
            notes.append("Data: " + "; ".join(f"{k}: {v}" for k, v in src.items()) + ".")
        notes += list(report.warnings)
        not_est = [c.label for c in report.classes if not c.estimable]
        if not_est:
            notes.append("Not estimable (no positive or no negative case): " + ", ".join(not_est))
        self.notes.setText("\n".join(notes))
        self.notes.setToolTip("\n".join(notes))
        mean = report.mean_auroc
        self.title.setText(title or (f"{report.n_cases} films · mean AUROC {mean:.3f}" if mean is not None
                                     else f"{report.n_cases} films · no class estimable"))
        self.shown.emit()

    def _fill_table(self, report) -> None:
        self.table.setRowCount(len(report.classes))
        for r, c in enumerate(report.classes):
            ci = (f"{c.ci_low:.3f}–{c.ci_high:.3f}" if c.ci_low is not None and c.ci_high is not None
                  else (c.ci_note and "too few cases" or "—"))
            cells = [c.label.replace("_", " "), str(c.n_positive), str(c.n_negative),
                     fmt_number(c.auroc) if c.estimable else "not estimable", ci if c.estimable else "—",
                     fmt_number(c.threshold), fmt_number(c.sensitivity), fmt_number(c.specificity)]
            set_class_row(self.table, r, cells, c)

    def _table_selected(self) -> None:
        rows = {ix.row() for ix in self.table.selectedIndexes()}
        if self.report is not None and len(rows) == 1:
            self.choose.setCurrentText(self.report.classes[rows.pop()].label)

    def _focus(self, label: str) -> None:
        for lab, curve in self.curves.items():
            on = label in (ALL, lab, "")
            curve.setVisible(on)
            if lab in self.points:
                self.points[lab].setVisible(on)
            curve.setPen(pg.mkPen(curve.opts["pen"].color(), width=3 if label == lab else 2))
