"""The film's header: non-identifying DICOM tags, with patient identifiers behind a toggle."""

from __future__ import annotations

from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

IDENTIFIER_COLOUR = QColor("#e3a72f")


class TagPanel(QWidget):
    """Table of (tag, keyword, value). Identifiers are shown only while the box is ticked,
    never logged, and hidden again when the next film opens."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.film = None
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter tags")
        self.filter.setClearButtonEnabled(True)
        self.show_identifiers = QCheckBox("Show patient identifiers")
        self.show_identifiers.setToolTip("Patient name, ID, birth date, accession number… Hidden by default.")
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Tag", "Keyword", "Value"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setWordWrap(False)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        hh.setStretchLastSection(True)
        top = QHBoxLayout()
        top.addWidget(self.filter, 1)
        top.addWidget(self.show_identifiers)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(self.summary)
        lay.addLayout(top)
        lay.addWidget(self.table, 1)
        self.filter.textChanged.connect(self._apply_filter)
        self.show_identifiers.toggled.connect(lambda _: self._fill())

    def show_film(self, film) -> None:
        self.film = film
        self.show_identifiers.blockSignals(True)
        self.show_identifiers.setChecked(False)
        self.show_identifiers.blockSignals(False)
        m = film.meta
        bits = [m.source_format.upper(), m.modality, m.body_part, m.view_position, m.photometric,
                m.transfer_syntax]
        self.summary.setText("  ·  ".join(str(b) for b in bits if b))
        self.show_identifiers.setEnabled(bool(film.identifiers))
        self._fill()

    def clear(self) -> None:
        self.film = None
        self.summary.setText("")
        self.table.setRowCount(0)

    def rows(self) -> list[tuple[str, str, str, bool]]:
        """(tag, keyword, value, is_identifier) in display order."""
        film = self.film
        if film is None:
            return []
        out = [(t, k, v, False) for t, k, v in film.meta.tags]
        if film.meta.applied_voi:
            out.insert(0, ("", "Displayed with", film.meta.applied_voi, False))
        if self.show_identifiers.isChecked():
            out = [("", k, v, True) for k, v in film.identifiers.values.items()] + out
        return out

    def _fill(self) -> None:
        rows = self.rows()
        self.table.setRowCount(len(rows))
        for r, (tag, kw, val, ident) in enumerate(rows):
            for c, text in enumerate((tag, kw, val)):
                item = QTableWidgetItem(str(text))
                if ident:
                    item.setForeground(QBrush(IDENTIFIER_COLOUR))
                self.table.setItem(r, c, item)
        self._apply_filter(self.filter.text())

    def _apply_filter(self, text: str) -> None:
        text = text.strip().lower()
        for r in range(self.table.rowCount()):
            hit = not text or any(
                text in (self.table.item(r, c).text().lower() if self.table.item(r, c) else "") for c in range(3)
            )
            self.table.setRowHidden(r, not hit)

    def visible_text(self) -> str:
        """Everything the table shows now (tests check identifiers stay hidden)."""
        parts = []
        for r in range(self.table.rowCount()):
            if not self.table.isRowHidden(r):
                parts.append(" ".join(self.table.item(r, c).text() for c in range(3) if self.table.item(r, c)))
        return "\n".join(parts)
