"""The wizard's pyqtgraph charts: class balance before/after weighting, and live training curves.

Imported in the background by the wizard (pyqtgraph takes about a second to import), like
the viewer's views; nothing here computes a number, it only draws what the training code
reports (``weights.BinaryClassWeights.contributions``, the fit's epoch logs).
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QHBoxLayout, QWidget

POSITIVE_COLOUR = "#e69f00"  # amber, like calls in the viewer
NEGATIVE_COLOUR = "#56b4e9"
TRAIN_COLOUR = "#e69f00"
VALIDATION_COLOUR = "#56b4e9"
AUROC_COLOUR = "#009e73"


def _plot(title: str) -> pg.PlotWidget:
    w = pg.PlotWidget()
    w.setMenuEnabled(False)
    w.hideButtons()
    w.setMouseEnabled(x=False, y=False)
    w.setMinimumSize(220, 160)
    w.getPlotItem().setTitle(title, size="9pt")
    # No grid: pyqtgraph draws it with the axes, and it made every repaint of a chart cost
    # ~20 ms instead of ~5 (measured in the wizard benchmark); the axes' ticks suffice.
    # Ranges are set explicitly, not auto-ranged: auto-ranging repaints a chart twice.
    w.getPlotItem().getViewBox().disableAutoRange()
    return w


class ContributionChart(QWidget):
    """Positive and negative contribution to the loss per class, before and after weighting.

    Horizontal bars so long finding names stay readable; one panel per side of the
    method's chart. With the method's weights (w_pos = 1 - p, w_neg = p) the two bars of
    every class are equal after weighting: that is the point of the chart.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.before = _plot("Before weighting")
        self.after = _plot("After weighting")
        self.after.setYLink(self.before)
        self.bars: dict[str, list] = {"before": [], "after": []}
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.before, 1)
        lay.addWidget(self.after, 1)
        self.labels: list[str] = []
        self.values: dict[str, np.ndarray] = {}

    def set_data(self, labels: list[str], contributions: dict[str, np.ndarray], *,
                 positive_name: str = "positive", negative_name: str = "negative") -> None:
        self.labels = list(labels)
        self.values = {k: np.asarray(v, dtype=np.float64) for k, v in contributions.items()}
        n = len(labels)
        # First class on top. (Not ViewBox.invertY: pyqtgraph then drops the tick labels.)
        y = np.arange(n - 1, -1, -1, dtype=np.float64)
        ticks = [[(float(yy), lab.replace("_", " ")) for yy, lab in zip(y, labels)]]
        key = (f"<span style='color:{POSITIVE_COLOUR}'>■ {positive_name}</span>&nbsp;&nbsp;"
               f"<span style='color:{NEGATIVE_COLOUR}'>■ {negative_name}</span>")
        for side, plot in (("before", self.before), ("after", self.after)):
            pi = plot.getPlotItem()
            pi.clear()
            pos = np.nan_to_num(self.values[f"positive_{side}"])
            neg = np.nan_to_num(self.values[f"negative_{side}"])
            pb = pg.BarGraphItem(x0=0, y=y + 0.19, height=0.36, width=pos, brush=POSITIVE_COLOUR, pen=None)
            nb = pg.BarGraphItem(x0=0, y=y - 0.19, height=0.36, width=neg, brush=NEGATIVE_COLOUR, pen=None)
            pi.addItem(pb)
            pi.addItem(nb)
            self.bars[side] = [pb, nb]
            title = "Before weighting" if side == "before" else "After weighting"
            pi.setTitle(f"{title}&nbsp;&nbsp;{key}", size="9pt")
            left = pi.getAxis("left")
            left.setTicks(ticks)
            # Wide enough for the longest name from the first paint (pyqtgraph widens the
            # axis only after a paint has found the text too wide).
            fm = QFontMetrics(plot.font())
            left.setWidth(max((fm.horizontalAdvance(t) for _, t in ticks[0]), default=20) + 16)
            pi.getAxis("bottom").enableAutoSIPrefix(False)
            top = max(float(np.max(pos, initial=0.0)), float(np.max(neg, initial=0.0)), 0.05)
            pi.setXRange(0, min(1.0, top * 1.08), padding=0)
            pi.setYRange(-0.6, max(n - 0.4, 0.6), padding=0)
            pi.setLabel("bottom", "frequency × weight" if side == "after" else "frequency in training")


