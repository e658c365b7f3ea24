"""The main window: wires the state, the workers and the panels together.

Start-up: the window is shown with plain Qt widgets first; pyqtgraph (about a second to
import) and the views built on it (film view, findings chart, batch/ROC panel) are
imported on a background thread and put in place as soon as they arrive. The model loads
meanwhile in the inference thread; a folder given at start opens once the views exist.

Flow: the browser picks a path -> FilmState.select bumps the generation -> the I/O pool
decodes -> the view shows the film -> the inference worker predicts -> the findings
panel draws the bars -> the worker computes Grad-CAM for the selected finding -> the view
draws the overlay. Every arrival is checked against the current (path, generation);
anything for another film is counted in ``dropped_results`` and thrown away.

Logging: the names of the files and folder the reader opened (what the status bar shows)
with the loader's one-line reasons; never full paths and never ``Film.identifiers``.
"""

from __future__ import annotations

import gc
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import threading

from PySide6.QtCore import QObject, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from cxrviewer import NOT_FOR_DIAGNOSIS, __version__
from cxrviewer.gui import jobs, presets
from cxrviewer.gui.browser import FilmBrowser, make_thumbnail
from cxrviewer.gui.cache import LRUCache
from cxrviewer.gui.log_panel import LogPanel, QtLogHandler
from cxrviewer.gui.model_dialogs import ModelCardDialog
from cxrviewer.gui.settings import Settings
from cxrviewer.gui.state import ERROR, OVERLAY_COLORMAPS, SCORED, WARNING, ViewerState
from cxrviewer.gui.tag_panel import TagPanel
from cxrviewer.gui.theme import icon
from cxrviewer.gui.workers import InferenceWorker, IOPool

log = logging.getLogger("cxrviewer.gui")

HOW_TO_GET_A_MODEL = (
    "The viewer works without a model. To see findings, use Model ▸ Load model… to open a "
    ".keras file with its .card.json beside it, or place the shipped model "
    "(cxr14-densenet121.keras + card) in the models/ folder of the installation."
)


class _ImportRelay(QObject):
    done = Signal(str)  # "" when the view modules imported, else the error


def _import_view_modules(relay: _ImportRelay) -> None:
    """Background thread: import pyqtgraph and the views built on it."""
    try:
        import cxrviewer.gui.batch_panel  # noqa: F401
        import cxrviewer.gui.film_view  # noqa: F401
        import cxrviewer.gui.findings_panel  # noqa: F401
    except Exception as exc:  # shown in the window; the browser and log still work
        relay.done.emit(f"{type(exc).__name__}: {exc}")
        return
    relay.done.emit("")


@dataclass
class BatchPrediction:
    """What a batch row tells the findings panel (no Film needed to show it again)."""

    path: Path
    probabilities: dict
    calls: list = field(default_factory=list)
    warnings: list = field(default_factory=list)


