"""The film on screen: pyqtgraph image with window/level, zoom, pan, inversion and Grad-CAM.

Grey levels come from the loader: "as loaded" shows ``Film.pixels`` untouched (the file's
own VOI window or LUT, MONOCHROME1 already inverted); any other window is computed from
``Film.raw`` (modality units) by ``cxrviewer.io.apply_window``. Mouse: left-drag pans,
the wheel zooms, right-drag (or Ctrl+left-drag on a trackpad) changes window and level,
double-click fits.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from cxrviewer.gui import presets
from cxrviewer.gui.state import DisplayState, OverlayState


def to_uint8(img01: np.ndarray) -> np.ndarray:
    """0..1 float -> 0..255 uint8 (rounded); pyqtgraph draws uint8 with its fast path."""
    scaled = np.clip(img01, 0.0, 1.0) * 255.0
    scaled += 0.5
    return scaled.astype(np.uint8)


def overlay_lut(name: str) -> np.ndarray:
    """256 RGBA entries: the colour map, with alpha rising from 0 so weak activation
    leaves the film untinted and the reader still sees the anatomy under the map."""
    try:
        cmap = pg.colormap.get(name)
    except Exception:  # unknown name in old settings
        cmap = pg.colormap.get("inferno")
    lut = cmap.getLookupTable(0.0, 1.0, 256, alpha=True).astype(np.uint8)
    ramp = np.clip(np.linspace(0.0, 1.0, 256) / 0.35, 0.0, 1.0)
    lut[:, 3] = (255 * ramp).astype(np.uint8)
    return lut


class FilmViewBox(pg.ViewBox):
    """ViewBox whose right-drag (or Ctrl+left-drag) is window/level instead of zoom."""

    def __init__(self, on_window_drag, on_double_click):
        super().__init__(lockAspect=True, invertY=True, enableMenu=False, defaultPadding=0.0)
        self._on_window_drag = on_window_drag
        self._on_double_click = on_double_click

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802 - Qt naming
        is_wl = ev.button() == Qt.MouseButton.RightButton or (
            ev.button() == Qt.MouseButton.LeftButton and ev.modifiers() & Qt.KeyboardModifier.ControlModifier
        )
        if not is_wl:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        delta = ev.screenPos() - ev.lastScreenPos()
        self._on_window_drag(delta.x(), delta.y(), ev.isStart(), ev.isFinish())

    def mouseClickEvent(self, ev):  # noqa: N802
        if ev.double() and ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self._on_double_click()
            return
        super().mouseClickEvent(ev)


class FilmView(QWidget):
    """Shows one film; binds to DisplayState (window/level/invert) and OverlayState."""

    rendered = Signal()  # the image on screen changed (film, window or inversion)
    overlay_rendered = Signal(str)  # label of the overlay now drawn ("" = none)

    def __init__(self, display: DisplayState, overlay: OverlayState, parent=None):
        super().__init__(parent)
        self.display = display
        self.overlay = overlay
        self.film = None
        self.displayed: np.ndarray | None = None  # float 0..1 grey on screen (no overlay)
        self.overlay_label = ""
        self._overlay_map: np.ndarray | None = None
        self._drag_start: tuple[float, float] | None = None

        self.graphics = pg.GraphicsView(self)
        self.graphics.setBackground("#000000")
        self.viewbox = FilmViewBox(self._window_drag, self.fit)
        self.graphics.setCentralItem(self.viewbox)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.overlay_item = pg.ImageItem(axisOrder="row-major")
        self.overlay_item.setZValue(10)
        self.overlay_item.setVisible(False)
        self.viewbox.addItem(self.image_item)
        self.viewbox.addItem(self.overlay_item)
        self.graphics.scene().sigMouseMoved.connect(self._mouse_moved)

        # Message over the view ("loading…", an error) - not a scene item, so it stays put.
        self.message = QLabel(self.graphics)
        self.message.setObjectName("filmMessage")
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.message.hide()
        # Which finding the heat map is for, always beside the map itself.
        self.overlay_caption = QLabel(self.graphics)
        self.overlay_caption.setObjectName("overlayCaption")
        self.overlay_caption.move(8, 8)
        self.overlay_caption.hide()

        self.cursor_label = QLabel("")
        self.cursor_label.setObjectName("cursorLabel")
        self.geometry_label = QLabel("")
        self.window_label = QLabel("")
        for lab in (self.cursor_label, self.geometry_label, self.window_label):
            lab.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Fixed height: the film must not shift by a pixel when the cursor read-out appears.
        info = QWidget()
        info.setFixedHeight(self.fontMetrics().height() + 8)
        bar = QHBoxLayout(info)
        bar.setContentsMargins(6, 2, 6, 2)
        bar.setSpacing(18)
        bar.addWidget(self.geometry_label, 3)
        bar.addWidget(self.cursor_label, 3)
        bar.addWidget(self.window_label, 2, Qt.AlignmentFlag.AlignRight)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.graphics, 1)
        lay.addWidget(info)

        # Window/level drags arrive faster than a big film can be re-windowed; fold them.
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.setInterval(15)
        self._redraw_timer.timeout.connect(self._render)
        display.changed.connect(self._redraw_timer.start)
        overlay.changed.connect(self._render_overlay)
        self.viewbox.sigRangeChanged.connect(self._update_window_label)

    # ---- film --------------------------------------------------------------------------
    def show_film(self, film) -> None:
        """Show a newly loaded film, fitted; the window comes from DisplayState."""
        self.film = film
        self._overlay_map = None
        self.overlay_label = ""
        self.overlay_item.setVisible(False)
        self.overlay_caption.hide()
        self.message.hide()
        rows, cols = film.shape
        spacing = film.meta.pixel_spacing
        # Non-square pixels: scale the view so millimetres look like millimetres.
        ratio = (spacing[0] / spacing[1]) if spacing and spacing[0] > 0 and spacing[1] > 0 else 1.0
        self.viewbox.setAspectLocked(True, ratio=ratio)
        self._render()
        self._redraw_timer.stop()  # the window set for this film is already drawn
        self.fit()
        self._update_geometry_label()

    def clear(self, message: str = "") -> None:
        self.film = None
        self.displayed = None
        self._overlay_map = None
        self.overlay_label = ""
        self.image_item.clear()
        self.overlay_item.clear()
        self.overlay_item.setVisible(False)
        self.overlay_caption.hide()
        self.geometry_label.setText("")
        self.cursor_label.setText("")
        self.window_label.setText("")
        self.set_message(message)

    def set_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))
        self._place_message()

    def resizeEvent(self, ev):  # noqa: N802
        super().resizeEvent(ev)
        self._place_message()

    def _place_message(self):
        r = self.graphics.rect()
        self.message.setGeometry(r.adjusted(40, r.height() // 3, -40, -r.height() // 3))

    @property
    def redraw_pending(self) -> bool:
        """A window/level change is waiting for the next (folded) redraw."""
        return self._redraw_timer.isActive()

    # ---- grey levels ------------------------------------------------------------------
    def display_array(self) -> np.ndarray | None:
        """The film's grey image for the current window and inversion, float 0..1."""
        film = self.film
        if film is None:
            return None
        d = self.display
        if d.preset == presets.AS_LOADED:
            img = np.asarray(film.pixels, dtype=np.float32)
        else:
            from cxrviewer.io import apply_window

            img = apply_window(
                film.raw, d.center, d.width, invert=presets.film_inverts(film.meta),
                function=d.function,
            )
            img = np.asarray(img, dtype=np.float32)
        if d.invert:
            img = 1.0 - img
        return img

    def _render(self) -> None:
        img = self.display_array()
        if img is None:
            return
        self.displayed = img
        self.image_item.setImage(to_uint8(img), levels=(0, 255), autoLevels=False)
        self._update_window_label()
        self.rendered.emit()

    def _window_drag(self, dx: float, dy: float, start: bool, finish: bool) -> None:
        film = self.film
        if film is None:
            return
        d = self.display
        if start or self._drag_start is None:
            if d.preset == presets.AS_LOADED:
                c, w = self._as_loaded_window()
            else:
                c, w = d.center, d.width
            self._drag_start = (c, w)
            self._drag_scale = max(presets.full_range(film.raw)[1], 1e-6) / 600.0
            self._drag_acc = [0.0, 0.0]
        self._drag_acc[0] += dx
        self._drag_acc[1] += dy
        c0, w0 = self._drag_start
        # Right = wider window (less contrast); down = higher level. Same sense for
        # MONOCHROME1: the level moves along the stored values, the image follows.
        width = max(w0 + self._drag_acc[0] * self._drag_scale, self._drag_scale)
        center = c0 + self._drag_acc[1] * self._drag_scale
        d.set_window(center, width, "", "LINEAR")
        if finish:
            self._drag_start = None

    def _as_loaded_window(self) -> tuple[float, float]:
        """The window that produced Film.pixels: the film's first DICOM window, else its range."""
        film = self.film
        wp = list(film.meta.window_presets or [])
        if wp:
            return float(wp[0].center), float(wp[0].width)
        return presets.full_range(film.raw)

    # ---- overlay ----------------------------------------------------------------------
    def set_overlay(self, label: str, heat: np.ndarray | None) -> None:
        """Grad-CAM map (film shape; float 0..1 or uint8 0..255) for ``label``; None removes it."""
        if heat is not None and self.film is not None and tuple(heat.shape[:2]) != tuple(self.film.shape):
            heat = None  # never paint a map made for another film
        self._overlay_map = heat
        self.overlay_label = label if heat is not None else ""
        self._render_overlay()

    def _render_overlay(self) -> None:
        heat = self._overlay_map
        show = heat is not None and self.overlay.visible
        if heat is not None:
            img = heat if heat.dtype == np.uint8 else to_uint8(np.asarray(heat, np.float32))
            self.overlay_item.setImage(img, levels=(0, 255), autoLevels=False)
            self.overlay_item.setLookupTable(overlay_lut(self.overlay.colormap))
            self.overlay_item.setOpacity(self.overlay.opacity)
        self.overlay_item.setVisible(show)
        if show:
            self.overlay_caption.setText(f"Grad-CAM: {self.overlay_label.replace('_', ' ')} "
                                         "(where the model looked; not an outline of a finding)")
            self.overlay_caption.adjustSize()
        self.overlay_caption.setVisible(show)
        self.overlay_rendered.emit(self.overlay_label if show else "")

    # ---- zoom -------------------------------------------------------------------------
    def fit(self) -> None:
        if self.film is None:
            return
        rows, cols = self.film.shape
        self.viewbox.setRange(xRange=(0, cols), yRange=(0, rows), padding=0.0)

    def zoom(self, factor: float) -> None:
        """factor > 1 magnifies."""
        self.viewbox.scaleBy((1.0 / factor, 1.0 / factor))

    def one_to_one(self) -> None:
        """One film pixel per screen pixel, keeping the centre of the view."""
        if self.film is None:
            return
        rect = self.viewbox.viewRect()
        geom = self.viewbox.screenGeometry() if hasattr(self.viewbox, "screenGeometry") else None
        w_px = self.viewbox.width() if geom is None else geom.width()
        h_px = self.viewbox.height() if geom is None else geom.height()
        c = rect.center()
        self.viewbox.setRange(
            xRange=(c.x() - w_px / 2, c.x() + w_px / 2), yRange=(c.y() - h_px / 2, c.y() + h_px / 2), padding=0.0
        )

    def zoom_factor(self) -> float:
        """Screen pixels per film pixel."""
        sx, _ = self.viewbox.viewPixelSize()
        return 1.0 / sx if sx else 1.0

    # ---- read-outs --------------------------------------------------------------------
    def _mouse_moved(self, scene_pos: QPointF) -> None:
        film = self.film
        if film is None:
            return
        p = self.viewbox.mapSceneToView(scene_pos)
        col, row = int(np.floor(p.x())), int(np.floor(p.y()))
        rows, cols = film.shape
        if not (0 <= row < rows and 0 <= col < cols):
            self.cursor_label.setText("")
            return
        self.cursor_label.setText(self.value_text(row, col))

    def value_text(self, row: int, col: int) -> str:
        """'x 12  y 40  value 1234 HU' for the film pixel under the cursor (modality units)."""
        film = self.film
        value = film.raw[row, col]
        units = film.meta.modality_units or ""
        if np.issubdtype(np.asarray(value).dtype, np.integer):
            vtext = f"{int(value)}"
        else:
            vtext = f"{float(value):.4g}"
        text = f"x {col}  y {row}  value {vtext}{(' ' + units) if units else ''}"
        if self.film.meta.pixel_spacing:
            sr, sc = self.film.meta.pixel_spacing
            text += f"  ({col * sc:.1f}, {row * sr:.1f} mm)"
        return text

    def _update_geometry_label(self) -> None:
        film = self.film
        if film is None:
            return
        rows, cols = film.shape
        text = f"{cols} × {rows} px"
        sp = film.meta.pixel_spacing
        if sp:
            text += f"  ·  {sp[1]:.3f} × {sp[0]:.3f} mm  ·  {cols * sp[1] / 10:.1f} × {rows * sp[0] / 10:.1f} cm"
        else:
            text += "  ·  spacing unknown"
        self.geometry_label.setText(text)

    def _update_window_label(self, *args) -> None:
        film = self.film
        if film is None:
            return
        d = self.display
        if d.preset == presets.AS_LOADED:
            wl = film.meta.applied_voi or "as loaded"
        else:
            name = f" ({d.preset})" if d.preset else ""
            wl = f"W {d.width:.4g}  L {d.center:.4g}{name}"
        inv = "  · inverted" if d.invert else ""
        self.window_label.setText(f"{wl}{inv}  ·  zoom {100 * self.zoom_factor():.0f}%")
