"""What the viewer is showing, as small state objects that widgets bind to by signal.

Widgets never talk to each other directly: they change a state object and redraw when
it says it changed. The state holds plain Python values (paths, numbers, the Film and
Prediction records); the only Qt in here is QObject/Signal for the notifications.

The generation counter is the guard against stale work: every film selection bumps it,
every background request carries the generation it was made for, and ``FilmState``
refuses results whose generation is not the current one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, Signal

# Film status in the browser, from least to most informative.
NOT_SCORED = "not scored"
SCORED = "scored"
WARNING = "warning"
ERROR = "error"
STATUSES = (NOT_SCORED, SCORED, WARNING, ERROR)

# Grad-CAM colour maps offered (pyqtgraph names): perceptually ordered, readable on grey.
OVERLAY_COLORMAPS = ("inferno", "viridis", "turbo", "plasma", "CET-L3")


@dataclass
class FilmEntry:
    """One file of the open folder as the browser lists it."""

    path: Path
    rel: str  # relative to the folder, '/'-separated; what the name filter matches
    status: str = NOT_SCORED
    message: str = ""  # warning or error text (no patient identifiers: loader messages only)
    calls: list[str] = field(default_factory=list)


class FolderState(QObject):
    """The open folder and the films found in it (listed lazily, in chunks)."""

    folder_changed = Signal(object)  # Path | None; the film list was cleared
    films_added = Signal(int, int)  # first index, count
    listing_finished = Signal(int)  # number of films
    status_changed = Signal(int)  # index of the entry whose status changed
    filter_changed = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.folder: Path | None = None
        self.entries: list[FilmEntry] = []
        self.index_of: dict[Path, int] = {}
        self.filter_text = ""
        self.listing_done = False

    def open(self, folder: Path | None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.entries = []
        self.index_of = {}
        self.listing_done = False
        self.folder_changed.emit(self.folder)

    def add(self, paths: list[Path]) -> None:
        if not paths or self.folder is None:
            return
        first = len(self.entries)
        for p in paths:
            p = Path(p)
            if p in self.index_of:
                continue
            try:
                rel = p.relative_to(self.folder).as_posix()
            except ValueError:
                rel = p.name
            self.index_of[p] = len(self.entries)
            self.entries.append(FilmEntry(p, rel))
        if len(self.entries) > first:
            self.films_added.emit(first, len(self.entries) - first)

    def finish_listing(self) -> None:
        self.listing_done = True
        self.listing_finished.emit(len(self.entries))

    def set_status(self, path: Path, status: str, message: str = "", calls: list[str] | None = None) -> None:
        """Record what we learnt about a film.

        The most serious news wins (error > warning > scored > not scored), so a film
        that loaded with a warning stays flagged after it is scored; its calls are kept.
        """
        i = self.index_of.get(Path(path))
        if i is None:
            return
        e = self.entries[i]
        changed = False
        if calls is not None and list(calls) != e.calls:
            e.calls = list(calls)
            changed = True
        if STATUSES.index(status) >= STATUSES.index(e.status) and (status, message) != (e.status, e.message):
            e.status, e.message = status, message
            changed = True
        if changed:
            self.status_changed.emit(i)

    def set_filter(self, text: str) -> None:
        if text != self.filter_text:
            self.filter_text = text
            self.filter_changed.emit(text)


class FilmState(QObject):
    """The film on screen: path, generation, the loaded Film and its prediction."""

    selected = Signal(object, int)  # path, generation: a new film was chosen (not yet loaded)
    loaded = Signal(object)  # Film
    failed = Signal(object, str)  # path, one-line reason
    prediction_changed = Signal(object)  # Prediction | None

    def __init__(self, parent=None):
        super().__init__(parent)
        self.path: Path | None = None
        self.generation = 0
        self.film = None
        self.error = ""
        self.prediction = None

    def select(self, path: Path | None) -> int:
        self.generation += 1
        self.path = Path(path) if path is not None else None
        self.film = None
        self.error = ""
        self.prediction = None
        self.selected.emit(self.path, self.generation)
        return self.generation

    def is_current(self, path, generation: int) -> bool:
        return generation == self.generation and self.path is not None and Path(path) == self.path

    def set_film(self, path, generation: int, film) -> bool:
        if not self.is_current(path, generation):
            return False
        self.film = film
        self.loaded.emit(film)
        return True

    def set_error(self, path, generation: int, reason: str) -> bool:
        if not self.is_current(path, generation):
            return False
        self.error = reason
        self.failed.emit(self.path, reason)
        return True

    def set_prediction(self, path, generation: int, prediction) -> bool:
        if not self.is_current(path, generation):
            return False
        self.prediction = prediction
        self.prediction_changed.emit(prediction)
        return True


class DisplayState(QObject):
    """Window/level and inversion of the film on screen.

    ``preset`` names where the window came from: presets.AS_LOADED (the loader's own
    rendering, Film.pixels), a DICOM window name, a preset name, or "" for a manual drag.
    """

    changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.center = 0.5
        self.width = 1.0
        self.preset = "as loaded"
        self.function = "LINEAR"  # DICOM VOI LUT function of the window (a file may say SIGMOID)
        self.invert = False  # the reader's invert, on top of the loader's MONOCHROME1 handling

    def set_window(self, center: float, width: float, preset: str = "", function: str = "LINEAR") -> None:
        width = max(float(width), 1e-6)
        new = (float(center), width, preset, function or "LINEAR")
        if (self.center, self.width, self.preset, self.function) == new:
            return
        self.center, self.width, self.preset, self.function = new
        self.changed.emit()

    def set_invert(self, on: bool) -> None:
        if bool(on) != self.invert:
            self.invert = bool(on)
            self.changed.emit()


class OverlayState(QObject):
    """The Grad-CAM overlay: which finding, shown or not, how strongly, in which colours."""

    changed = Signal()
    label_changed = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.visible = True
        self.opacity = 0.45
        self.colormap = "inferno"
        self.label = ""  # selected finding; "" = the top finding of each film

    def set_visible(self, on: bool) -> None:
        if bool(on) != self.visible:
            self.visible = bool(on)
            self.changed.emit()

    def set_opacity(self, value: float) -> None:
        value = min(max(float(value), 0.0), 1.0)
        if value != self.opacity:
            self.opacity = value
            self.changed.emit()

    def set_colormap(self, name: str) -> None:
        if name != self.colormap:
            self.colormap = name
            self.changed.emit()

    def set_label(self, label: str) -> None:
        if label != self.label:
            self.label = label
            self.label_changed.emit(label)


@dataclass
class ModelInfo:
    """What the GUI may know about the loaded model (the Predictor stays in its worker)."""

    name: str
    identity: str
    labels: list[str]
    thresholds: dict[str, float]
    device_kind: str
    device_name: str
    model_path: Path | None
    card: object  # cxrviewer.model.ModelCard
    checksum: str = ""  # sha256 of the .keras file


class ModelState(QObject):
    """Whether a model is usable: 'idle', 'loading', 'ready' or 'unavailable' (with why)."""

    IDLE, LOADING, READY, UNAVAILABLE = "idle", "loading", "ready", "unavailable"
    changed = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.status = self.IDLE
        self.message = ""
        self.info: ModelInfo | None = None
        self.requested_path: Path | None = None

    @property
    def ready(self) -> bool:
        return self.status == self.READY and self.info is not None

    def set_loading(self, path: Path | None) -> None:
        self.status, self.message, self.requested_path = self.LOADING, "loading model", path
        self.changed.emit(self.status)

    def set_ready(self, info: ModelInfo) -> None:
        self.status, self.info, self.message = self.READY, info, ""
        self.changed.emit(self.status)

    def set_unavailable(self, reason: str) -> None:
        self.status, self.info, self.message = self.UNAVAILABLE, None, reason
        self.changed.emit(self.status)


class ViewerState(QObject):
    """Everything the main window shows, in one place to pass around."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.folder = FolderState(self)
        self.film = FilmState(self)
        self.display = DisplayState(self)
        self.overlay = OverlayState(self)
        self.model = ModelState(self)
