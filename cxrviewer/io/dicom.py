"""DICOM films: decode, Modality LUT, VOI, MONOCHROME1 inversion; header facts and identifiers.

The display chain is DICOM's grayscale pipeline (PS3.4 N.2.1): stored values ->
Modality LUT (rescale or LUT) -> VOI (window or VOI LUT) -> MONOCHROME1 inversion.
``Film.raw`` keeps the values after the Modality LUT, so the GUI can re-window them.
"""

from __future__ import annotations

import io
import logging
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom import config as pydicom_config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit

from cxrviewer.io.film import (
    CorruptFilmError,
    Film,
    FilmMeta,
    NotAFilmError,
    PatientIdentifiers,
    UnsupportedFilmError,
    WindowPreset,
)
from cxrviewer.io.limits import check_dimensions
from cxrviewer.io.raster import luminance
from cxrviewer.io.window import apply_window, window_for_range

AUTO_PERCENTILES = (0.5, 99.5)  # automatic window when the file carries no VOI
_AUTO_SAMPLE = 1_000_000  # pixels sampled for the automatic window's percentiles

PIXEL_DATA_TAG = 0x7FE00010
_PIXEL_DATA_TAG_BYTES = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")  # little, big endian

# Header elements that identify a person, a visit or an institution. With every PN
# (person name), date and time, free text and instance UID they go to
# Film.identifiers only; nothing here is logged or shown in the tag panel.
IDENTIFYING_KEYWORDS = frozenset(
    {
        "PatientID", "IssuerOfPatientID", "OtherPatientIDs", "OtherPatientIDsSequence",
        "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName", "PatientAddress",
        "PatientTelephoneNumbers", "PatientTelecomInformation", "PatientBirthDate",
        "PatientBirthTime", "PatientAge", "MedicalRecordLocator", "MilitaryRank",
        "BranchOfService", "PatientInsurancePlanCodeSequence", "PatientReligiousPreference",
        "EthnicGroup", "Occupation", "CountryOfResidence", "RegionOfResidence",
        "PatientComments", "AdditionalPatientHistory", "AccessionNumber",
        "IssuerOfAccessionNumberSequence", "StudyID", "AdmissionID", "IssuerOfAdmissionIDSequence",
        "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
        "InstitutionCodeSequence", "StationName", "DeviceSerialNumber", "DetectorID",
        "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
        "ReferringPhysicianIdentificationSequence", "PhysiciansOfRecordIdentificationSequence",
        "PerformingPhysicianIdentificationSequence", "OperatorIdentificationSequence",
        "RequestAttributesSequence", "RequestedProcedureID", "ScheduledProcedureStepID",
        "PerformedProcedureStepID", "ReferencedPatientSequence", "ReferencedStudySequence",
        "ReferencedPerformedProcedureStepSequence", "SourceImageSequence",
        "ReferencedImageSequence", "FrameOfReferenceUID", "IrradiationEventUID",
        "StorageMediaFileSetUID", "StorageMediaFileSetID", "ImageComments",
    }
)  # fmt: skip
_IDENTIFYING_VRS = frozenset({"PN", "DA", "DT", "TM", "LT", "ST", "UT"})
_TAG_TEXT_LIMIT = 160  # characters of a value shown in the tag panel


# pydicom's warnings quote header bytes (a damaged file's warning can hold the patient's
# name) and go both to the "pydicom" logger and to Python warnings, which the app's logs
# collect. Patient data must never reach a log, so while reading: no value validation,
# no pydicom log records, no pydicom UserWarnings. Problems that matter surface as
# FilmError reasons or Film.warnings written by this module.
pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
logging.getLogger("pydicom").addFilter(lambda record: False)
_PYDICOM_MODULES = r"pydicom(\.|$)"


def _silence_pydicom_warnings() -> None:
    """Ignore pydicom's UserWarnings; re-added if a warnings context dropped the filter
    (``warnings.catch_warnings`` restores the filter list when it exits)."""
    for action, _message, category, module, _line in warnings.filters:
        if action == "ignore" and category is UserWarning and module is not None:
            if module.pattern == _PYDICOM_MODULES:
                return
    warnings.filterwarnings("ignore", category=UserWarning, module=_PYDICOM_MODULES)


