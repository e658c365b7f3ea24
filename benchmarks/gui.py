"""Viewer speed: window start time, film-to-probabilities latency, event-loop stall during a batch.

    QT_QPA_PLATFORM=offscreen python benchmarks/gui.py [--runs 7] [--films 48] [--skip-densenet]

Each number is printed beside a baseline measured in the same run on the same machine:

1. start: process start -> main window shown (``cxrviewer`` as a subprocess, median of
   ``--runs``), against a bare PySide6 process showing an empty QMainWindow. Target 1.5 s.
2. latency: selecting a film -> its probabilities drawn in the findings panel (median over
   real NIH films, each decoded fresh), against the Predictor's own ``predict`` of the same
   film in the same process; and selecting -> the top finding's Grad-CAM overlay drawn. Tiny model and a DenseNet121 (random weights, 224 px: the
   cost does not depend on the weights) unless ``--skip-densenet``.
3. stall: the longest lateness of a 5 ms QTimer on the GUI thread while the batch panel
   scores a folder, against the same timer on an idle window. Target < 50 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DATA = Path(os.environ.get("CXR_DATA", REPO.parent / "shared" / "data"))
NIH = DATA / "nih" / "png1024"

BARE_WINDOW = r"""
import sys, time
from PySide6.QtWidgets import QApplication, QMainWindow
from PySide6.QtCore import QTimer
app = QApplication(sys.argv[:1])
w = QMainWindow(); w.resize(1400, 900)
def shown():
    print(f"CXRVIEWER_WINDOW_SHOWN {time.time():.6f}", flush=True); w.close()
