"""Builders for test films made at test time from copies of the real ones in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, generate_uid

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CXR_DATA") or REPO.parent / "shared" / "data")
SIIM = "dicom/misc/siim-pneumothorax-cr.dcm"
NIH_DX = "dicom/nih-dx/test1.dcm"
RSNA_DIR = "dicom/rsna-cr"


def shared_dicoms() -> list[Path]:
    """Every DICOM in the shared data, for parametrising at collection time."""
    return sorted((DATA / "dicom").rglob("*.dcm"))


def save(ds: Dataset, path: Path) -> Path:
    """Write ``ds`` as a DICOM file; it is a new instance, so it gets a new SOP Instance UID."""
    ds.SOPInstanceUID = generate_uid()
    if getattr(ds, "file_meta", None) is not None:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path


def encapsulate_jpeg(ds: Dataset, stored: np.ndarray, quality: int = 95) -> None:
    """Replace ``ds``'s pixels by ``stored`` (8-bit grey, or BGR) as JPEG Baseline."""
    ok, jpeg = cv2.imencode(".jpg", stored, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    ds.PixelData = encapsulate([jpeg.tobytes()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.Rows, ds.Columns = stored.shape[:2]