def read_dicom(path: Path, data: bytes, *, has_preamble: bool = True) -> Film:
    """Read one DICOM film (first frame) from the file's bytes and apply the display chain.

    ``has_preamble=False`` reads a legacy file without the 128-byte preamble and ``DICM``.
    """
    _silence_pydicom_warnings()
    ds = _parse(path, data, force=not has_preamble)
    notes: list[str] = []  # become Film.warnings

    pixel_keyword = _check_pixel_element(path, ds, data)
    rows, columns = _int(ds, "Rows"), _int(ds, "Columns")
    frames = max(_int(ds, "NumberOfFrames", 1), 1)
    samples = _int(ds, "SamplesPerPixel", 1)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if rows <= 0 or columns <= 0:
        raise CorruptFilmError(path, f"DICOM header gives an empty image ({rows}x{columns})")
    check_dimensions(path, columns, rows)
    if pixel_keyword != "PixelData":
        raise UnsupportedFilmError(
            path, f"{pixel_keyword} (floating-point parametric map) is not a radiograph"
        )
    tsyntax = _transfer_syntax(path, ds)
    _check_decoder(path, tsyntax)
    if not photometric and samples == 1:
        ds.PhotometricInterpretation = "MONOCHROME2"  # pydicom needs one to decode

    stored = _decode_first_frame(path, ds, tsyntax, frames)
    if frames > 1:
        notes.append(f"multi-frame DICOM ({frames} frames): showing the first frame only")

    meta = _meta(ds, rows, columns, photometric, tsyntax, frames)
    if samples == 1 and photometric != "PALETTE COLOR":
        if photometric not in ("MONOCHROME1", "MONOCHROME2"):
            notes.append(
                f"photometric interpretation {photometric or 'missing'} with one sample per"
                " pixel: shown as MONOCHROME2 (white = high values)"
            )
        raw, pixels = _grayscale_display(path, ds, stored, meta, notes)
    else:
        raw, pixels = _colour_to_grey(ds, stored, photometric)
        notes.append(f"colour DICOM ({photometric or 'unknown colour'}) converted to grey")
        meta.applied_voi = "colour converted to grey (luminance); no VOI"
        meta.window_presets = [WindowPreset(*window_for_range(0, _stored_max(ds)), "FULL RANGE")]
    meta.tags, identifiers = _split_header(ds)
    return Film(
        path=path,
        pixels=pixels,
        raw=raw,
        meta=meta,
        warnings=notes,
        identifiers=PatientIdentifiers(identifiers),
    )


# ---------------------------------------------------------------------------- parsing


def _parse(path: Path, data: bytes, *, force: bool) -> Dataset:
    try:
        return pydicom.dcmread(io.BytesIO(data), force=force)
    except InvalidDicomError as exc:
        raise NotAFilmError(path, f"not a valid DICOM file ({_first_line(exc)})") from exc
    except (EOFError, OSError, ValueError, KeyError, TypeError, IndexError, OverflowError) as exc:
        raise CorruptFilmError(
            path, f"DICOM header is damaged or truncated ({type(exc).__name__}: {_first_line(exc)})"
        ) from exc


def _check_pixel_element(path: Path, ds: Dataset, data: bytes) -> str:
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in ds:
            return keyword
    # pydicom drops an encapsulated Pixel Data element cut off by the end of the file,
    # so a truncated film reads as one without pixels; the tag's bytes give it away.
    if any(data.find(tag, 132) != -1 for tag in _PIXEL_DATA_TAG_BYTES):
        raise CorruptFilmError(path, "DICOM file is truncated: pixel data is incomplete")
    sop_class = ds.get("SOPClassUID")
    kind = f" ({UID(str(sop_class)).name})" if sop_class else ""
    raise NotAFilmError(
        path, f"DICOM file has no pixel data{kind}: not an image, or truncated in the header"
    )


def _transfer_syntax(path: Path, ds: Dataset) -> UID:
    file_meta = getattr(ds, "file_meta", None)
    tsyntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if tsyntax is None:
        # Legacy files without file meta: pydicom knows how the dataset was encoded.
        implicit, little = ds.original_encoding
        if little is False:
            raise UnsupportedFilmError(path, "big-endian DICOM without a transfer syntax")
        tsyntax = ImplicitVRLittleEndian if implicit in (True, None) else ExplicitVRLittleEndian
        ds.file_meta = file_meta if file_meta is not None else FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = tsyntax
    return UID(str(tsyntax))


