"""Can a Qt window open here? Name the missing system library or display before Qt aborts.

On Linux, Qt's xcb platform plugin needs a dozen X11 libraries that a bare desktop may
lack (libxcb-cursor0 since Qt 6.5). Without one, Qt prints "could not load the Qt
platform plugin xcb" and aborts the process, which tells a clinic nothing. This module
checks first, without importing Qt: ``ldd`` on the platform plugin lists what the
dynamic loader cannot find (falling back to loading a known list with ctypes where
``ldd`` is absent), and the display variables and the X server connection are checked
for the platforms that need them. The messages name the library and the Debian package.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

#: Exit status of ``cxrviewer`` when the window cannot open (the cause is printed).
WINDOW_CANNOT_OPEN = 3

# Shared library (soname) -> Debian/Ubuntu package that provides it. The xcb plugin's
# libraries and those Qt's GUI library itself links against.
DEBIAN_PACKAGES = {
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libGLX.so.0": "libglx0",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libICE.so.6": "libice6",
    "libSM.so.6": "libsm6",
    "libwayland-client.so.0": "libwayland-client0",
    "libwayland-cursor.so.0": "libwayland-cursor0",
    "libwayland-egl.so.1": "libwayland-egl1",
}
# What Qt 6's xcb plugin and Qt's GUI library link against (from their ELF NEEDED
# entries), probed one by one with ctypes when ldd is not installed.
XCB_LIBRARIES = (
    "libxcb.so.1", "libX11.so.6", "libX11-xcb.so.1", "libxcb-cursor.so.0", "libxcb-icccm.so.4",
    "libxcb-util.so.1", "libxcb-image.so.0", "libxcb-keysyms.so.1", "libxcb-randr.so.0",
    "libxcb-render.so.0", "libxcb-render-util.so.0", "libxcb-shape.so.0", "libxcb-shm.so.0",
    "libxcb-sync.so.1", "libxcb-xfixes.so.0", "libxcb-xkb.so.1", "libxkbcommon.so.0",
    "libxkbcommon-x11.so.0", "libGL.so.1", "libEGL.so.1", "libfontconfig.so.1",
    "libfreetype.so.6", "libglib-2.0.so.0", "libgthread-2.0.so.0",
)  # fmt: skip
# Platforms that draw on a screen and so need a display server.
_X11 = "xcb"
_WAYLAND = "wayland"


def requested_platform(env: Mapping[str, str]) -> str | None:
    """The Qt platform plugin QT_QPA_PLATFORM asks for first (``"xcb"``), or None if unset.

    The variable may list fallbacks (``wayland;xcb``) and carry options (``xcb:...``).
    """
    value = env.get("QT_QPA_PLATFORM", "").strip()
    if not value:
        return None
    return value.split(";")[0].split(":")[0].strip().lower() or None


def is_wayland_session(env: Mapping[str, str]) -> bool:
    return bool(env.get("WAYLAND_DISPLAY")) and env.get("XDG_SESSION_TYPE", "").lower() == "wayland"


def qt_plugins_dir() -> Path | None:
    """PySide6's plugin folder (in the venv or the frozen bundle), found without importing Qt."""
    candidates = []
    try:
        spec = importlib.util.find_spec("PySide6")
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidates.append(Path(location) / "Qt" / "plugins")
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        candidates.append(Path(bundle) / "PySide6" / "Qt" / "plugins")
    for candidate in candidates:
        if (candidate / "platforms").is_dir():
            return candidate
    return None


def parse_ldd(text: str) -> list[str]:
    """Sonames ``ldd`` reports as ``not found``, once each, in its order."""
    missing: list[str] = []
    for line in text.splitlines():
        name, sep, rest = line.strip().partition("=>")
        if sep and rest.strip().startswith("not found") and name.strip() not in missing:
            missing.append(name.strip())
    return missing


def probe_libraries(names: Iterable[str], load: Callable[[str], object] = ctypes.CDLL) -> list[str]:
    """The names ``load`` cannot open (the dynamic loader's own search, as Qt would do)."""
    missing = []
    for name in names:
        try:
            load(name)
        except OSError:
            missing.append(name)
    return missing


def missing_libraries(plugin: Path, ldd: str | None = None) -> list[str]:
    """Shared libraries ``plugin`` (a Qt platform plugin) needs and the system lacks."""
    ldd = ldd if ldd is not None else shutil.which("ldd")
    if ldd:
        try:
            result = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=30)
            return parse_ldd(result.stdout + result.stderr)
        except (OSError, subprocess.SubprocessError):
            pass  # fall back to probing the known list
    return probe_libraries(XCB_LIBRARIES) if plugin.name == "libqxcb.so" else []


