"""Film loading speed against the bare decoders, measured in the same run.

Run: python benchmarks/io_load.py [shared-data-folder]
Prints milliseconds per film for load_film and for the decode it cannot avoid
(pydicom's pixel_array, OpenCV's imdecode), and their ratio; the same for folder
listing against a bare os.walk and for the GUI's apply_window against pydicom's
apply_windowing. Target: a 1024x1024 JPEG DICOM in well under 100 ms.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from pydicom.pixels import apply_windowing  # noqa: E402

from cxrviewer.io import apply_window, list_films, load_film  # noqa: E402

DATA = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data")


def per_item_ms(function, items, repeats=3) -> float:
    """Median over repeats of the mean time per item, in ms."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            function(item)
        runs.append((time.perf_counter() - start) / len(items) * 1000)
    return statistics.median(runs)


def dicom_decode(path):
    return pydicom.dcmread(path).pixel_array


def png_decode(path):
    return cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)


def os_walk_films(root):
    suffixes = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom"}
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        found += [os.path.join(folder, f) for f in sorted(files) if os.path.splitext(f)[1].lower() in suffixes]
    return found


def report(name, ours, baseline, baseline_name):
    print(f"{name:<34} load_film {ours:7.2f} ms   {baseline_name} {baseline:7.2f} ms   ratio {ours / baseline:5.2f}")


def main() -> None:
    rsna = sorted((DATA / "dicom/rsna-cr").glob("*.dcm"))
    nih_dx = sorted((DATA / "dicom/nih-dx").glob("*.dcm"))
    nih_png = sorted((DATA / "nih/png1024").glob("*.png"))[:30]
    for items in (rsna, nih_dx, nih_png):  # warm the page cache and imports
        for path in items:
            load_film(path)

    report("RSNA 1024^2 JPEG Baseline DICOM", per_item_ms(load_film, rsna), per_item_ms(dicom_decode, rsna), "pydicom decode")
    report("NIH 1024^2 uncompressed DX DICOM", per_item_ms(load_film, nih_dx), per_item_ms(dicom_decode, nih_dx), "pydicom decode")
    report("NIH 1024^2 8-bit PNG", per_item_ms(load_film, nih_png), per_item_ms(png_decode, nih_png), "cv2 imdecode  ")

    kermany = DATA / "kermany-pneumonia"
    start = time.perf_counter()
    ours = list(list_films(kermany))
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    walk = os_walk_films(kermany)
    walk_s = time.perf_counter() - start
    start = time.perf_counter()
    next(iter(list_films(kermany)))
    first_ms = (time.perf_counter() - start) * 1000
    print(f"list_films Kermany ({len(ours)} films)      {ours_s * 1000:7.1f} ms   os.walk {walk_s * 1000:7.1f} ms"
          f"   ratio {ours_s / walk_s:5.2f}   first film after {first_ms:.1f} ms")
    assert len(walk) == len(ours)

    raw = pydicom.dcmread(rsna[0]).pixel_array
    voi = pydicom.Dataset()
    voi.PhotometricInterpretation, voi.BitsStored, voi.PixelRepresentation = "MONOCHROME2", 8, 0
    voi.WindowCenter, voi.WindowWidth = 120, 180
    ours_ms = per_item_ms(lambda _: apply_window(raw, 120, 180), range(20))
    theirs_ms = per_item_ms(lambda _: apply_windowing(raw, voi), range(20))
    print(f"apply_window 1024^2 (GUI W/L)      ours {ours_ms:7.2f} ms   pydicom apply_windowing {theirs_ms:7.2f} ms"
          f"   ratio {ours_ms / theirs_ms:5.2f}")


if __name__ == "__main__":
    main()
