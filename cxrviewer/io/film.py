"""The loaded-film record and the error type every loader failure raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class FilmError(Exception):
    """An input file cannot be used as a film.

    The message is one line that names the file and the reason, ready to show in the
    GUI status bar or a batch CSV status column.
    """

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = " ".join(str(reason).split())  # always one line
        super().__init__(f"{self.path.name}: {self.reason}")


class NotAFilmError(FilmError):
    """The file is not an image at all (empty, text, unknown format)."""


class CorruptFilmError(FilmError):
    """The file looks like an image but cannot be decoded (truncated, damaged)."""


class UnsupportedFilmError(FilmError):
    """A valid file we deliberately do not handle (compression without decoder, too large, 3-D)."""


class UnreadableFilmError(FilmError):
    """The path cannot be read at all: missing, a folder, permission denied, I/O error."""


@dataclass(frozen=True)
class WindowPreset:
    """A VOI window: centre and width in modality units, as DICOM defines them."""

    center: float
    width: float
    name: str = ""
    function: str = "LINEAR"  # VOILUTFunction: LINEAR, LINEAR_EXACT or SIGMOID


@dataclass
class FilmMeta:
    """Non-identifying facts about a film. Safe to log and to show."""

    source_format: str  # "dicom", "png", "jpeg", "tiff"
    rows: int
    columns: int
    modality: str | None = None  # DICOM Modality (CR, DX, CT, OT...)
    body_part: str | None = None  # BodyPartExamined
    view_position: str | None = None  # PA, AP, LL/LATERAL...
    patient_position: str | None = None  # PatientPosition (PA, AP, XX...)
    photometric: str | None = None  # MONOCHROME1/2, RGB...
    bits_stored: int | None = None
    pixel_spacing: tuple[float, float] | None = None  # (row, column) mm
    window_presets: list[WindowPreset] = field(default_factory=list)
    voi_lut_names: list[str] = field(default_factory=list)  # VOI LUT Sequence entries
    applied_voi: str = ""  # what produced Film.pixels, e.g. "window 'LUNG' c=-500 w=1500"
    modality_units: str = ""  # e.g. "HU" from RescaleType, "" when unknown
    study_description: str | None = None
    series_description: str | None = None
    transfer_syntax: str | None = None
    # Non-identifying header elements for the tag panel: (tag "(0028,0010)", keyword, value text).
    tags: list[tuple[str, str, str]] = field(default_factory=list)
    # True for MONOCHROME1: pixels = 1 - VOI(raw); the GUI passes it to apply_window(invert=).
    invert: bool = False
    frames: int = 1  # frames in the file; Film holds the first


class PatientIdentifiers:
    """Patient name, ID, birth date, accession... kept apart so nothing logs them by accident.

    ``repr``/``str`` never reveal the values; read ``.values`` explicitly (the GUI does so
    only when the reader asks to show identifiers).
    """

    __slots__ = ("values",)

    def __init__(self, values: dict[str, str] | None = None):
        self.values: dict[str, str] = dict(values or {})

    def __repr__(self) -> str:
        return f"PatientIdentifiers(<{len(self.values)} hidden>)"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self.values)


@dataclass
class Film:
    """One chest film, ready to show and to score.

    pixels: float32 (rows, columns) in 0..1 after the display transform: modality LUT,
        VOI (first preset), MONOCHROME1 inversion; white = dense, as a reader sees it.
    raw: (rows, columns) modality values (after the modality LUT, before VOI and inversion);
        for raster files, the grey values at their native bit depth.
    """

    path: Path
    pixels: np.ndarray
    raw: np.ndarray
    meta: FilmMeta
    warnings: list[str] = field(default_factory=list)
    identifiers: PatientIdentifiers = field(default_factory=PatientIdentifiers, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def shape(self) -> tuple[int, int]:
        return self.pixels.shape[0], self.pixels.shape[1]
