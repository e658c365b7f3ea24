"""The real main window as a viewer (no model): folders, films, grey levels, window/level,
zoom, tags, bad files and a missing model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from cxrviewer.gui import presets
from tests.gui.conftest import wait_model

MISSING_MODEL = "/nonexistent/models/none.keras"


def open_and_wait(qtbot, win, folder, timeout=30_000):
    with qtbot.waitSignal(win.listing_done, timeout=timeout):
        win.open_folder(folder)
    qtbot.waitUntil(lambda: win.state.film.film is not None or bool(win.state.film.error), timeout=timeout)


def show_and_wait(qtbot, win, path, timeout=30_000):
    """Select ``path`` in the browser and wait until it is drawn (at once if it already is)."""
    path = Path(path)
    fs = win.state.film
    if fs.path == path and fs.film is not None:
        win.browser.select_path(path)
        return
    with qtbot.waitSignal(win.film_shown, timeout=timeout, check_params_cb=lambda p: Path(p) == path):
        assert win.browser.select_path(path)


def test_open_dicom_folder_and_step_with_keyboard(qtbot, make_window, dicom_dir, shots):
    win = make_window(model=MISSING_MODEL)
    open_and_wait(qtbot, win, dicom_dir)
    entries = win.state.folder.entries
    rels = [e.rel for e in entries]
    # Every DICOM of the shared folder (4 misc, 6 nih-dx, 16 rsna-cr), in the loader's order.
    from cxrviewer.io import list_films

    assert [e.path for e in entries] == list(list_films(dicom_dir))
    assert len(entries) == 26
    assert "misc/siim-fake-monochrome1.dcm" in rels
    first = entries[0].path
    qtbot.waitUntil(lambda: win.state.film.film is not None and win.state.film.path == first, timeout=30_000)
    assert win.film_view.displayed is not None
    assert win.position_label.text() == f"1 / {len(entries)}"

    win.film_view.setFocus()
    for key, expected in ((Qt.Key.Key_Down, 1), (Qt.Key.Key_J, 2), (Qt.Key.Key_Up, 1), (Qt.Key.Key_End, 25),
                          (Qt.Key.Key_Home, 0)):
        with qtbot.waitSignal(win.film_shown, timeout=30_000) as sig:
            qtbot.keyClick(win.film_view, key)
        assert Path(sig.args[0]) == entries[expected].path
        assert win.state.film.path == entries[expected].path
    # The browser's selection follows the keyboard.
    assert win.browser.current_path() == entries[0].path
    win.grab().save(str(shots / "viewer-dicom-folder.png"))


def test_filter_narrows_list_and_navigation_follows_it(qtbot, make_window, dicom_dir):
    win = make_window(model=MISSING_MODEL)
    open_and_wait(qtbot, win, dicom_dir)
    qtbot.keyClicks(win.browser.filter, "nih-dx")
    assert win.browser.proxy.rowCount() == 6
    assert "6 of 26" in win.browser.count_label.text()
    with qtbot.waitSignal(win.film_shown, timeout=30_000) as sig:
        win.browser.last()
    assert Path(sig.args[0]).name == "test6.dcm"
    win.browser.filter.setText("*monochrome*")
    assert win.browser.proxy.rowCount() == 1
    # Typing in the filter box types: single-key shortcuts (F fit, 1 one-to-one, J next)
    # do not fire while it has the focus.
    win.browser.filter.clear()
    win.browser.filter.setFocus()
    shown = win.state.film.path
    zoom = win.film_view.zoom_factor()
    qtbot.keyClicks(win.browser.filter, "f1j")
    assert win.browser.filter.text() == "f1j"
    assert win.film_view.zoom_factor() == pytest.approx(zoom) and win.state.film.path == shown


def monochrome1_twin(original: Path, dest: Path) -> Path:
    """The film re-encoded as a real MONOCHROME1 CR would be: stored values inverted
    (white = low), JPEG Baseline quality 95, PhotometricInterpretation MONOCHROME1."""
    import cv2
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit, generate_uid

    ds = pydicom.dcmread(original)
    inverted = (255 - ds.pixel_array).astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", inverted, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    ds.PixelData = encapsulate([jpeg.tobytes()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(dest, enforce_file_format=True)
    return dest


def test_monochrome1_is_displayed_like_its_monochrome2_twin(qtbot, make_window, dicom_dir, tmp_path, shots):
    folder = tmp_path / "twins"
    folder.mkdir()
    m2_path = folder / "a-monochrome2.dcm"
    shutil.copy2(dicom_dir / "misc" / "siim-pneumothorax-cr.dcm", m2_path)
    m1_path = monochrome1_twin(m2_path, folder / "b-monochrome1.dcm")
    win = make_window(model=MISSING_MODEL)
    open_and_wait(qtbot, win, folder)
    shown = {}
    for path in (m2_path, m1_path):
        show_and_wait(qtbot, win, path)
        assert win.state.film.film.meta.photometric == ("MONOCHROME1" if path == m1_path else "MONOCHROME2")
        shown[path] = win.film_view.displayed.copy()
        win.grab().save(str(shots / f"viewer-{path.stem}.png"))
    m2, m1 = shown[m2_path], shown[m1_path]
    assert m1.shape == m2.shape
    # Equal within JPEG re-quantisation (a few grey levels at sharp edges, far less on
    # average); a missing or doubled inversion would be off by ~0.4 on average.
    assert np.abs(m1 - m2).max() <= 8 / 255
    assert np.abs(m1 - m2).mean() <= 1 / 255
    # The same through a computed window (Film.raw + apply_window, not the loader's pixels).
    lung = {}
    for path in (m2_path, m1_path):
        show_and_wait(qtbot, win, path)
        with qtbot.waitSignal(win.film_view.rendered, timeout=5000):
            win.apply_preset("lung")
        assert win.state.display.preset == "lung"
        lung[path] = win.film_view.displayed.copy()
    assert np.abs(lung[m1_path] - lung[m2_path]).mean() <= 3 / 255
    assert np.abs(lung[m2_path] - m2).mean() > 0.02  # the lung window really changed the image


def test_shared_fake_monochrome1_follows_its_header(qtbot, make_window, dicom_dir):
    """The shared 'siim-fake-monochrome1.dcm' differs from its original only in the
    Photometric Interpretation tag (same JPEG bytes), so a viewer that follows the header
    shows the original's negative. The viewer shows what the loader decided."""
    import pydicom

    win = make_window(model=MISSING_MODEL)
    open_and_wait(qtbot, win, dicom_dir / "misc")
    path = dicom_dir / "misc" / "siim-fake-monochrome1.dcm"
    show_and_wait(qtbot, win, path)
    stored = pydicom.dcmread(path).pixel_array.astype(np.float32)
    # Within one grey level: the loader may decode JPEG with another library than pydicom's.
    np.testing.assert_allclose(win.film_view.displayed, 1.0 - stored / 255.0, atol=1 / 255 + 1e-6)
    np.testing.assert_allclose(win.film_view.displayed, win.state.film.film.pixels, atol=1e-6)


