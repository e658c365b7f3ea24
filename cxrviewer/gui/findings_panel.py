"""The model's findings for the film on screen: sorted probability bars with thresholds.

Each bar is one finding; the card's threshold is a white tick across it; bars at or above
their threshold (the calls) are amber. Clicking a bar selects that finding for the
Grad-CAM overlay. The model, the compute device and "Not for diagnostic use" are always
on show.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from cxrviewer import NOT_FOR_DIAGNOSIS
from cxrviewer.gui.state import ModelState

BAR = "#5d7385"
CALL = "#e3a72f"
SELECTED_PEN = pg.mkPen("#5ad2f4", width=2.5)
THRESHOLD_PEN = pg.mkPen("#f2f2f2", width=2)
BAR_HEIGHT = 0.72


class FindingsPanel(QWidget):
    label_clicked = Signal(str)
    shown = Signal()  # bars drawn for a prediction

    def __init__(self, model_state: ModelState, parent=None):
        super().__init__(parent)
        self.model_state = model_state
        self.order: list[str] = []  # labels top to bottom
        self.probabilities: dict[str, float] = {}
        self.thresholds: dict[str, float] = {}
        self.calls: list[str] = []
        self.selected = ""

        self.model_label = QLabel("")
        self.model_label.setObjectName("modelLabel")
        self.model_label.setWordWrap(True)
        self.model_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.disclaimer = QLabel(NOT_FOR_DIAGNOSIS)
        self.disclaimer.setObjectName("disclaimer")
        self.status = QLabel("")
        self.status.setObjectName("findingsStatus")
        self.status.setWordWrap(True)
        self.calls_label = QLabel("")
        self.calls_label.setObjectName("callsLabel")
        self.calls_label.setWordWrap(True)

        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.setMinimumHeight(170)
        self.plot.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        pi = self.plot.getPlotItem()
        pi.invertY(True)
        pi.setXRange(0.0, 1.0, padding=0.02)
        pi.showGrid(x=True, y=False, alpha=0.15)
        pi.getAxis("bottom").setLabel("probability")
        self.bars = pg.BarGraphItem(x0=[], y=[], width=[], height=BAR_HEIGHT)
        self.ticks = pg.PlotDataItem(pen=THRESHOLD_PEN, connect="pairs")
        self.selection = pg.PlotDataItem(pen=SELECTED_PEN)
        pi.addItem(self.bars)
        pi.addItem(self.ticks)
        pi.addItem(self.selection)
        self._value_items: list[pg.TextItem] = []
        self.plot.scene().sigMouseClicked.connect(self._clicked)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(self.model_label)
        lay.addWidget(self.disclaimer)
        lay.addWidget(self.status)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.calls_label)
        model_state.changed.connect(self.refresh_model)
        self.plot.hide()
        self.refresh_model()

    # ---- model ------------------------------------------------------------------------
    def refresh_model(self, *args) -> None:
        """Model name, device and status lines from ModelState."""
        m = self.model_state
        if m.status == m.READY and m.info is not None:
            info = m.info
            dev = info.device_kind + (f" ({info.device_name})" if info.device_name else "")
            self.model_label.setText(f"Model: {info.name}  ·  {dev}")
            self.model_label.setToolTip(info.identity)
            self.thresholds = dict(info.thresholds)
            if not self.probabilities:
                self.set_status("Select a film to see the model's findings.")
        elif m.status == m.LOADING:
            self.model_label.setText("Model: loading model…")
            self.set_status("Loading model in the background; films can be read meanwhile.")
        elif m.status == m.UNAVAILABLE:
            self.model_label.setText("Model: not available")
            self.set_status(m.message)
        else:
            self.model_label.setText("Model: none")

    def set_status(self, text: str) -> None:
        self.status.setText(text)
        self.status.setVisible(bool(text))

    # ---- prediction -------------------------------------------------------------------
    def clear(self, status: str = "") -> None:
        self.order, self.probabilities, self.calls = [], {}, []
        self.bars.setOpts(x0=[], y=[], width=[], brushes=[])
        self.ticks.setData([], [])
        self.selection.setData([], [])
        for item in self._value_items:
            self.plot.removeItem(item)
        self._value_items = []
        self.plot.getPlotItem().getAxis("left").setTicks([[]])
        self.calls_label.setText("")
        self.plot.hide()  # an empty chart reads like "all zero"; show none until scored
        self.set_status(status)

    def show_prediction(self, prediction, thresholds: dict[str, float] | None = None) -> None:
        if thresholds is not None:
            self.thresholds = dict(thresholds)
        probs = {k: float(v) for k, v in prediction.probabilities.items()}
        self.probabilities = probs
        self.calls = list(prediction.calls)
        self.order = sorted(probs, key=lambda k: (-probs[k], k))
        ys = np.arange(len(self.order), dtype=float)
        widths = [probs[k] for k in self.order]
        brushes = [pg.mkBrush(CALL if k in self.calls else BAR) for k in self.order]
        self.bars.setOpts(x0=np.zeros(len(ys)), y=ys, width=widths, height=BAR_HEIGHT, brushes=brushes,
                          pens=[pg.mkPen(None)] * len(ys))
        tx, ty = [], []
        for y, k in zip(ys, self.order):
            thr = self.thresholds.get(k)
            if thr is None:
                continue
            tx += [thr, thr]
            ty += [y - BAR_HEIGHT / 2 - 0.08, y + BAR_HEIGHT / 2 + 0.08]
        self.ticks.setData(tx, ty)
        axis = self.plot.getPlotItem().getAxis("left")
        axis.setTicks([[(y, k.replace("_", " ")) for y, k in zip(ys, self.order)]])
        for item in self._value_items:
            self.plot.removeItem(item)
        self._value_items = []
        for y, k in zip(ys, self.order):
            t = pg.TextItem(f"{probs[k]:.2f}", color="#d8d8d8", anchor=(0, 0.5))
            t.setPos(min(probs[k], 0.86) + 0.01, y)
            self.plot.addItem(t)
            self._value_items.append(t)
        self.plot.getPlotItem().setYRange(-0.6, len(ys) - 0.4, padding=0)
        if self.calls:
            names = ", ".join(c.replace("_", " ") for c in sorted(self.calls, key=lambda c: -probs.get(c, 0)))
            self.calls_label.setText(f"Above threshold: {names}")
        else:
            self.calls_label.setText("No finding above its threshold.")
        self.set_status("")
        self.plot.show()
        self._draw_selection()
        self.shown.emit()

    def select(self, label: str) -> None:
        self.selected = label
        self._draw_selection()

    def _draw_selection(self) -> None:
        if self.selected not in self.order:
            self.selection.setData([], [])
            return
        y = self.order.index(self.selected)
        w = max(self.probabilities[self.selected], 0.01)
        h = BAR_HEIGHT / 2 + 0.04
        self.selection.setData([0, w, w, 0, 0], [y - h, y - h, y + h, y + h, y - h])

    # ---- clicks -----------------------------------------------------------------------
    def label_at(self, view_y: float) -> str | None:
        i = int(round(view_y))
        if 0 <= i < len(self.order) and abs(view_y - i) <= 0.5:
            return self.order[i]
        return None

    def _clicked(self, ev) -> None:
        vb = self.plot.getPlotItem().getViewBox()
        p = vb.mapSceneToView(ev.scenePos())
        if not vb.sceneBoundingRect().contains(ev.scenePos()):
            return
        label = self.label_at(p.y())
        if label:
            self.label_clicked.emit(label)

    def bar_position(self, label: str) -> QPoint:
        """Widget coordinates (in ``self.plot``) of the middle of a bar; for tests and help."""
        vb = self.plot.getPlotItem().getViewBox()
        y = self.order.index(label)
        x = max(self.probabilities[label], 0.05) / 2
        scene = vb.mapViewToScene(pg.Point(x, y))
        return self.plot.mapFromScene(scene)
