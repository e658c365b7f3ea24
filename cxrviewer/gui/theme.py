"""The look: a dark reading-room palette, the style sheet and the icons in resources/."""

from __future__ import annotations

from functools import lru_cache

from PySide6.QtGui import QColor, QIcon, QPalette
from PySide6.QtWidgets import QApplication

from cxrviewer.resources import resources_dir

BACKGROUND = "#15191d"


def icon(name: str) -> QIcon:
    """resources/icons/<name>.png as a QIcon (an empty icon if it is missing)."""
    return _icon(name)


@lru_cache(maxsize=None)
def _icon(name: str) -> QIcon:
    path = resources_dir() / "icons" / f"{name}.png"
    return QIcon(str(path)) if path.is_file() else QIcon()


def stylesheet(name: str = "dark") -> str:
    path = resources_dir() / "styles" / f"{name}.qss"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def apply_theme(app: QApplication, name: str = "dark") -> None:
    """Fusion style + dark palette + the sheet (pyqtgraph's colours: ``apply_plot_theme``)."""
    app.setStyle("Fusion")
    pal = QPalette()
    colours = {
        QPalette.ColorRole.Window: "#15191d",
        QPalette.ColorRole.WindowText: "#d6dde4",
        QPalette.ColorRole.Base: "#101316",
        QPalette.ColorRole.AlternateBase: "#181d22",
        QPalette.ColorRole.Text: "#d6dde4",
        QPalette.ColorRole.Button: "#222930",
        QPalette.ColorRole.ButtonText: "#d6dde4",
        QPalette.ColorRole.Highlight: "#24414d",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.ToolTipBase: "#242b32",
        QPalette.ColorRole.ToolTipText: "#e6ecf1",
        QPalette.ColorRole.PlaceholderText: "#6b7783",
        QPalette.ColorRole.Link: "#5ad2f4",
    }
    for role, colour in colours.items():
        pal.setColor(role, QColor(colour))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor("#5d6873"))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor("#5d6873"))
    app.setPalette(pal)
    app.setStyleSheet(stylesheet(name))
    ic = icon("app")
    if not ic.isNull():
        app.setWindowIcon(ic)


def apply_plot_theme() -> None:
    """pyqtgraph's default colours for the theme. Separate from ``apply_theme`` because
    pyqtgraph is imported in the background after the window shows (it takes ~1 s)."""
    import pyqtgraph as pg

    pg.setConfigOptions(background="#101316", foreground="#aab6c1", antialias=True)