def test_window_level_drag_presets_invert_and_readouts(qtbot, make_window, dicom_dir, shots):
    win = make_window(model=MISSING_MODEL)
    open_and_wait(qtbot, win, dicom_dir / "rsna-cr")
    fv = win.film_view
    film = win.state.film.film
    base = fv.displayed.copy()
    np.testing.assert_allclose(base, film.pixels, atol=1e-6)  # as loaded = the loader's grey levels
    assert "full range" in fv.window_label.text().lower() or film.meta.applied_voi[:10] in fv.window_label.text()

    # Right-drag in the view: wider window to the right, level down.
    vb = fv.viewbox
    centre = fv.graphics.mapFromScene(vb.mapViewToScene(QPointF(film.shape[1] / 2, film.shape[0] / 2)))
    drag(qtbot, fv.graphics.viewport(), centre, centre + QPoint(-120, 60), Qt.MouseButton.RightButton)
    qtbot.waitUntil(lambda: not fv.redraw_pending, timeout=5000)
    d = win.state.display
    assert d.preset == ""  # manual
    assert d.width < 256  # narrower than the file's full-range window: more contrast
    expected = win_apply(film, d.center, d.width)
    np.testing.assert_allclose(fv.displayed, expected, atol=1e-6)
    assert f"W {d.width:.4g}" in fv.window_label.text()

    # Presets from the JSON resolve per film; the preset box follows.
    with qtbot.waitSignal(fv.rendered, timeout=5000):
        qtbot.keyClick(fv, Qt.Key.Key_F3)  # mediastinum
    assert d.preset == "mediastinum"
    assert win.preset_box.currentData() == "mediastinum"
    c, w = presets.resolve(next(p for p in win.preset_defs if p.name == "mediastinum"), film.raw,
                           film.meta.photometric, film.meta.modality_units)
    assert (d.center, d.width) == (c, w)
    # The DICOM preset from the file is offered too.
    keys = [win.preset_box.itemData(i) for i in range(win.preset_box.count())]
    assert "dicom:0" in keys and "lung" in keys and "auto" in keys
    with qtbot.waitSignal(fv.rendered, timeout=5000):
        qtbot.keyClick(fv, Qt.Key.Key_R)  # back to as loaded
    np.testing.assert_allclose(fv.displayed, film.pixels, atol=1e-6)

    # Invert.
    with qtbot.waitSignal(fv.rendered, timeout=5000):
        qtbot.keyClick(fv, Qt.Key.Key_I)
    np.testing.assert_allclose(fv.displayed, 1.0 - film.pixels, atol=1e-6)
    assert "inverted" in fv.window_label.text()
    with qtbot.waitSignal(fv.rendered, timeout=5000):
        qtbot.keyClick(fv, Qt.Key.Key_I)

    # Zoom, 1:1, fit.
    fv.fit()
    fit_zoom = fv.zoom_factor()
    assert fit_zoom < 1.0  # a 1024 px film fits a smaller view
    qtbot.keyClick(fv, Qt.Key.Key_1)
    assert fv.zoom_factor() == pytest.approx(1.0, rel=0.03)
    qtbot.keyClick(fv, Qt.Key.Key_Plus)
    assert fv.zoom_factor() == pytest.approx(1.25, rel=0.03)
    qtbot.keyClick(fv, Qt.Key.Key_F)
    assert fv.zoom_factor() == pytest.approx(fit_zoom, rel=0.03)

    # Pixel value under the cursor, in modality units, with film size and spacing.
    row, col = 300, 400
    pos = fv.graphics.mapFromScene(vb.mapViewToScene(QPointF(col + 0.5, row + 0.5)))
    qtbot.mouseMove(fv.graphics.viewport(), pos)
    qtbot.waitUntil(lambda: fv.cursor_label.text() != "", timeout=5000)
    import re

    m = re.match(r"x (\d+)  y (\d+)  value (-?\d+)", fv.cursor_label.text())
    assert m, fv.cursor_label.text()
    x, y, value = (int(g) for g in m.groups())
    # Within one film pixel of the target (a screen pixel is ~1.6 film pixels when fitted),
    # and the value is the modality value of exactly the pixel named.
    assert abs(x - col) <= 1 and abs(y - row) <= 1
    assert value == int(film.raw[y, x])
    sr, sc = film.meta.pixel_spacing
    assert fv.geometry_label.text().startswith(f"{film.shape[1]} × {film.shape[0]} px")
    assert f"{sc:.3f} × {sr:.3f} mm" in fv.geometry_label.text()
    win.grab().save(str(shots / "viewer-window-level.png"))


