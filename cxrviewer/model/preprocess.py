"""Film pixels -> model input, the one way shared by inference, batch scoring and training.

NumPy + OpenCV only (no TensorFlow), so I/O worker threads and the tf.data pipeline can run
it in parallel with the model. Training augments between ``to_model_grid`` and
``normalise``; inference calls ``prepare``, which is the two back to back.
"""

from __future__ import annotations

import cv2
import numpy as np

from cxrviewer.model.card import ModelCard, Preprocess


def crop_box(shape: tuple[int, int], crop: str) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1) of the film region the model sees.

    Grad-CAM maps are pasted back into this box so the heat map stays in film coordinates.
    """
    rows, cols = int(shape[0]), int(shape[1])
    if crop == "center":
        side = min(rows, cols)
        r0 = (rows - side) // 2
        c0 = (cols - side) // 2
        return r0, r0 + side, c0, c0 + side
    return 0, rows, 0, cols


def resize(img: np.ndarray, size: tuple[int, int], method: str = "area") -> np.ndarray:
    """Resize a 2-D float image to (rows, cols).

    "area" averages when shrinking (no aliasing of fine lung texture) and falls back to
    linear when enlarging, where area interpolation is undefined.
    """
    rows, cols = size
    if img.shape[0] == rows and img.shape[1] == cols:
        return img
    shrinking = rows * cols < img.shape[0] * img.shape[1]
    interp = cv2.INTER_AREA if (method == "area" and shrinking) else cv2.INTER_LINEAR
    return cv2.resize(img, (cols, rows), interpolation=interp)


def apply_clahe(img01: np.ndarray) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation at 16-bit precision."""
    as16 = np.clip(img01 * 65535.0 + 0.5, 0, 65535).astype(np.uint16)
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    return clahe.apply(as16).astype(np.float32) / 65535.0


def to_model_grid(pixels: np.ndarray, spec: Preprocess, size: int) -> np.ndarray:
    """Display pixels (H, W) in 0..1 -> (size, size) float32 in 0..1: crop, CLAHE, resize."""
    img = np.asarray(pixels, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D grey film, got shape {img.shape}")
    r0, r1, c0, c1 = crop_box(img.shape, spec.crop)
    img = img[r0:r1, c0:c1]
    if spec.clahe:
        img = apply_clahe(img)
    return np.ascontiguousarray(resize(img, (size, size), spec.resize), dtype=np.float32)


def normalise(grid: np.ndarray, spec: Preprocess, channels: int) -> np.ndarray:
    """(..., size, size) in 0..1 -> (..., size, size, channels) standardised with the card's mean/std.

    Grey films are copied to every channel (the method's 3-channel DenseNet input).
    """
    x = np.repeat(np.asarray(grid, dtype=np.float32)[..., None], channels, axis=-1)
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(-1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(-1)
    return (x - mean) / std


def prepare(pixels: np.ndarray, card: ModelCard) -> np.ndarray:
    """One film's display pixels -> the model's (size, size, channels) float32 input."""
    grid = to_model_grid(pixels, card.preprocess, card.input_size)
    return normalise(grid, card.preprocess, card.input_channels)


def film_map(model_map: np.ndarray, film_shape: tuple[int, int], crop: str) -> np.ndarray:
    """A map on the model grid (h, w) -> the film's (rows, cols), zero outside the crop box.

    Inverse of ``to_model_grid``'s geometry, so Grad-CAM peaks land where the reader looks.
    """
    r0, r1, c0, c1 = crop_box(film_shape, crop)
    rows, cols = (int(s) for s in film_shape[:2])
    m = np.asarray(model_map, dtype=np.float32)
    inside = cv2.resize(m, (c1 - c0, r1 - r0), interpolation=cv2.INTER_LINEAR)
    if (r0, r1, c0, c1) == (0, rows, 0, cols):
        return inside  # the model saw the whole film: no zero frame to paste into
    out = np.zeros((rows, cols), dtype=np.float32)
    out[r0:r1, c0:c1] = inside
    return out
