"""``load_film``: recognise a file by its content, hand it to the right reader, add checks."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

from cxrviewer.io.checks import film_warnings
from cxrviewer.io.dicom import read_dicom
from cxrviewer.io.film import (
    CorruptFilmError,
    Film,
    FilmError,
    NotAFilmError,
    UnreadableFilmError,
    UnsupportedFilmError,
)
from cxrviewer.io.raster import read_raster

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
DICOM_PREAMBLE = 128  # bytes before the "DICM" prefix
MAX_FILE_BYTES = 2 * 1024**3  # a single chest film is never near 2 GiB
HEAD_BYTES = DICOM_PREAMBLE + 4


def sniff(head: bytes) -> str | None:
    """The film format the first bytes announce: dicom, png, jpeg, tiff or None."""
    if head[DICOM_PREAMBLE : DICOM_PREAMBLE + 4] == b"DICM":
        return "dicom"
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head[:4] in TIFF_MAGICS:
        return "tiff"
    if _looks_like_bare_dicom(head):
        return "dicom-bare"
    return None


def _looks_like_bare_dicom(head: bytes) -> bool:
    """A DICOM dataset without preamble (old ACR-NEMA style exports): it starts with a
    group 0002 or 0008 element in little-endian, then a VR or a 4-byte length."""
    if len(head) < 8:
        return False
    group, element = struct.unpack("<HH", head[:4])
    if group not in (0x0002, 0x0008) or element > 0x0100:
        return False
    vr = head[4:6]
    if vr.isalpha() and vr.isupper():
        return True
    (length,) = struct.unpack("<I", head[4:8])
    return length < 1024


def load_film(path: str | os.PathLike) -> Film:
    """Load one film; raises only FilmError subclasses, whose message names the file.

    The format is decided by content (DICOM preamble, PNG/JPEG/TIFF magic), not by the
    file name, so a renamed or extension-less file loads as what it is.
    """
    try:
        film_path = Path(os.fspath(path))
    except TypeError:
        raise NotAFilmError(str(path), f"not a file path ({type(path).__name__})") from None
    try:
        film = _load(film_path)
        film.warnings.extend(film_warnings(film.meta))
        return film
    except FilmError:
        raise
    except MemoryError:
        raise UnsupportedFilmError(film_path, "not enough memory to decode this film") from None
    except Exception as exc:  # a reader's unexpected failure still names the file
        reason = " ".join(str(exc).split())[:200]
        raise CorruptFilmError(film_path, f"cannot read: {type(exc).__name__}: {reason}") from exc


def _load(path: Path) -> Film:
    head, data_reader = _open(path)
    kind = sniff(head)
    if kind is None:
        raise NotAFilmError(path, _describe_unknown(path, head))
    data = data_reader()
    if kind in ("dicom", "dicom-bare"):
        return read_dicom(path, data, has_preamble=kind == "dicom")
    return read_raster(path, data, kind)


def _open(path: Path):
    """(first bytes, a function returning the whole file), with readable failure reasons."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UnreadableFilmError(path, "file not found") from None
    except PermissionError:
        raise UnreadableFilmError(path, "permission denied") from None
    except OSError as exc:
        raise UnreadableFilmError(path, f"cannot open: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise UnreadableFilmError(path, "is a folder, not a film")
    if not stat.S_ISREG(info.st_mode):
        raise UnreadableFilmError(path, "not a regular file")
    if info.st_size == 0:
        raise NotAFilmError(path, "file is empty (0 bytes)")
    if info.st_size > MAX_FILE_BYTES:
        raise UnsupportedFilmError(
            path, f"file is {info.st_size / 1024**3:.1f} GiB, over the 2 GiB limit for one film"
        )
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except PermissionError:
        raise UnreadableFilmError(path, "permission denied") from None
    except OSError as exc:
        raise UnreadableFilmError(path, f"cannot read: {exc.strerror or exc}") from None

    def read_all() -> bytes:
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise UnreadableFilmError(path, f"cannot read: {exc.strerror or exc}") from None

    return head, read_all


def _describe_unknown(path: Path, head: bytes) -> str:
    suffix = path.suffix.lower()
    named = f"named {suffix} but " if suffix else ""
    if _is_text(head):
        return f"{named}content is text, not a DICOM, PNG, JPEG or TIFF film"
    return f"{named}content is not DICOM, PNG, JPEG or TIFF (unrecognised format)"


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # A multi-byte character cut at the end of the sample is still text.
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(ch.isprintable() or ch in "\r\n\t\f" for ch in text)
