"""Reading chest films: DICOM and raster loaders, header checks, folder listing.

Public surface: ``load_film``, ``list_films``, ``is_film_candidate``, ``apply_window``,
``Film``, ``FilmMeta``, ``FilmError`` and its subclasses.
"""

from cxrviewer.io.film import (
    CorruptFilmError,
    Film,
    FilmError,
    FilmMeta,
    NotAFilmError,
    PatientIdentifiers,
    UnreadableFilmError,
    UnsupportedFilmError,
    WindowPreset,
)
from cxrviewer.io.listing import is_film_candidate, list_films
from cxrviewer.io.loader import load_film
from cxrviewer.io.window import apply_window

__all__ = [
    "CorruptFilmError",
    "Film",
    "FilmError",
    "FilmMeta",
    "NotAFilmError",
    "PatientIdentifiers",
    "UnreadableFilmError",
    "UnsupportedFilmError",
    "WindowPreset",
    "apply_window",
    "is_film_candidate",
    "list_films",
    "load_film",
]