class MainWindow(QMainWindow):
    window_shown = Signal()  # first show, after the event loop painted it
    listing_done = Signal(int)
    film_shown = Signal(object)  # path of the film now drawn
    film_failed = Signal(object, str)  # path, reason
    prediction_shown = Signal(object)  # path whose probabilities are drawn
    overlay_shown = Signal(object, str)  # path, label of the Grad-CAM drawn
    batch_done = Signal(object)  # BatchSummary
    roc_shown = Signal(object)  # EvaluationReport
    export_done = Signal(object)  # Path written
    error_reported = Signal(str)
    views_ready = Signal()  # film view, findings and batch panels are built

    def __init__(self, settings: Settings | None = None, model_path: str | Path | None = None,
                 *, io_threads: int = 2, parent=None):
        super().__init__(parent)
        self.setObjectName("cxrviewerMainWindow")
        self.setWindowTitle("cxrviewer")
        self.setWindowIcon(icon("app"))
        self.settings = settings or Settings()
        self.state = ViewerState(self)
        self.io = IOPool(io_threads, self)
        self.inference = InferenceWorker(self.io, self)
        self.preset_defs = presets.load_preset_defs()
        self.predictions = LRUCache(5000)  # (path, model identity) -> prediction
        self.gradcams = LRUCache(48)  # (path, model identity, label) -> uint8 map, ~1 MB each
        self.dropped_results = 0  # results that arrived for a film no longer shown
        self._model_path = Path(model_path) if model_path else None
        self._sticky_label = ""  # finding the reader clicked; followed from film to film
        self._folder_token = 0
        self._pending_select: Path | None = None
        self._thumb_counter = 0
        self._batch_job = 0
        self._batch_pending: list = []  # rows waiting for the next table/browser update
        self._results_csv: Path | None = None  # the last batch's results, in a private temp folder
        self._session_dir = None  # TemporaryDirectory for batch CSVs, removed at shutdown
        self._report = None
        self._started = False
        self._shown_once = False
        self._closing = False
        self._start_path: str | Path | None = None
        self.views_built = False
        self.training_wizard = None  # cxrviewer.gui.wizard.TrainingWizard, while open
        self.film_view = None  # FilmView, FindingsPanel, BatchPanel: built in _build_views
        self.findings = None
        self.batch = None

        # Worker threads run Python too (decoding, Keras glue). A shorter GIL switch
        # interval than the default 5 ms lets the GUI thread back in sooner after each
        # Qt call, which is what keeps the event loop smooth while a batch runs.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
        # Batch results reach the table, the browser and the progress bar a few times a
        # second in chunks, not per film: each Qt update costs the GUI thread the GIL.
        # Grad-CAM costs a backward pass (about a third of a second for DenseNet121 on a
        # CPU) that cannot be interrupted once started; while the reader flips through
        # films faster than that, only the film they stop on gets one.
        self._overlay_timer = QTimer(self)
        self._overlay_timer.setSingleShot(True)
        self._overlay_timer.setInterval(150)
        self._overlay_timer.timeout.connect(self._request_overlay)
        self._batch_flush = QTimer(self)
        self._batch_flush.setInterval(250)
        self._batch_flush.timeout.connect(self._flush_batch_rows)

        self._build_widgets()
        self._build_actions()
        self._build_menus_and_toolbar()
        self._connect()
        self._log_handler = QtLogHandler()
        self._log_handler.bridge.record.connect(self.log_panel.append_line)
        logging.getLogger("cxrviewer").addHandler(self._log_handler)
        if logging.getLogger("cxrviewer").level == logging.NOTSET:
            logging.getLogger("cxrviewer").setLevel(logging.INFO)
        self._restore_settings()
        self.setAcceptDrops(True)
        self.resize(1400, 900)
        self._import_relay = _ImportRelay(self)
        self._import_relay.done.connect(self._build_views)
        threading.Thread(target=_import_view_modules, args=(self._import_relay,), name="cxrviewer-import-views",
                         daemon=True).start()
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    # ==================================================================================
    # construction
    # ==================================================================================
    def _build_widgets(self) -> None:
        s = self.state
        self.banner = QLabel("")
        self.banner.setObjectName("warningBanner")
        self.banner.setWordWrap(True)
        self.banner.hide()
        self._view_placeholder = self._placeholder("Starting the viewer…")
        central = QWidget()
        self._central_layout = lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.banner)
        lay.addWidget(self._view_placeholder, 1)
        self.setCentralWidget(central)

        self.browser = FilmBrowser(s.folder)
        self.tags = TagPanel()
        self.log_panel = LogPanel()
        self.docks = {}
        for name, title, widget, area in (
            ("browser", "Films", self.browser, Qt.DockWidgetArea.LeftDockWidgetArea),
            ("findings", "Findings", self._placeholder(""), Qt.DockWidgetArea.RightDockWidgetArea),
            ("tags", "DICOM tags", self.tags, Qt.DockWidgetArea.RightDockWidgetArea),
            ("batch", "Batch", self._placeholder(""), Qt.DockWidgetArea.BottomDockWidgetArea),
            ("log", "Log", self.log_panel, Qt.DockWidgetArea.BottomDockWidgetArea),
        ):
            dock = QDockWidget(title, self)
            dock.setObjectName(f"dock-{name}")
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
            self.docks[name] = dock
        self.tabifyDockWidget(self.docks["batch"], self.docks["log"])
        self.docks["batch"].raise_()
        self._default_dock_sizes()

        self.model_status = QLabel("Model: not loaded")
        self.position_label = QLabel("")
        self.statusBar().addPermanentWidget(self.position_label)
        self.statusBar().addPermanentWidget(self.model_status)
        self.statusBar().addPermanentWidget(QLabel(NOT_FOR_DIAGNOSIS))

        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setFixedWidth(110)
        self.opacity_slider.setToolTip("Grad-CAM overlay opacity")
        self.colormap_box = QComboBox()
        self.colormap_box.addItems(list(OVERLAY_COLORMAPS))
        self.colormap_box.setToolTip("Grad-CAM colour map")
        self.preset_box = QComboBox()
        self.preset_box.setToolTip("Window/level preset")
        self.preset_box.setMinimumWidth(170)

    def _default_dock_sizes(self) -> None:
        """The film gets most of the screen; panels keep what they need."""
        self.resizeDocks([self.docks["browser"], self.docks["findings"]], [300, 380], Qt.Orientation.Horizontal)
        self.resizeDocks([self.docks["findings"], self.docks["tags"]], [520, 300], Qt.Orientation.Vertical)
        self.resizeDocks([self.docks["batch"]], [190], Qt.Orientation.Vertical)

    @staticmethod
    def _placeholder(text: str) -> QLabel:
        lab = QLabel(text)
        lab.setAlignment(Qt.AlignmentFlag.AlignCenter)
        lab.setObjectName("filmMessage" if text else "")
        return lab

    def _build_views(self, import_error: str = "") -> None:
        """Put the pyqtgraph views in place (GUI thread, once their modules are imported)."""
        if self._closing or self.views_built:
            return
        if import_error:
            self._view_placeholder.setText(f"The image view could not start: {import_error}")
            log.error("image view could not start: %s", import_error)
            return
        from cxrviewer.gui.batch_panel import BatchPanel
        from cxrviewer.gui.film_view import FilmView
        from cxrviewer.gui.findings_panel import FindingsPanel
        from cxrviewer.gui.theme import apply_plot_theme

        apply_plot_theme()
        s = self.state
        self.film_view = FilmView(s.display, s.overlay)
        self.film_view.set_message("Open a folder of chest films (File ▸ Open folder…, or drop it here).")
        self._central_layout.replaceWidget(self._view_placeholder, self.film_view)
        self._view_placeholder.deleteLater()
        self.findings = FindingsPanel(s.model)
        self.docks["findings"].setWidget(self.findings)
        self.batch = BatchPanel()
        self.docks["batch"].setWidget(self.batch)
        if not self._restored_layout:  # the real panels have other size hints than the placeholders
            self._default_dock_sizes()
        self._connect_views()
        self.views_built = True
        gc.freeze()  # pyqtgraph's import: long-lived objects no collection needs to walk again
        self._model_state_changed(s.model.status)
        self.views_ready.emit()
        if self._start_path:
            path, self._start_path = self._start_path, None
            self.open_path(path)

    def _view(self, method: str, *args):
        """Call a FilmView method from an action; nothing before the view exists."""
        if self.film_view is not None:
            getattr(self.film_view, method)(*args)

    def _action(self, text, slot, shortcuts=(), icon_name=None, checkable=False, tip=None) -> QAction:
        a = QAction(text, self)
        if icon_name:
            a.setIcon(icon(icon_name))
        if shortcuts:
            a.setShortcuts([QKeySequence(k) for k in shortcuts])
        a.setCheckable(checkable)
        if tip:
            a.setToolTip(tip)
            a.setStatusTip(tip)
        if checkable:
            a.toggled.connect(slot)
        else:
            a.triggered.connect(lambda *_: slot())
        self.addAction(a)  # shortcuts work whichever panel has focus
        return a

    def _build_actions(self) -> None:
        A = self._action
        self.act_open = A("&Open folder…", self.choose_folder, ["Ctrl+O"], "open-folder", tip="Open a folder of films")
        self.act_open_file = A("Open &file…", self.choose_file, ["Ctrl+Shift+O"])
        self.act_quit = A("&Quit", self.close, ["Ctrl+Q"])
        self.act_next = A("&Next film", lambda: self.browser.step(+1), ["Down", "J", "PgDown"], "next")
        self.act_prev = A("&Previous film", lambda: self.browser.step(-1), ["Up", "K", "PgUp"], "previous")
        self.act_first = A("&First film", self.browser.first, ["Home"])
        self.act_last = A("&Last film", self.browser.last, ["End"])
        self.act_fit = A("&Fit to window", lambda: self._view("fit"), ["F", "Ctrl+0"], "fit")
        self.act_one = A("&1:1 pixels", lambda: self._view("one_to_one"), ["1", "Ctrl+1"], "one-to-one")
        self.act_zoom_in = A("Zoom &in", lambda: self._view("zoom", 1.25), ["+", "=", "Ctrl++"], "zoom-in")
        self.act_zoom_out = A("Zoom &out", lambda: self._view("zoom", 0.8), ["-", "Ctrl+-"], "zoom-out")
        self.act_invert = A("&Invert grey scale", self.state.display.set_invert, ["I"], "invert", checkable=True)
        self.act_overlay = A("Grad-CAM &overlay", self._overlay_toggled, ["G"], "overlay", checkable=True,
                             tip="Show where the model looked for the selected finding")
        self.act_as_loaded = A("As &loaded", lambda: self.apply_preset(presets.AS_LOADED), ["R"],
                               tip="The film's own display window (DICOM VOI) as the loader rendered it")
        self.act_save_preset = A("&Save window as preset…", self._save_custom_preset)
        self.preset_actions = []
        for d in self.preset_defs:
            a = A(d.title, lambda name=d.name: self.apply_preset(name), [d.shortcut] if d.shortcut else [],
                  tip=d.why)
            self.preset_actions.append(a)
        self.act_load_model = A("&Load model…", self.choose_model, ["Ctrl+M"])
        self.act_shipped_model = A("Use &shipped model", lambda: self.load_model(None, remember=True))
        self.act_model_card = A("Model &card…", self.show_model_card)
        self.act_model_card.setEnabled(False)
        self.act_train = A("&Train a model…", self.open_training_wizard,
                           tip="Fine-tune or train a model on your own labelled films (training wizard)")
        self.act_score = A("&Score open folder", self.start_batch, ["Ctrl+B"], "score")
        self.act_cancel = A("&Cancel scoring", self.inference.cancel_batch, [], "stop")
        self.act_export = A("&Export results CSV…", self.choose_export)
        self.act_roc = A("&ROC from labels CSV…", self.choose_labels)
        self.act_about = A("&About cxrviewer", self._about)

    def _build_menus_and_toolbar(self) -> None:
        mb = self.menuBar()
        m = mb.addMenu("&File")
        m.addAction(self.act_open)
        m.addAction(self.act_open_file)
        self.recent_menu = m.addMenu("Open &recent")
        m.addSeparator()
        m.addAction(self.act_quit)
        m = mb.addMenu("&View")
        for a in (self.act_next, self.act_prev, self.act_first, self.act_last, None, self.act_fit, self.act_one,
                  self.act_zoom_in, self.act_zoom_out, self.act_invert, None, self.act_overlay):
            m.addAction(a) if a else m.addSeparator()
        self.window_menu = m.addMenu("&Window/level")
        self.open_with_menu = m.addMenu("Window when a film &opens")
        m.addSeparator()
        for dock in self.docks.values():
            m.addAction(dock.toggleViewAction())
        m = mb.addMenu("&Model")
        for a in (self.act_load_model, self.act_shipped_model, self.act_model_card, None, self.act_train):
            m.addAction(a) if a else m.addSeparator()
        m = mb.addMenu("&Batch")
        for a in (self.act_score, self.act_cancel, self.act_export, self.act_roc):
            m.addAction(a)
        m = mb.addMenu("&Help")
        m.addAction(self.act_about)

        tb = self.addToolBar("Main")
        tb.setObjectName("toolbar-main")
        tb.setIconSize(QSize(20, 20))
        for a in (self.act_open, None, self.act_prev, self.act_next, None, self.act_fit, self.act_one,
                  self.act_zoom_in, self.act_zoom_out, self.act_invert):
            tb.addAction(a) if a else tb.addSeparator()
        tb.addWidget(self.preset_box)
        tb.addSeparator()
        tb.addAction(self.act_overlay)
        tb.addWidget(QLabel(" opacity "))
        tb.addWidget(self.opacity_slider)
        tb.addWidget(self.colormap_box)
        self._rebuild_window_menus()

    def _connect(self) -> None:
        s = self.state
        self.browser.film_chosen.connect(self._film_chosen)
        self.browser.model.thumbnail_wanted.connect(self._thumbnail_wanted)
        s.film.loaded.connect(self._film_loaded)
        s.folder.status_changed.connect(lambda *_: self._update_position())
        s.display.changed.connect(self._sync_preset_box)
        s.model.changed.connect(self._model_state_changed)
        self.opacity_slider.valueChanged.connect(lambda v: s.overlay.set_opacity(v / 100.0))
        self.colormap_box.currentTextChanged.connect(s.overlay.set_colormap)
        self.preset_box.activated.connect(self._preset_box_chosen)

        w = self.inference
        w.model_loading.connect(lambda path: s.model.set_loading(path))
        w.model_ready.connect(self._model_ready)
        w.model_failed.connect(self._model_failed)
        w.prediction_ready.connect(self._prediction_ready)
        w.prediction_failed.connect(self._prediction_failed)
        w.gradcam_ready.connect(self._gradcam_ready)
        w.gradcam_failed.connect(self._gradcam_failed)
        w.batch_progress.connect(self._batch_progress)
        w.batch_rows.connect(self._batch_rows)
        w.batch_finished.connect(self._batch_finished)

    def _connect_views(self) -> None:
        self.findings.label_clicked.connect(self.select_finding)
        self.film_view.overlay_rendered.connect(self._overlay_rendered)
        b = self.batch
        b.score_requested.connect(self.start_batch)
        b.cancel_requested.connect(self.inference.cancel_batch)
        b.export_requested.connect(self.choose_export)
        b.labels_requested.connect(self.choose_labels)
        b.report_requested.connect(self.choose_report_folder)
        b.film_activated.connect(self.open_path)

    def _restore_settings(self) -> None:
        st = self.settings
        o = self.state.overlay
        o.set_opacity(st.overlay_opacity)
        o.set_colormap(st.overlay_colormap if st.overlay_colormap in OVERLAY_COLORMAPS else "inferno")
        o.set_visible(st.overlay_visible)
        self.opacity_slider.setValue(round(o.opacity * 100))
        self.colormap_box.setCurrentText(o.colormap)
        self.act_overlay.setChecked(o.visible)
        geom, wstate = st.window_geometry(), st.window_state()
        if geom is not None:
            self.restoreGeometry(geom)
        self._restored_layout = wstate is not None and self.restoreState(wstate)
        self._rebuild_recent_menu()

    def _save_settings(self) -> None:
        st = self.settings
        o = self.state.overlay
        st.overlay_opacity = o.opacity
        st.overlay_colormap = o.colormap
        st.overlay_visible = o.visible
        st.save_window(self.saveGeometry(), self.saveState())
        st.sync()

    # ==================================================================================
    # start and stop
    # ==================================================================================
    def showEvent(self, ev):  # noqa: N802
        super().showEvent(ev)
        if not self._shown_once:
            self._shown_once = True
            QTimer.singleShot(0, self.window_shown.emit)

    def start(self, path: str | Path | None = None, *, load_model: bool = True) -> None:
        """Begin background work once the window is up: the model (TensorFlow is imported
        in the inference thread) and the folder or file given on the command line."""
        if self._started:
            return
        self._started = True
        if load_model:
            self.load_model(self._model_path or self.settings.model_path, remember=False)
        if path and not self.views_built:
            self._start_path = path  # opened by _build_views
        elif path:
            self.open_path(path)

    def closeEvent(self, ev):  # noqa: N802
        self.shutdown()
        super().closeEvent(ev)

    def shutdown(self) -> None:
        """Save settings and stop the workers (once). Also run when the application quits
        with the window still open, so no QThread is destroyed while running."""
        if self._closing:
            return
        self._closing = True
        self._save_settings()
        if self.training_wizard is not None:  # a run in progress stops at its checkpoint
            self.training_wizard.shutdown()
        self.inference.stop()
        self.io.shutdown()
        if self._session_dir is not None:
            self._session_dir.cleanup()
        logging.getLogger("cxrviewer").removeHandler(self._log_handler)

    # ==================================================================================
    # errors
    # ==================================================================================
    def report_error(self, text: str, *, level: int = logging.WARNING) -> None:
        """Status bar + log panel. ``text`` names the file and the reason, never a patient."""
        self.statusBar().showMessage(text, 15000)
        log.log(level, text)
        self.error_reported.emit(text)

    # ==================================================================================
    # folders and files
    # ==================================================================================
    def choose_folder(self) -> None:
        start = str(self.settings.last_folder or Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Open folder of films", start)
        if folder:
            self.open_folder(folder)

    def choose_file(self) -> None:
        start = str(self.settings.last_folder or Path.home())
        path, _ = QFileDialog.getOpenFileName(
            self, "Open film", start, "Films (*.dcm *.dicom *.png *.jpg *.jpeg *.tif *.tiff);;All files (*)")
        if path:
            self.open_path(path)

    def open_path(self, path: str | Path) -> None:
        """A folder opens in the browser; a file opens its folder and shows that film."""
        p = Path(path).expanduser()
        if p.is_dir():
            self.open_folder(p)
        elif p.is_file():
            self.open_folder(p.parent, select=p)
        else:
            self.report_error(f"{p.name}: no such file or folder")

    def open_folder(self, folder: str | Path, select: Path | None = None) -> None:
        if not self.views_built:
            self._start_path = Path(select) if select else Path(folder)
            return
        # Resolved, as the batch engine resolves it, so its rows find their browser entries.
        folder = Path(folder).expanduser().resolve()
        if not folder.is_dir():
            self.report_error(f"{folder.name}: not a folder")
            return
        self._folder_token += 1
        token = self._folder_token
        self._pending_select = Path(select).expanduser().resolve() if select else None
        self.state.folder.open(folder)
        self.state.film.select(None)
        self.inference.set_current(None, self.state.film.generation)
        self._clear_film_panels("Listing films…")
        self.setWindowTitle(f"cxrviewer — {folder.name}")
        self.settings.add_recent_folder(folder)
        self._rebuild_recent_menu()
        log.info("opened folder %s", folder.name)
        if self._pending_select is not None:
            self.show_path(self._pending_select)
        self.io.submit(
            jobs.list_folder, folder, lambda: token == self._folder_token,
            on_progress=lambda chunk: self._listing_chunk(token, chunk),
            on_result=lambda n: self._listing_finished(token, n),
            on_error=lambda reason: self._listing_failed(token, reason),
            priority=IOPool.PRIORITY_TASK,
        )

    def _listing_chunk(self, token: int, chunk: list[Path]) -> None:
        if token != self._folder_token:
            return
        self.state.folder.add(chunk)
        if self._pending_select is not None:
            if self._pending_select in self.state.folder.index_of:
                self.browser.select_path(self._pending_select)
                self._pending_select = None
        elif self.state.film.path is None and self.state.folder.entries:
            self.browser.first()
        self._update_position()

    def _listing_finished(self, token: int, n: int) -> None:
        if token != self._folder_token:
            return
        self.state.folder.finish_listing()
        if n == 0:
            self.film_view.clear("No films found in this folder (DICOM, PNG, JPEG, TIFF).")
        self._update_position()
        self.listing_done.emit(n)

    def _listing_failed(self, token: int, reason: str) -> None:
        if token == self._folder_token:
            self.state.folder.finish_listing()
            self.report_error(f"cannot list folder: {reason}")
            self.listing_done.emit(len(self.state.folder.entries))

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.recent_folders
        for folder in recent:
            a = self.recent_menu.addAction(str(folder))
            a.triggered.connect(lambda _=False, f=folder: self.open_folder(f))
        if recent:
            self.recent_menu.addSeparator()
            clear = self.recent_menu.addAction("Clear list")
            clear.triggered.connect(lambda: (self.settings.clear_recent_folders(), self._rebuild_recent_menu()))
        self.recent_menu.setEnabled(bool(recent))

    def dragEnterEvent(self, ev):  # noqa: N802
        urls = ev.mimeData().urls() if ev.mimeData().hasUrls() else []
        if urls and urls[0].isLocalFile():
            ev.acceptProposedAction()
        else:
            ev.ignore()

    def dropEvent(self, ev):  # noqa: N802
        urls = ev.mimeData().urls()
        if urls and urls[0].isLocalFile():
            ev.acceptProposedAction()
            self.open_path(urls[0].toLocalFile())

    # ==================================================================================
    # the current film
    # ==================================================================================
    def _film_chosen(self, path: Path) -> None:
        if path is not None and self.state.film.path == Path(path) and (
                self.state.film.film is not None or not self.state.film.error):
            return  # already shown or loading (e.g. opened as a file before it was listed)
        self.show_path(path)

    def show_path(self, path: Path) -> None:
        path = Path(path)
        self._overlay_timer.stop()
        gen = self.state.film.select(path)
        self.inference.set_current(path, gen)
        self._clear_film_panels(f"Loading {path.name}…")
        self.setWindowTitle(f"cxrviewer — {path.name}")
        self._update_position()
        self.io.submit(
            jobs.load_film, path, lambda: self.state.film.generation == gen,
            on_result=lambda film: self._film_arrived(path, gen, film),
            on_error=lambda reason: self._film_load_failed(path, gen, reason),
            priority=IOPool.PRIORITY_FILM,
        )

    def _clear_film_panels(self, message: str) -> None:
        if not self.views_built:
            return
        self.film_view.clear(message)
        self.findings.clear("")
        self.findings.refresh_model()
        self.tags.clear()
        self.banner.hide()

    def _film_arrived(self, path: Path, gen: int, film) -> None:
        if not self.state.film.set_film(path, gen, film):
            self.dropped_results += 1

    def _film_load_failed(self, path: Path, gen: int, reason: str) -> None:
        self.state.folder.set_status(path, ERROR, reason)
        if self.state.film.set_error(path, gen, reason):
            self.film_view.clear(f"Cannot show this file.\n{reason}")
            self.report_error(reason)
            self.film_failed.emit(path, reason)
        else:
            self.dropped_results += 1

    def _film_loaded(self, film) -> None:
        """FilmState.loaded: ask the model (it works while we draw), draw, fill the panels."""
        path = Path(film.path)
        known = self.predictions.get((path, self._identity())) if self.state.model.ready else None
        if known is None:
            self._request_prediction()
        self._apply_open_window(film)
        self.film_view.show_film(film)
        self.tags.show_film(film)
        self._rebuild_window_menus()
        if film.warnings:
            self._show_warnings(film.warnings)
            self.state.folder.set_status(path, WARNING, "; ".join(film.warnings))
            log.warning("%s: %s", film.name, "; ".join(film.warnings))
        if path not in self.browser.model.thumbnails:
            self.browser.model.set_thumbnail(path, make_thumbnail(film.pixels))
        self.film_shown.emit(path)
        if known is not None:  # scored before (e.g. by the batch): show it with the film
            self._request_prediction()

    def _show_warnings(self, warnings) -> None:
        """The banner over the film: every warning the loader or the model has about it."""
        self.banner.setText("⚠  " + "   ·   ".join(dict.fromkeys(warnings)))
        self.banner.show()

    def _update_position(self) -> None:
        n = len(self.state.folder.entries)
        i = self.state.folder.index_of.get(self.state.film.path) if self.state.film.path else None
        self.position_label.setText(f"{i + 1} / {n}" if i is not None else (f"{n} films" if n else ""))

    # ==================================================================================
    # window / level
    # ==================================================================================
    def _apply_open_window(self, film) -> None:
        name = self.settings.default_preset
        if name != presets.AS_LOADED and not any(d.name == name for d in self.preset_defs):
            name = presets.AS_LOADED
        self.apply_preset(name, film=film)

    def apply_preset(self, name: str, film=None) -> None:
        film = film or self.state.film.film
        if film is None:
            return
        d = self.state.display
        if name == presets.AS_LOADED:
            c, w = self._as_loaded_window(film)
            d.set_window(c, w, presets.AS_LOADED)
            return
        if name.startswith("dicom:"):
            i = int(name.split(":", 1)[1])
            wp = film.meta.window_presets[i]
            d.set_window(float(wp.center), float(wp.width), wp.name or f"DICOM {i + 1}",
                         getattr(wp, "function", "LINEAR"))
            return
        if name.startswith("custom:"):
            for p in self.settings.custom_presets:
                if p["name"] == name[7:]:
                    d.set_window(p["center"], p["width"], p["name"])
            return
        for defn in self.preset_defs:
            if defn.name == name:
                c, w = presets.resolve(defn, film.raw, film.meta.photometric, film.meta.modality_units)
                d.set_window(c, w, defn.name)
                return

    @staticmethod
    def _as_loaded_window(film) -> tuple[float, float]:
        wp = list(film.meta.window_presets or [])
        if wp:
            return float(wp[0].center), float(wp[0].width)
        return presets.full_range(film.raw)

    def _preset_choices(self) -> list[tuple[str, str]]:
        """(key, title) for the preset box and menu: loader, DICOM windows, ours, the reader's."""
        out = [(presets.AS_LOADED, "As loaded")]
        film = self.state.film.film
        if film is not None:
            for i, wp in enumerate(film.meta.window_presets or []):
                out.append((f"dicom:{i}", f"DICOM {wp.name or i + 1} (L {wp.center:g} W {wp.width:g})"))
        out += [(d.name, d.title) for d in self.preset_defs]
        out += [(f"custom:{p['name']}", f"{p['name']} (L {p['center']:g} W {p['width']:g})")
                for p in self.settings.custom_presets]
        return out

    def _rebuild_window_menus(self) -> None:
        self.window_menu.clear()
        self.window_menu.addAction(self.act_as_loaded)
        film = self.state.film.film
        if film is not None and film.meta.window_presets:
            self.window_menu.addSection("From the file")
            for i, wp in enumerate(film.meta.window_presets):
                a = self.window_menu.addAction(f"{wp.name or 'DICOM window'}  (L {wp.center:g}  W {wp.width:g})")
                a.triggered.connect(lambda _=False, k=f"dicom:{i}": self.apply_preset(k))
        self.window_menu.addSection("Presets")
        for a in self.preset_actions:
            self.window_menu.addAction(a)
        custom = self.settings.custom_presets
        if custom:
            self.window_menu.addSection("Yours")
            for p in custom:
                a = self.window_menu.addAction(f"{p['name']}  (L {p['center']:g}  W {p['width']:g})")
                a.triggered.connect(lambda _=False, k=f"custom:{p['name']}": self.apply_preset(k))
        self.window_menu.addSeparator()
        self.window_menu.addAction(self.act_save_preset)

        self.open_with_menu.clear()
        group = QActionGroup(self.open_with_menu)
        for key, title in [(presets.AS_LOADED, "As loaded")] + [(d.name, d.title) for d in self.preset_defs]:
            a = self.open_with_menu.addAction(title)
            a.setCheckable(True)
            a.setChecked(key == self.settings.default_preset)
            group.addAction(a)
            a.triggered.connect(lambda _=False, k=key: setattr(self.settings, "default_preset", k))

        self.preset_box.blockSignals(True)
        self.preset_box.clear()
        for key, title in self._preset_choices():
            self.preset_box.addItem(title, key)
        self.preset_box.addItem("Manual", "")
        self.preset_box.blockSignals(False)
        self._sync_preset_box()

    def _sync_preset_box(self) -> None:
        d = self.state.display
        key = d.preset
        film = self.state.film.film
        if film is not None and key not in (presets.AS_LOADED, "") and not any(
                x.name == key for x in self.preset_defs):
            for i, wp in enumerate(film.meta.window_presets or []):
                if key == (wp.name or f"DICOM {i + 1}"):
                    key = f"dicom:{i}"
            if any(p["name"] == key for p in self.settings.custom_presets):
                key = f"custom:{key}"
        i = self.preset_box.findData(key)
        self.preset_box.blockSignals(True)
        self.preset_box.setCurrentIndex(i if i >= 0 else self.preset_box.count() - 1)
        self.preset_box.blockSignals(False)

    def _preset_box_chosen(self, index: int) -> None:
        key = self.preset_box.itemData(index)
        if key:
            self.apply_preset(key)

    def _save_custom_preset(self) -> None:
        d = self.state.display
        if self.state.film.film is None:
            return
        if d.preset == presets.AS_LOADED:
            d.set_window(*self._as_loaded_window(self.state.film.film), "")
        name, ok = QInputDialog.getText(self, "Save window", "Name for this window/level:")
        if ok and name.strip():
            self.settings.save_custom_preset(name.strip(), d.center, d.width)
            self._rebuild_window_menus()

    # ==================================================================================
    # model
    # ==================================================================================
    def choose_model(self) -> None:
        start = str(self._model_path.parent if self._model_path else Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Load model", start, "Keras model (*.keras)")
        if path:
            self.load_model(path, remember=True)

    def load_model(self, path: str | Path | None, *, remember: bool = False) -> None:
        """Load a model in the inference thread; the viewer keeps working meanwhile."""
        self._model_path = Path(path) if path else None
        if remember:
            self.settings.model_path = self._model_path
        self.state.model.set_loading(self._model_path)
        self.inference.request_model(self._model_path)

    def _model_state_changed(self, status: str) -> None:
        m = self.state.model
        if m.status == m.LOADING:
            self.model_status.setText("Model: loading model…")
        elif m.ready:
            self.model_status.setText(f"Model: {m.info.name} · {m.info.device_kind}")
        elif m.status == m.UNAVAILABLE:
            self.model_status.setText("Model: not available")
        self.act_model_card.setEnabled(m.ready)
        if self.batch is not None:
            self.batch.set_model_ready(m.ready)

    def _model_ready(self, info) -> None:
        self.state.model.set_ready(info)
        log.info("model %s ready on %s %s", info.identity, info.device_kind, info.device_name)
        self.statusBar().showMessage(f"Model {info.name} ready ({info.device_kind})", 5000)
        self._request_prediction()

    def _model_failed(self, reason: str) -> None:
        self.state.model.set_unavailable(f"{reason}\n\n{HOW_TO_GET_A_MODEL}")
        self.report_error(f"model not loaded: {reason}")

    def open_training_wizard(self):
        """Model ▸ Train a model…: the training wizard, beside the viewer (not modal)."""
        from cxrviewer.gui.wizard import TrainingWizard

        if self.training_wizard is not None:
            self.training_wizard.show()
            self.training_wizard.raise_()
            self.training_wizard.activateWindow()
            return self.training_wizard
        m = self.state.model
        wizard = TrainingWizard(self, loaded_model=m.info.model_path if m.ready else None,
                                loaded_name=m.info.name if m.ready else "", viewer_available=True)
        wizard.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        wizard.load_requested.connect(lambda path: self.load_model(path, remember=True))
        wizard.finished.connect(lambda _result: setattr(self, "training_wizard", None))
        self.training_wizard = wizard
        wizard.show()
        return wizard

    def show_model_card(self) -> None:
        if self.state.model.ready:
            dlg = ModelCardDialog(self.state.model.info, self)
            dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            dlg.show()

    # ==================================================================================
    # prediction and Grad-CAM
    # ==================================================================================
    def _identity(self) -> str:
        return self.state.model.info.identity if self.state.model.ready else ""

    def _request_prediction(self) -> None:
        fs = self.state.film
        if fs.film is None or not self.state.model.ready or not self.views_built:
            return
        cached = self.predictions.get((fs.path, self._identity()))
        if cached is not None:
            self._show_prediction(fs.path, fs.generation, cached)
            return
        self.findings.set_status("Scoring…")
        self.inference.request_prediction(fs.film, fs.generation)

    def _prediction_ready(self, path, gen: int, prediction) -> None:
        self.predictions.put((Path(path), self._identity()), prediction)
        self._show_prediction(Path(path), gen, prediction)

    def _show_prediction(self, path: Path, gen: int, prediction) -> None:
        calls = list(prediction.calls)
        self.state.folder.set_status(path, WARNING if prediction.warnings else SCORED,
                                     "; ".join(prediction.warnings) if prediction.warnings else "", calls)
        if not self.state.film.set_prediction(path, gen, prediction):
            self.dropped_results += 1
            return
        self.findings.show_prediction(prediction, self.state.model.info.thresholds)
        film = self.state.film.film
        if prediction.warnings and film is not None and list(prediction.warnings) != list(film.warnings):
            self._show_warnings(list(film.warnings) + list(prediction.warnings))  # e.g. film smaller than input
        probs = prediction.probabilities
        label = self._sticky_label if self._sticky_label in probs else max(probs, key=probs.get)
        self.state.overlay.set_label(label)
        self.findings.select(label)
        self.prediction_shown.emit(path)
        if (path, self._identity(), label) in self.gradcams:
            self._request_overlay()
        else:
            self._overlay_timer.start()

    def _prediction_failed(self, path, gen: int, reason: str) -> None:
        if self.state.film.is_current(path, gen):
            self.findings.set_status(f"Could not score this film: {reason}")
            self.report_error(f"{Path(path).name}: scoring failed: {reason}")
        else:
            self.dropped_results += 1

    def select_finding(self, label: str) -> None:
        """A bar was clicked: show that finding's Grad-CAM, on this film and the next ones."""
        if self.findings is None:
            return
        self._sticky_label = label
        self.state.overlay.set_label(label)
        self.findings.select(label)
        if not self.state.overlay.visible:
            self.act_overlay.setChecked(True)  # clicking a finding means "show me where"
        self._request_overlay()

    def _overlay_toggled(self, on: bool) -> None:
        self.state.overlay.set_visible(on)
        if on:
            self._request_overlay()

    def _request_overlay(self) -> None:
        if self.film_view is None:
            return
        fs = self.state.film
        label = self.state.overlay.label
        if fs.film is None or fs.prediction is None or not label or not self.state.model.ready:
            return
        if self.film_view.overlay_label == label:
            return
        cached = self.gradcams.get((fs.path, self._identity(), label))
        if cached is not None:
            self.film_view.set_overlay(label, cached)
            return
        if self.state.overlay.visible:
            self.inference.request_gradcam(fs.film, fs.generation, label)

    def _gradcam_ready(self, path, gen: int, label: str, heat8) -> None:
        self.gradcams.put((Path(path), self._identity(), label), heat8)
        fs = self.state.film
        if not fs.is_current(path, gen):
            self.dropped_results += 1
            return
        if label == self.state.overlay.label:
            self.film_view.set_overlay(label, heat8)

    def _gradcam_failed(self, path, gen: int, label: str, reason: str) -> None:
        if self.state.film.is_current(path, gen):
            self.report_error(f"{Path(path).name}: Grad-CAM for {label} failed: {reason}")

    def _overlay_rendered(self, label: str) -> None:
        if label and self.state.film.path is not None:
            self.overlay_shown.emit(self.state.film.path, label)

    # ==================================================================================
    # thumbnails
    # ==================================================================================
    def _thumbnail_wanted(self, path: Path) -> None:
        token = self._folder_token
        self._thumb_counter += 1
        self.io.submit(
            jobs.thumbnail, path, lambda: token == self._folder_token,
            on_result=lambda res: self._thumbnail_ready(token, path, res),
            on_error=lambda reason: self._thumbnail_failed(token, path, reason),
            priority=IOPool.PRIORITY_THUMBNAIL + min(self._thumb_counter, 1 << 28),
        )

    def _thumbnail_ready(self, token: int, path: Path, res) -> None:
        if token != self._folder_token:
            return
        image, warnings = res
        self.browser.model.set_thumbnail(path, image)
        if warnings:
            self.state.folder.set_status(path, WARNING, "; ".join(warnings))

    def _thumbnail_failed(self, token: int, path: Path, reason: str) -> None:
        if token == self._folder_token:
            self.state.folder.set_status(path, ERROR, reason)

    # ==================================================================================
    # batch
    # ==================================================================================
    def start_batch(self) -> None:
        if self.batch is None:
            return
        folder = self.state.folder.folder
        if folder is None:
            self.report_error("open a folder before scoring it")
            return
        if not self.state.model.ready:
            self.report_error("no model loaded: cannot score (" + (self.state.model.message.splitlines() or [""])[0] + ")")
            return
        if self.inference.batch_running:
            return
        self._batch_job += 1
        info = self.state.model.info
        self._report = None
        self._results_csv = None
        if self._session_dir is None:
            import tempfile

            # Private (0700) and removed at exit: results are written as they come, so a
            # crash loses nothing the reader exported, and no file lands in their folder.
            self._session_dir = tempfile.TemporaryDirectory(prefix="cxrviewer-session-")
        out_csv = Path(self._session_dir.name) / f"batch-{self._batch_job}.csv"
        self.batch.begin(self._batch_job, folder, info.labels, info.name)
        self.docks["batch"].show()
        self.docks["batch"].raise_()
        log.info("scoring folder %s with %s", folder.name, info.identity)
        self.inference.start_batch(self._batch_job, folder, out_csv, batch_size=4)

    def _batch_progress(self, job: int, done: int, total: int) -> None:
        if job == self._batch_job:
            self.batch.set_progress(done, total)

    def _batch_rows(self, job: int, rows) -> None:
        if job != self._batch_job:
            return
        self._batch_pending.extend(rows)
        if not self._batch_flush.isActive():
            self._batch_flush.start()

    def _flush_batch_rows(self) -> None:
        rows, self._batch_pending = self._batch_pending, []
        if not rows:
            self._batch_flush.stop()
            return
        self.batch.add_rows(rows)
        identity = self._identity()
        for r in rows:
            kind = r.kind
            if kind == "error":
                reason = r.status[len("error: "):]
                self.state.folder.set_status(r.path, ERROR, f"{r.path.name}: {reason}")
                log.warning("%s: %s", r.rel, r.status)
                continue
            warnings = [r.status[len("warning: "):]] if kind == "warning" else []
            self.state.folder.set_status(r.path, WARNING if warnings else SCORED,
                                         warnings[0] if warnings else "", r.calls)
            if identity and (r.path, identity) not in self.predictions:
                self.predictions.put((r.path, identity),
                                     BatchPrediction(r.path, dict(r.probabilities), list(r.calls), warnings))

    def _batch_finished(self, job: int, summary) -> None:
        if job != self._batch_job:
            return
        self._flush_batch_rows()
        self._batch_flush.stop()
        self._results_csv = summary.results_csv
        self.batch.finish(summary)
        if summary.error:
            self.report_error(f"batch failed: {summary.error}")
        else:
            state = "cancelled" if summary.cancelled else "finished"
            log.info("batch %s: %d/%d films in %.1f s, %d could not be scored", state, summary.done,
                     summary.total, summary.seconds, summary.failed)
        self.batch_done.emit(summary)

    def choose_export(self) -> None:
        folder = self.state.folder.folder or Path.home()
        target, _ = QFileDialog.getSaveFileName(self, "Export results CSV", str(folder / "results.csv"),
                                                "CSV (*.csv)")
        if target:
            self.export_results(target)

    def export_results(self, target: str | Path) -> None:
        if self.batch is None:
            return
        if self._results_csv is None or not self._results_csv.is_file():
            self.report_error("no results to export yet")
            return
        self.io.submit(
            jobs.export_results, self._results_csv, Path(target),
            on_result=self._exported, on_error=lambda r: self.report_error(f"export failed: {r}"),
            priority=IOPool.PRIORITY_TASK,
        )

    def _exported(self, path: Path) -> None:
        log.info("results written to %s", Path(path).name)
        self.statusBar().showMessage(f"Results written to {path}", 8000)
        self.export_done.emit(path)

    def choose_labels(self) -> None:
        start = str(self.state.folder.folder or Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Labels CSV", start, "CSV (*.csv *.csv.gz);;All files (*)")
        if path:
            self.compute_roc(path)

    def compute_roc(self, labels_csv: str | Path, n_bootstrap: int = 1000) -> None:
        if self.batch is None:
            return
        if self._results_csv is None or not self._results_csv.is_file():
            self.report_error("score a folder before computing ROC curves")
            return
        info = self.state.model.info
        thresholds = None
        note = ""
        if info is not None and info.name == self.batch.model_name:
            thresholds = {k: v for k, v in info.thresholds.items() if k in self.batch.model.labels}
            note = f"Thresholds from the model card of {info.name} ({info.card.threshold_rule})."
        self.batch.roc.clear("Computing ROC curves and bootstrap intervals…")
        self.batch.tabs.setCurrentWidget(self.batch.roc)
        self.io.submit(
            jobs.evaluate_csv, self._results_csv, Path(labels_csv), thresholds, note, n_bootstrap,
            on_result=self._roc_ready,
            on_error=lambda r: (self.batch.roc.clear(f"Cannot compute ROC: {r}"), self.report_error(f"ROC: {r}")),
            priority=IOPool.PRIORITY_TASK,
        )

    def _roc_ready(self, report) -> None:
        self._report = report
        self.batch.roc.show_report(report)
        # ROC curves need room: give the batch panel half the window while they are read.
        if not self.docks["batch"].isFloating():
            self.docks["batch"].raise_()
            self.resizeDocks([self.docks["batch"]], [int(self.height() * 0.55)], Qt.Orientation.Vertical)
        self.batch.report_button.setEnabled(True)
        self.roc_shown.emit(report)

    def choose_report_folder(self) -> None:
        if self._report is None:
            return
        folder = QFileDialog.getExistingDirectory(self, "Folder for the evaluation report",
                                                  str(self.state.folder.folder or Path.home()))
        if folder:
            self.io.submit(jobs.write_report, self._report, Path(folder),
                           on_result=lambda written: log.info("report written to %s", Path(folder).name),
                           on_error=lambda r: self.report_error(f"report not written: {r}"),
                           priority=IOPool.PRIORITY_TASK)

    # ==================================================================================
    # help
    # ==================================================================================
    def _about(self) -> None:
        QMessageBox.about(
            self, "About cxrviewer",
            f"<b>cxrviewer {__version__}</b><p>Chest X-ray viewer with model findings and Grad-CAM."
            f"</p><p><b>{NOT_FOR_DIAGNOSIS}</b></p><p>Mouse: left-drag pans, wheel zooms, right-drag (or "
            "Ctrl+left-drag) sets window/level, double-click fits.<br>Keys: ↑/↓ or J/K previous/next film, "
            "Home/End first/last, F fit, 1 one-to-one, I invert, G overlay, R as loaded, F2–F5 presets.</p>")