class TrainingCurves(QWidget):
    """Loss (training and validation) and validation AUROC per epoch, drawn as epochs end."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.loss = _plot("Loss")
        self.auroc = _plot("Validation AUROC (mean over classes)")
        for p in (self.loss, self.auroc):
            p.getPlotItem().setLabel("bottom", "epoch")
        self.loss.getPlotItem().addLegend(offset=(-4, 4), labelTextSize="8pt")
        self.auroc.getPlotItem().setYRange(0.4, 1.0, padding=0)
        self.loss.getPlotItem().setXRange(0.5, 1.5, padding=0)
        self.auroc.getPlotItem().setXRange(0.5, 1.5, padding=0)
        self.train_curve = self.loss.plot([], [], pen=pg.mkPen(TRAIN_COLOUR, width=2), symbol="o", symbolSize=5,
                                          symbolBrush=TRAIN_COLOUR, name="training")
        self.val_curve = self.loss.plot([], [], pen=pg.mkPen(VALIDATION_COLOUR, width=2), symbol="o", symbolSize=5,
                                        symbolBrush=VALIDATION_COLOUR, name="validation")
        self.auroc_curve = self.auroc.plot([], [], pen=pg.mkPen(AUROC_COLOUR, width=2), symbol="o", symbolSize=6,
                                           symbolBrush=AUROC_COLOUR)
        self.best_marker = pg.ScatterPlotItem([], [], symbol="star", size=14, brush=pg.mkBrush("#f0e442"), pen=None)
        self.auroc.addItem(self.best_marker)
        self.phase_lines: list[pg.InfiniteLine] = []
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.loss, 1)
        lay.addWidget(self.auroc, 1)
        self.epochs: list[dict] = []

    def clear(self) -> None:
        if not self.epochs and not self.phase_lines:
            return  # nothing drawn: no repaint
        self.epochs = []
        for line in self.phase_lines:
            self.loss.removeItem(line)
        self.phase_lines = []
        self._redraw()

    def add_epoch(self, logs: dict) -> None:
        """``logs``: the fit's epoch entry (epoch, phase, loss, val_loss, val_auroc, best)."""
        previous = self.epochs[-1]["phase"] if self.epochs else None
        self.epochs = [e for e in self.epochs if e["epoch"] != logs.get("epoch")] + [dict(logs)]
        self.epochs.sort(key=lambda e: e["epoch"])
        if previous is not None and logs.get("phase") != previous:
            line = pg.InfiniteLine(pos=logs["epoch"] - 0.5, angle=90,
                                   pen=pg.mkPen("#5d6873", style=Qt.PenStyle.DashLine),
                                   label=str(logs.get("phase", "")), labelOpts={"position": 0.92, "color": "#8a96a3"})
            self.loss.addItem(line)
            self.phase_lines.append(line)
        self._redraw()

    @staticmethod
    def _xy(epochs, key):
        pts = [(e["epoch"], e.get(key)) for e in epochs]
        pts = [(x, y) for x, y in pts if y is not None and math.isfinite(float(y))]
        return [p[0] for p in pts], [float(p[1]) for p in pts]

    def _redraw(self) -> None:
        last = max((e["epoch"] for e in self.epochs), default=1)
        step = max(1, math.ceil(last / 10))  # whole epochs on the axis
        for p in (self.loss, self.auroc):
            p.getPlotItem().getAxis("bottom").setTickSpacing(major=step, minor=step)
            p.getPlotItem().setXRange(0.5, last + 0.5, padding=0)
        train, val, auroc = (self._xy(self.epochs, k) for k in ("loss", "val_loss", "val_auroc"))
        self.train_curve.setData(*train)
        self.val_curve.setData(*val)
        self.auroc_curve.setData(*auroc)
        losses = train[1] + val[1]
        if losses:
            lo, hi = min(losses), max(losses)
            pad = max((hi - lo) * 0.08, abs(hi) * 0.02, 1e-3)
            self.loss.getPlotItem().setYRange(lo - pad, hi + pad, padding=0)
        low = min([0.4] + [a - 0.03 for a in auroc[1]])
        self.auroc.getPlotItem().setYRange(max(0.0, low), 1.0, padding=0)
        best = [e for e in self.epochs if e.get("best") and e.get("val_auroc") is not None]
        self.best_marker.setData([best[-1]["epoch"]] if best else [], [best[-1]["val_auroc"]] if best else [])