def _check_decoder(path: Path, tsyntax: UID) -> None:
    if not tsyntax.is_transfer_syntax:
        raise UnsupportedFilmError(path, f"unknown transfer syntax {tsyntax}: cannot decode")
    if not tsyntax.is_compressed:
        return
    described = f"{tsyntax.name} ({tsyntax})" if tsyntax.name != str(tsyntax) else str(tsyntax)
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError as exc:
        raise UnsupportedFilmError(
            path, f"compressed as {described}: no decoder supports this transfer syntax"
        ) from exc
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "no plugin available"
        raise UnsupportedFilmError(
            path, f"compressed as {described}: no decoder installed ({missing})"
        )


def _decode_first_frame(path: Path, ds: Dataset, tsyntax: UID, frames: int) -> np.ndarray:
    index = 0 if frames > 1 else None  # decode only the first frame of a multi-frame file
    preferred = _preferred_plugin(tsyntax)
    try:
        try:
            ds.pixel_array_options(index=index, decoding_plugin=preferred)
            stored = ds.pixel_array
        except Exception:
            if not preferred:
                raise
            # The preferred plugin could not do this file: let pydicom pick another.
            ds.pixel_array_options(index=index)
            stored = ds.pixel_array
    except MemoryError:
        raise
    except Exception as exc:  # decoders raise ValueError, RuntimeError, their own types
        raise CorruptFilmError(
            path, f"pixel data cannot be decoded ({tsyntax.name}): {_first_line(exc)}"
        ) from exc
    if frames > 1 and stored.ndim == (4 if _int(ds, "SamplesPerPixel", 1) > 1 else 3):
        stored = stored[0]
    return stored


def _preferred_plugin(tsyntax: UID) -> str:
    """Pillow (libjpeg-turbo) for 8-bit JPEG Baseline, the RSNA/SIIM syntax: it decodes a
    1024x1024 film about 2.5x faster than pylibjpeg, which pydicom would pick first."""
    if tsyntax == JPEGBaseline8Bit and "pillow" in get_decoder(tsyntax).available_plugins:
        return "pillow"
    return ""


# ------------------------------------------------------------------- display chain


