"""Window/level presets: the file's DICOM windows plus lung/mediastinum/bone/auto from JSON.

Qt-free so it can be tested and reused without a display. A preset resolves to a
(centre, width) in the film's modality units (``Film.raw``), which is what
``cxrviewer.io.apply_window`` takes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cxrviewer.resources import resources_dir

# The film as the loader rendered it (its first DICOM window or VOI LUT, or the raster
# file's own grey levels): not a window, shown from Film.pixels unchanged.
AS_LOADED = "as loaded"

# Percentiles are taken on every n-th pixel in each direction: a 3000 px film becomes
# ~140k samples, enough for a stable 0.5 % tail and fast on the GUI thread.
_SAMPLE_STEP = 8


@dataclass(frozen=True)
class PresetDef:
    """A named window defined once for every film (from window_presets.json)."""

    name: str
    title: str
    shortcut: str = ""
    hu: tuple[float, float] | None = None  # (centre, width) when units are HU
    density_percentiles: tuple[float, float] | None = None  # (low, high), 0 = least dense
    why: str = ""


def presets_file() -> Path:
    return resources_dir() / "presets" / "window_presets.json"


def load_preset_defs(path: str | Path | None = None) -> list[PresetDef]:
    """Read the preset definitions; a broken file yields only 'auto' so the viewer still works."""
    path = Path(path) if path else presets_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        out = []
        for p in data["presets"]:
            hu = p.get("hu")
            pct = p.get("density_percentiles")
            out.append(
                PresetDef(
                    name=str(p["name"]),
                    title=str(p.get("title", p["name"])),
                    shortcut=str(p.get("shortcut", "")),
                    hu=(float(hu["center"]), float(hu["width"])) if hu else None,
                    density_percentiles=(float(pct["low"]), float(pct["high"])) if pct else None,
                    why=str(p.get("why", "")),
                )
            )
        return out
    except (OSError, ValueError, KeyError, TypeError):
        return [PresetDef("auto", "Auto", "F5", None, (0.5, 99.5), "film range without extremes")]


def white_is_low(photometric: str | None) -> bool:
    """MONOCHROME1 stores dense (white) tissue as low values."""
    return (photometric or "").upper() == "MONOCHROME1"


def film_inverts(meta) -> bool:
    """Whether the loader inverted this film after the VOI (FilmMeta.invert, else MONOCHROME1)."""
    inv = getattr(meta, "invert", None)
    return bool(inv) if inv is not None else white_is_low(meta.photometric)


def density_window(raw, low: float, high: float, photometric: str | None) -> tuple[float, float]:
    """DICOM (centre, width) in raw units mapping the given density percentiles to black..white.

    Density rank is the raw value for MONOCHROME2 and raster films and its negative for
    MONOCHROME1, so 'lung' picks the same anatomy whichever way the file stores grey.
    """
    import numpy as np

    sample = np.asarray(raw)[::_SAMPLE_STEP, ::_SAMPLE_STEP]
    sample = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample.ravel()
    if sample.size == 0:
        return 0.5, 1.0
    if white_is_low(photometric):
        lo, hi = np.percentile(sample, [100.0 - high, 100.0 - low])
    else:
        lo, hi = np.percentile(sample, [low, high])
    from cxrviewer.io.window import window_for_range  # pydicom: not at window start-up

    return window_for_range(float(lo), float(hi))


def resolve(defn: PresetDef, raw, photometric: str | None, units: str) -> tuple[float, float]:
    """(centre, width) of a preset for one film."""
    if defn.hu is not None and (units or "").upper() == "HU":
        return defn.hu
    low, high = defn.density_percentiles or (0.5, 99.5)
    return density_window(raw, low, high, photometric)


def full_range(raw) -> tuple[float, float]:
    """(centre, width) covering every value of the film; the start of a drag from 'as loaded'."""
    import numpy as np

    from cxrviewer.io.window import window_for_range

    sample = np.asarray(raw)[::_SAMPLE_STEP, ::_SAMPLE_STEP]
    return window_for_range(float(np.nanmin(sample)), float(np.nanmax(sample)))
