"""DICOM loading: every shared film, the grayscale display chain, compression, identifiers."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from io_builders import DATA, encapsulate_jpeg, save
from pydicom.dataset import Dataset
from pydicom.pixels import apply_voi, apply_windowing, get_decoder
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from cxrviewer.io import FilmError, apply_window, load_film
from cxrviewer.io.dicom import _apply_voi_lut_item

# ------------------------------------------------------------------ shared films


def test_every_shared_dicom_loads(shared_dicom):
    ds = pydicom.dcmread(shared_dicom)
    film = load_film(shared_dicom)

    assert film.pixels.dtype == np.float32
    assert film.pixels.shape == (ds.Rows, ds.Columns) == film.raw.shape
    assert 0.0 <= film.pixels.min() and film.pixels.max() <= 1.0
    assert film.pixels.std() > 0.05, "a real radiograph has contrast"
    assert film.meta.source_format == "dicom"
    assert film.meta.modality == ds.Modality
    assert film.meta.photometric == ds.PhotometricInterpretation
    assert film.meta.bits_stored == ds.BitsStored
    assert film.meta.transfer_syntax == ds.file_meta.TransferSyntaxUID.name
    assert film.meta.window_presets and film.meta.applied_voi
    assert any(keyword == "Rows" for _, keyword, _ in film.meta.tags)

    # None of the shared films carries VOI or rescale and all are 8-bit: the display is
    # the stored value over 255, inverted for MONOCHROME1.
    assert "WindowCenter" not in ds and "VOILUTSequence" not in ds and "RescaleSlope" not in ds
    expected = ds.pixel_array.astype(np.float64) / 255.0
    if ds.PhotometricInterpretation == "MONOCHROME1":
        expected = 1.0 - expected
    # JPEG decoders (pylibjpeg's libjpeg, Pillow's libjpeg-turbo) may differ by one level
    # where their inverse DCTs round differently; uncompressed films must match exactly.
    compressed = ds.file_meta.TransferSyntaxUID.is_compressed
    np.testing.assert_allclose(film.pixels, expected, atol=(1 / 255 if compressed else 0) + 1e-6)
    assert "no VOI" in film.meta.applied_voi

    # The GUI's window function reproduces the loaded display from the first preset.
    preset = film.meta.window_presets[0]
    again = apply_window(film.raw, preset.center, preset.width, film.meta.invert, preset.function)
    np.testing.assert_allclose(again, film.pixels, atol=1e-6)


def test_rsna_metadata(data_dir):
    path = sorted((data_dir / "dicom/rsna-cr").glob("*.dcm"))[0]
    film = load_film(path)
    meta = film.meta
    assert (meta.modality, meta.body_part, meta.view_position) == ("CR", "CHEST", "PA")
    assert meta.photometric == "MONOCHROME2" and meta.bits_stored == 8
    assert meta.rows == meta.columns == 1024
    assert meta.pixel_spacing == pytest.approx((0.143, 0.143))
    assert meta.series_description == "view: PA"
    assert meta.transfer_syntax == "JPEG Baseline (Process 1)"
    assert film.warnings == []


# ------------------------------------------------------------------ MONOCHROME1


def _inverted_twin(siim_path, tmp_path, *, jpeg: bool):
    ds = pydicom.dcmread(siim_path)
    decoded = load_film(siim_path).raw  # the stored values as the loader decoded them
    inverted = (255 - decoded).astype(np.uint8)
    if jpeg:
        encapsulate_jpeg(ds, inverted, quality=95)
    else:
        ds.set_pixel_data(inverted, "MONOCHROME2", 8)
    ds.PhotometricInterpretation = "MONOCHROME1"
    return save(ds, tmp_path / "twin-monochrome1.dcm")


def test_monochrome1_twin_displays_exactly_like_original(siim_path, tmp_path):
    """Stored values inverted and stored losslessly: the displays must be identical."""
    original = load_film(siim_path)
    twin = load_film(_inverted_twin(siim_path, tmp_path, jpeg=False))
    assert twin.meta.photometric == "MONOCHROME1" and twin.meta.invert
    np.testing.assert_allclose(twin.pixels, original.pixels, atol=1e-6)


def test_monochrome1_jpeg_twin_matches_within_jpeg_rounding(siim_path, tmp_path):
    """Inverted and re-encoded as JPEG Baseline (quality 95), as a real MONOCHROME1 CR is.

    Tolerance: JPEG re-quantisation moves a grey level by at most a few units at sharp
    edges (measured 4/255) and by far less than one on average (0.15/255); allowed here
    8/255 per pixel and 0.5/255 mean. A missing or doubled inversion is off by ~0.4 mean.
    """
    original = load_film(siim_path)
    twin = load_film(_inverted_twin(siim_path, tmp_path, jpeg=True))
    assert twin.meta.transfer_syntax == "JPEG Baseline (Process 1)"
    difference = np.abs(twin.pixels - original.pixels)
    assert difference.max() <= 8 / 255
    assert difference.mean() <= 0.5 / 255


def test_shared_fake_monochrome1_follows_its_header(data_dir):
    """The shared 'fake' twin: the display always follows the header (1 - stored/255).

    The file as shipped differs from the original by one header byte only (MONOCHROME2 ->
    MONOCHROME1, same JPEG stream), so the correct display is the original's negative; if
    the file is regenerated with inverted stored values it must match the original.
    """
    original_path = data_dir / "dicom/misc/siim-pneumothorax-cr.dcm"
    fake_path = data_dir / "dicom/misc/siim-fake-monochrome1.dcm"
    original, fake = load_film(original_path), load_film(fake_path)
    fake_stored = pydicom.dcmread(fake_path).pixel_array.astype(np.float64)
    original_stored = pydicom.dcmread(original_path).pixel_array.astype(np.float64)

    assert fake.meta.photometric == "MONOCHROME1"
    one_level = 1 / 255 + 1e-6  # JPEG decoders may round one level apart
    np.testing.assert_allclose(fake.pixels, 1.0 - fake_stored / 255.0, atol=one_level)
    if np.array_equal(fake_stored, original_stored):  # header-only relabel (current data)
        np.testing.assert_allclose(fake.pixels, 1.0 - original.pixels, atol=1e-6)
    else:  # a true re-encoding of the inverted film
        assert np.abs(fake.pixels - original.pixels).mean() <= 0.5 / 255


# --------------------------------------------------- Modality LUT -> VOI -> inversion


def _sixteen_bit_film(nih_dx_path, tmp_path, *, photometric="MONOCHROME2", name="sixteen.dcm"):
    """A real film spread over all 16 stored bits, with rescale and two window presets."""
    ds = pydicom.dcmread(nih_dx_path)
    rng = np.random.default_rng(0)
    stored = ds.pixel_array.astype(np.uint16) * 256 + rng.integers(0, 256, ds.pixel_array.shape)
    stored = stored.astype(np.uint16)
    stored[0, :2] = (0, 65535)  # both ends of the 16-bit range
    ds.set_pixel_data(stored, photometric, 16)
    ds.RescaleSlope = 2
    ds.RescaleIntercept = -1024
    ds.RescaleType = "US"
    ds.WindowCenter = [60000, 20000]
    ds.WindowWidth = [80000, 30000]
    ds.WindowCenterWidthExplanation = ["SOFT", "DENSE"]
    return save(ds, tmp_path / name), stored


def _linear_window(values, center, width):
    return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_sixteen_bit_rescale_then_window_then_inversion(nih_dx_path, tmp_path, photometric):
    path, stored = _sixteen_bit_film(nih_dx_path, tmp_path, photometric=photometric)
    film = load_film(path)

    modality = stored.astype(np.float64) * 2 - 1024  # up to 130046: overflows 16 bits
    expected = _linear_window(modality, 60000, 80000)
    if photometric == "MONOCHROME1":
        expected = 1.0 - expected
    np.testing.assert_allclose(film.pixels, expected, atol=2e-6)

    assert film.meta.bits_stored == 16
    assert film.raw.dtype == np.float32
    assert float(film.raw.max()) == modality.max() == 65535 * 2 - 1024
    np.testing.assert_array_equal(film.raw, modality.astype(np.float32))
    assert [(p.center, p.width, p.name) for p in film.meta.window_presets] == [
        (60000, 80000, "SOFT"),
        (20000, 30000, "DENSE"),
    ]
    assert "SOFT" in film.meta.applied_voi and film.meta.modality_units == "US"
    assert film.meta.invert == (photometric == "MONOCHROME1")

    # The order matters: inverting stored values first, or windowing stored values
    # without the rescale, gives a visibly different film.
    wrong_order = 1.0 - _linear_window((65535 - stored) * 2.0 - 1024, 60000, 80000)
    no_rescale = _linear_window(stored.astype(np.float64), 60000, 80000)
    assert np.abs(wrong_order - expected).mean() > 0.05
    assert np.abs(no_rescale - expected).mean() > 0.05


def test_signed_sixteen_bit_without_voi_gets_automatic_window(nih_dx_path, tmp_path):
    ds = pydicom.dcmread(nih_dx_path)
    stored = (ds.pixel_array.astype(np.int32) * 200 - 25000).astype(np.int16)
    ds.set_pixel_data(stored, "MONOCHROME2", 16)
    assert ds.PixelRepresentation == 1
    film = load_film(save(ds, tmp_path / "signed.dcm"))

    low, high = np.percentile(stored.astype(np.float64), [0.5, 99.5])
    expected = np.clip((stored - low) / (high - low), 0.0, 1.0)
    np.testing.assert_allclose(film.pixels, expected, atol=1e-5)
    assert film.raw.min() < 0 and film.raw.dtype == np.int16
    assert "auto" in film.meta.applied_voi and "no VOI" in film.meta.applied_voi
    assert film.meta.window_presets[0].name == "AUTO"


def test_modality_lut_sequence_applies_before_window(nih_dx_path, tmp_path):
    ds = pydicom.dcmread(nih_dx_path)
    lut = (np.arange(256) * 100 + 50).astype(np.uint16)  # optical density-like curve
    item = Dataset()
    item.LUTDescriptor = [256, 0, 16]
    item.ModalityLUTType = "OD"
    item.add_new("LUTData", "US", lut.tolist())
    ds.ModalityLUTSequence = Sequence([item])
    ds.WindowCenter, ds.WindowWidth = 12000, 20000
    film = load_film(save(ds, tmp_path / "modality-lut.dcm"))

    modality = lut[ds.pixel_array].astype(np.float64)
    np.testing.assert_array_equal(film.raw, modality)
    np.testing.assert_allclose(film.pixels, _linear_window(modality, 12000, 20000), atol=1e-6)
    assert film.meta.modality_units == "OD"


def _voi_lut_film(nih_dx_path, tmp_path):
    """12-bit stored values with two VOI LUTs: 8-bit gamma (4096 entries) and 16-bit linear."""
    ds = pydicom.dcmread(nih_dx_path)
    stored = (ds.pixel_array.astype(np.uint16) * 16 + 8).astype(np.uint16)  # 8..4088
    ds.set_pixel_data(stored, "MONOCHROME2", 12)
    levels = np.arange(4096) / 4095.0
    gamma = np.round(255 * levels**0.5).astype(np.uint16)
    linear = np.round(65535 * levels).astype(np.uint16)
    items = []
    for data, bits, name in ((gamma, 8, "GAMMA"), (linear, 16, "LINEAR16")):
        item = Dataset()
        item.LUTDescriptor = [4096, 0, bits]
        item.LUTExplanation = name
        item.add_new("LUTData", "US", data.tolist())
        items.append(item)
    ds.VOILUTSequence = Sequence(items)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    return save(ds, tmp_path / "voi-lut.dcm"), stored, gamma


def test_voi_lut_sequence_is_applied_and_listed(nih_dx_path, tmp_path):
    path, stored, gamma = _voi_lut_film(nih_dx_path, tmp_path)
    film = load_film(path)
    np.testing.assert_allclose(film.pixels, gamma[stored] / 255.0, atol=1e-6)
    assert film.meta.voi_lut_names == ["GAMMA", "LINEAR16"]
    assert "GAMMA" in film.meta.applied_voi
    assert [(p.center, p.width) for p in film.meta.window_presets] == [(2048, 4096)]


def test_voi_lut_lookup_agrees_with_pydicom_where_pydicom_is_exact(nih_dx_path, tmp_path):
    path, stored, _ = _voi_lut_film(nih_dx_path, tmp_path)
    ds = pydicom.dcmread(path)
    ours = _apply_voi_lut_item(ds, ds.VOILUTSequence[1], stored)  # 16-bit entries
    theirs = apply_voi(stored, ds, index=1).astype(np.float64) / 65535.0
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


# --------------------------------------------------------------- compression


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless], ids=lambda u: u.name)
def test_lossless_compressed_films_decode_to_the_same_pixels(nih_dx_path, tmp_path, syntax):
    original = load_film(nih_dx_path)
    ds = pydicom.dcmread(nih_dx_path)
    ds.compress(syntax)
    film = load_film(save(ds, tmp_path / "compressed.dcm"))
    assert film.meta.transfer_syntax == syntax.name
    np.testing.assert_array_equal(film.pixels, original.pixels)


@pytest.mark.parametrize(
    "syntax",
    [
        JPEGBaseline8Bit,
        JPEGExtended12Bit,
        JPEGLossless,
        JPEGLosslessSV1,
        JPEGLSLossless,
        JPEGLSNearLossless,
        JPEG2000Lossless,
        JPEG2000,
        RLELossless,
    ],
    ids=lambda u: u.name,
)
def test_decoders_for_chest_film_syntaxes_are_installed(syntax):
    assert get_decoder(syntax).is_available, get_decoder(syntax).missing_dependencies


# ------------------------------------------------------------- frames and colour


def test_multi_frame_shows_first_frame_with_warning(nih_dx_path, tmp_path):
    ds = pydicom.dcmread(nih_dx_path)
    first = ds.pixel_array
    frames = np.stack([first, 255 - first, first // 2]).astype(np.uint8)
    ds.set_pixel_data(frames, "MONOCHROME2", 8)
    assert ds.NumberOfFrames == 3
    film = load_film(save(ds, tmp_path / "frames.dcm"))
    assert film.pixels.shape == first.shape and film.meta.frames == 3
    np.testing.assert_allclose(film.pixels, first / 255.0, atol=1e-6)
    assert any("3 frames" in w and "first frame" in w for w in film.warnings)


def test_rgb_dicom_becomes_grey(nih_dx_path, tmp_path):
    ds = pydicom.dcmread(nih_dx_path)
    grey = ds.pixel_array.astype(np.float64)
    rgb = np.stack([grey, grey * 0.8, grey * 0.5], axis=-1).astype(np.uint8)
    ds.set_pixel_data(rgb, "RGB", 8)
    film = load_film(save(ds, tmp_path / "rgb.dcm"))
    expected = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0
    np.testing.assert_allclose(film.pixels, expected, atol=1e-5)
    assert film.pixels.ndim == 2
    assert any("colour DICOM" in w for w in film.warnings)


# ------------------------------------------------------------------- windowing


@pytest.mark.parametrize(
    "center, width, function",
    [(128, 256, "LINEAR"), (90, 40, "LINEAR"), (200, 1, "LINEAR"), (100.5, 30.5, "LINEAR"),
     (120, 60, "LINEAR_EXACT"), (120, 60, "SIGMOID")],
)  # fmt: skip
@pytest.mark.parametrize("invert", [False, True])
def test_apply_window_matches_pydicom_windowing(rsna_path, center, width, function, invert):
    ds = pydicom.dcmread(rsna_path)
    raw = ds.pixel_array
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = center, width, function
    expected = apply_windowing(raw, ds) / 255.0  # 8-bit unsigned: output range 0..255
    if invert:
        expected = 1.0 - expected
    ours = apply_window(raw, center, width, invert=invert, function=function)
    assert ours.dtype == np.float32 and ours.shape == raw.shape
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_apply_window_rejects_unknown_function():
    with pytest.raises(ValueError):
        apply_window(np.zeros((2, 2)), 0, 10, function="CUBIC")


# ----------------------------------------------------------------- identifiers

IDENTIFIERS = {
    "PatientName": "Doe^Jane",
    "PatientID": "MRN-0042-XYZ",
    "PatientBirthDate": "19510203",
    "AccessionNumber": "ACC-99821",
    "OtherPatientIDs": "ALT-77-QRS",
    "InstitutionName": "Saint Example Hospital",
    "ReferringPhysicianName": "House^Gregory",
    "StudyDate": "20240517",
}


def test_identifiers_are_kept_apart_and_never_shown(nih_dx_path, tmp_path):
    ds = pydicom.dcmread(nih_dx_path)
    for keyword, value in IDENTIFIERS.items():
        setattr(ds, keyword, value)
    ds.add_new(0x00090010, "LO", "ACME private")  # private tags may hold anything
    ds.add_new(0x00091001, "LO", "private-secret-ABC")
    film = load_film(save(ds, tmp_path / "identified.dcm"))

    for keyword, value in IDENTIFIERS.items():
        assert film.identifiers.values[keyword] == value
    shown = " ".join(
        [repr(film), str(film), repr(film.meta), str(film.meta), repr(film.identifiers)]
        + [" ".join(row) for row in film.meta.tags]
        + film.warnings
    )
    for value in [*IDENTIFIERS.values(), "Doe", "private-secret-ABC", ds.SOPInstanceUID]:
        assert value not in shown
    keywords = {keyword for _, keyword, _ in film.meta.tags}
    assert {"Modality", "Rows", "BodyPartExamined", "PatientSex"} <= keywords
    assert not keywords & {"PatientName", "PatientID", "StudyInstanceUID", "StudyDate"}


@pytest.mark.parametrize("rel", ["misc/nih-google-dx.dcm", "misc/siim-pneumothorax-cr.dcm"])
def test_shared_film_identifiers_are_not_in_meta(rel):
    path = DATA / "dicom" / rel
    ds = pydicom.dcmread(path)
    film = load_film(path)
    assert film.identifiers.values["PatientID"] == ds.PatientID
    assert film.identifiers.values["PatientName"] == str(ds.PatientName)
    assert ds.PatientID not in repr(film) + str(film.meta)



def test_damaged_voi_lut_falls_back_to_the_window(nih_dx_path, tmp_path):
    path, _, _ = _voi_lut_film(nih_dx_path, tmp_path)
    ds = pydicom.dcmread(path)
    ds.VOILUTSequence[0].LUTDescriptor = [4096, 0]  # third value missing
    film = load_film(save(ds, tmp_path / "bad-lut.dcm"))
    stored = ds.pixel_array.astype(np.float64)
    np.testing.assert_allclose(film.pixels, _linear_window(stored, 2048, 4096), atol=1e-6)
    assert any("VOI LUT unusable" in w for w in film.warnings)
    assert film.meta.applied_voi.startswith("window")


def test_missing_photometric_is_shown_as_monochrome2_with_warning(nih_dx_path, tmp_path):
    ds = pydicom.dcmread(nih_dx_path)
    stored = ds.pixel_array
    del ds.PhotometricInterpretation
    film = load_film(save(ds, tmp_path / "no-photometric.dcm"))
    np.testing.assert_allclose(film.pixels, stored / 255.0, atol=1e-6)
    assert any("photometric interpretation missing" in w for w in film.warnings)


def test_ybr_jpeg_colour_dicom_becomes_grey(nih_dx_path, tmp_path):
    """Colour JPEG secondary captures are YBR_FULL_422; pydicom converts to RGB first."""
    ds = pydicom.dcmread(nih_dx_path)
    grey = ds.pixel_array
    bgr = np.stack([grey // 2, grey, grey], axis=-1).astype(np.uint8)
    encapsulate_jpeg(ds, bgr, quality=95)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL_422", 0
    film = load_film(save(ds, tmp_path / "ybr.dcm"))
    expected = (0.299 * grey + 0.587 * grey + 0.114 * (grey // 2)) / 255.0
    assert np.abs(film.pixels - expected).mean() < 1.5 / 255  # JPEG loss, chroma subsampling
    assert any("YBR_FULL_422" in w for w in film.warnings)
