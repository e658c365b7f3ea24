"""Reading chest films: DICOM and raster loaders, header checks, folder listing.

Public surface: ``load_film``, ``list_films``, ``Film``, ``FilmMeta``, ``FilmError``.
"""

from cxrviewer.io.film import (
    CorruptFilmError,
    Film,
    FilmError,
    FilmMeta,
    NotAFilmError,
    PatientIdentifiers,
    UnsupportedFilmError,
    WindowPreset,
)

__all__ = [
    "CorruptFilmError",
    "Film",
    "FilmError",
    "FilmMeta",
    "NotAFilmError",
    "PatientIdentifiers",
    "UnsupportedFilmError",
    "WindowPreset",
]
