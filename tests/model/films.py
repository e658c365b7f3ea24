"""Real films for the model-core tests, as ``Film`` records."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def load_real_film(path: Path):
    """A Film from a real file: through ``cxrviewer.io.load_film`` once the io part provides
    it, otherwise read with OpenCV (8-bit PNG grey values / 255, as the raster loader does)."""
    try:
        from cxrviewer.io import load_film
    except ImportError:
        load_film = None
    if load_film is not None:
        return load_film(path)
    from cxrviewer.io import Film, FilmMeta

    raw = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert raw is not None, f"cannot read {path}"
    pixels = raw.astype(np.float32) / 255.0
    return Film(Path(path), pixels, raw, FilmMeta("png", raw.shape[0], raw.shape[1]))


def film_from_pixels(pixels: np.ndarray, name: str = "synthetic.png", warnings=None):
    """A Film around pixels derived from a real film (crops, pasted marks)."""
    from cxrviewer.io import Film, FilmMeta

    pixels = np.ascontiguousarray(pixels, dtype=np.float32)
    return Film(Path(name), pixels, pixels.copy(), FilmMeta("png", pixels.shape[0], pixels.shape[1]),
                warnings=list(warnings or []))
