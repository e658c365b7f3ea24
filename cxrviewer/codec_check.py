"""Prove the pixel-data plugins work here: encode a film in memory, decode it back two ways.

A frozen app can lose pylibjpeg's plugins silently: pylibjpeg finds them through package
entry points, which a freezer does not follow, and pydicom then falls back to Pillow for
JPEG Baseline and JPEG 2000 (or fails for JPEG Lossless and JPEG-LS). So each check
encodes the film's pixels as one transfer syntax, decodes the result through the app's
loader (what a reader gets) and through pydicom's ``pylibjpeg`` plugin by name (what
proves the plugin is installed), and compares both with the pixels it started from.

The encoded datasets carry only the image pixel module: no header of the source file
(so no patient identifiers) is copied. The loader reads files, so each one is written to
a private temporary folder for that one call and removed at once.
"""

from __future__ import annotations

import io
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# A pixel-exact codec must give the same values back; JPEG Baseline at quality 95 stays
# within a few grey levels of 255 on a radiograph (mean error measured here: 0.6).
JPEG_QUALITY = 95
JPEG_MAX_MEAN_ERROR = 2.0
STORED_BITS = 12  # what the lossless round trips store: a typical CR/DX bit depth


@dataclass(frozen=True)
class CodecCheck:
    """One round trip: which transfer syntax, which plugin module, whether it held."""

    syntax: str  # transfer syntax name, e.g. "JPEG 2000 Image Compression (Lossless Only)"
    module: str  # the pylibjpeg plugin that must decode it, e.g. "openjpeg 2.6.0"
    ok: bool
    detail: str
    seconds: float = 0.0


def _module_version(name: str) -> str:
    try:
        module = __import__(name)
    except ImportError as exc:
        return f"{name} (not importable: {exc})"
    return f"{name} {getattr(module, '__version__', '?')}"


def _image_dataset(stored: np.ndarray, bits_stored: int):
    """A minimal DX dataset holding ``stored`` uncompressed: pixel module and file meta only."""
    from pydicom import uid
    from pydicom.dataset import Dataset, FileMetaDataset

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = uid.DigitalXRayImageStorageForPresentation
    ds.file_meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = stored.tobytes()
    return ds


def _encode_lossless(stored: np.ndarray, syntax):
    """pydicom's own compress() with the pylibjpeg encoders (openjpeg, rle)."""
    ds = _image_dataset(stored, STORED_BITS)
    ds.compress(syntax, encoding_plugin="pylibjpeg")
    return ds


def _encode_jpeg_baseline(stored: np.ndarray):
    """8-bit JPEG Baseline made with Pillow (pydicom has no JPEG Baseline encoder)."""
    from PIL import Image
    from pydicom import uid
    from pydicom.encaps import encapsulate

    ds = _image_dataset(stored, 8)
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, "JPEG", quality=JPEG_QUALITY)
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = uid.JPEGBaseline8Bit
    return ds


def _compare(label: str, decoded: np.ndarray, stored: np.ndarray, exact: bool) -> str | None:
    """None when ``decoded`` reproduces ``stored`` (exactly, or within JPEG's error)."""
    if decoded.shape != stored.shape:
        return f"{label} gave shape {decoded.shape}, expected {stored.shape}"
    diff = np.abs(decoded.astype(np.int64) - stored.astype(np.int64))
    if exact and diff.any():
        return f"{label} changed {int((diff > 0).sum())} pixels of a lossless encoding"
    if not exact and diff.mean() > JPEG_MAX_MEAN_ERROR:
        return f"{label} is off by {diff.mean():.1f} grey levels on average"
    return None


def _round_trip(syntax, module: str, stored: np.ndarray, encode, exact: bool, workdir: Path) -> CodecCheck:
    from pydicom.pixels import get_decoder

    from cxrviewer.io import load_film

    name = syntax.name
    t0 = time.perf_counter()
    try:
        ds = encode(stored)
        size = len(ds.PixelData)
        path = workdir / f"round-trip-{syntax}.dcm"
        ds.save_as(path, enforce_file_format=True)
        try:
            film = load_film(path)
        finally:
            path.unlink(missing_ok=True)
        problem = None
        if film.meta.transfer_syntax != name:
            problem = f"the loader read it as {film.meta.transfer_syntax}"
        problem = problem or _compare("the loader", np.asarray(film.raw), stored, exact)
        decoder = get_decoder(syntax)
        if "pylibjpeg" not in decoder.available_plugins:
            missing = "; ".join(decoder.missing_dependencies) or "not registered"
            problem = problem or f"pydicom's pylibjpeg plugin is not available ({missing})"
        else:
            decoded, _ = decoder.as_array(ds, decoding_plugin="pylibjpeg")
            problem = problem or _compare("pylibjpeg", decoded, stored, exact)
    except Exception as exc:  # any failure is the finding; report it in one line
        text = " ".join(str(exc).split()) or type(exc).__name__
        return CodecCheck(name, module, False, f"{type(exc).__name__}: {text[:200]}", time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    if problem:
        return CodecCheck(name, module, False, problem, seconds)
    how = "identical" if exact else f"within {JPEG_MAX_MEAN_ERROR:g} grey levels"
    detail = (f"{stored.shape[1]}x{stored.shape[0]} film encoded in memory ({size / 1e6:.2f} MB), "
              f"decoded {how} by the loader and by pylibjpeg")
    return CodecCheck(name, module, True, detail, seconds)


def run_codec_checks(pixels: np.ndarray) -> list[CodecCheck]:
    """JPEG 2000, JPEG Baseline and RLE round trips of ``pixels`` (a film's 0..1 display image).

    One check per pylibjpeg plugin module: openjpeg (JPEG 2000), libjpeg (JPEG Baseline;
    the same library decodes JPEG Extended, Lossless and JPEG-LS), rle (RLE Lossless).
    """
    from pydicom import uid

    pixels = np.clip(np.nan_to_num(np.asarray(pixels, dtype=np.float32)), 0.0, 1.0)
    stored12 = np.round(pixels * (2**STORED_BITS - 1)).astype(np.uint16)
    stored8 = np.round(pixels * 255).astype(np.uint8)
    with tempfile.TemporaryDirectory(prefix="cxrviewer-codec-") as tmp:
        workdir = Path(tmp)
        return [
            _round_trip(uid.JPEG2000Lossless, _module_version("openjpeg"), stored12,
                        lambda a: _encode_lossless(a, uid.JPEG2000Lossless), True, workdir),
            _round_trip(uid.JPEGBaseline8Bit, _module_version("libjpeg"), stored8,
                        _encode_jpeg_baseline, False, workdir),
            _round_trip(uid.RLELossless, _module_version("rle"), stored12,
                        lambda a: _encode_lossless(a, uid.RLELossless), True, workdir),
        ]
