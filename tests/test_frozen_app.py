"""The clinic installer: build the frozen app (or reuse a current build) and run it.

Runs `.ci/frozen_build.sh`, which builds `dist/cxrviewer` with PyInstaller unless a build
with the same stamp exists, then runs the frozen `--selftest` on the shared DICOMs and the
offscreen window smoke test; this test reads its output and looks inside the bundle.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cxrviewer.selftest import REQUIRED_DECODERS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

REPO = Path(__file__).resolve().parents[1]
APP_DIR = REPO / "dist" / "cxrviewer"
APP = APP_DIR / "cxrviewer"
BUNDLE = APP_DIR / "_internal"


def app_env(**changes) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env.update(changes)
    return env


@pytest.fixture(scope="module")
def frozen_build(dicom_dir):
    """Output of .ci/frozen_build.sh (build or reuse, self-test, smoke test)."""
    env = app_env(PYTHON=sys.executable, CXRVIEWER_REUSE_BUILD="1")
    result = subprocess.run(["bash", str(REPO / ".ci" / "frozen_build.sh"), str(dicom_dir)], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=3500)
    return result.returncode, result.stdout + result.stderr


def test_frozen_selftest_and_smoke_test_pass(frozen_build, dicom_dir):
    code, output = frozen_build
    assert code == 0, output[-6000:]
    assert "self-test PASSED" in output
    assert f"{sum(1 for _ in dicom_dir.rglob('*.dcm'))} DICOM files" in output
    assert "0 failed" in output and "round trips 3/3 passed" in output
    assert "frozen build: smoke test passed" in output


def test_frozen_app_runs_from_the_bundle_with_every_pylibjpeg_plugin(frozen_build):
    from pydicom import uid

    _, output = frozen_build
    assert f"frozen app          yes ({BUNDLE})" in output
    for attr in REQUIRED_DECODERS:
        name = getattr(uid, attr).name
        line = next(line for line in output.splitlines() if line.endswith(f"  {name}"))
        assert line.split()[0] == "ok" and "pylibjpeg" in line, line
    for module in ("openjpeg", "libjpeg", "rle"):
        assert f"[{module} " in output, module


def test_bundle_holds_model_resources_qt_platforms_and_plugin_metadata(frozen_build):
    assert frozen_build[0] == 0
    assert (APP_DIR / "build-info.json").is_file()
    assert (BUNDLE / "resources" / "samples").is_dir()
    shipped = REPO / "models" / "cxr14-densenet121.keras"
    if shipped.exists():
        assert (BUNDLE / "models" / shipped.name).is_file()
        assert (BUNDLE / "models" / "cxr14-densenet121.card.json").is_file()
    platforms = BUNDLE / "PySide6" / "Qt" / "plugins" / "platforms"
    for name in ("xcb", "offscreen", "minimal"):
        assert (platforms / f"libq{name}.so").is_file(), name
    # pylibjpeg finds its codecs through these entry points
    entry_points = "".join(p.read_text() for p in BUNDLE.glob("pylibjpeg*.dist-info/entry_points.txt"))
    for group in ("pylibjpeg.jpeg_decoders", "pylibjpeg.jpeg_2000_decoders", "pylibjpeg.pixel_data_decoders",
                  "pylibjpeg.pixel_data_encoders"):
        assert f"[{group}]" in entry_points, group
    for unwanted in ("torch", "tensorboard", "tkinter", "IPython", "PySide6/QtWebEngineCore.abi3.so"):
        assert not (BUNDLE / unwanted).exists(), unwanted


def test_bundle_leaves_the_display_stack_to_the_desktop_and_misses_nothing_else(frozen_build):
    """Every library a bundled binary links against is in the bundle, in glibc, a GL driver,
    or the desktop's display stack that docs/installer.md lists; none of the latter is bundled."""
    sys.path.insert(0, str(REPO / "packaging"))
    try:
        from system_libs import DESKTOP, unresolved_needs
    finally:
        sys.path.pop(0)
    assert frozen_build[0] == 0
    assert unresolved_needs(BUNDLE) == {}
    bundled_desktop = sorted(p.name for p in BUNDLE.iterdir() if DESKTOP.match(p.name))
    assert bundled_desktop == []
    platforms = {p.name for p in (BUNDLE / "PySide6" / "Qt" / "plugins" / "platforms").iterdir()}
    assert "libqvnc.so" not in platforms and "libqeglfs.so" not in platforms


def test_frozen_info_and_window_check(frozen_build, tmp_path):
    assert frozen_build[0] == 0
    info = subprocess.run([str(APP), "info"], env=app_env(), capture_output=True, text=True, timeout=300)
    assert info.returncode == 0, info.stderr[-3000:]
    assert "Compute device: " in info.stdout and "JPEG 2000" in info.stdout
    # no display for the xcb platform: the frozen app explains instead of Qt aborting
    window = subprocess.run([str(APP)], env=app_env(QT_QPA_PLATFORM="xcb", XDG_CONFIG_HOME=str(tmp_path)),
                            capture_output=True, text=True, timeout=300)
    assert window.returncode == 3, window.stderr[-3000:]
    assert "The window cannot open" in window.stderr
    assert "sudo apt install" in window.stderr or "DISPLAY is not set" in window.stderr
