"""Folder browser: the films of the open folder with lazy thumbnails, status and a name filter.

Thumbnails are asked for only when a row is painted (so a folder of 10,000 films costs
nothing until scrolled), made on the I/O pool, and kept in a bounded in-memory cache.
They are not written to disk: a thumbnail is a copy of a patient image, and the app
leaves no copies outside the folder the reader opened.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QRect,
    QSize,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QLabel,
    QLineEdit,
    QListView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from cxrviewer.gui.cache import LRUCache
from cxrviewer.gui.state import ERROR, NOT_SCORED, SCORED, WARNING, FolderState
from cxrviewer.gui.theme import icon

THUMB = 64
PATH_ROLE = Qt.ItemDataRole.UserRole + 1
STATUS_ROLE = Qt.ItemDataRole.UserRole + 2
MESSAGE_ROLE = Qt.ItemDataRole.UserRole + 3

STATUS_ICON = {NOT_SCORED: "status-not-scored", SCORED: "status-scored", WARNING: "status-warning", ERROR: "status-error"}


def make_thumbnail(pixels, size: int = THUMB) -> QImage:
    """Film.pixels (0..1) -> a grey QImage fitting size x size; safe off the GUI thread."""
    import cv2
    import numpy as np

    h, w = pixels.shape[:2]
    scale = size / max(h, w)
    tw, th = max(1, round(w * scale)), max(1, round(h * scale))
    small = cv2.resize(np.asarray(pixels, np.float32), (tw, th), interpolation=cv2.INTER_AREA)
    data = np.ascontiguousarray(np.clip(small * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return QImage(data.data, tw, th, tw, QImage.Format.Format_Grayscale8).copy()


class FilmListModel(QAbstractListModel):
    """Rows = FolderState.entries; asks for a thumbnail the first time a row is shown."""

    thumbnail_wanted = Signal(object)  # Path

    def __init__(self, folder: FolderState, parent=None):
        super().__init__(parent)
        self.folder = folder
        self._n = 0
        self.thumbnails = LRUCache(3000)  # Path -> QPixmap; 64 px grey ≈ 4 KB each
        self._asked: set[Path] = set()
        folder.folder_changed.connect(self._reset)
        folder.films_added.connect(self._added)
        folder.status_changed.connect(self._status)

    def _reset(self, *args) -> None:
        self.beginResetModel()
        self._n = len(self.folder.entries)
        self._asked.clear()
        self.thumbnails.clear()
        self.endResetModel()

    def _added(self, first: int, count: int) -> None:
        self.beginInsertRows(QModelIndex(), self._n, first + count - 1)
        self._n = first + count
        self.endInsertRows()

    def _status(self, row: int) -> None:
        if row < self._n:
            ix = self.index(row)
            self.dataChanged.emit(ix, ix)

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else self._n

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= self._n:
            return None
        e = self.folder.entries[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return e.rel
        if role == Qt.ItemDataRole.DecorationRole:
            pix = self.thumbnails.get(e.path)
            if pix is None and e.path not in self._asked:
                self._asked.add(e.path)
                self.thumbnail_wanted.emit(e.path)
            return pix
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = f"{e.rel}\n{e.status}"
            if e.calls:
                tip += "\ncalls: " + ", ".join(e.calls)
            if e.message:
                tip += f"\n{e.message}"
            return tip
        if role == PATH_ROLE:
            return e.path
        if role == STATUS_ROLE:
            return e.status
        if role == MESSAGE_ROLE:
            return e.message
        return None

    def set_thumbnail(self, path: Path, image: QImage) -> None:
        self.thumbnails.put(Path(path), QPixmap.fromImage(image))
        row = self.folder.index_of.get(Path(path))
        if row is not None and row < self._n:
            ix = self.index(row)
            self.dataChanged.emit(ix, ix, [Qt.ItemDataRole.DecorationRole])


class FilmDelegate(QStyledItemDelegate):
    """Thumbnail, file name, status line and status icon in one row."""

    def sizeHint(self, option, index):  # noqa: N802
        return QSize(200, THUMB + 8)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        style = opt.widget.style() if opt.widget else None
        painter.save()
        opt.text = ""
        opt.icon = QIcon()
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        r = option.rect
        box = QRect(r.left() + 4, r.top() + 4, THUMB, THUMB)
        painter.fillRect(box, QColor("#000000"))
        pix = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(pix, QPixmap) and not pix.isNull():
            x = box.left() + (THUMB - pix.width()) // 2
            y = box.top() + (THUMB - pix.height()) // 2
            painter.drawPixmap(x, y, pix)
        status = index.data(STATUS_ROLE) or NOT_SCORED
        ic = icon(STATUS_ICON.get(status, "status-not-scored"))
        text_left = box.right() + 8
        icon_rect = QRect(r.right() - 22, r.top() + (r.height() - 16) // 2, 16, 16)
        ic.paint(painter, icon_rect)
        fm = option.fontMetrics
        name = index.data(Qt.ItemDataRole.DisplayRole) or ""
        width = max(10, icon_rect.left() - text_left - 4)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.setPen(option.palette.highlightedText().color() if selected else option.palette.text().color())
        painter.drawText(QRect(text_left, r.top() + 8, width, fm.height()), Qt.AlignmentFlag.AlignLeft,
                         fm.elidedText(Path(name).name, Qt.TextElideMode.ElideMiddle, width))
        sub = status
        message = index.data(MESSAGE_ROLE) or ""
        if message and status in (WARNING, ERROR):
            base = Path(name).name + ": "
            sub = f"{status}: {message[len(base):] if message.startswith(base) else message}"
        parent = str(Path(name).parent)
        if parent != ".":
            sub = f"{parent}  ·  {sub}"
        painter.setPen(QColor({WARNING: "#e3a72f", ERROR: "#ef6a5a"}.get(status, "#8a96a3")))
        painter.drawText(QRect(text_left, r.top() + 10 + fm.height(), width, fm.height()),
                         Qt.AlignmentFlag.AlignLeft, fm.elidedText(sub, Qt.TextElideMode.ElideRight, width))
        painter.restore()


class FilmBrowser(QWidget):
    """List + filter box; says which film is current and moves through the (filtered) list."""

    film_chosen = Signal(object)  # Path

    def __init__(self, folder: FolderState, parent=None):
        super().__init__(parent)
        self.folder = folder
        self.model = FilmListModel(folder, self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter by name (e.g. 00013 or *.dcm)")
        self.filter.setClearButtonEnabled(True)
        self.view = QListView()
        self.view.setModel(self.proxy)
        self.view.setItemDelegate(FilmDelegate(self.view))
        self.view.setUniformItemSizes(True)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.count_label = QLabel("No folder open")
        self.count_label.setObjectName("countLabel")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.filter)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.count_label)
        self.filter.textChanged.connect(self._filter_changed)
        self.view.selectionModel().currentChanged.connect(self._current_changed)
        folder.films_added.connect(self._update_count)
        folder.listing_finished.connect(self._update_count)
        folder.folder_changed.connect(self._update_count)

    # ---- filter -----------------------------------------------------------------------
    def _filter_changed(self, text: str) -> None:
        text = text.strip()
        if any(ch in text for ch in "*?["):
            self.proxy.setFilterWildcard(text)
        else:
            self.proxy.setFilterFixedString(text)
        self.folder.set_filter(text)
        self._update_count()

    def _update_count(self, *args) -> None:
        total = len(self.folder.entries)
        if self.folder.folder is None:
            self.count_label.setText("No folder open")
            return
        shown = self.proxy.rowCount()
        more = "" if self.folder.listing_done else " (listing…)"
        self.count_label.setText(f"{shown} of {total} films{more}" if shown != total else f"{total} films{more}")

    # ---- current film -----------------------------------------------------------------
    def _current_changed(self, current, previous) -> None:
        if current.isValid():
            self.film_chosen.emit(current.data(PATH_ROLE))

    def current_path(self) -> Path | None:
        ix = self.view.currentIndex()
        return ix.data(PATH_ROLE) if ix.isValid() else None

    def select_path(self, path: Path) -> bool:
        row = self.folder.index_of.get(Path(path))
        if row is None:
            return False
        pix = self.proxy.mapFromSource(self.model.index(row))
        if not pix.isValid():  # filtered out: clear the filter rather than hide the choice
            self.filter.clear()
            pix = self.proxy.mapFromSource(self.model.index(row))
        self._set_current(pix.row())
        return True

    def _set_current(self, row: int) -> None:
        n = self.proxy.rowCount()
        if n == 0:
            return
        row = min(max(row, 0), n - 1)
        ix = self.proxy.index(row, 0)
        self.view.setCurrentIndex(ix)
        self.view.scrollTo(ix)

    def step(self, delta: int) -> None:
        cur = self.view.currentIndex()
        self._set_current((cur.row() + delta) if cur.isValid() else 0)

    def first(self) -> None:
        self._set_current(0)

    def last(self) -> None:
        self._set_current(self.proxy.rowCount() - 1)
