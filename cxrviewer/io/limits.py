"""Size limits checked from headers, before any pixel is decoded."""

from __future__ import annotations

from pathlib import Path

from cxrviewer.io.film import UnsupportedFilmError

MAX_SIDE = 16384  # px per side
MAX_PIXELS = 64 * 1024 * 1024  # 64 Mpx: the float32 display copy alone is 256 MB

LIMIT_TEXT = f"limit is {MAX_SIDE} px per side and {MAX_PIXELS // (1024 * 1024)} Mpx"


def check_dimensions(path: Path, width: int, height: int) -> None:
    """Refuse a film whose header promises more pixels than a chest film can need."""
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise UnsupportedFilmError(
            path, f"image is {width}x{height} px, too large to load ({LIMIT_TEXT})"
        )
