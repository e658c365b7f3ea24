"""The real window with a tiny real model: probabilities, Grad-CAM overlay, stale results,
model card, switching models, and TensorFlow staying off the GUI thread."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from cxrviewer import NOT_FOR_DIAGNOSIS
from cxrviewer.findings import CXR14_LABELS
from tests.gui.conftest import copy_films, wait_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def predictor(tiny_model):
    """The same model, loaded in the test (not the GUI) thread, to check the window's numbers."""
    from cxrviewer.model import load_model

    return load_model(tiny_model)


@pytest.fixture
def nih_folder(nih_png_dir, tmp_path) -> Path:
    names = sorted(p.name for p in nih_png_dir.glob("*.png"))[:6]
    copy_films(nih_png_dir, tmp_path / "nih", names)
    return tmp_path / "nih"


def wait_prediction(qtbot, win, path, timeout=60_000):
    path = Path(path)
    if win.state.film.path == path and win.state.film.prediction is not None and win.findings.order:
        return
    with qtbot.waitSignal(win.prediction_shown, timeout=timeout, check_params_cb=lambda p: Path(p) == path):
        pass


def test_probabilities_bars_and_gradcam_overlay(qtbot, make_window, tiny_model, predictor, nih_folder, shots):
    win = make_window(model=tiny_model, path=str(nih_folder))
    wait_model(qtbot, win)
    assert win.state.model.ready, win.state.model.message
    first = sorted(nih_folder.glob("*.png"))[0]
    wait_prediction(qtbot, win, first)
    from cxrviewer.io import load_film

    film = load_film(first)
    expected = predictor.predict([film])[0]
    fp = win.findings
    # Every label, sorted by probability, equal to the model's own numbers.
    assert sorted(fp.probabilities) == sorted(CXR14_LABELS)
    for lab, p in expected.probabilities.items():
        assert fp.probabilities[lab] == pytest.approx(p, abs=1e-6)
    assert fp.order == sorted(fp.order, key=lambda k: -fp.probabilities[k])
    assert fp.calls == expected.calls
    # Threshold ticks: one pair of points per label, at the card's threshold.
    tx, ty = fp.ticks.getData()
    assert len(tx) == 2 * len(CXR14_LABELS)
    assert set(np.round(tx, 6)) == {0.5}
    brushes = fp.bars.opts["brushes"]
    for lab, brush in zip(fp.order, brushes):
        assert (brush.color().name() == "#e3a72f") == (lab in expected.calls)
    # Model, device and the disclaimer are on show.
    assert "tiny-cxr14" in fp.model_label.text() and ("CPU" in fp.model_label.text() or "GPU" in fp.model_label.text())
    assert fp.disclaimer.text() == NOT_FOR_DIAGNOSIS and fp.disclaimer.isVisible()
    assert win.browser.model.folder.entries[0].status == "scored"

    # The top finding's Grad-CAM arrives by itself.
    top = fp.order[0]
    qtbot.waitUntil(lambda: win.film_view.overlay_label == top, timeout=60_000)
    assert win.film_view.overlay_item.isVisible()
    win.grab().save(str(shots / "findings-overlay-top.png"))

    # Click another finding's bar with the mouse: its map is computed and drawn.
    other = fp.order[3]
    with qtbot.waitSignal(win.overlay_shown, timeout=60_000,
                          check_params_cb=lambda p, lab: lab == other and Path(p) == first):
        qtbot.mouseClick(fp.plot.viewport(), Qt.MouseButton.LeftButton, pos=fp.bar_position(other))
    assert win.state.overlay.label == other and fp.selected == other
    heat = predictor.gradcam(film, other)
    shown = win.film_view.overlay_item.image
    assert shown.shape == film.shape
    np.testing.assert_allclose(shown / 255.0, np.clip(heat, 0, 1), atol=1 / 255 + 1e-6)
    win.grab().save(str(shots / "findings-overlay-selected.png"))

    # Cached per (film, finding): going back to the top finding costs no model call.
    served = win.inference.served["gradcam"]
    with qtbot.waitSignal(win.overlay_shown, timeout=5000, check_params_cb=lambda p, lab: lab == top):
        win.select_finding(top)
    assert win.inference.served["gradcam"] == served

    # Opacity, colour map, on/off.
    win.opacity_slider.setValue(80)
    assert win.film_view.overlay_item.opacity() == pytest.approx(0.8)
    lut_before = np.array(win.film_view.overlay_item.lut)
    win.colormap_box.setCurrentText("viridis")
    assert not np.array_equal(np.array(win.film_view.overlay_item.lut), lut_before)
    qtbot.keyClick(win.film_view, Qt.Key.Key_G)
    assert not win.film_view.overlay_item.isVisible()
    qtbot.keyClick(win.film_view, Qt.Key.Key_G)
    assert win.film_view.overlay_item.isVisible()

    # The reader's finding follows them to the next film.
    second = sorted(nih_folder.glob("*.png"))[1]
    with qtbot.waitSignal(win.overlay_shown, timeout=60_000,
                          check_params_cb=lambda p, lab: Path(p) == second and lab == top):
        qtbot.keyClick(win.film_view, Qt.Key.Key_Down)