def install_hint(missing: Iterable[str]) -> str:
    """``sudo apt install ...`` for the system libraries among ``missing`` ('' if none are known)."""
    packages: list[str] = []
    for name in missing:
        package = DEBIAN_PACKAGES.get(name)
        if package and package not in packages:
            packages.append(package)
    return f"sudo apt install {' '.join(packages)}" if packages else ""


def describe_missing(platform: str, plugin: Path, missing: list[str]) -> str:
    """One paragraph: which libraries the platform plugin cannot find and how to install them."""
    system = [m for m in missing if not m.startswith(("libQt6", "libpyside6", "libshiboken6"))]
    bundled = [m for m in missing if m not in system]
    lines = []
    if system:
        listed = ", ".join(f"{m} (package {DEBIAN_PACKAGES[m]})" if m in DEBIAN_PACKAGES else m
                           for m in system)
        lines.append(f"The window cannot open: Qt's '{platform}' platform needs system libraries "
                     f"that are not installed: {listed}.")
        hint = install_hint(system)
        if hint:
            lines.append(f"On Debian or Ubuntu install them with: {hint}")
    if bundled:
        lines.append(f"Qt libraries of this installation are missing: {', '.join(bundled)} "
                     f"(needed by {plugin}); reinstall cxrviewer.")
    return "\n".join(lines)


def _xcb_connect_problem(display: str) -> str | None:
    """Why libxcb cannot connect to ``display`` (None when it can, or libxcb is absent)."""
    try:
        xcb = ctypes.CDLL("libxcb.so.1")
    except OSError:
        return None  # reported as a missing library instead
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    conn = xcb.xcb_connect(display.encode(), None)
    try:
        error = xcb.xcb_connection_has_error(conn) if conn else 1
    finally:
        if conn:
            xcb.xcb_disconnect(conn)
    if not error:
        return None
    return (f"The window cannot open: no X display at DISPLAY={display!r} (no X server answers "
            "there, or this user may not use it: check XAUTHORITY, or log in to the desktop).")


def window_problems(env: Mapping[str, str] | None = None, *, plugins: Path | None = None,
                    ldd: str | None = None, connect: bool = True) -> list[str]:
    """Reasons a Qt window cannot open here (empty when none were found).

    Checks on Linux only: the platform plugin's libraries (QT_QPA_PLATFORM, default xcb)
    and, for xcb and wayland, that a display is named and (xcb) answers. In a Wayland
    session with QT_QPA_PLATFORM unset, Qt tries Wayland before xcb, so missing xcb
    libraries are reported as a note there, not as a reason to stop.
    """
    if not sys.platform.startswith("linux"):
        return []
    env = os.environ if env is None else env
    asked = requested_platform(env)
    platform = asked or _X11
    plugins = plugins or qt_plugins_dir()
    if plugins is None:
        return ["The window cannot open: Qt's plugin folder is missing from this installation; "
                "reinstall cxrviewer."]
    plugin = plugins / "platforms" / f"libq{platform}.so"
    if not plugin.exists():
        known = sorted(p.name[4:-3] for p in (plugins / "platforms").glob("libq*.so"))
        return [f"The window cannot open: Qt platform '{platform}' is not installed "
                f"(QT_QPA_PLATFORM; available here: {', '.join(known) or 'none'})."]

    problems = []
    missing = missing_libraries(plugin, ldd)
    wayland_fallback = asked is None and is_wayland_session(env)
    if missing:
        text = describe_missing(platform, plugin, missing)
        if wayland_fallback:
            problems.append("note (Wayland session, so the window may still open): " + text)
        else:
            return [text]
    if platform == _X11 and not wayland_fallback:
        display = env.get("DISPLAY", "")
        if not display:
            problems.append(
                "The window cannot open: no display (DISPLAY is not set). Start cxrviewer from the "
                "workstation's desktop session; for a check without a screen use "
                "`cxrviewer --selftest FOLDER`, or QT_QPA_PLATFORM=offscreen."
            )
        elif connect:
            problem = _xcb_connect_problem(display)
            if problem:
                problems.append(problem)
    if platform == _WAYLAND and not env.get("WAYLAND_DISPLAY"):
        problems.append("The window cannot open: QT_QPA_PLATFORM=wayland but WAYLAND_DISPLAY is not set.")
    return problems


def check_window_can_open() -> int:
    """Print why the window cannot open and return WINDOW_CANNOT_OPEN, else 0.

    Notes that do not stop the window (a Wayland session without the xcb fallback)
    are printed too, and 0 is returned.
    """
    problems = window_problems()
    for problem in problems:
        print(problem, file=sys.stderr)
    blocking = [p for p in problems if not p.startswith("note")]
    return WINDOW_CANNOT_OPEN if blocking else 0
