"""Bad input: every case raises one FilmError with a one-line reason naming the file."""

from __future__ import annotations

import logging
import os
import shutil
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from io_builders import save
from pydicom.pixels import get_decoder
from pydicom.uid import JPEGLSLossless

from cxrviewer.io import (
    CorruptFilmError,
    FilmError,
    NotAFilmError,
    UnreadableFilmError,
    UnsupportedFilmError,
    load_film,
)


def expect_film_error(path, error_type=FilmError, *fragments) -> FilmError:
    """load_film(path) must raise ``error_type``: one line, file name first, reason after."""
    with pytest.raises(FilmError) as caught:
        load_film(path)
    error = caught.value
    message = str(error)
    assert isinstance(error, error_type), f"{type(error).__name__}: {message}"
    assert message.startswith(f"{Path(path).name}: "), message
    assert "\n" not in message and len(message) < 400, message
    for fragment in fragments:
        assert fragment in message, message
    return error


def _copy(src: Path, dst: Path, data: bytes | None = None) -> Path:
    dst.write_bytes(src.read_bytes() if data is None else data)
    return dst


# ------------------------------------------------------------------ empty, text, junk


@pytest.mark.parametrize("name", ["empty.dcm", "empty.png", "empty"])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    expect_film_error(path, NotAFilmError, "empty")