def win_apply(film, center, width):
    from cxrviewer.io import apply_window

    return apply_window(film.raw, center, width, invert=presets.film_inverts(film.meta))


def drag(qtbot, widget, start: QPoint, end: QPoint, button, steps: int = 6):
    """A real press-move-release drag (pyqtgraph needs moves with the button held)."""
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    def send(kind, pos, buttons):
        ev = QMouseEvent(kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), button, buttons,
                         Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(widget, ev)

    send(QEvent.Type.MouseButtonPress, start, button)
    for i in range(1, steps + 1):
        p = start + (end - start) * (i / steps)
        send(QEvent.Type.MouseMove, p, button)
        qtbot.wait(5)
    send(QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)


def test_tag_panel_hides_patient_identifiers_until_asked(qtbot, make_window, dicom_dir):
    win = make_window(model=MISSING_MODEL)
    open_and_wait(qtbot, win, dicom_dir / "misc")
    show_and_wait(qtbot, win, dicom_dir / "misc" / "siim-pneumothorax-cr.dcm")
    film = win.state.film.film
    assert film.identifiers.values
    text = win.tags.visible_text()
    assert "Modality" in text or "(0008,0060)" in text
    secrets = [v for v in film.identifiers.values.values() if v and len(v) > 3]
    assert secrets and not any(s in text for s in secrets)
    win.tags.show_identifiers.setChecked(True)
    shown = win.tags.visible_text()
    assert all(s in shown for s in secrets)
    # Identifiers are never written to the log, whatever is shown.
    assert not any(s in "\n".join(win.log_panel.lines) for s in secrets)
    # The next film hides them again.
    show_and_wait(qtbot, win, dicom_dir / "misc" / "siim-fake-monochrome1.dcm")
    assert not win.tags.show_identifiers.isChecked()


