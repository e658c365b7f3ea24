"""Finding films in a folder tree: lazily, in a stable order, skipping hidden entries and loops."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

FILM_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom"})
# Suffixes DICOM files often carry instead of .dcm (Siemens .ima, .dic); their content
# is still checked for the DICM prefix.
_MAYBE_DICOM_SUFFIXES = frozenset({".ima", ".dic", ".dc3"})
_DICM_OFFSET = 128


def is_film_candidate(path: str | os.PathLike) -> bool:
    """Whether a file should be offered as a film (by suffix, or by DICOM content).

    Known image and DICOM suffixes count without reading. Files without a suffix, with
    a numeric one (UID-named DICOMs such as ``1.2.840.113619.2.55.3.42``) or a known
    DICOM alias are read for the ``DICM`` prefix at byte 128. It says what to try, not
    that the file is valid: ``load_film`` decides that.
    """
    path = os.fspath(path)
    return _is_candidate(os.path.basename(path), path)


def _is_candidate(name: str, path: str) -> bool:
    suffix = os.path.splitext(name)[1].lower()
    if suffix in FILM_SUFFIXES:
        return True
    if suffix and not (suffix[1:].isdigit() or suffix in _MAYBE_DICOM_SUFFIXES):
        return False
    return has_dicom_prefix(path)


def has_dicom_prefix(path: str | os.PathLike) -> bool:
    """True when the file has ``DICM`` at byte 128; False when not or unreadable."""
    try:
        with open(path, "rb") as handle:
            handle.seek(_DICM_OFFSET)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def list_films(root: str | os.PathLike) -> Iterator[Path]:
    """Film candidates under ``root``, depth first, each folder's entries sorted by name.

    Lazy: a folder is read only when the walk reaches it, so the first films of a large
    tree arrive at once. Hidden files and folders (dot names, and the Windows hidden
    attribute) are skipped. Symlinked folders are followed once: their real path is
    remembered, so a link loop or a second link to the same folder is not walked again.
    Unreadable folders are skipped. A ``root`` that is a file yields itself (whatever its
    name, since the user chose it); a missing ``root`` yields nothing.
    """
    root = Path(root)
    if not root.is_dir():
        if root.exists():
            yield root
        return
    visited: set[str] = set()
    yield from _walk(root, visited)


def _walk(folder: Path, visited: set[str]) -> Iterator[Path]:
    real = os.path.realpath(folder)
    if real in visited:
        return
    visited.add(real)
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError:
        return
    for entry in entries:
        if _is_hidden(entry):
            continue
        try:
            is_dir = entry.is_dir()  # follows symlinks: linked folders are walked once
            is_file = not is_dir and entry.is_file()
        except OSError:
            continue
        if is_dir:
            yield from _walk(Path(entry.path), visited)
        elif is_file and _is_candidate(entry.name, entry.path):
            yield Path(entry.path)


def _is_hidden(entry: os.DirEntry) -> bool:
    if entry.name.startswith("."):
        return True
    if os.name != "nt":
        return False
    try:
        attributes = entry.stat(follow_symlinks=False).st_file_attributes
        return bool(attributes & stat.FILE_ATTRIBUTE_HIDDEN)
    except (OSError, AttributeError):
        return False