@pytest.mark.parametrize("name", ["notes.dcm", "notes.png", "notes.jpg"])
def test_text_file_with_film_name(tmp_path, name):
    path = tmp_path / name
    path.write_text("Patient films are in the other folder.\nSee you tomorrow — Zoë\n" * 5)
    expect_film_error(path, NotAFilmError, "content is text", Path(name).suffix)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.png"
    path.write_bytes(np.random.default_rng(2).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    expect_film_error(path, NotAFilmError, "not DICOM, PNG, JPEG or TIFF")


# -------------------------------------------------------------------------- DICOM


def test_truncated_jpeg_dicom(rsna_path, tmp_path):
    data = rsna_path.read_bytes()
    path = _copy(rsna_path, tmp_path / "half.dcm", data[: len(data) // 2])
    expect_film_error(path, CorruptFilmError, "truncated")


def test_truncated_uncompressed_dicom(nih_dx_path, tmp_path):
    data = nih_dx_path.read_bytes()
    path = _copy(nih_dx_path, tmp_path / "half.dcm", data[: len(data) // 2])
    expect_film_error(path, CorruptFilmError, "pixel data")


def test_dicom_cut_inside_header(rsna_path, tmp_path):
    path = _copy(rsna_path, tmp_path / "head-only.dcm", rsna_path.read_bytes()[:600])
    expect_film_error(path, FilmError, "no pixel data")


def test_dicom_without_pixel_data(nih_dx_path, tmp_path):
    ds = pydicom.dcmread(nih_dx_path)
    del ds.PixelData
    expect_film_error(save(ds, tmp_path / "no-pixels.dcm"), NotAFilmError, "no pixel data")


@pytest.mark.parametrize(
    "uid, fragment",
    [
        ("1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level"),
        ("1.2.3.4.5.6.7", "unknown transfer syntax 1.2.3.4.5.6.7"),
    ],
)
def test_unsupported_transfer_syntax(rsna_path, tmp_path, uid, fragment):
    ds = pydicom.dcmread(rsna_path)
    ds.file_meta.TransferSyntaxUID = uid
    path = tmp_path / "unsupported.dcm"
    ds.save_as(path)  # pixel bytes unchanged, syntax relabelled
    expect_film_error(path, UnsupportedFilmError, fragment)


def test_pixel_data_that_is_not_the_announced_jpeg(rsna_path, tmp_path):
    ds = pydicom.dcmread(rsna_path)
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8\xff\xe0" + bytes(4000)])
    expect_film_error(save(ds, tmp_path / "bad-jpeg.dcm"), CorruptFilmError, "cannot be decoded")


def test_dicom_with_zero_rows(nih_dx_path, tmp_path):
    ds = pydicom.dcmread(nih_dx_path)
    ds.Rows = 0
    expect_film_error(save(ds, tmp_path / "zero.dcm"), CorruptFilmError, "0x1024")


# ------------------------------------------------------------------------- raster


def test_corrupt_png(nih_png_dir, tmp_path):
    data = bytearray(sorted(nih_png_dir.glob("*.png"))[0].read_bytes())
    data[2000:2400] = bytes(400)  # inside the image data: CRC and inflate fail
    path = tmp_path / "corrupt.png"
    path.write_bytes(bytes(data))
    expect_film_error(path, CorruptFilmError, "PNG data cannot be decoded")


@pytest.mark.parametrize("source", ["nih/png1024", "misc"])
def test_truncated_raster(data_dir, tmp_path, source):
    src = sorted(p for p in (data_dir / source).iterdir() if p.suffix in (".png", ".jpg"))[0]
    data = src.read_bytes()
    path = _copy(src, tmp_path / f"cut{src.suffix}", data[: len(data) * 2 // 3])
    expect_film_error(path, CorruptFilmError, "cannot be decoded")


def test_png_header_without_image_data(tmp_path):
    path = tmp_path / "header-only.png"
    path.write_bytes(_png_bytes(512, 512, idat=b""))
    expect_film_error(path, CorruptFilmError)


# ---------------------------------------------------------------- huge dimensions


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_bytes(width: int, height: int, idat: bytes | None = None) -> bytes:
    """A well-formed PNG header for an 8-bit grey image of the given size."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    if idat is None:
        idat = zlib.compress(bytes(width + 1) * 4)  # the first rows only
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def test_huge_png_is_refused_from_its_header(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_bytes(20000, 20000))
    expect_film_error(path, UnsupportedFilmError, "20000x20000", "16384 px per side")


def test_huge_jpeg_is_refused_from_its_header(data_dir, tmp_path):
    data = bytearray((data_dir / "misc/16747_3_1.jpg").read_bytes())
    sof = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
    data[sof + 5 : sof + 9] = struct.pack(">HH", 20000, 20000)
    path = tmp_path / "huge.jpg"
    path.write_bytes(bytes(data))
    expect_film_error(path, UnsupportedFilmError, "20000x20000")


def test_huge_tiff_is_refused_from_its_header(tmp_path):
    path = tmp_path / "huge.tif"
    assert cv2.imwrite(str(path), np.zeros((16, 16), np.uint8))
    data = bytearray(path.read_bytes())
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
    for i in range(count):
        at = ifd + 2 + 12 * i
        tag, kind = struct.unpack(order + "HH", data[at : at + 4])
        if tag in (256, 257):
            fmt = order + ("H" if kind == 3 else "I")
            data[at + 8 : at + 8 + struct.calcsize(fmt)] = struct.pack(fmt, 20000)
    path.write_bytes(bytes(data))
    expect_film_error(path, UnsupportedFilmError, "20000x20000")


def test_huge_dicom_is_refused_from_its_header(nih_dx_path, tmp_path):
    ds = pydicom.dcmread(nih_dx_path)
    ds.Rows = ds.Columns = 20000
    expect_film_error(save(ds, tmp_path / "huge.dcm"), UnsupportedFilmError, "20000x20000")


def test_many_megapixels_is_refused(tmp_path):
    path = tmp_path / "wide.png"
    path.write_bytes(_png_bytes(16000, 9000))  # each side allowed, 144 Mpx is not
    expect_film_error(path, UnsupportedFilmError, "Mpx")


# ------------------------------------------------------------------- unreadable


def test_missing_file(tmp_path):
    expect_film_error(tmp_path / "gone.dcm", UnreadableFilmError, "not found")


def test_folder_instead_of_file(tmp_path):
    folder = tmp_path / "films.png"
    folder.mkdir()
    expect_film_error(folder, UnreadableFilmError, "folder")


def test_broken_symlink(tmp_path):
    link = tmp_path / "link.dcm"
    link.symlink_to(tmp_path / "missing-target.dcm")
    expect_film_error(link, UnreadableFilmError, "not found")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads anything")
def test_permission_denied(nih_png_dir, tmp_path):
    path = tmp_path / "locked.png"
    shutil.copy(sorted(nih_png_dir.glob("*.png"))[0], path)
    path.chmod(0)
    try:
        expect_film_error(path, UnreadableFilmError, "permission denied")
    finally:
        path.chmod(0o644)


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs a device file")
def test_device_file():
    expect_film_error(Path("/dev/null"), UnreadableFilmError, "not a regular file")


def test_not_a_path():
    with pytest.raises(FilmError) as caught:
        load_film(None)  # type: ignore[arg-type]
    assert "not a file path" in str(caught.value)


# ------------------------------------------------------- nothing else escapes


CUT_SOURCES = [
    "dicom/rsna-cr/0004cfab-14fd-4e49-80ba-63a80b6bddd6.dcm",
    "dicom/nih-dx/test2.dcm",
    "dicom/misc/not-a-chest-ot.dcm",
    "nih/png1024/00000001_000.png",
    "misc/16747_3_1.jpg",
]


@pytest.mark.parametrize("rel", CUT_SOURCES)
def test_any_truncation_raises_only_film_errors(data_dir, tmp_path, rel):
    """Cut each film at many points: a cut film loads or raises a FilmError, nothing else."""
    src = data_dir / rel
    data = src.read_bytes()
    cuts = sorted({4, 64, 131, 132, 200, 400, 800, *range(1000, len(data), len(data) // 12)})
    for cut in cuts:
        path = _copy(src, tmp_path / f"cut-{cut}{src.suffix}", data[:cut])
        try:
            load_film(path)
        except FilmError as error:
            assert str(error).startswith(path.name) and "\n" not in str(error)
        # any other exception type fails the test by propagating


def test_flipped_bytes_raise_only_film_errors(data_dir, tmp_path):
    """Damage inside the header of each kind of file: loads, warns or raises a FilmError."""
    rng = np.random.default_rng(3)
    for rel in CUT_SOURCES:
        src = data_dir / rel
        original = src.read_bytes()
        for attempt in range(8):
            data = bytearray(original)
            for offset in rng.integers(0, min(len(data), 1200), 6):
                data[offset] = int(rng.integers(0, 256))
            path = _copy(src, tmp_path / f"flip-{attempt}{src.suffix}", bytes(data))
            try:
                load_film(path)
            except FilmError as error:
                assert "\n" not in str(error)


def test_pydicom_messages_with_header_bytes_never_reach_logs(rsna_path, tmp_path, caplog):
    """A damaged character set makes pydicom warn with the raw header, patient name
    included; neither the warning nor pydicom's log record may get out."""
    ds = pydicom.dcmread(rsna_path)
    patient = str(ds.PatientName)
    data = bytearray(rsna_path.read_bytes())
    charset = data.index(b"ISO_IR 100")
    data[charset + 3] = ord("7")  # "ISO7IR 100": an unknown encoding
    path = _copy(rsna_path, tmp_path / "odd-charset.dcm", bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        caplog.set_level(logging.DEBUG)
        film = load_film(path)
    assert film.identifiers.values["PatientID"] == ds.PatientID
    assert not [w for w in caught if "pydicom" in w.filename]
    assert not [r for r in caplog.records if r.name.startswith("pydicom")]
    assert patient not in caplog.text


def test_missing_decoder_names_the_transfer_syntax(rsna_path, tmp_path):
    """As if pylibjpeg-libjpeg were not installed: JPEG-LS has no other decoder."""
    decoder = get_decoder(JPEGLSLossless)
    assert decoder.available_plugins == ("pylibjpeg",)
    ds = pydicom.dcmread(rsna_path)
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    path = tmp_path / "jpeg-ls.dcm"
    ds.save_as(path)
    decoder.remove_plugin("pylibjpeg")
    try:
        expect_film_error(
            path, UnsupportedFilmError, "JPEG-LS Lossless Image Compression", "no decoder installed"
        )
    finally:
        decoder.add_plugin("pylibjpeg", ("pydicom.pixels.decoders.pylibjpeg", "_decode_frame"))
    assert decoder.is_available
