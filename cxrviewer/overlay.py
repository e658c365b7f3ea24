"""Grad-CAM overlay pictures for files: heat maps blended on the grey film, labelled.

One PNG per film shows its top findings, each in its own colour whose strength follows the
Grad-CAM map (faint activations leave the film untouched so anatomy stays readable), a
legend with label and probability in the same colours, and the
"Not for diagnostic use" line with the model identity. The picture keeps the film's aspect
ratio; its long side is scaled to between 512 and 1024 px so text stays legible and files
stay small. NumPy + OpenCV only; the GUI draws its own interactive overlay.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from cxrviewer import NOT_FOR_DIAGNOSIS
from cxrviewer.fsutil import atomic_path

SUFFIX = ".gradcam.png"
MIN_SIDE, MAX_SIDE = 512, 1024
# BGR, distinct on grey and from each other: red-orange, yellow, cyan.
COLOURS = ((40, 60, 255), (0, 215, 255), (255, 200, 0))
STRENGTH = 0.6  # opacity where the map is 1
FLOOR = 0.25  # maps below this leave the film as it is


def overlay_path(gradcam_dir: str | Path, relpath: str) -> Path:
    """``sub/x.dcm`` -> ``<gradcam_dir>/sub/x.dcm.gradcam.png`` (mirrors the scored tree)."""
    return Path(gradcam_dir).joinpath(*relpath.replace("\\", "/").split("/")).with_name(
        Path(relpath).name + SUFFIX)


def choose_findings(prediction, top_k: int = 3) -> list[str]:
    """Labels to map: up to ``top_k`` calls (above threshold), most probable first; else the top one."""
    probs = prediction.probabilities
    calls = sorted(prediction.calls, key=lambda lab: -probs[lab])[:top_k]
    return calls or [lab for lab, _ in prediction.top(1)]


def _output_size(shape) -> tuple[int, int]:
    rows, cols = shape
    long_side = max(rows, cols)
    scale = min(MAX_SIDE, max(MIN_SIDE, long_side)) / long_side
    return max(1, int(round(rows * scale))), max(1, int(round(cols * scale)))


def _legend(img, lines, origin_bottom: bool, scale: float, thick: int) -> None:
    """Text lines (text, BGR colour) on a translucent dark box, top-left or bottom-left."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    rows, cols = img.shape[:2]
    while True:  # shrink the text until the widest line fits a narrow film
        pad = max(4, int(round(10 * scale)))
        sizes = [cv2.getTextSize(text, font, scale, thick) for text, _ in lines]
        if max(w for (w, _), _ in sizes) + 4 * pad <= cols or scale <= 0.3:
            break
        scale *= 0.85
    line_h = max(h + base for (_, h), base in sizes) + pad
    width = max(w for (w, _), _ in sizes) + 2 * pad
    height = line_h * len(lines) + pad
    x0 = pad
    y0 = rows - pad - height if origin_bottom else pad
    x1, y1 = min(cols, x0 + width), min(rows, y0 + height)
    x0, y0 = max(0, x0), max(0, y0)
    box = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = (box * 0.35).astype(np.uint8)  # darken so text reads on bone and lung alike
    y = y0 + pad
    for (text, colour), ((_, h), _) in zip(lines, sizes):
        y += h
        cv2.putText(img, text, (x0 + pad, y), font, scale, colour, thick, cv2.LINE_AA)
        y += line_h - h


def render_overlay(pixels: np.ndarray, findings, *, footer: str = "") -> np.ndarray:
    """BGR uint8 picture of the film with heat maps.

    pixels: film (H, W) float in 0..1, white = dense. findings: sequence of
    (label, probability, map (H, W) 0..1, above_threshold). footer: e.g. the model identity.
    """
    rows, cols = _output_size(pixels.shape[:2])
    grey = cv2.resize(np.clip(np.asarray(pixels, np.float32), 0, 1), (cols, rows), interpolation=cv2.INTER_AREA)
    img = np.repeat(grey[..., None], 3, axis=2)
    for k, (_, _, cam, _) in enumerate(findings):
        colour = np.array(COLOURS[k % len(COLOURS)], np.float32) / 255.0
        m = cv2.resize(np.clip(np.asarray(cam, np.float32), 0, 1), (cols, rows), interpolation=cv2.INTER_LINEAR)
        alpha = (STRENGTH * np.clip((m - FLOOR) / (1 - FLOOR), 0, 1))[..., None]
        img = img * (1 - alpha) + colour * alpha
    out = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)

    scale = max(rows, cols) / 1100
    thick = max(1, int(round(scale * 2)))
    legend = [(f"{label} {prob:.2f}" + ("" if above else " (below threshold)"), COLOURS[k % len(COLOURS)])
              for k, (label, prob, _, above) in enumerate(findings)]
    if legend:
        _legend(out, legend, False, scale, thick)
    foot = [(NOT_FOR_DIAGNOSIS, (255, 255, 255))] + ([(footer, (200, 200, 200))] if footer else [])
    _legend(out, foot, True, scale * 0.75, max(1, thick - 1))
    return out


def write_overlay(target: str | Path, pixels: np.ndarray, findings, *, footer: str = "") -> Path:
    """Render and write the PNG atomically (temp file + rename); returns ``target``."""
    target = Path(target)
    ok, data = cv2.imencode(".png", render_overlay(pixels, findings, footer=footer))
    if not ok:
        raise OSError(f"{target.name}: PNG encoding failed")
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data.tobytes())
            fh.flush()
            os.fsync(fh.fileno())
    return target
