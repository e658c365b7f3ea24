"""PNG, JPEG and TIFF films: the shared sets, bit depths, colour to grey, content dispatch."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pydicom
import pytest
from io_builders import DATA
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from cxrviewer.io import apply_window, load_film


def _read_unchanged(path):
    return cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)


def _sample(folder, n):
    files = sorted(p for p in (DATA / folder).iterdir() if p.is_file())
    step = max(1, len(files) // n)
    return files[::step][:n]


NIH_PNGS = _sample("nih/png1024", 5) + _sample("nih/png512", 2)
KERMANY = [p for d in ("train/NORMAL", "test/PNEUMONIA") for p in _sample(f"kermany-pneumonia/{d}", 2)]
COVID = _sample("covid-mhh/png", 4)
MISC = _sample("misc", 10)


def _ids(paths):
    return [p.name for p in paths]


@pytest.mark.parametrize("path", NIH_PNGS + COVID, ids=_ids(NIH_PNGS + COVID))
def test_grey_png_sets_load_as_stored(path):
    stored = _read_unchanged(path)
    film = load_film(path)
    assert film.meta.source_format == "png"
    assert film.meta.photometric == "MONOCHROME2" and film.meta.bits_stored == 8
    assert (film.meta.rows, film.meta.columns) == stored.shape
    np.testing.assert_array_equal(film.raw, stored)
    np.testing.assert_allclose(film.pixels, stored / 255.0, atol=1e-7)
    assert film.warnings == []  # frontal, large enough, no header to doubt


@pytest.mark.parametrize("path", KERMANY, ids=_ids(KERMANY))
def test_kermany_jpegs_are_grey_in_rgb_and_small(path):
    stored = _read_unchanged(path)
    film = load_film(path)
    assert film.meta.source_format == "jpeg" and film.meta.photometric == "RGB"
    assert stored.shape == (224, 224, 3)
    np.testing.assert_array_equal(film.raw, stored[..., 0])  # equal channels: exact grey
    assert film.raw.dtype == np.uint8
    assert [w for w in film.warnings if "224x224" in w and "256" in w]
    assert not [w for w in film.warnings if "colour" in w]


@pytest.mark.parametrize("path", MISC, ids=_ids(MISC))
def test_misc_films_load(path):
    film = load_film(path)
    stored = _read_unchanged(path)
    assert film.pixels.shape == stored.shape[:2]
    assert film.pixels.dtype == np.float32 and 0 <= film.pixels.min() <= film.pixels.max() <= 1
    assert film.pixels.std() > 0.05


def test_nih_thumbnail_warns_small(data_dir):
    path = sorted((data_dir / "nih/thumbs64/train/0_normal").glob("*.png"))[0]
    film = load_film(path)
    assert film.shape == (64, 64)
    assert any("64x64" in w for w in film.warnings)


def test_full_range_preset_reproduces_raster_pixels(nih_png_dir):
    film = load_film(sorted(nih_png_dir.glob("*.png"))[0])
    preset = film.meta.window_presets[0]
    assert preset.name == "FULL RANGE"
    np.testing.assert_allclose(
        apply_window(film.raw, preset.center, preset.width), film.pixels, atol=1e-6
    )


# --------------------------------------------------------------------- 16-bit


def _sixteen_bit_levels(nih_png_dir):
    """A real film spread over all 65536 levels: high byte the film, low byte noise."""
    grey = _read_unchanged(sorted(nih_png_dir.glob("*.png"))[0])
    low = np.random.default_rng(1).integers(0, 256, grey.shape)
    levels = (grey.astype(np.uint32) * 256 + low).astype(np.uint16)
    levels[0, :2] = (0, 65535)
    return levels


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_sixteen_bit_grey_keeps_every_level(nih_png_dir, tmp_path, suffix):
    levels = _sixteen_bit_levels(nih_png_dir)
    path = tmp_path / f"sixteen{suffix}"
    assert cv2.imwrite(str(path), levels)
    film = load_film(path)
    assert film.raw.dtype == np.uint16 and film.meta.bits_stored == 16
    np.testing.assert_array_equal(film.raw, levels)
    np.testing.assert_array_equal(np.rint(film.pixels.astype(np.float64) * 65535), levels)
    assert np.unique(film.pixels).size == np.unique(levels).size


def test_sixteen_bit_rgb_converts_in_float(nih_png_dir, tmp_path):
    levels = _sixteen_bit_levels(nih_png_dir).astype(np.float64)
    rgb = np.stack([levels, levels * 0.9, levels * 0.7], axis=-1).astype(np.uint16)
    path = tmp_path / "rgb16.png"
    assert cv2.imwrite(str(path), rgb[..., ::-1])  # OpenCV writes BGR
    film = load_film(path)
    expected = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    np.testing.assert_allclose(film.raw, expected, atol=0.02)  # far below one 16-bit level
    np.testing.assert_allclose(film.pixels, expected / 65535, atol=1e-6)
    # An 8-bit detour would leave at most 256 distinct grey levels.
    assert np.unique(film.pixels).size > 20000


# ------------------------------------------------------------- RGB and RGBA


def test_rgb_with_equal_channels_is_exact(nih_png_dir, tmp_path):
    grey = _read_unchanged(sorted(nih_png_dir.glob("*.png"))[1])
    path = tmp_path / "grey-as-rgb.png"
    cv2.imwrite(str(path), cv2.merge([grey, grey, grey]))
    film = load_film(path)
    assert film.meta.photometric == "RGB"
    np.testing.assert_array_equal(film.raw, grey)
    assert film.warnings == []


def test_coloured_image_is_converted_with_a_warning(nih_png_dir, tmp_path):
    grey = _read_unchanged(sorted(nih_png_dir.glob("*.png"))[1]).astype(np.float64)
    bgr = np.stack([grey * 0.2, grey * 0.6, grey], axis=-1).astype(np.uint8)  # orange tint
    path = tmp_path / "tinted.png"
    cv2.imwrite(str(path), bgr)
    film = load_film(path)
    expected = 0.299 * bgr[..., 2] + 0.587 * bgr[..., 1] + 0.114 * bgr[..., 0]
    np.testing.assert_allclose(film.raw, expected, atol=1e-3)
    assert any("colour PNG converted to grey" in w for w in film.warnings)


@pytest.mark.parametrize("alpha_value, warns", [(255, False), (128, True)])
def test_rgba_drops_alpha(nih_png_dir, tmp_path, alpha_value, warns):
    grey = _read_unchanged(sorted(nih_png_dir.glob("*.png"))[2])
    alpha = np.full_like(grey, 255)
    alpha[:10, :10] = alpha_value
    path = tmp_path / "rgba.png"
    cv2.imwrite(str(path), cv2.merge([grey, grey, grey, alpha]))
    film = load_film(path)
    assert film.meta.photometric == "RGBA"
    np.testing.assert_array_equal(film.raw, grey)
    assert any("alpha" in w for w in film.warnings) == warns


# ------------------------------------------------------------- content dispatch


def test_format_follows_content_not_name(data_dir, nih_png_dir, tmp_path):
    png_named_dcm = tmp_path / "really-a-png.dcm"
    shutil.copy(sorted(nih_png_dir.glob("*.png"))[0], png_named_dcm)
    dicom_without_suffix = tmp_path / "1.2.840.99999.7"
    shutil.copy(data_dir / "dicom/nih-dx/test1.dcm", dicom_without_suffix)
    jpeg_named_png = tmp_path / "photo.png"
    shutil.copy(data_dir / "misc/16747_3_1.jpg", jpeg_named_png)

    assert load_film(png_named_dcm).meta.source_format == "png"
    assert load_film(dicom_without_suffix).meta.source_format == "dicom"
    assert load_film(jpeg_named_png).meta.source_format == "jpeg"


def test_unicode_path(nih_png_dir, tmp_path):
    folder = tmp_path / "Röntgen 胸部"
    folder.mkdir()
    path = folder / "Thorax ä.png"
    shutil.copy(sorted(nih_png_dir.glob("*.png"))[0], path)
    assert load_film(path).shape == (1024, 1024)


def test_bare_dicom_without_preamble_loads(data_dir, tmp_path):
    """Old exports write the dataset without the 128-byte preamble and file meta."""
    ds = pydicom.dcmread(data_dir / "dicom/nih-dx/test1.dcm")
    buffer = DicomBytesIO()
    write_dataset(buffer, ds)  # implicit VR little endian, as read
    path = tmp_path / "legacy"
    path.write_bytes(buffer.getvalue())
    assert path.read_bytes()[:2] == b"\x08\x00"  # starts with group 0008, no preamble
    film = load_film(path)
    np.testing.assert_allclose(film.pixels, ds.pixel_array / 255.0, atol=1e-6)
