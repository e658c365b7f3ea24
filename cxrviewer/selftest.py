"""``cxrviewer info`` and ``cxrviewer selftest FOLDER``: is this installation able to do its job?

``info`` prints versions, the pixel-data decoders per transfer syntax, whether a window
can open, the shipped model and the compute device. ``selftest`` (also the frozen app's
``cxrviewer --selftest FOLDER``) loads every DICOM under FOLDER, runs the model and
Grad-CAM on each, proves the bundled decoders with in-memory round trips, and exits 0
only if everything worked. Neither opens a window nor imports Qt.

What "worked" means for a film: it loaded (warnings about the film, such as a CT
modality or a body part that is not the chest, are findings about the input, not faults
of the installation), and the model returned finite probabilities in 0..1 and Grad-CAM
maps of the film's shape. A FilmError (unreadable, corrupt, no decoder) or any model
error is a failure.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxrviewer import NOT_FOR_DIAGNOSIS, __version__

EXIT_OK = 0
EXIT_FAILED = 1  # at least one film, model call or decoder check failed
EXIT_CANNOT_RUN = 2  # no folder, no DICOM in it, or no usable model

# Transfer syntaxes the loader decodes, by uid attribute name in pydicom.uid. Each must
# have a decoder, and pylibjpeg among its plugins: it is what the app ships for them
# (Pillow covers only some, and only when nothing else is there).
REQUIRED_DECODERS = (
    "JPEGBaseline8Bit",
    "JPEGExtended12Bit",
    "JPEGLossless",
    "JPEGLosslessSV1",
    "JPEGLSLossless",
    "JPEGLSNearLossless",
    "JPEG2000Lossless",
    "JPEG2000",
    "RLELossless",
)
# Listed for information; a missing one is not a failure.
OPTIONAL_DECODERS = ("HTJ2KLossless", "HTJ2KLosslessRPCL", "HTJ2K")
_RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})


@dataclass
class FilmCheck:
    """The self-test's verdict on one file."""

    name: str  # path relative to the folder, "/" separated
    transfer_syntax: str
    status: str  # "ok", "warning" or "error"
    detail: str = ""
    seconds: float = 0.0


@dataclass
class DecoderStatus:
    syntax: str  # transfer syntax name
    uid: str
    plugins: tuple[str, ...]
    missing: tuple[str, ...] = field(default_factory=tuple)
    required: bool = True

    @property
    def ok(self) -> bool:
        return not self.required or "pylibjpeg" in self.plugins


def _line_buffered_output() -> None:
    # Piped to a log (CI, a support ticket), stdout is block-buffered and the report would
    # come after TensorFlow's stderr messages; line buffering keeps the order of events.
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(line_buffering=True)


def _quiet_tensorflow() -> None:
    # Before the first TensorFlow import: its C++ start-up chatter is not for clinic users.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _dist_version(*names: str) -> str | None:
    from importlib import metadata

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def library_versions(with_tensorflow: bool = True) -> list[tuple[str, str]]:
    """(name, version) of everything the app's result depends on. Imports no Qt."""
    import cv2
    import pydicom

    out = [
        ("cxrviewer", __version__),
        ("Python", f"{platform.python_version()} ({sys.executable})"),
        ("platform", platform.platform()),
    ]
    if with_tensorflow:
        _quiet_tensorflow()
        import keras
        import tensorflow as tf

        build = tf.sysconfig.get_build_info()
        cuda = build.get("cuda_version") if build.get("is_cuda_build") else None
        out += [("TensorFlow", f"{tf.__version__} (CUDA build: {cuda or 'no'})"), ("Keras", keras.__version__)]
    out += [("NumPy", np.__version__), ("pydicom", pydicom.__version__)]
    for dist, module in (("pylibjpeg", "pylibjpeg"), ("pylibjpeg-libjpeg", "libjpeg"),
                         ("pylibjpeg-openjpeg", "openjpeg"), ("pylibjpeg-rle", "rle")):
        try:
            version = getattr(__import__(module), "__version__", None) or _dist_version(dist) or "?"
        except ImportError:
            version = "MISSING"
        out.append((dist, version))
    out.append(("OpenCV", cv2.__version__))
    # The wheel's version is the Qt version it bundles; read without importing Qt.
    qt = _dist_version("PySide6-Essentials", "PySide6")
    out.append(("PySide6 / Qt", qt or "not installed"))
    frozen = getattr(sys, "_MEIPASS", None)
    out.append(("frozen app", f"yes ({frozen})" if frozen else "no (running from source)"))
    return out


