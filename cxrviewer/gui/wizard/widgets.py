"""Small widgets the wizard pages share: a path field, a problem list with fix buttons."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

SEVERITY_STYLE = {
    "block": ("✖", "#ef6a5a"),
    "decide": ("⚠", "#e3a72f"),
    "note": ("ℹ", "#8a96a3"),
}


class PathField(QWidget):
    """A path in a line edit with a Browse… button; ``changed`` when it is settled."""

    changed = Signal(str)

    def __init__(self, kind: str = "dir", caption: str = "", filter_: str = "", parent=None):
        super().__init__(parent)
        self.kind, self.caption, self.filter = kind, caption, filter_
        self.edit = QLineEdit()
        self.edit.setClearButtonEnabled(True)
        self.button = QPushButton("Browse…")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.edit, 1)
        lay.addWidget(self.button)
        self.edit.editingFinished.connect(lambda: self.changed.emit(self.text()))
        self.button.clicked.connect(self.browse)

    def text(self) -> str:
        return self.edit.text().strip()

    def set_text(self, text: str, notify: bool = True) -> None:
        self.edit.setText(str(text))
        if notify:
            self.changed.emit(self.text())

    def browse(self) -> None:
        start = self.text() or str(Path.home())
        if self.kind == "dir":
            path = QFileDialog.getExistingDirectory(self, self.caption, start)
        elif self.kind == "save":
            path, _ = QFileDialog.getSaveFileName(self, self.caption, start, self.filter)
        else:
            path, _ = QFileDialog.getOpenFileName(self, self.caption, start, self.filter)
        if path:
            self.set_text(path)


class ProblemList(QWidget):
    """Problems found in the data, each with its explanation and the ways forward as buttons.

    ``fix_chosen(problem, fix)`` when a button is pressed; the page applies it.
    """

    fix_chosen = Signal(object, object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._lay = QVBoxLayout(self)
        self._lay.setContentsMargins(0, 0, 0, 0)
        self._lay.setSpacing(4)
        self.rows: list[QFrame] = []
        self.buttons: dict[tuple[str, str], QPushButton] = {}  # (problem key, fix caption) -> button
        self.problems = []

    def set_problems(self, problems) -> None:
        for row in self.rows:
            row.setParent(None)
            row.deleteLater()
        self.rows, self.buttons, self.problems = [], {}, list(problems)
        order = {"block": 0, "decide": 1, "note": 2}
        for p in sorted(self.problems, key=lambda p: order.get(p.severity, 3)):
            mark, colour = SEVERITY_STYLE.get(p.severity, ("•", "#aab6c1"))
            row = QFrame()
            row.setObjectName("problemRow")
            rl = QHBoxLayout(row)
            rl.setContentsMargins(2, 2, 2, 2)
            icon = QLabel(mark)
            icon.setStyleSheet(f"color: {colour}; font-weight: bold;")
            text = QLabel(p.text)
            text.setWordWrap(True)
            text.setObjectName("problemText")
            rl.addWidget(icon)
            rl.addWidget(text, 1)
            for fix in p.fixes:
                b = QPushButton(fix.caption)
                b.clicked.connect(lambda _=False, p=p, f=fix: self.fix_chosen.emit(p, f))
                rl.addWidget(b)
                self.buttons[(p.key, fix.caption)] = b
            self._lay.addWidget(row)
            self.rows.append(row)
        if not self.rows:
            ok = QLabel("✔ No problems found.")
            ok.setStyleSheet("color: #6fd3b4;")
            frame = QFrame()
            QVBoxLayout(frame).addWidget(ok)
            self._lay.addWidget(frame)
            self.rows.append(frame)

    def texts(self) -> list[str]:
        return [p.text for p in self.problems]
