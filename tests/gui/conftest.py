"""Fixtures for the viewer tests: a tidy offscreen window with private settings and tiny models.

Settings never touch the user's: every window gets an INI file in its tmp folder, and the
QSettings default locations are pointed at a temp folder for the whole session in case
some code path builds a default QSettings.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cxrviewer.findings import CXR14_LABELS


@pytest.fixture(scope="session", autouse=True)
def _private_qsettings(tmp_path_factory):
    from PySide6.QtCore import QSettings

    where = str(tmp_path_factory.mktemp("qsettings"))
    for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
        QSettings.setPath(QSettings.Format.IniFormat, scope, where)
        QSettings.setPath(QSettings.Format.NativeFormat, scope, where)
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    yield


@pytest.fixture(scope="session")
def themed_app(qapp):
    from cxrviewer.gui.theme import apply_theme

    apply_theme(qapp)
    return qapp


@pytest.fixture(scope="session")
def shots(test_output_dir) -> Path:
    """Screenshots of the main states, for a person to look at."""
    d = test_output_dir / "gui"
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def settings(tmp_path):
    from PySide6.QtCore import QSettings

    from cxrviewer.gui.settings import Settings

    return Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny 14-label model (32 px input) saved through the real save path."""
    from tests.model_helpers import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("gui-model"), CXR14_LABELS, size=32, name="tiny-cxr14")


@pytest.fixture
def make_window(qtbot, themed_app, settings):
    """Build a MainWindow, show it, and start it (model load + path) like run_app does."""
    from cxrviewer.gui.main_window import MainWindow

    made = []

    def make(model=None, path=None, *, load_model=True, settings_=None):
        win = MainWindow(settings=settings_ or settings, model_path=model)
        qtbot.addWidget(win)
        win.resize(1400, 900)
        win.show()
        qtbot.waitExposed(win)
        win.start(path, load_model=load_model)
        made.append(win)
        # The pyqtgraph views are put in place just after the window shows.
        qtbot.waitUntil(lambda: win.views_built, timeout=30_000)
        return win

    yield make
    for win in made:
        win.close()


def wait_model(qtbot, win, timeout=120_000):
    """Wait until the model is ready or reported unavailable."""
    qtbot.waitUntil(lambda: win.state.model.status in ("ready", "unavailable"), timeout=timeout)


def copy_films(src_dir: Path, dest: Path, names) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for n in names:
        shutil.copy2(src_dir / n, dest / Path(n).name)
        out.append(dest / Path(n).name)
    return out
