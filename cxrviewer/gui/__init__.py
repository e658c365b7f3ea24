"""The viewer (PySide6 + pyqtgraph). The only package that imports Qt.

Modules: ``app`` (entry point), ``main_window`` (wiring), ``state`` (what is shown),
``workers`` (I/O pool and the inference thread), ``jobs`` (what the pool runs),
``film_view``, ``browser``, ``findings_panel``, ``tag_panel``, ``batch_panel``,
``roc_panel``, ``log_panel``, ``model_dialogs`` (widgets), ``presets`` (window/level),
``settings`` (QSettings), ``theme`` (style and icons), ``cache`` (bounded LRU).
"""
