"""What the viewer remembers between sessions, stored with QSettings.

Lists and dicts are stored as JSON text so the INI and native backends read them back
alike. Tests pass their own QSettings (an INI file in a temp folder), never the user's.
"""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

ORGANISATION = "cxrviewer"
APPLICATION = "cxrviewer"
MAX_RECENT = 10


class Settings:
    def __init__(self, qsettings: QSettings | None = None):
        self.q = qsettings if qsettings is not None else QSettings(ORGANISATION, APPLICATION)

    # ---- helpers ----------------------------------------------------------------------
    def _get_json(self, key: str, default):
        raw = self.q.value(key, None)
        if raw in (None, ""):
            return default
        try:
            return json.loads(str(raw))
        except ValueError:
            return default

    def _set_json(self, key: str, value) -> None:
        self.q.setValue(key, json.dumps(value))

    def _get_float(self, key: str, default: float) -> float:
        try:
            return float(self.q.value(key, default))
        except (TypeError, ValueError):
            return default

    def _get_bool(self, key: str, default: bool) -> bool:
        v = self.q.value(key, default)
        if isinstance(v, str):
            return v.lower() in ("1", "true", "yes")
        return bool(v)

    def sync(self) -> None:
        self.q.sync()

    # ---- folders ----------------------------------------------------------------------
    @property
    def last_folder(self) -> Path | None:
        v = self.q.value("folders/last", "")
        return Path(str(v)) if v else None

    @last_folder.setter
    def last_folder(self, path: Path | None) -> None:
        self.q.setValue("folders/last", str(path) if path else "")

    @property
    def recent_folders(self) -> list[Path]:
        return [Path(p) for p in self._get_json("folders/recent", []) if isinstance(p, str)]

    def add_recent_folder(self, path: Path) -> None:
        path = Path(path)
        items = [p for p in self.recent_folders if p != path]
        self._set_json("folders/recent", [str(p) for p in ([path] + items)[:MAX_RECENT]])
        self.last_folder = path

    def clear_recent_folders(self) -> None:
        self._set_json("folders/recent", [])

    # ---- window -----------------------------------------------------------------------
    def window_geometry(self) -> QByteArray | None:
        v = self.q.value("window/geometry", None)
        return v if isinstance(v, QByteArray) and not v.isEmpty() else None

    def window_state(self) -> QByteArray | None:
        v = self.q.value("window/state", None)
        return v if isinstance(v, QByteArray) and not v.isEmpty() else None

    def save_window(self, geometry: QByteArray, state: QByteArray) -> None:
        self.q.setValue("window/geometry", geometry)
        self.q.setValue("window/state", state)

    # ---- overlay ----------------------------------------------------------------------
    @property
    def overlay_opacity(self) -> float:
        return min(max(self._get_float("overlay/opacity", 0.45), 0.0), 1.0)

    @overlay_opacity.setter
    def overlay_opacity(self, value: float) -> None:
        self.q.setValue("overlay/opacity", float(value))

    @property
    def overlay_colormap(self) -> str:
        return str(self.q.value("overlay/colormap", "inferno"))

    @overlay_colormap.setter
    def overlay_colormap(self, name: str) -> None:
        self.q.setValue("overlay/colormap", name)

    @property
    def overlay_visible(self) -> bool:
        return self._get_bool("overlay/visible", True)

    @overlay_visible.setter
    def overlay_visible(self, on: bool) -> None:
        self.q.setValue("overlay/visible", bool(on))

    # ---- window/level presets ---------------------------------------------------------
    @property
    def default_preset(self) -> str:
        """Window applied when a film opens: 'as loaded' or a preset name."""
        return str(self.q.value("presets/default", "as loaded"))

    @default_preset.setter
    def default_preset(self, name: str) -> None:
        self.q.setValue("presets/default", name)

    @property
    def custom_presets(self) -> list[dict]:
        """The reader's own windows: [{'name', 'center', 'width'}] in modality units."""
        out = []
        for p in self._get_json("presets/custom", []):
            try:
                out.append({"name": str(p["name"]), "center": float(p["center"]), "width": float(p["width"])})
            except (KeyError, TypeError, ValueError):
                continue
        return out

    def save_custom_preset(self, name: str, center: float, width: float) -> None:
        items = [p for p in self.custom_presets if p["name"] != name]
        items.append({"name": name, "center": float(center), "width": float(width)})
        self._set_json("presets/custom", items)

    # ---- model ------------------------------------------------------------------------
    @property
    def model_path(self) -> Path | None:
        v = self.q.value("model/path", "")
        return Path(str(v)) if v else None

    @model_path.setter
    def model_path(self, path: Path | None) -> None:
        self.q.setValue("model/path", str(path) if path else "")