def test_loader_warnings_are_shown_in_a_banner_and_the_browser(qtbot, make_window, dicom_dir, shots):
    win = make_window(model=MISSING_MODEL)
    open_and_wait(qtbot, win, dicom_dir / "nih-dx")
    show_and_wait(qtbot, win, dicom_dir / "nih-dx" / "test5.dcm")
    assert win.banner.isVisible()
    assert "CT" in win.banner.text()
    entry = win.state.folder.entries[win.state.folder.index_of[dicom_dir / "nih-dx" / "test5.dcm"]]
    assert entry.status == "warning" and "CT" in entry.message
    win.grab().save(str(shots / "viewer-warning-banner.png"))
    show_and_wait(qtbot, win, dicom_dir / "nih-dx" / "test1.dcm")
    assert not win.banner.isVisible()


def test_bad_file_shows_reason_and_app_continues(qtbot, make_window, dicom_dir, tmp_path, shots):
    folder = tmp_path / "films"
    folder.mkdir()
    shutil.copy2(dicom_dir / "nih-dx" / "test1.dcm", folder / "a-good.dcm")
    data = (dicom_dir / "nih-dx" / "test2.dcm").read_bytes()
    (folder / "b-truncated.dcm").write_bytes(data[: len(data) // 3])
    (folder / "c-not-an-image.png").write_text("this is not a PNG")
    shutil.copy2(dicom_dir / "nih-dx" / "test3.dcm", folder / "d-good.dcm")
    win = make_window(model=MISSING_MODEL)
    open_and_wait(qtbot, win, folder)
    for name in ("b-truncated.dcm", "c-not-an-image.png"):
        with qtbot.waitSignal(win.film_failed, timeout=30_000) as sig:
            win.browser.select_path(folder / name)
        reason = sig.args[1]
        assert reason.startswith(name + ":")
        assert name in win.statusBar().currentMessage()
        assert any(name in line for line in win.log_panel.lines)
        assert name in win.film_view.message.text() and win.film_view.message.isVisible()
        entry = win.state.folder.entries[win.state.folder.index_of[folder / name]]
        assert entry.status == "error"
    win.grab().save(str(shots / "viewer-bad-file.png"))
    show_and_wait(qtbot, win, folder / "d-good.dcm")
    assert win.film_view.displayed is not None and not win.film_view.message.isVisible()


def test_missing_model_is_explained_and_viewer_keeps_working(qtbot, make_window, dicom_dir):
    win = make_window(model=MISSING_MODEL, path=str(dicom_dir / "nih-dx"))
    wait_model(qtbot, win)
    assert win.state.model.status == "unavailable"
    assert "none.keras" in win.state.model.message
    assert "Load model" in win.state.model.message  # how to get one
    assert "not available" in win.findings.model_label.text()
    assert win.findings.status.text() == win.state.model.message
    assert "model not loaded" in win.statusBar().currentMessage()
    assert not win.batch.score_button.isEnabled()
    qtbot.waitUntil(lambda: win.state.film.film is not None, timeout=30_000)
    assert win.film_view.displayed is not None


def test_open_path_file_drag_and_drop_and_recent_folders(qtbot, make_window, dicom_dir, settings, tmp_path):
    win = make_window(model=MISSING_MODEL)
    target = dicom_dir / "nih-dx" / "test3.dcm"
    with qtbot.waitSignal(win.film_shown, timeout=30_000) as sig:
        win.open_path(target)
    assert Path(sig.args[0]) == target
    qtbot.waitUntil(lambda: win.browser.current_path() == target, timeout=30_000)

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(dicom_dir / "misc"))])
    with qtbot.waitSignal(win.listing_done, timeout=30_000):
        ev = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                        Qt.KeyboardModifier.NoModifier)
        win.dropEvent(ev)
    assert win.state.folder.folder == dicom_dir / "misc"

    recent = settings.recent_folders
    assert recent[:2] == [dicom_dir / "misc", dicom_dir / "nih-dx"]
    assert [a.text() for a in win.recent_menu.actions()][:2] == [str(dicom_dir / "misc"), str(dicom_dir / "nih-dx")]
    with qtbot.waitSignal(win.listing_done, timeout=30_000):
        win.recent_menu.actions()[1].trigger()
    assert win.state.folder.folder == dicom_dir / "nih-dx"


