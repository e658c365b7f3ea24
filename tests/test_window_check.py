"""The window pre-flight (cxrviewer.gui.platform_check) and the `--smoke-test` window start."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cxrviewer.gui import platform_check as pc

REPO = Path(__file__).resolve().parents[1]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="xcb checks are Linux-only")

# What ldd prints for Qt's xcb plugin on a desktop without two of its libraries.
LDD_OUTPUT = """\
\tlinux-vdso.so.1 (0x00007ffd5a9f2000)
\tlibQt6XcbQpa.so.6 => /opt/cxrviewer/_internal/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f1)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-image.so.0 => /lib/x86_64-linux-gnu/libxcb-image.so.0 (0x00007f2)
\tlibxcb-icccm.so.4 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f3)
"""


def run_cxrviewer(args, env_changes, timeout=120):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env.update(env_changes)
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "cxrviewer", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def fake_plugins(tmp_path: Path, names=("xcb", "offscreen")) -> Path:
    platforms = tmp_path / "plugins" / "platforms"
    platforms.mkdir(parents=True)
    for name in names:
        (platforms / f"libq{name}.so").write_bytes(b"")
    return tmp_path / "plugins"


def fake_ldd(tmp_path: Path, output: str) -> str:
    """An executable standing in for ldd that prints ``output`` for any file."""
    (tmp_path / "ldd-output.txt").write_text(output)
    script = tmp_path / "ldd"
    script.write_text(f"#!/bin/sh\ncat '{tmp_path / 'ldd-output.txt'}'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_parse_ldd_lists_each_missing_library_once_in_order():
    assert pc.parse_ldd(LDD_OUTPUT) == ["libxcb-cursor.so.0", "libxcb-icccm.so.4"]
    assert pc.parse_ldd("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n") == []


def test_install_hint_names_debian_packages_once():
    hint = pc.install_hint(["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libglib-2.0.so.0",
                            "libgthread-2.0.so.0", "libunknown.so.9"])
    assert hint == "sudo apt install libxcb-cursor0 libxcb-icccm4 libglib2.0-0"
    assert pc.install_hint(["libunknown.so.9"]) == ""


def test_probe_libraries_reports_what_the_loader_refuses():
    present = {"libxcb.so.1"}

    def load(name):
        if name not in present:
            raise OSError(f"{name}: cannot open shared object file")

    assert pc.probe_libraries(["libxcb.so.1", "libxcb-cursor.so.0"], load) == ["libxcb-cursor.so.0"]
    # the real loader: libc is always there, a made-up soname never is
    assert pc.probe_libraries(["libc.so.6", "libcxrviewer-none.so.0"]) == ["libcxrviewer-none.so.0"]


def test_describe_missing_separates_system_and_bundled_libraries():
    text = pc.describe_missing("xcb", Path("/x/libqxcb.so"), ["libxcb-cursor.so.0", "libQt6XcbQpa.so.6"])
    assert "libxcb-cursor.so.0 (package libxcb-cursor0)" in text
    assert "sudo apt install libxcb-cursor0" in text
    assert "libQt6XcbQpa.so.6" in text and "reinstall cxrviewer" in text
    assert "libQt6XcbQpa" not in text.split("apt install")[1].splitlines()[0]


def test_requested_platform_reads_the_first_choice():
    assert pc.requested_platform({}) is None
    assert pc.requested_platform({"QT_QPA_PLATFORM": ""}) is None
    assert pc.requested_platform({"QT_QPA_PLATFORM": "offscreen"}) == "offscreen"
    assert pc.requested_platform({"QT_QPA_PLATFORM": "wayland;xcb"}) == "wayland"
    assert pc.requested_platform({"QT_QPA_PLATFORM": "xcb:nomitshm"}) == "xcb"


@linux_only
def test_missing_xcb_libraries_stop_the_window_with_the_apt_line(tmp_path):
    plugins = fake_plugins(tmp_path)
    problems = pc.window_problems({"DISPLAY": ":0"}, plugins=plugins, ldd=fake_ldd(tmp_path, LDD_OUTPUT))
    assert len(problems) == 1
    assert "libxcb-cursor.so.0" in problems[0] and "libxcb-icccm.so.4" in problems[0]
    assert "sudo apt install libxcb-cursor0 libxcb-icccm4" in problems[0]


@linux_only
def test_no_display_is_named(tmp_path):
    plugins = fake_plugins(tmp_path)
    ldd = fake_ldd(tmp_path, "\tlibc.so.6 => /lib/libc.so.6 (0x1)\n")
    problems = pc.window_problems({}, plugins=plugins, ldd=ldd)
    assert len(problems) == 1 and "DISPLAY is not set" in problems[0]
    # a Wayland session lets Qt try Wayland first: missing xcb libraries are only a note
    wayland = {"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"}
    notes = pc.window_problems(wayland, plugins=plugins, ldd=fake_ldd(tmp_path, LDD_OUTPUT))
    assert len(notes) == 1 and notes[0].startswith("note") and "libxcb-cursor0" in notes[0]


@linux_only
def test_unreachable_x_display_is_named(tmp_path):
    if pc.probe_libraries(["libxcb.so.1"]):
        pytest.skip("libxcb is not installed here")
    plugins = fake_plugins(tmp_path)
    ldd = fake_ldd(tmp_path, "\tlibc.so.6 => /lib/libc.so.6 (0x1)\n")
    # a display number no X server listens on (its socket does not exist)
    display = next(f":{n}" for n in range(97, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    problems = pc.window_problems({"DISPLAY": display}, plugins=plugins, ldd=ldd)
    assert len(problems) == 1 and f"no X display at DISPLAY='{display}'" in problems[0]


@linux_only
def test_unknown_platform_lists_what_is_installed(tmp_path):
    plugins = fake_plugins(tmp_path)
    problems = pc.window_problems({"QT_QPA_PLATFORM": "eglfs"}, plugins=plugins, ldd="/bin/true")
    assert "'eglfs' is not installed" in problems[0] and "offscreen, xcb" in problems[0]


@linux_only
def test_offscreen_platform_needs_no_display():
    # the Qt tests of this suite run offscreen, so its libraries are present here
    assert pc.window_problems({"QT_QPA_PLATFORM": "offscreen"}) == []


@linux_only
def test_cxrviewer_explains_why_the_xcb_window_cannot_open():
    """The real command, with QT_QPA_PLATFORM=xcb and no display: exit 3 and a reason, no Qt abort."""
    result = run_cxrviewer([], {"QT_QPA_PLATFORM": "xcb"})
    assert result.returncode == pc.WINDOW_CANNOT_OPEN, result.stderr
    plugin = pc.qt_plugins_dir() / "platforms" / "libqxcb.so"
    missing = pc.missing_libraries(plugin)
    if missing:  # this machine lacks some of the xcb libraries: each is named with its package
        for name in missing:
            assert name in result.stderr
        assert "sudo apt install" in result.stderr
    else:
        assert "DISPLAY is not set" in result.stderr
    assert "Aborted" not in result.stderr and "could not load the Qt platform plugin" not in result.stderr


@linux_only
def test_missing_libraries_agree_with_the_dynamic_loader():
    """ldd's verdict on the real xcb plugin matches what ctypes can load of the known list."""
    plugin = pc.qt_plugins_dir() / "platforms" / "libqxcb.so"
    via_ldd = set(pc.missing_libraries(plugin))
    via_ctypes = set(pc.probe_libraries(pc.XCB_LIBRARIES))
    assert via_ctypes <= via_ldd


def test_smoke_test_opens_the_window_offscreen_and_quits(tmp_path):
    result = run_cxrviewer(["--smoke-test", "--model", tmp_path / "none.keras"],
                           {"QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "CXRVIEWER_WINDOW_SHOWN" in result.stdout