def decoder_statuses() -> list[DecoderStatus]:
    """Per transfer syntax: pydicom's available decoder plugins and what the others lack."""
    from pydicom import uid as uids
    from pydicom.pixels import get_decoder

    out = []
    for names, required in ((REQUIRED_DECODERS, True), (OPTIONAL_DECODERS, False)):
        for attr in names:
            syntax = getattr(uids, attr, None)
            if syntax is None:
                continue
            try:
                decoder = get_decoder(syntax)
                plugins = tuple(decoder.available_plugins) if decoder.is_available else ()
                missing = tuple(decoder.missing_dependencies)
            except NotImplementedError:
                plugins, missing = (), ("pydicom has no decoder for it",)
            out.append(DecoderStatus(syntax.name, str(syntax), plugins, missing, required))
    return out


def _print_versions(versions: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in versions)
    for key, value in versions:
        print(f"  {key:<{width}}  {value}")


def _print_decoders(statuses: list[DecoderStatus]) -> None:
    width = max(len(", ".join(s.plugins)) for s in statuses)
    for s in statuses:
        mark = "ok" if s.ok and s.plugins else ("MISSING" if s.required else "absent")
        plugins = ", ".join(s.plugins) if s.plugins else "none"
        line = f"  {mark:<7}  {plugins:<{width}}  {s.syntax}"
        if not s.plugins:
            line += f"  (needs: {'; '.join(s.missing) or 'a plugin'})"
        elif not s.ok:
            line += "  (the pylibjpeg plugin the app ships for it is missing)"
        print(line)


# ------------------------------------------------------------------------------ info


def info_command(args) -> int:
    """``cxrviewer info``: versions, decoders, window check, shipped model, device."""
    from cxrviewer.gui.platform_check import window_problems
    from cxrviewer.model.card import ModelCardError, card_path_for
    from cxrviewer.model.device import configure_device, describe
    from cxrviewer.resources import default_model_path

    _line_buffered_output()
    print(f"cxrviewer {__version__}. {NOT_FOR_DIAGNOSIS}")
    print("Versions:")
    _print_versions(library_versions())
    print("Pixel-data decoders (pydicom plugins per transfer syntax):")
    _print_decoders(decoder_statuses())
    print("Window:")
    problems = window_problems()
    for problem in problems or ["the Qt platform's libraries and the display look usable"]:
        print("  " + problem.replace("\n", "\n  "))
    print("Shipped model:")
    model = default_model_path()
    if model.exists():
        from cxrviewer.model.card import ModelCard

        try:
            card = ModelCard.load(card_path_for(model))
            print(f"  {model} ({card.name}, {len(card.active_labels)} findings, "
                  f"input {card.input_size} px)")
        except ModelCardError as exc:
            print(f"  {model}: card problem: {exc}")
    else:
        print(f"  none at {model}")
    print("Device:")
    print("  " + describe(configure_device()).replace("\n", "\n  "))
    return EXIT_OK


# -------------------------------------------------------------------------- selftest


def dicom_files(folder: Path):
    """Every DICOM candidate under ``folder``, in list_films order.

    PNG/JPEG/TIFF films are not DICOM; anything else list_films offers (``.dcm``, or a
    file with the DICM prefix) is, so a text file named ``.dcm`` is tested and fails.
    """
    from cxrviewer.io import list_films
    from cxrviewer.io.listing import has_dicom_prefix

    for path in list_films(folder):
        if path.suffix.lower() in _RASTER_SUFFIXES and not has_dicom_prefix(path):
            continue
        yield path


def _header_syntax(path: Path) -> str:
    """Transfer syntax from the header of a file the loader refused ("?" if unreadable)."""
    try:
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        return ds.file_meta.TransferSyntaxUID.name
    except Exception:  # the loader already said what is wrong with the file
        return "?"


def _model_problem(prediction, maps, film) -> str | None:
    """Why the model's output for ``film`` is not usable, or None."""
    probs = np.array(list(prediction.probabilities.values()), dtype=np.float64)
    if probs.size == 0 or not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1:
        return "model error: probabilities are not finite values in 0..1"
    if not maps:
        return "Grad-CAM error: no map returned"
    for label, cam in maps.items():
        cam = np.asarray(cam)
        if cam.shape != film.pixels.shape[:2]:
            return f"Grad-CAM error: map for {label} is {cam.shape}, film is {film.pixels.shape[:2]}"
        if not np.all(np.isfinite(cam)) or cam.min() < 0 or cam.max() > 1:
            return f"Grad-CAM error: map for {label} is not finite in 0..1"
    return None


