"""Which shared libraries the installer leaves to the workstation, and which it drops.

PyInstaller copies every shared library a bundled binary links against that it can find
on the build machine, except the C library and the GL drivers. For a Qt desktop app that
copies part of the X11 stack (libxcb-cursor, libX11, libxkbcommon...) from the build
machine: which parts depends on what happens to be installed there, and an old copy of
libX11/libxcb or libstdc++ loaded ahead of the system's breaks the system's Mesa/NVIDIA
GL driver (the driver is never bundled and expects the system's own versions). So:

* DESKTOP: the display stack (X11, xcb, xkbcommon, Wayland, DRM, fontconfig, freetype,
  GLib, D-Bus) and the C++ runtime come from the workstation, like the C library. docs/installer.md lists
  the Debian packages; the app names any that are missing before Qt starts.
* UNUSED_QT: Qt plugins the viewer never loads (embedded and VNC platforms, evdev/TUIO
  input, the GTK3 theme) and the Qt libraries only they need.
* ONLY_FOR_UNUSED: libraries that only those plugins pulled in (GTK3's Pango/Cairo chain,
  QtNetwork's Kerberos chain).

``unresolved_needs`` checks a finished bundle: what its binaries need that is neither in
the bundle nor provided by the workstation (GLIBC, GL drivers, DESKTOP).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

DESKTOP = re.compile(
    r"^lib(X11|X11-xcb|Xau|Xdmcp|Xext|Xrender|xcb(-[a-z]+(-[a-z]+)?)?|xkbcommon(-x11)?"
    r"|fontconfig|freetype|expat|dbus-1|systemd|cap|gcrypt|gpg-error|lz4"
    r"|glib-2\.0|gthread-2\.0|gio-2\.0|gobject-2\.0|gmodule-2\.0|pcre2-8|selinux|mount|blkid|bsd|md"
    r"|drm|gbm|vulkan|wayland-(client|cursor|egl|server)|stdc\+\+|gcc_s)\.so(\.\d+)*$"
)
UNUSED_QT = re.compile(
    r"^(PySide6/Qt/plugins/(platforms/libq(eglfs|linuxfb|minimalegl|vnc|vkkhrdisplay)\.so"
    r"|egldeviceintegrations/.*|generic/.*|platformthemes/libqgtk3\.so)"
    r"|(PySide6/Qt/lib/)?libQt6(EglFSDeviceIntegration|EglFsKmsSupport|Network)\.so(\.\d+)*)$"
)
ONLY_FOR_UNUSED = re.compile(
    r"^lib(atk-1\.0|cairo|cairo-gobject|gdk_pixbuf-2\.0|pango-1\.0|pangocairo-1\.0|pangoft2-1\.0"
    r"|harfbuzz|graphite2|thai|datrie|fribidi|pixman-1|jpeg|png16"
    r"|gssapi_krb5|krb5|k5crypto|krb5support|com_err|keyutils|brotlicommon|brotlidec)\.so(\.\d+)*$"
)
# Always on a Linux system (glibc and its loader) or deliberately never bundled (GL drivers).
SYSTEM = re.compile(
    r"^(ld-linux.*|lib(c|m|dl|pthread|rt|util|resolv|anl|nsl|crypt|mvec)\.so(\.\d+)*"
    r"|lib(GL|EGL|GLX|GLdispatch|OpenGL|GLESv2)\.so(\.\d+)*)$"
)


def dropped(dest: str) -> str | None:
    """Why the bundle leaves out ``dest`` (a path inside the bundle), or None to keep it."""
    name = dest.rsplit("/", 1)[-1]
    if UNUSED_QT.match(dest):
        return "Qt part the viewer never loads"
    if "/" not in dest and DESKTOP.match(name):
        return "provided by the desktop"
    if "/" not in dest and ONLY_FOR_UNUSED.match(name):
        return "only needed by an unused Qt plugin"
    return None


def _needed(path: Path) -> list[str]:
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def unresolved_needs(bundle: Path) -> dict[str, list[str]]:
    """Libraries the bundle's ELF files need that neither the bundle nor the workstation
    (SYSTEM, DESKTOP) provides -> the bundled files that need them."""
    bundle = Path(bundle)
    files = [p for p in bundle.rglob("*") if p.is_file() and ".so" in p.name]
    present = {p.name for p in bundle.rglob("*") if ".so" in p.name}
    missing: dict[str, list[str]] = {}
    for path in files:
        for lib in _needed(path):
            if lib in present or SYSTEM.match(lib) or DESKTOP.match(lib):
                continue
            missing.setdefault(lib, []).append(path.relative_to(bundle).as_posix())
    return missing