def test_stale_results_never_land_on_another_film(qtbot, make_window, tiny_model, predictor, nih_folder):
    win = make_window(model=tiny_model, path=str(nih_folder))
    wait_model(qtbot, win)
    films = sorted(nih_folder.glob("*.png"))
    wait_prediction(qtbot, win, films[0])

    drawn = []  # (film on screen, film the probabilities belong to) at each draw
    win.findings.shown.connect(lambda: drawn.append((win.state.film.path, Path(win.state.film.prediction.path))))
    overlays = []
    win.overlay_shown.connect(lambda p, lab: overlays.append((win.state.film.path, Path(p))))
    # Race through the folder faster than the model can keep up, then back two.
    for _ in range(len(films) - 1):
        qtbot.keyClick(win.film_view, Qt.Key.Key_Down)
    qtbot.keyClick(win.film_view, Qt.Key.Key_Up)
    qtbot.keyClick(win.film_view, Qt.Key.Key_Up)
    last = films[-3]
    assert win.state.film.path == last
    wait_prediction(qtbot, win, last)
    qtbot.waitUntil(lambda: win.film_view.overlay_label != "", timeout=60_000)
    assert all(shown == owner for shown, owner in drawn), drawn
    assert all(shown == owner for shown, owner in overlays), overlays
    from cxrviewer.io import load_film

    expected = predictor.predict([load_film(last)])[0]
    for lab, p in expected.probabilities.items():
        assert win.findings.probabilities[lab] == pytest.approx(p, abs=1e-6)


def test_a_burst_of_requests_collapses_to_the_latest(qtbot, tiny_model, nih_png_dir):
    """Inference worker alone: requests made while it is busy keep only the newest."""
    from cxrviewer.gui.workers import InferenceWorker
    from cxrviewer.io import load_film

    worker = InferenceWorker()
    try:
        with qtbot.waitSignal(worker.model_ready, timeout=120_000):
            worker.request_model(tiny_model)
        films = [load_film(p) for p in sorted(nih_png_dir.glob("*.png"))[:5]]
        got = []
        worker.prediction_ready.connect(lambda path, gen, pred: got.append((Path(path), gen)))
        # Holding the worker's queue lock stands in for "the worker is busy with a long
        # forward pass" while the reader presses the key five times.
        with worker._cond:
            for gen, film in enumerate(films, start=1):
                worker.set_current(film.path, gen)
                worker.request_prediction(film, gen)
                worker.request_gradcam(film, gen, "Effusion")
        with qtbot.waitSignal(worker.gradcam_ready, timeout=60_000) as sig:
            pass
        assert got == [(films[-1].path, 5)]
        assert Path(sig.args[0]) == films[-1].path and sig.args[1] == 5
        assert worker.served["prediction"] == 1 and worker.served["gradcam"] == 1
    finally:
        assert worker.stop()


