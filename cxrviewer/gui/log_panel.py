"""The log panel and the bridge from Python logging (any thread) to it.

Messages are the loader's and model's one-line reasons, which name the file and never
carry patient identifiers.
"""

from __future__ import annotations

import logging
import time

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QPlainTextEdit

MAX_LINES = 5000


class _Bridge(QObject):
    record = Signal(str, int)  # text, level


class QtLogHandler(logging.Handler):
    """A logging handler that hands records to the GUI thread by queued signal."""

    def __init__(self, level=logging.INFO):
        super().__init__(level)
        self.bridge = _Bridge()
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # never let logging raise into the caller
            return
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        self.bridge.record.emit(f"{stamp}  {record.levelname:<7} {text}", record.levelno)


class LogPanel(QPlainTextEdit):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMaximumBlockCount(MAX_LINES)
        font = QFont("monospace")
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.setFont(font)
        self.setObjectName("logPanel")
        self.lines: list[str] = []

    def append_line(self, text: str, level: int = logging.INFO) -> None:
        self.lines.append(text)
        if len(self.lines) > MAX_LINES:
            del self.lines[: len(self.lines) - MAX_LINES]
        self.appendPlainText(text)
