"""``cxrviewer [PATH]``: start the Qt application and the main window.

The window is shown before anything slow happens: TensorFlow is imported by the
inference thread once the event loop runs, and the folder or file given on the command
line is listed and decoded on the I/O pool.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback

log = logging.getLogger("cxrviewer.gui")

# Set by the benchmark and tests: "window" prints when the window is on screen and quits;
# "views" also waits for the image views (pyqtgraph, imported in the background);
# "film" opens PATH, prints when its first film is drawn (or failed), and quits.
STARTUP_PROBE_ENV = "CXRVIEWER_STARTUP_PROBE"


def install_exception_hook() -> None:
    """Log unexpected exceptions (GUI thread and worker threads) instead of aborting.

    Qt calls Python slots from C++; an exception escaping one would otherwise end the
    session for a reader in the middle of a list. The traceback goes to the log panel;
    it holds code locations only, never film contents or identifiers.
    """

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        text = "".join(traceback.format_exception(exc_type, exc, tb)).rstrip()
        log.error("unexpected error (the viewer keeps running):\n%s", text)

    def thread_hook(args):
        hook(args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = hook
    threading.excepthook = thread_hook


def _configure_logging() -> None:
    root = logging.getLogger("cxrviewer")
    root.setLevel(logging.INFO)
    if not any(isinstance(h, logging.StreamHandler) for h in root.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        root.addHandler(h)


def run_app(path: str | None = None, model: str | None = None) -> int:
    """Open the viewer on ``path`` (a folder or a film) with ``model`` (default: shipped)."""
    t0 = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from cxrviewer.gui.settings import APPLICATION, ORGANISATION
    from cxrviewer.gui.theme import apply_theme

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    _configure_logging()
    install_exception_hook()
    apply_theme(app)

    from cxrviewer.gui.main_window import MainWindow

    win = MainWindow(model_path=model)
    probe = os.environ.get(STARTUP_PROBE_ENV)

    def shown():
        elapsed = time.perf_counter() - t0
        log.info("window shown %.2f s after run_app", elapsed)
        if probe:
            # Epoch time so the benchmark can measure from before it started the process.
            print(f"CXRVIEWER_WINDOW_SHOWN {time.time():.6f} tf_loaded={'tensorflow' in sys.modules}",
                  flush=True)
            if probe == "views":
                def views():
                    print(f"CXRVIEWER_VIEWS_READY {time.time():.6f}", flush=True)
                    QTimer.singleShot(0, win.close)

                if win.views_built:
                    views()
                else:
                    win.views_ready.connect(views)
                return
            if probe != "film":
                QTimer.singleShot(0, win.close)
                return

            def film_done(p, reason=""):
                print(f"CXRVIEWER_FILM_SHOWN {time.time():.6f} {p.name if p else ''} {reason}".rstrip(), flush=True)
                QTimer.singleShot(0, win.close)

            win.film_shown.connect(film_done)
            win.film_failed.connect(film_done)
        win.start(path)

    win.window_shown.connect(shown)
    win.show()
    return int(app.exec())
