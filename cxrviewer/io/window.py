"""DICOM VOI windowing of modality values into 0..1 display grey levels."""

from __future__ import annotations

import numpy as np
from pydicom import Dataset
from pydicom.pixels import apply_windowing

VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


def apply_window(
    raw: np.ndarray,
    center: float,
    width: float,
    invert: bool = False,
    function: str = "LINEAR",
) -> np.ndarray:
    """Window modality values ``raw`` to float32 0..1 (1 = white), optionally inverted.

    Same mapping as DICOM PS3.3 C.11.2.1.2 and pydicom's ``apply_windowing`` with an
    output range of 0..1. The common LINEAR case is computed here in float32 (about ten
    times faster than pydicom's float64 masks, which matters while the reader drags the
    window); LINEAR_EXACT and SIGMOID go through pydicom itself.
    ``invert=True`` is the MONOCHROME1 step that follows the VOI: ``1 - window``.
    """
    function = (function or "LINEAR").upper()
    if function not in VOI_FUNCTIONS:
        raise ValueError(f"unknown VOI LUT function {function!r}")
    width = float(width)
    center = float(center)
    if function == "LINEAR":
        # DICOM LINEAR needs width >= 1; a narrower request is the thinnest legal window.
        width = max(width, 1.0)
        if width == 1.0:
            # Degenerate window: a threshold at the centre (pydicom's formula divides by 0).
            out = (np.asarray(raw) > center - 0.5).astype(np.float32)
        else:
            c = np.float32(center - 0.5)
            scale = np.float32(1.0 / (width - 1.0))
            out = np.asarray(raw, dtype=np.float32) - c
            out *= scale
            out += np.float32(0.5)
            np.clip(out, 0.0, 1.0, out=out)
    else:
        width = max(width, np.finfo(np.float32).tiny)
        out = apply_windowing(np.asarray(raw), _unit_range_voi(center, width, function))
        out = np.clip(out, 0.0, 1.0).astype(np.float32)
    if invert:
        np.subtract(np.float32(1.0), out, out=out)
    return out


def _unit_range_voi(center: float, width: float, function: str) -> Dataset:
    """A minimal VOI LUT module whose windowing output range is exactly 0..1.

    pydicom scales the window output to the stored range 0..2**BitsStored - 1 of an
    unsigned image without rescale, so BitsStored = 1 gives 0..1 directly.
    """
    voi = Dataset()
    voi.PhotometricInterpretation = "MONOCHROME2"
    voi.BitsStored = 1
    voi.PixelRepresentation = 0
    voi.WindowCenter = center
    voi.WindowWidth = width
    voi.VOILUTFunction = function
    return voi


def window_for_range(low: float, high: float) -> tuple[float, float]:
    """DICOM (center, width) whose LINEAR window maps ``low`` to 0 and ``high`` to 1.

    From the LINEAR formula ``y = (x - (c - 0.5)) / (w - 1) + 0.5``: the window spans
    ``c - 0.5 ± (w - 1) / 2``, so ``w = high - low + 1`` and ``c = (low + high) / 2 + 0.5``.
    For 8-bit data ``window_for_range(0, 255) == (128, 256)``, i.e. ``x / 255``.
    """
    high = max(float(high), float(low) + 1.0)  # at least one modality unit wide
    return (float(low) + high) / 2.0 + 0.5, high - float(low) + 1.0
