"""Per-class result tables (ROC panel, training wizard): number formatting and row filling."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QTableWidget, QTableWidgetItem


def fmt_number(x, digits: int = 3) -> str:
    """A table cell for a metric: "—" when undefined (never 0 or 0.5), counts as integers."""
    return "—" if x is None else (str(x) if isinstance(x, int) else f"{x:.{digits}f}")


def set_class_row(table: QTableWidget, row: int, cells: list[str], c) -> None:
    """Fill one per-class row: name left, numbers right, and the reason as tooltip when the
    class (a ``ClassMetrics``) is not estimable."""
    for col, text in enumerate(cells):
        item = QTableWidgetItem(text)
        if col:
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if not c.estimable:
            item.setToolTip(c.reason or "")
        table.setItem(row, col, item)