QTimer.singleShot(0, shown)
w.show()
app.exec()
"""


def _env(tmp: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "CXRVIEWER_STARTUP_PROBE": "window",
            "XDG_CONFIG_HOME": str(tmp / "config"), "HOME": str(tmp)}


def _time_process(cmd: list[str], env: dict, key: str = "CXRVIEWER_WINDOW_SHOWN") -> float:
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    shown = [ln for ln in proc.stdout.splitlines() if ln.startswith(key)]
    if not shown:
        raise RuntimeError(f"no {key}: {proc.stdout}\n{proc.stderr}")
    return float(shown[0].split()[1]) - t0


def bench_start(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = _env(Path(tmp))
        app_cmd = [sys.executable, "-m", "cxrviewer", "--model", str(Path(tmp) / "none.keras")]
        bare_cmd = [sys.executable, "-c", BARE_WINDOW]
        _time_process(app_cmd, env)  # warm the file cache once, like a second launch
        views_env = {**env, "CXRVIEWER_STARTUP_PROBE": "views"}
        app, bare, views = [], [], []
        for _ in range(runs):  # interleaved so load changes hit both alike
            bare.append(_time_process(bare_cmd, env))
            app.append(_time_process(app_cmd, env))
            views.append(_time_process(app_cmd, views_env, "CXRVIEWER_VIEWS_READY"))
    a, b, v = statistics.median(app), statistics.median(bare), statistics.median(views)
    print(f"start: cxrviewer window shown {a:.2f} s after process start (median of {runs}; "
          f"min {min(app):.2f}, max {max(app):.2f}); bare PySide6 window {b:.2f} s; "
          f"ratio {a / b:.1f}x; target 1.5 s: {'met' if a < 1.5 else 'NOT met'}")
    print(f"start: image views (pyqtgraph, imported in the background) ready {v:.2f} s after process start "
          f"(median; min {min(views):.2f}, max {max(views):.2f})")


def _densenet_model(folder: Path) -> Path:
    from cxrviewer.findings import CXR14_LABELS
    from cxrviewer.model.build import build_classifier, default_gradcam_layer
    from cxrviewer.model.loading import save_model
    from tests.model_helpers import tiny_card

    card = tiny_card(CXR14_LABELS, size=224, name="densenet121-random",
                     gradcam_layer=default_gradcam_layer("densenet121"),
                     architecture={"backbone": "densenet121", "input_size": 224, "channels": 3})
    model = build_classifier(len(CXR14_LABELS), backbone="densenet121", input_size=224, weights=None)
    return save_model(model, card, folder / "densenet121-random.keras")


def _window(model: Path, folder: Path):
    from PySide6.QtCore import QSettings

    from cxrviewer.gui.main_window import MainWindow
    from cxrviewer.gui.settings import Settings

    win = MainWindow(Settings(QSettings(str(folder.parent / "bench.ini"), QSettings.Format.IniFormat)),
                     model_path=model)
    win.resize(1400, 900)
    win.show()
    return win


def _wait(app, predicate, timeout: float = 300.0) -> None:
    end = time.perf_counter() + timeout
    while not predicate():
        app.processEvents()
        if time.perf_counter() > end:
            raise TimeoutError("benchmark step timed out")
        time.sleep(0.001)


def bench_latency(app, model: Path, label: str, folder: Path, n: int) -> None:
    from cxrviewer.io import load_film
    from cxrviewer.model import load_model

    win = _window(model, folder)
    win.start(folder)
    _wait(app, lambda: win.state.model.ready and win.state.folder.listing_done)
    paths = [e.path for e in win.state.folder.entries][:n]
    shown, overlaid = {}, {}
    win.prediction_shown.connect(lambda p: shown.setdefault(Path(p), time.perf_counter()))
    win.overlay_shown.connect(lambda p, lab: overlaid.setdefault(Path(p), time.perf_counter()))
    _wait(app, lambda: paths[0] in overlaid)
    gui, cam = [], []
    for p in paths[1:]:
        win.predictions.clear()  # every film is new to the window
        t0 = time.perf_counter()
        win.browser.select_path(p)
        _wait(app, lambda: p in shown)
        gui.append(shown[p] - t0)
        _wait(app, lambda: p in overlaid)  # the reader looks at the film: its Grad-CAM arrives
        cam.append(overlaid[p] - t0)
    win.close()
    predictor = load_model(model)
    films = [load_film(p) for p in paths[1:]]
    predictor.predict(films[:1])  # trace once
    raw = []
    for f in films:
        t0 = time.perf_counter()
        predictor.predict([f], batch_size=1)
        raw.append(time.perf_counter() - t0)
    g, r = statistics.median(gui), statistics.median(raw)
    print(f"latency ({label}): select film -> probabilities drawn {1000 * g:.0f} ms median "
          f"(p90 {1000 * sorted(gui)[int(0.9 * (len(gui) - 1))]:.0f} ms, {len(gui)} films); "
          f"Predictor.predict alone {1000 * r:.0f} ms; GUI overhead {1000 * (g - r):.0f} ms; "
          f"Grad-CAM overlay drawn {1000 * statistics.median(cam):.0f} ms after selecting")


def _stall(app, seconds: float | None, until=None, interval_ms: int = 5) -> tuple[float, float, int]:
    """Max and 99th-percentile lateness (ms) of a 5 ms repeating QTimer, and tick count.
    Also prints when (seconds after the start) stalls over 40 ms happened."""
    from PySide6.QtCore import QTimer

    late = []
    start = time.perf_counter()
    last = [start]
    big = []

    def tick():
        now = time.perf_counter()
        late.append(max(0.0, (now - last[0]) * 1000 - interval_ms))
        if late[-1] > 40:
            big.append(f"{late[-1]:.0f} ms at {now - start:.2f} s")
        last[0] = now

    t = QTimer()
    t.setTimerType(t.timerType().PreciseTimer)
    t.timeout.connect(tick)
    t.start(interval_ms)
    end = time.perf_counter() + (seconds or 1e9)
    while time.perf_counter() < end and not (until and until()):
        app.processEvents()
        time.sleep(0.0005)
    t.stop()
    if big:
        print(f"    stalls > 40 ms: {', '.join(big)} (of {time.perf_counter() - start:.2f} s)")
    late.sort()
    return (late[-1] if late else 0.0), (late[int(0.99 * (len(late) - 1))] if late else 0.0), len(late)


def bench_stall(app, model: Path, label: str, folder: Path) -> None:
    win = _window(model, folder)
    win.start(folder)
    _wait(app, lambda: win.state.model.ready and win.state.folder.listing_done and win.state.film.prediction)
    idle_max, idle_p99, _ = _stall(app, 2.0)
    done = []
    win.batch_done.connect(done.append)
    t0 = time.perf_counter()
    win.start_batch()
    busy_max, busy_p99, ticks = _stall(app, None, until=lambda: bool(done))
    secs = time.perf_counter() - t0
    s = done[0]
    win.close()
    print(f"stall ({label}): longest GUI event-loop stall during a batch of {s.total} films "
          f"({s.total / secs:.1f} films/s) {busy_max:.1f} ms (p99 {busy_p99:.1f} ms, {ticks} ticks); "
          f"idle window {idle_max:.1f} ms (p99 {idle_p99:.1f}); target < 50 ms: "
          f"{'met' if busy_max < 50 else 'NOT met'}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--films", type=int, default=48)
    ap.add_argument("--latency-films", type=int, default=12)
    ap.add_argument("--skip-densenet", action="store_true")
    ap.add_argument("--only", choices=["start", "latency", "stall"])
    args = ap.parse_args()
    print(f"cxrviewer GUI benchmark · {os.cpu_count()} CPUs · load average {os.getloadavg()[0]:.2f}")
    if args.only in (None, "start"):
        bench_start(args.runs)
    if args.only == "start":
        return 0
    from PySide6.QtWidgets import QApplication

    from cxrviewer.findings import CXR14_LABELS
    from cxrviewer.gui.theme import apply_theme
    from tests.model_helpers import make_tiny_model

    app = QApplication.instance() or QApplication(sys.argv[:1])
    apply_theme(app)
    with tempfile.TemporaryDirectory(prefix="cxrviewer-bench-") as tmp:
        tmp = Path(tmp)
        folder = tmp / "films"
        folder.mkdir()
        for p in sorted(NIH.glob("*.png"))[: args.films]:
            shutil.copy2(p, folder / p.name)
        models = [("tiny 32 px", make_tiny_model(tmp / "tiny", CXR14_LABELS, size=32, name="tiny-bench"))]
        if not args.skip_densenet:
            models.append(("DenseNet121 224 px", _densenet_model(tmp)))
        for label, model in models:
            if args.only in (None, "latency"):
                bench_latency(app, model, label, folder, args.latency_films)
            if args.only in (None, "stall"):
                bench_stall(app, model, label, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