def test_thumbnails_are_made_lazily_and_cached(qtbot, make_window, dicom_dir):
    win = make_window(model=MISSING_MODEL)
    open_and_wait(qtbot, win, dicom_dir / "nih-dx")
    model = win.browser.model
    qtbot.waitUntil(lambda: len(model.thumbnails) == 6, timeout=30_000)
    pix = model.thumbnails.get(dicom_dir / "nih-dx" / "test2.dcm")
    assert max(pix.width(), pix.height()) == 64
    # Header warnings found while making thumbnails flag films before they are opened.
    statuses = {e.path.name: e.status for e in win.state.folder.entries}
    assert statuses["test4.dcm"] == statuses["test5.dcm"] == statuses["test6.dcm"] == "warning"
    assert statuses["test2.dcm"] == "not scored"


def test_settings_persist_between_windows(qtbot, make_window, settings, dicom_dir):
    win = make_window(model=MISSING_MODEL)
    win.opacity_slider.setValue(70)
    win.colormap_box.setCurrentText("viridis")
    win.act_overlay.setChecked(False)
    open_and_wait(qtbot, win, dicom_dir / "misc")
    win.close()
    assert settings.overlay_opacity == pytest.approx(0.70)
    assert settings.overlay_colormap == "viridis"
    assert settings.overlay_visible is False
    assert settings.last_folder == dicom_dir / "misc"
    assert settings.window_state() is not None
    win2 = make_window(model=MISSING_MODEL, load_model=False)
    assert win2.state.overlay.opacity == pytest.approx(0.70)
    assert win2.colormap_box.currentText() == "viridis"
    assert not win2.act_overlay.isChecked()


def test_pan_and_wheel_zoom_with_the_mouse(qtbot, make_window, dicom_dir):
    win = make_window(model=MISSING_MODEL)
    open_and_wait(qtbot, win, dicom_dir / "nih-dx")
    fv = win.film_view
    vb = fv.viewbox
    before = vb.viewRect()
    centre = fv.graphics.viewport().rect().center()
    drag(qtbot, fv.graphics.viewport(), centre, centre + QPoint(80, 40), Qt.MouseButton.LeftButton)
    after = vb.viewRect()
    # Dragging the film right and down moves the view's window left and up over it.
    assert after.left() < before.left() - 20 and after.top() < before.top() - 10
    assert after.width() == pytest.approx(before.width(), rel=1e-3)  # a pan, not a zoom
    from PySide6.QtCore import QPoint as P
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    zoom = fv.zoom_factor()
    ev = QWheelEvent(QPointF(centre), QPointF(fv.graphics.viewport().mapToGlobal(centre)), P(0, 0), P(0, 240),
                     Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(fv.graphics.viewport(), ev)
    assert fv.zoom_factor() > zoom * 1.1


def test_window_preset_on_open_and_own_presets_persist(qtbot, make_window, settings, dicom_dir):
    settings.default_preset = "lung"
    settings.save_custom_preset("soft", 120.0, 90.0)
    win = make_window(model=MISSING_MODEL)
    open_and_wait(qtbot, win, dicom_dir / "rsna-cr")
    film = win.state.film.film
    lung = next(p for p in win.preset_defs if p.name == "lung")
    assert win.state.display.preset == "lung"
    assert (win.state.display.center, win.state.display.width) == presets.resolve(
        lung, film.raw, film.meta.photometric, film.meta.modality_units)
    np.testing.assert_allclose(win.film_view.displayed, win_apply(film, *presets.resolve(
        lung, film.raw, film.meta.photometric, film.meta.modality_units)), atol=1e-6)
    i = win.preset_box.findData("custom:soft")
    assert i >= 0
    with qtbot.waitSignal(win.film_view.rendered, timeout=5000):
        win.preset_box.activated.emit(i)
    assert (win.state.display.center, win.state.display.width, win.state.display.preset) == (120.0, 90.0, "soft")
    assert win.preset_box.currentData() == "custom:soft"
    # The "window when a film opens" menu says what is remembered and changes it.
    checked = [a.text() for a in win.open_with_menu.actions() if a.isChecked()]
    assert checked == ["Lung"]
    next(a for a in win.open_with_menu.actions() if a.text() == "As loaded").trigger()
    assert settings.default_preset == presets.AS_LOADED


def test_model_status_says_loading_until_ready(qtbot, make_window, tiny_model, shots):
    win = make_window(load_model=False)
    win.load_model(tiny_model)
    assert win.model_status.text() == "Model: loading model…"
    assert "loading model" in win.findings.model_label.text()
    win.grab().save(str(shots / "viewer-loading-model.png"))
    wait_model(qtbot, win)
    assert win.model_status.text().startswith("Model: tiny-cxr14 · ")