def test_model_card_and_switching_models(qtbot, make_window, tiny_model, nih_folder, tmp_path):
    from tests.model_helpers import make_tiny_model

    win = make_window(model=tiny_model, path=str(nih_folder))
    wait_model(qtbot, win)
    first = sorted(nih_folder.glob("*.png"))[0]
    wait_prediction(qtbot, win, first)
    assert win.act_model_card.isEnabled()
    from cxrviewer.gui.model_dialogs import ModelCardDialog

    dlg = ModelCardDialog(win.state.model.info, win)
    qtbot.addWidget(dlg)
    text = dlg.browser.toPlainText()
    for needle in ("tiny-cxr14", "Intended use", "Software tests only", "Pleural Thickening",
                   "fixed 0.5 (untrained test model)", "randomly initialised", NOT_FOR_DIAGNOSIS,
                   win.state.model.info.checksum):
        assert needle in text
    dlg.close()

    other = make_tiny_model(tmp_path / "other", ["Effusion", "Pneumothorax", "Cardiomegaly"], size=32,
                            name="tiny-three", seed=3)
    with qtbot.waitSignal(win.prediction_shown, timeout=120_000):
        win.load_model(other, remember=True)
    assert win.state.model.info.name == "tiny-three"
    assert sorted(win.findings.probabilities) == ["Cardiomegaly", "Effusion", "Pneumothorax"]
    assert win.settings.model_path == other
    assert "tiny-three" in win.model_status.text()

    # A broken model explains itself and the window keeps the viewer going.
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"not a keras file")
    with qtbot.waitSignal(win.inference.model_failed, timeout=60_000):
        win.load_model(bad)
    assert win.state.model.status == "unavailable"
    assert "broken" in win.state.model.message and "Load model" in win.state.model.message
    assert win.film_view.displayed is not None


STARTUP_SCRIPT = r"""
import json, sys, threading, time
importers = []

class Spy:
    # Records which thread first imports TensorFlow.
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" and not importers:
            importers.append(threading.current_thread().name)
        return None

sys.meta_path.insert(0, Spy())
from PySide6.QtWidgets import QApplication
app = QApplication(sys.argv[:1])
from cxrviewer.gui.main_window import MainWindow
from cxrviewer.gui.settings import Settings
from PySide6.QtCore import QSettings, QTimer
win = MainWindow(Settings(QSettings(sys.argv[2], QSettings.Format.IniFormat)), model_path=sys.argv[1])
out = {}
def shown():
    out["tf_at_show"] = "tensorflow" in sys.modules
    win.start(None)
    out["tf_after_start"] = "tensorflow" in sys.modules
def ready(info):
    out["model"] = info.name
    out["importer"] = importers[:1]
    out["main_thread"] = threading.main_thread().name
    QTimer.singleShot(0, win.close)
    QTimer.singleShot(0, app.quit)
win.window_shown.connect(shown)
win.inference.model_ready.connect(ready)
win.inference.model_failed.connect(lambda r: (out.setdefault("failed", r), app.quit()))
win.show()
app.exec()
print("RESULT " + json.dumps(out))
"""


def test_tensorflow_is_imported_in_the_background_not_on_the_gui_thread(tiny_model, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", STARTUP_SCRIPT, str(tiny_model), str(tmp_path / "s.ini")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(REPO)},
    )
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, proc.stdout + proc.stderr
    out = json.loads(line[0][7:])
    assert "failed" not in out, out
    assert out["tf_at_show"] is False and out["tf_after_start"] is False
    assert out["model"] == "tiny-cxr14"
    assert out["importer"] and out["importer"][0] != out["main_thread"]
    assert out["importer"][0] == "cxrviewer-inference"


def test_model_warnings_join_the_banner(qtbot, make_window, data_dir, tmp_path):
    """A 64 px film under a 96 px model: the model says it had to enlarge the film."""
    from tests.model_helpers import make_tiny_model

    src = sorted((data_dir / "nih" / "thumbs64" / "train" / "1_abnormal").glob("*.png"))[0]
    folder = tmp_path / "small"
    copy_films(src.parent, folder, [src.name])
    model = make_tiny_model(tmp_path / "m96", ["Effusion", "Cardiomegaly"], size=96, name="tiny-96")
    win = make_window(model=model, path=str(folder))
    wait_model(qtbot, win)
    wait_prediction(qtbot, win, folder / src.name)
    assert win.banner.isVisible()
    assert "smaller than the model input" in win.banner.text()
    entry = win.state.folder.entries[0]
    assert entry.status == "warning" and "smaller than the model input" in entry.message
