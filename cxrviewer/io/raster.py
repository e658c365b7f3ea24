"""PNG, JPEG and TIFF films through OpenCV, converted to grey at their native bit depth."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from cxrviewer.io.film import CorruptFilmError, Film, FilmMeta, UnsupportedFilmError, WindowPreset
from cxrviewer.io.limits import check_dimensions
from cxrviewer.io.window import window_for_range

FORMAT_NAMES = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF"}
# ITU-R BT.601 luma weights, the ones OpenCV's cvtColor and Pillow's "L" mode use.
_LUMA_RGB = (0.299, 0.587, 0.114)
# Mean channel difference (fraction of full scale) above which a film is really in colour
# rather than grey stored as RGB; JPEG chroma noise in grey films stays far below it.
_COLOUR_TOLERANCE = 0.02


def read_raster(path: Path, data: bytes, kind: str) -> Film:
    """Decode a PNG/JPEG/TIFF held in ``data`` into a Film (``kind`` from the magic bytes).

    Raster films are display images already: ``pixels = grey / max of the dtype``, no
    automatic window. 16-bit files keep every level: the conversion runs in float32.
    """
    name = FORMAT_NAMES[kind]
    width, height = header_dimensions(path, data, kind)
    check_dimensions(path, width, height)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise CorruptFilmError(path, f"{name} data cannot be decoded (damaged or truncated)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]

    warnings: list[str] = []
    photometric = "MONOCHROME2"
    if image.ndim == 2:
        grey = image
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        photometric = "RGB" if image.shape[2] == 3 else "RGBA"
        grey, is_colour = _bgr_to_grey(image[..., :3])
        if is_colour:
            warnings.append(f"colour {name} converted to grey: it may not be a radiograph")
        if image.shape[2] == 4 and image[..., 3].min() < _dtype_max(image.dtype):
            warnings.append("transparent pixels: the alpha channel was ignored")
    else:
        raise UnsupportedFilmError(path, f"{name} with {image.shape[-1]} channels is not supported")

    pixels, applied, top = _to_unit(grey, image.dtype)
    meta = FilmMeta(
        source_format=kind,
        rows=int(grey.shape[0]),
        columns=int(grey.shape[1]),
        photometric=photometric,
        bits_stored=image.dtype.itemsize * 8 if image.dtype.kind in "ui" else None,
        window_presets=[WindowPreset(*window_for_range(0, top), "FULL RANGE")],
        applied_voi=applied,
    )
    return Film(path=path, pixels=pixels, raw=grey, meta=meta, warnings=warnings)


def luminance(colour: np.ndarray, order: str = "BGR") -> np.ndarray:
    """Grey from three colour channels, float32 in the input's scale (no 16-bit loss)."""
    r, g, b = _LUMA_RGB
    weights = np.array([b, g, r] if order == "BGR" else [r, g, b], dtype=np.float32)
    return np.tensordot(colour.astype(np.float32), weights, axes=([2], [0])).astype(np.float32)


def _bgr_to_grey(bgr: np.ndarray) -> tuple[np.ndarray, bool]:
    """(grey, really in colour). Grey saved as RGB keeps its exact values and dtype."""
    b, g, r = bgr[..., 0], bgr[..., 1], bgr[..., 2]
    if np.array_equal(b, g) and np.array_equal(g, r):
        return b.copy(), False
    grey = luminance(bgr, order="BGR")
    full = float(_dtype_max(bgr.dtype)) if bgr.dtype.kind in "ui" else max(float(grey.max()), 1.0)
    spread = (
        np.abs(r.astype(np.float32) - g).mean() + np.abs(g.astype(np.float32) - b).mean()
    ) / 2
    return grey, spread > _COLOUR_TOLERANCE * full


def _to_unit(grey: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, str, float]:
    """(pixels 0..1, description, full-scale value)."""
    if dtype.kind in "ui":
        top = float(_dtype_max(dtype))
        pixels = np.asarray(grey, dtype=np.float32) * np.float32(1.0 / top)
        if dtype.kind == "i":
            np.clip(pixels, 0.0, 1.0, out=pixels)
        return pixels, f"none (display image; grey / {top:g})", top
    # Floating-point TIFF: already 0..1 when written for display, else stretched.
    values = np.asarray(grey, dtype=np.float32)
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if low >= 0.0 and high <= 1.0:
        return np.nan_to_num(values, nan=0.0), "none (floating-point display image)", 1.0
    span = high - low if high > low else 1.0
    pixels = np.clip(np.nan_to_num((values - low) / span, nan=0.0), 0.0, 1.0).astype(np.float32)
    return pixels, f"min-max scaled floating-point image ({low:g}..{high:g})", high


def _dtype_max(dtype: np.dtype) -> int:
    return int(np.iinfo(dtype).max)


# ------------------------------------------------------------ header dimensions


def header_dimensions(path: Path, data: bytes, kind: str) -> tuple[int, int]:
    """(width, height) from the file header, without decoding pixels."""
    try:
        if kind == "png":
            return _png_dimensions(data)
        if kind == "jpeg":
            return _jpeg_dimensions(data)
        return _tiff_dimensions(data)
    except (struct.error, IndexError, ValueError) as exc:
        raise CorruptFilmError(
            path, f"{FORMAT_NAMES[kind]} header is damaged or truncated ({exc})"
        ) from exc


def _png_dimensions(data: bytes) -> tuple[int, int]:
    if data[12:16] != b"IHDR":
        raise ValueError("no IHDR chunk")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# SOF markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_dimensions(data: bytes) -> tuple[int, int]:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"no JPEG marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            break
        pos += 2 + length
    raise ValueError("no JPEG frame header")


def _tiff_dimensions(data: bytes) -> tuple[int, int]:
    order = "<" if data[:2] == b"II" else ">"
    (version,) = struct.unpack(order + "H", data[2:4])
    if version == 43:  # BigTIFF: 8-byte offsets, 20-byte entries
        (offset,) = struct.unpack(order + "Q", data[8:16])
        (count,) = struct.unpack(order + "Q", data[offset : offset + 8])
        entry_at, entry_size, count_size = offset + 8, 20, 8
    else:
        (offset,) = struct.unpack(order + "I", data[4:8])
        (count,) = struct.unpack(order + "H", data[offset : offset + 2])
        entry_at, entry_size, count_size = offset + 2, 12, 4
    found: dict[int, int] = {}
    for i in range(count):
        entry = data[entry_at + i * entry_size : entry_at + (i + 1) * entry_size]
        tag, field_type = struct.unpack(order + "HH", entry[:4])
        if tag not in (256, 257):  # ImageWidth, ImageLength
            continue
        value = entry[4 + count_size :]
        fmt = {3: "H", 4: "I", 16: "Q"}.get(field_type)
        if fmt is None:
            raise ValueError(f"TIFF size tag of type {field_type}")
        found[tag] = struct.unpack(order + fmt, value[: struct.calcsize(fmt)])[0]
    if 256 not in found or 257 not in found:
        raise ValueError("no TIFF width/length tags")
    return found[256], found[257]