def _grayscale_display(
    path: Path, ds: Dataset, stored: np.ndarray, meta: FilmMeta, notes: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Modality LUT, then VOI, then MONOCHROME1 inversion. Returns (raw, pixels)."""
    try:
        modality_values = apply_modality_lut(stored, ds)
    except Exception as exc:
        raise CorruptFilmError(path, f"invalid Modality LUT: {_first_line(exc)}") from exc
    # float32 holds every 16-bit value and rescale result exactly enough (24-bit mantissa)
    # and halves memory; integer values without rescale stay as decoded.
    raw = modality_values.astype(np.float32) if modality_values.dtype.kind == "f" else modality_values

    presets = _window_presets(ds)
    meta.window_presets = presets
    meta.voi_lut_names = _voi_lut_names(ds)
    meta.invert = meta.photometric == "MONOCHROME1"

    pixels = None
    if meta.voi_lut_names:
        # A VOI LUT is the vendor's tuned display curve; pydicom's apply_voi_lut also
        # prefers it over the window when both are present.
        try:
            pixels = _apply_voi_lut_item(ds, ds.VOILUTSequence[0], raw)
        except Exception as exc:  # a damaged LUT should not make the film unviewable
            notes.append(f"VOI LUT unusable ({_first_line(exc)}): window used instead")
    if pixels is not None:
        meta.applied_voi = f"VOI LUT {meta.voi_lut_names[0]!r} (first of {len(meta.voi_lut_names)})"
        if meta.invert:
            np.subtract(np.float32(1.0), pixels, out=pixels)
    elif presets:
        first = presets[0]
        pixels = apply_window(raw, first.center, first.width, meta.invert, first.function)
        label = f" {first.name!r}" if first.name else ""
        meta.applied_voi = (
            f"window{label} c={first.center:g} w={first.width:g}"
            + (f" {first.function}" if first.function != "LINEAR" else "")
        )
    else:
        auto = _automatic_window(ds, raw)
        presets.append(auto)
        pixels = apply_window(raw, auto.center, auto.width, meta.invert)
        meta.applied_voi = f"{auto.name.lower()} c={auto.center:g} w={auto.width:g} (no VOI in file)"
    if not presets:
        presets.append(_automatic_window(ds, raw))  # a starting point for interactive W/L
    return raw, pixels


def _window_presets(ds: Dataset) -> list[WindowPreset]:
    centers = _numbers(ds.get("WindowCenter"))
    widths = _numbers(ds.get("WindowWidth"))
    names = [str(n) for n in _values(ds.get("WindowCenterWidthExplanation"))]
    function = str(ds.get("VOILUTFunction", "") or "LINEAR").strip().upper() or "LINEAR"
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        function = "LINEAR"
    presets = []
    for i, (center, width) in enumerate(zip(centers, widths)):
        if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
            continue  # an unusable preset is skipped; the next one (or auto) is used
        name = names[i].strip() if i < len(names) else ""
        presets.append(WindowPreset(center, width, name, function))
    return presets


def _voi_lut_names(ds: Dataset) -> list[str]:
    names = []
    for i, item in enumerate(ds.get("VOILUTSequence") or []):
        explanation = str(item.get("LUTExplanation", "") or "").strip()
        names.append(explanation or f"VOI LUT {i + 1}")
    return names


def _apply_voi_lut_item(ds: Dataset, item: Dataset, values: np.ndarray) -> np.ndarray:
    """Look ``values`` up in one VOI LUT Sequence item; float32 0..1.

    Done here rather than with pydicom 3.0's ``apply_voi``, which indexes through an array
    of the LUT's own entry type: an 8-bit LUT longer than 256 entries (4096 entries of
    8 bits is common for 12-bit CR) wraps the index and shows the wrong grey levels, and
    rescaled (float) input is truncated instead of rounded.
    """
    entries, first_mapped, bits = (int(v) for v in item.LUTDescriptor)
    entries = entries or 65536  # 0 means 2**16 (PS3.3 C.11.1.1)
    lut = _lut_data(ds, item)[:entries].astype(np.float32)
    if lut.size == 0:
        return np.zeros(values.shape, np.float32)
    index = np.asarray(values)
    index = np.rint(index) if index.dtype.kind == "f" else index.astype(np.int64)
    index = np.clip(index - first_mapped, 0, lut.size - 1).astype(np.intp)
    # Output range is 0 .. 2**bits - 1. Some writers declare 16 bits for 12-bit entries,
    # which would show a nearly black film, so scale by the bits the entries use when
    # that is fewer than declared.
    used_bits = min(max(int(lut.max()).bit_length(), 1), bits if bits > 0 else 16)
    return lut[index] * np.float32(1.0 / (2**used_bits - 1))


def _lut_data(ds: Dataset, item: Dataset) -> np.ndarray:
    data = item.LUTData
    if isinstance(data, (bytes, bytearray)):  # OW: 16-bit words in the dataset's byte order
        little = ds.original_encoding[1] is not False
        return np.frombuffer(bytes(data), dtype="<u2" if little else ">u2")
    if isinstance(data, (list, MultiValue)):
        return np.asarray(list(data), dtype=np.int64)
    return np.asarray([int(data)], dtype=np.int64)


def _automatic_window(ds: Dataset, raw: np.ndarray) -> WindowPreset:
    """A window for a file without VOI: the stored range for 8-bit data, else percentiles.

    8-bit films without rescale are display images already (NIH conversions, secondary
    captures): showing them as stored keeps their look. Deeper data gets the 0.5-99.5th
    percentile of its modality values, which ignores collimator edges and burnt-out skin.
    """
    bits = _int(ds, "BitsStored", 8)
    identity_modality = "ModalityLUTSequence" not in ds and (
        float(ds.get("RescaleSlope", 1) or 1) == 1 and float(ds.get("RescaleIntercept", 0) or 0) == 0
    )
    if bits <= 8 and identity_modality:
        signed = _int(ds, "PixelRepresentation", 0) == 1
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        center, width = window_for_range(low, high)
        return WindowPreset(center, width, "FULL RANGE")
    step = max(1, math.ceil(math.sqrt(raw.size / _AUTO_SAMPLE)))
    sample = raw[::step, ::step]
    low, high = np.percentile(sample, AUTO_PERCENTILES)
    center, width = window_for_range(float(low), float(high))
    return WindowPreset(center, width, "AUTO")


def _colour_to_grey(
    ds: Dataset, stored: np.ndarray, photometric: str
) -> tuple[np.ndarray, np.ndarray]:
    rgb = stored
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(stored, ds)
    if rgb.ndim == 2:  # odd header: colour declared but one sample; treat as grey
        grey = rgb.astype(np.float32)
    else:
        grey = luminance(rgb[..., :3], order="RGB")
    if photometric == "PALETTE COLOR":  # the palette's entries fill its dtype (8 or 16 bit)
        top = float(np.iinfo(rgb.dtype).max)
    else:
        top = float(_stored_max(ds))
    pixels = np.clip(grey * np.float32(1.0 / top), 0.0, 1.0).astype(np.float32)
    return grey, pixels


def _stored_max(ds: Dataset) -> int:
    return 2 ** _int(ds, "BitsStored", 8) - 1


# ------------------------------------------------------------------------ metadata


def _meta(
    ds: Dataset, rows: int, columns: int, photometric: str, tsyntax: UID, frames: int
) -> FilmMeta:
    spacing = _numbers(ds.get("PixelSpacing")) or _numbers(ds.get("ImagerPixelSpacing"))
    return FilmMeta(
        source_format="dicom",
        rows=rows,
        columns=columns,
        modality=_text(ds, "Modality"),
        body_part=_text(ds, "BodyPartExamined"),
        view_position=_text(ds, "ViewPosition"),
        patient_position=_text(ds, "PatientPosition"),
        photometric=photometric or None,
        bits_stored=_int(ds, "BitsStored", 0) or None,
        pixel_spacing=(spacing[0], spacing[1]) if len(spacing) >= 2 else None,
        modality_units=_modality_units(ds),
        study_description=_text(ds, "StudyDescription"),
        series_description=_text(ds, "SeriesDescription"),
        transfer_syntax=tsyntax.name,
        frames=frames,
    )


def _modality_units(ds: Dataset) -> str:
    rescale_type = _text(ds, "RescaleType")
    if rescale_type:
        return rescale_type
    sequence = ds.get("ModalityLUTSequence")
    if sequence:
        return str(sequence[0].get("ModalityLUTType", "") or "").strip()
    return ""


def is_identifying(element: DataElement) -> bool:
    """Whether a header element can identify a patient, visit, person or institution."""
    if element.tag.is_private:
        return True  # unknown content; treated as identifying so it is never shown or logged
    if element.keyword in IDENTIFYING_KEYWORDS or element.VR in _IDENTIFYING_VRS:
        return True
    if element.VR == "UI":
        # Instance UIDs link a film to a study and a patient; class UIDs are generic.
        return not (element.keyword.endswith("ClassUID") or element.keyword == "TransferSyntaxUID")
    return False


def _split_header(ds: Dataset) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    """(tag panel rows, identifiers) from the file meta and top-level dataset."""
    tags: list[tuple[str, str, str]] = []
    identifiers: dict[str, str] = {}
    elements = list(getattr(ds, "file_meta", None) or []) + list(ds)
    for element in elements:
        if element.tag == PIXEL_DATA_TAG or element.tag.element == 0:  # pixels, group lengths
            continue
        if is_identifying(element):
            if not element.tag.is_private and element.keyword:
                value = _value_text(element, limit=None)
                if value:
                    identifiers[element.keyword] = value
            continue
        tag = f"({element.tag.group:04X},{element.tag.element:04X})"
        tags.append((tag, element.keyword or element.name, _value_text(element)))
    return tags, identifiers


def _value_text(element: DataElement, limit: int | None = _TAG_TEXT_LIMIT) -> str:
    value = element.value
    if element.VR == "SQ":
        if element.keyword in IDENTIFYING_KEYWORDS:  # e.g. OtherPatientIDsSequence
            return " | ".join(
                " ".join(str(v.value) for v in item if v.VR != "SQ") for item in value or []
            )
        return f"<sequence of {len(value or [])} item(s)>"
    if isinstance(value, (bytes, bytearray)):
        text = f"<{len(value)} bytes>"
    elif isinstance(value, (list, MultiValue)):
        text = "\\".join(str(v) for v in value)
    elif value is None:
        text = ""
    else:
        text = str(value)
    text = " ".join(text.split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def _values(value: Any) -> list:
    if value is None or value == "":
        return []
    if isinstance(value, (list, MultiValue)):
        return list(value)
    return [value]


def _numbers(value: Any) -> list[float]:
    out = []
    for v in _values(value):
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            continue
    return out


def _int(ds: Dataset, keyword: str, default: int = 0) -> int:
    try:
        value = ds.get(keyword, default)
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:199] + "…"