def check_film(predictor, path: Path, folder: Path):
    """Load one file, run the model and Grad-CAM on it -> (FilmCheck, Film or None)."""
    from cxrviewer.io import FilmError, load_film

    name = path.relative_to(folder).as_posix() if path != folder else path.name
    t0 = time.perf_counter()
    try:
        film = load_film(path)
    except FilmError as exc:
        return FilmCheck(name, _header_syntax(path), "error", f"cannot load: {exc.reason}",
                         time.perf_counter() - t0), None
    syntax = film.meta.transfer_syntax or film.meta.source_format
    try:
        prediction, maps = predictor.explain(film)
        problem = _model_problem(prediction, maps, film)
    except Exception as exc:  # a model failure is what the self-test exists to find
        text = " ".join(str(exc).split()) or type(exc).__name__
        problem = f"model error: {type(exc).__name__}: {text[:200]}"
    seconds = time.perf_counter() - t0
    if problem:
        return FilmCheck(name, syntax, "error", problem, seconds), film
    top = ", ".join(f"{lab} {p:.2f}" for lab, p in prediction.top(2))
    if prediction.warnings:
        return FilmCheck(name, syntax, "warning", "; ".join(prediction.warnings) + f" | top: {top}",
                         seconds), film
    return FilmCheck(name, syntax, "ok", f"top: {top}", seconds), film


def _print_check(check: FilmCheck, width: int) -> None:
    print(f"  {check.status:<7}  {check.name:<{width}}  {check.transfer_syntax}  "
          f"{check.seconds:5.2f} s  {check.detail}", flush=True)


def selftest_command(args) -> int:
    """``cxrviewer selftest FOLDER [--model M]``; exit 0 only if every check passed."""
    from cxrviewer.codec_check import run_codec_checks
    from cxrviewer.model import ModelLoadError, load_model

    _quiet_tensorflow()
    _line_buffered_output()
    started = time.perf_counter()
    folder = Path(args.folder)
    print(f"cxrviewer {__version__} self-test. {NOT_FOR_DIAGNOSIS}")
    print("Versions:")
    _print_versions(library_versions())
    print("Pixel-data decoders:")
    decoders = decoder_statuses()
    _print_decoders(decoders)
    if not folder.is_dir():
        print(f"self-test FAILED: {folder} is not a folder", file=sys.stderr)
        return EXIT_CANNOT_RUN
    files = list(dicom_files(folder))
    if not files:
        print(f"self-test FAILED: no DICOM file under {folder}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    try:
        predictor = load_model(getattr(args, "model", None))
    except ModelLoadError as exc:
        print(f"self-test FAILED: model: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    print(f"Compute device: {predictor.device.summary()}")
    for note in predictor.device.notes:
        print(f"  note: {note}")
    card = predictor.card
    print(f"Model: {predictor.identity} ({predictor.model_path}), {len(predictor.labels)} findings, "
          f"input {card.input_size} px, Grad-CAM layer '{card.gradcam_layer}'")

    print(f"Films: {len(files)} DICOM files under {folder}")
    width = min(60, max(len(p.relative_to(folder).as_posix()) for p in files))
    checks: list[FilmCheck] = []
    source, source_name = None, ""  # the first film that worked feeds the round trips
    for path in files:
        check, film = check_film(predictor, path, folder)
        checks.append(check)
        _print_check(check, width)
        if source is None and film is not None and check.status != "error":
            source, source_name = film, check.name

    print("Decoder round trips (encoded in memory, decoded by the loader and by pylibjpeg):")
    if source is None:
        codecs = []
        print("  FAILED   no film loaded, nothing to encode")
    else:
        print(f"  source: the pixels of {source_name}")
        codecs = run_codec_checks(source.pixels)
        for c in codecs:
            print(f"  {'ok' if c.ok else 'FAILED':<7}  {c.syntax} [{c.module}]  {c.seconds:5.2f} s  {c.detail}")

    n_ok = sum(c.status == "ok" for c in checks)
    n_warn = sum(c.status == "warning" for c in checks)
    failed = [c for c in checks if c.status == "error"]
    bad_decoders = [d for d in decoders if not d.ok]
    codecs_passed = sum(c.ok for c in codecs)
    passed = not failed and not bad_decoders and bool(codecs) and codecs_passed == len(codecs)
    print(f"Summary: {len(checks)} DICOM files: {n_ok} ok, {n_warn} loaded with warnings, "
          f"{len(failed)} failed; decoders {len(decoders) - len(bad_decoders)}/{len(decoders)} ready; "
          f"round trips {codecs_passed}/{len(codecs) or 3} passed; {time.perf_counter() - started:.1f} s")
    for c in failed:
        print(f"  failed: {c.name}: {c.detail}")
    for d in bad_decoders:
        print(f"  failed: decoder for {d.syntax}: pylibjpeg plugin missing ({'; '.join(d.missing)})")
    for c in codecs:
        if not c.ok:
            print(f"  failed: {c.syntax} round trip: {c.detail}")
    print("self-test PASSED" if passed else "self-test FAILED", flush=True)
    return EXIT_OK if passed else EXIT_FAILED
